"""The ``dfstream`` command: run, check, models."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

import yaml

from .errors import ConfigError, DfstreamError

log = logging.getLogger("dfstream")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dfstream", description="Real-time multi-model deepfake detection")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    commands = parser.add_subparsers(dest="command", required=True)

    for name, text in (("run", "watch the configured streams and emit verdicts"), ("check", "validate a config and print it resolved")):
        command = commands.add_parser(name, help=text)
        command.add_argument("config", help="YAML configuration file")
        command.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                             help="override a value, e.g. --set streams.0.url=rtsp://... (repeatable)")  # fmt: skip
        if name == "run":
            command.add_argument("--offline", action="store_true", help="never download weights")

    models = commands.add_parser("models", help="published weights: list, pull, verify")
    models_cmd = models.add_subparsers(dest="models_command", required=True)
    models_cmd.add_parser("list", help="the manifest and what is in the cache")
    pull_cmd = models_cmd.add_parser("pull", help="download weights (sha256-checked) into the cache")
    pull_cmd.add_argument("names", nargs="*", help="manifest names (default: all)")
    pull_cmd.add_argument("--mirror", help="base URL holding the same files (also $DFSTREAM_MODEL_MIRROR)")
    pull_cmd.add_argument("--accept-unpinned", action="store_true",
                          help="also fetch files the manifest pins no sha256 for, and record their digest")  # fmt: skip
    models_cmd.add_parser("verify", help="check every cached file against its sha256")

    for name, text in (("eval", "score a labelled set of videos or images and report AUC, accuracy, precision, recall, F1"),
                       ("calibrate", "fit per-detector temperature or Platt calibration on a labelled set")):  # fmt: skip
        command = commands.add_parser(name, help=text)
        command.add_argument("dataset", help="a folder with real/ and fake/, a FaceForensics++ tree, or a CSV of path,label")
        command.add_argument("--detectors", nargs="+", required=True, metavar="NAME[=WEIGHTS]",
                             help="manifest names (meso4_df) or types with a file (meso4=path/to/Meso4_DF.h5)")  # fmt: skip
        command.add_argument("--frames", type=int, default=32, help="evenly spaced frames per video (default 32, as DeepfakeBench)")
        command.add_argument("--device", default="auto")
        if name == "eval":
            command.add_argument("--out", required=True, help="folder for report.json, frame_scores.csv and ROC curves")
            command.add_argument("--fusion", default="weighted_average", choices=[m.value for m in _fusion_methods()])
            command.add_argument("--calibration", help="a calibration file written by dfstream calibrate")
        else:
            command.add_argument("--out", required=True, help="the calibration file to write (what ensemble.calibration reads)")
            command.add_argument("--method", default="platt", choices=["platt", "temperature"])

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "check":
            return _check(args)
        if args.command == "run":
            return _run(args)
        if args.command == "eval":
            return _eval(args)
        if args.command == "calibrate":
            return _calibrate(args)
        return _models(args)
    except DfstreamError as exc:
        for line in str(exc).splitlines():
            print(f"dfstream: error: {line}", file=sys.stderr)
        return 2


def _load(args: argparse.Namespace):
    from .config import load_config, verify_files
    from .errors import ConfigError

    config = load_config(args.config, args.overrides)
    problems = verify_files(config)
    if problems:
        raise ConfigError("\n".join(problems))
    return config


def _check(args: argparse.Namespace) -> int:
    from .config import redacted

    config = _load(args)
    print(yaml.safe_dump(redacted(config.model_dump(mode="json")), sort_keys=False), end="")
    return 0


def _run(args: argparse.Namespace) -> int:
    from sinks import PrometheusExporter, build_sinks

    from .monitor import PerformanceMonitor
    from .runtime import Runtime, load_detectors
    from .weights import ensure_available, load_manifest

    config = _load(args)
    manifest = load_manifest()
    wanted = [d.weights for d in config.detectors if d.weights in manifest]
    ensure_available(wanted, args.offline, lambda text: print(text, file=sys.stderr))
    detectors = load_detectors(config)
    monitor = PerformanceMonitor(config.monitoring)
    exporter = PrometheusExporter(config.sinks.prometheus, monitor).start() if config.sinks.prometheus else None

    async def supervise() -> None:
        runtime = Runtime(config, detectors, build_sinks(config.sinks, monitor), monitor)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, runtime.stop.set)
        await runtime.run()

    try:
        asyncio.run(supervise())
    finally:
        if exporter is not None:
            exporter.close()
    return 0


def _fusion_methods():
    from .fusion import FusionMethod

    return list(FusionMethod)


def _score(args: argparse.Namespace, calibration: str | None = None):
    from .datasets import load_dataset
    from .evaluation import (
        build_ensemble,
        load_eval_detectors,
        parse_detector_spec,
        progress_bar,
        score_items,
    )
    from .faces import FaceDetector, FacesConfig
    from .fusion import FusionMethod

    if args.frames < 1:
        raise ConfigError(f"--frames {args.frames}: must be at least 1")
    items = load_dataset(args.dataset)
    specs = [parse_detector_spec(text) for text in args.detectors]
    detectors = load_eval_detectors(specs, args.device)
    ensemble = build_ensemble(detectors, FusionMethod(getattr(args, "fusion", "weighted_average")), calibration)
    scores = score_items(items, detectors, ensemble, FaceDetector(FacesConfig(device=args.device)), args.frames, progress_bar(args.command))
    for skipped in scores.skipped:
        print(f"dfstream: skipped {skipped['path']}: {skipped['reason']}", file=sys.stderr)
    return items, specs, detectors, scores


def _eval(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .evaluation import FUSED, report, write_outputs

    items, specs, detectors, scores = _score(args, args.calibration)
    names = list(detectors)
    result = report(scores, names)
    meta = {"dataset": str(args.dataset), "items": len(items), "frames_per_video": args.frames, "fusion": args.fusion,
            "calibration": args.calibration, "detectors": {s.name: {"type": s.type, "weights": str(detectors[s.name].weights_path)} for s in specs}}  # fmt: skip
    for path in write_outputs(Path(args.out), result, scores, names, meta):
        print(f"wrote {path}")
    print(f"{'model':<22} {'frame AUC':>9} {'video AUC':>9} {'video acc':>9} {'video F1':>8}")
    for name in [*names, FUSED]:
        frame, video = result["models"][name]["frame"], result["models"][name]["video"]["mean"]
        print(f"{name:<22} {_show(frame['auc']):>9} {_show(video['auc']):>9} {_show(video['accuracy']):>9} {_show(video['f1']):>8}")
    return 0


def _show(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _calibrate(args: argparse.Namespace) -> int:
    import numpy as np

    from .calibration import fit_calibrator, save_calibrators

    _, _, detectors, scores = _score(args)
    calibrators = {}
    for name in detectors:
        p, y = np.array(scores.column(name)), np.array(scores.column("label"))
        if len(set(y.tolist())) < 2:
            raise ConfigError(f"{args.dataset}: calibration needs both real and fake faces; scored {len(y)} frames of one class")
        calibrator = fit_calibrator(p, y, args.method)
        calibrators[name] = calibrator
        before, after = _log_loss(p, y), _log_loss(np.asarray(calibrator(p)), y)
        print(f"{name}: {calibrator.to_dict()} log loss {before:.4f} -> {after:.4f} on {len(y)} frames")
    save_calibrators(calibrators, args.out)
    print(f"wrote {args.out} (set ensemble.calibration to it)")
    return 0


def _log_loss(p, y) -> float:
    import numpy as np

    p = np.clip(p, 1e-7, 1 - 1e-7)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def _models(args: argparse.Namespace) -> int:
    from .errors import WeightsError
    from .weights import expected_sha256, load_manifest, model_dir, pull, sha256_file, source_url, verify

    manifest = load_manifest()
    if args.models_command == "list":
        print(f"cache: {model_dir()}")
        for name, entry in manifest.items():
            present = (model_dir() / entry.file).is_file()
            state = "verified" if verify(entry) else ("unverified" if present else "missing")
            size = f"{entry.size:>10} B" if entry.size else "  unpinned  "
            print(f"{name:<22} {entry.architecture:<20} {entry.profile:<14} {size}  {entry.license:<13} {state}")
        return 0
    if args.models_command == "pull":
        unknown = [n for n in args.names if n not in manifest]
        if unknown:
            print(f"dfstream: error: unknown model(s) {unknown}; known: {', '.join(manifest)}", file=sys.stderr)
            return 2
        for name in args.names or list(manifest):
            entry = manifest[name]
            url = f"{args.mirror.rstrip('/')}/{entry.file}" if args.mirror else source_url(entry)
            if not entry.pinned and not args.accept_unpinned and args.names:
                raise WeightsError(f"{name}: the manifest pins no sha256 for {entry.file}; add --accept-unpinned to fetch it "
                                   "and record its digest")  # fmt: skip
            if not entry.pinned and not args.accept_unpinned:
                print(f"{name}: skipped, no pinned sha256 (--accept-unpinned fetches it)")
                continue
            print(f"{name}: {url} (license {entry.license})")
            path = pull(entry, url=url, progress=_progress(name), accept_unpinned=args.accept_unpinned)
            how = "verified sha256" if entry.pinned else f"recorded sha256 {sha256_file(path)} (unpinned)"
            print(f"\n{name}: {how}, saved to {path}")
        return 0
    bad = 0
    for name, entry in manifest.items():
        path = model_dir() / entry.file
        if not path.exists():
            continue
        if expected_sha256(entry, model_dir()) is None:
            print(f"{name}: {path} unverified: no sha256 pinned or recorded")
        elif not verify(entry):
            print(f"{name}: sha256 mismatch in {path}")
            bad += 1
    return 1 if bad else 0


def _progress(name: str):
    def show(received: int, total: int | None) -> None:
        done = f"{received * 100 // max(total, 1):3d}% of {total} bytes" if total else f"{received} bytes"
        print(f"\r{name}: {done}", end="", file=sys.stderr, flush=True)

    return show


if __name__ == "__main__":
    sys.exit(main())
