"""The ``dfstream`` command: run, serve, check, ray (apply, status, down), db upgrade, users add,
models (list, pull, verify), eval, calibrate."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import yaml

from core.errors import ConfigError, DfstreamError
from core.redaction import LogFormatter

log = logging.getLogger("dfstream")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    handler = logging.StreamHandler()
    handler.setFormatter(LogFormatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, handlers=[handler])
    commands = {
        "check": _check,
        "run": _run,
        "serve": _serve,
        "db": _db,
        "users": _users,
        "annotate": _annotate,
        "eval": _eval,
        "calibrate": _calibrate,
        "models": _models,
        "ray": _ray,
    }
    try:
        return commands[args.command](args)
    except DfstreamError as exc:
        for line in str(exc).splitlines():
            print(f"dfstream: error: {line}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    from pipeline.judging.fusion import FusionMethod

    parser = argparse.ArgumentParser(prog="dfstream", description="Real-time multi-model deepfake detection")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    commands = parser.add_subparsers(dest="command", required=True)

    def config_arguments(command: argparse.ArgumentParser) -> None:
        command.add_argument("config", help="YAML configuration file")
        command.add_argument(
            "--set",
            dest="overrides",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="override a value, e.g. --set streams.0.url=rtsp://... (repeatable)",
        )

    for name, text in (
        ("run", "watch the configured streams and emit verdicts"),
        ("serve", "run the streams and the HTTP API (users, media analysis, events, live feed)"),
        ("check", "validate a config and print it resolved"),
    ):
        command = commands.add_parser(name, help=text)
        config_arguments(command)
        if name != "check":
            command.add_argument("--offline", action="store_true", help="never download weights")

    ray = commands.add_parser("ray", help="the streams of a config on a Ray cluster (runtime.engine: ray)")
    ray_cmd = ray.add_subparsers(dest="ray_command", required=True)
    for name, text in (
        ("apply", "deploy the models and make the running streams those of the config; leave them running"),
        ("status", "each stream actor: state, node, frames, verdicts"),
        ("down", "stop the streams (their sinks drained) and remove the deployments"),
    ):
        command = ray_cmd.add_parser(name, help=text)
        config_arguments(command)
        if name == "apply":
            command.add_argument("--offline", action="store_true", help="never download weights")

    db = commands.add_parser("db", help="the service's database")
    db_cmd = db.add_subparsers(dest="db_command", required=True)
    config_arguments(db_cmd.add_parser("upgrade", help="migrate the api section's database to this dfstream's schema"))
    users = commands.add_parser("users", help="the service's users")
    users_cmd = users.add_subparsers(dest="users_command", required=True)
    add_cmd = users_cmd.add_parser(
        "add", help="add a user; the password comes from a prompt or $DFSTREAM_ADMIN_PASSWORD"
    )
    config_arguments(add_cmd)
    add_cmd.add_argument("name", help="the username")
    add_cmd.add_argument("--role", choices=["admin", "analyst", "viewer"], required=True)

    annotate = commands.add_parser(
        "annotate", help="a video or stream in, the same video out with faces, verdicts and a timeline drawn"
    )
    annotate.add_argument("input", help="a file or a URL (rtsp://, http://, ...)")
    annotate.add_argument("--out", required=True, help="the annotated video to write (.mp4, .mov, .mkv, .ts)")
    judged_by = annotate.add_mutually_exclusive_group(required=True)
    judged_by.add_argument(
        "--detectors", nargs="+", metavar="NAME[=WEIGHTS]", help="as for eval: meso4_df, or meso4=path/to/Meso4_DF.h5"
    )
    judged_by.add_argument("--config", help="a config file: its faces, detectors, ensemble and smoothing")
    annotate.add_argument(
        "--audio-detectors",
        nargs="+",
        default=[],
        metavar="NAME[=WEIGHTS]",
        help="with --detectors: voice models (aasist, aasist_l=path) whose badge is drawn too",
    )
    annotate.add_argument("--device", default="auto")
    annotate.add_argument("--offline", action="store_true", help="never download weights")

    models = commands.add_parser("models", help="published weights: list, pull, verify")
    models_cmd = models.add_subparsers(dest="models_command", required=True)
    models_cmd.add_parser("list", help="the manifest and what is in the cache")
    pull_cmd = models_cmd.add_parser("pull", help="download weights (sha256-checked) into the cache")
    pull_cmd.add_argument("names", nargs="*", help="manifest names (default: all)")
    pull_cmd.add_argument("--mirror", help="base URL holding the same files (also $DFSTREAM_MODEL_MIRROR)")
    pull_cmd.add_argument(
        "--accept-unpinned",
        action="store_true",
        help="also fetch files the manifest pins no sha256 for, and record their digest",
    )
    models_cmd.add_parser("verify", help="check every cached file against its sha256")

    for name, text in (
        ("eval", "score a labelled set of videos or images and report AUC, accuracy, precision, recall, F1"),
        ("calibrate", "fit per-detector temperature or Platt calibration on a labelled set"),
    ):
        command = commands.add_parser(name, help=text)
        command.add_argument(
            "dataset",
            help="a folder with real/ and fake/, a FaceForensics++ tree, or a CSV of path,label"
            + ("; with --real-only also a folder of videos (all real) or a stream URL" if name == "calibrate" else ""),
        )
        command.add_argument(
            "--detectors",
            nargs="+",
            default=[],
            metavar="NAME[=WEIGHTS]",
            help="manifest names (meso4_df) or types with a file (meso4=path/to/Meso4_DF.h5)",
        )
        command.add_argument(
            "--audio-detectors",
            nargs="+",
            default=[],
            metavar="NAME[=WEIGHTS]",
            help="voice models for the items' sound: manifest names (aasist) or types with a file "
            "(aasist_l=path/to/AASIST-L.pth); audio files (.wav, .flac, ...) are judged by these only"
            + (
                "; with --real-only: fit the voice's baseline (voice.smoothing.baseline)" if name == "calibrate" else ""
            ),
        )
        command.add_argument(
            "--config", help="also the detectors of this config file (declared ones too: type onnx, torchscript)"
        )
        command.add_argument(
            "--frames", type=int, default=32, help="evenly spaced frames per video (default 32, as DeepfakeBench)"
        )
        command.add_argument("--device", default="auto")
        command.add_argument(
            "--faces",
            default="blazeface",
            choices=["blazeface", "mtcnn"] + (["both"] if name == "calibrate" else []),
            help="the face finder (as faces.model)" + ("; both: --real-only fits each" if name == "calibrate" else ""),
        )
        if name == "eval":
            command.add_argument("--out", required=True, help="folder for report.json, frame_scores.csv and ROC curves")
            command.add_argument("--fusion", default="weighted_average", choices=[m.value for m in FusionMethod])
            command.add_argument("--calibration", help="a calibration file written by dfstream calibrate")
        else:
            command.add_argument(
                "--out", required=True, help="the calibration file to write (what ensemble.calibration reads)"
            )
            command.add_argument("--method", default="platt", choices=["platt", "temperature"])
            command.add_argument(
                "--real-only",
                action="store_true",
                help="fit how real faces score (the cusum's baseline: smoothing.baseline) on real footage alone; "
                "labelled fakes, if any, only measure the fitted threshold",
            )
            command.add_argument(
                "--minutes", type=float, default=10.0, help="--real-only on a stream URL: how long to watch it"
            )
    return parser


def _load(args: argparse.Namespace):
    from dfstream.config import load_config, verify_files

    config = load_config(args.config, args.overrides)
    problems = verify_files(config)
    if problems:
        raise ConfigError("\n".join(problems))
    return config


def _check(args: argparse.Namespace) -> int:
    from dfstream.config import redacted

    config = _load(args)
    print(yaml.safe_dump(redacted(config.model_dump(mode="json")), sort_keys=False), end="")
    return 0


def _run(args: argparse.Namespace) -> int:
    from dfstream.wiring import run

    run(_load(args), args.offline, lambda text: print(text, file=sys.stderr), args.config, reload=lambda: _load(args))
    return 0


def _ray(args: argparse.Namespace) -> int:
    import json

    from dfstream.wiring import ray_engine

    config = _load(args)
    if config.runtime.engine != "ray":
        raise ConfigError(
            f"{args.config}: runtime.engine is {config.runtime.engine!r}; dfstream ray needs runtime: {{engine: ray}}"
        )
    engine = ray_engine(config, getattr(args, "offline", False), lambda text: print(text, file=sys.stderr))
    if args.ray_command == "apply":
        engine.deploy()
        engine.apply()
    elif args.ray_command == "down":
        engine.down()
    for line in engine.status():
        print(json.dumps(line))
    return 0


def _serve(args: argparse.Namespace) -> int:
    from dfstream.wiring import serve

    serve(_load(args), args.offline, lambda text: print(text, file=sys.stderr), args.config)
    return 0


def _annotate(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from dfstream.annotate import STREAM, annotate, probe_input
    from dfstream.config import load_config, parse_config
    from dfstream.wiring import load_detectors, load_voices

    stream = {"id": STREAM, "url": args.input, "pace": "asap"}
    if args.config:
        base = load_config(args.config).model_dump(mode="json", exclude={"streams", "sinks", "api"})
        config = parse_config({**base, "streams": [stream]})
    else:
        from pipeline.evaluation.scoring import parse_audio_detector_spec, parse_detector_spec

        specs = [parse_detector_spec(text, args.device).model_dump(mode="json") for text in args.detectors]
        voices = [parse_audio_detector_spec(t, args.device).model_dump(mode="json") for t in args.audio_detectors]
        config = parse_config(
            {"streams": [stream], "detectors": specs, "audio_detectors": voices, "faces": {"device": args.device}}
        )
    total = probe_input(args.input).frames
    say = lambda text: print(text, file=sys.stderr)  # noqa: E731
    detectors, voices = load_detectors(config, args.offline, say), load_voices(config, args.offline, say)
    with tqdm(total=total, desc="annotate", unit="frame", disable=None) as bar:  # quiet when not on a terminal
        done = annotate(config, detectors, args.input, Path(args.out), bar.update, voices)
    sound = f", its sound kept, {done['voice_windows']} voice windows" if done["sound"] else ""
    print(f"wrote {args.out}: {done['frames']} frames in {done['seconds']:.1f} s ({done['fps']:.1f} frames/s){sound}")
    return 0


def _db(args: argparse.Namespace) -> int:
    from service.db.schema import current, head, make_engine, upgrade

    engine = make_engine(_load(args).api.database_url)
    try:
        before = current(engine)
        upgrade(engine)
        where = engine.url.render_as_string(hide_password=True)
        print(f"{where}: schema {head()}" + (f" (was {before})" if before != head() else " (already current)"))
    finally:
        engine.dispose()
    return 0


def _users(args: argparse.Namespace) -> int:
    import getpass
    import os

    from sqlalchemy.exc import IntegrityError
    from sqlalchemy.orm import Session

    from service.auth import hash_password, validate_password
    from service.db.models import User
    from service.db.schema import make_engine, prepare

    # never an argument: it would sit in the shell history and in every `ps` listing
    password = os.environ.get("DFSTREAM_ADMIN_PASSWORD")
    if password is None:
        if not sys.stdin.isatty():
            raise ConfigError("no password: set DFSTREAM_ADMIN_PASSWORD or run on a terminal to be asked")
        password = getpass.getpass(f"password for {args.name}: ")
        if getpass.getpass("again: ") != password:
            raise ConfigError("the two passwords differ")
    try:
        validate_password(password)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    engine = make_engine(_load(args).api.database_url)
    try:
        prepare(engine, args.config)
        with Session(engine) as session:
            session.add(User(username=args.name, password_hash=hash_password(password), role=args.role))
            try:
                session.commit()
            except IntegrityError:
                raise ConfigError(f"user {args.name!r} exists") from None
    finally:
        engine.dispose()
    print(f"user {args.name} ({args.role}) added")
    return 0


def _score_voice(args: argparse.Namespace, items, voice=None):  # noqa: ANN001
    from tqdm import tqdm

    from pipeline.evaluation.scoring import parse_audio_detector_spec
    from pipeline.evaluation.voice import score_voice_items
    from pipeline.judging.ensemble import build_ensemble
    from pipeline.judging.listening import VoiceConfig
    from pipeline.models.audio.loading import load_voice_models

    configs = [parse_audio_detector_spec(text, args.device) for text in args.audio_detectors]
    if len({c.name for c in configs}) != len(configs):
        raise ConfigError("--audio-detectors: each voice model needs its own name")
    voices = load_voice_models(configs)
    voice = voice or VoiceConfig()
    ensemble = build_ensemble(voice.ensemble, configs, None)
    with tqdm(total=len(items), desc="voice", unit="item", disable=None) as bar:
        scores = score_voice_items(items, voices, ensemble, voice, lambda done, total: bar.update(1))
    for skipped in scores.skipped:
        print(f"dfstream: voice of {skipped['path']} not judged: {skipped['reason']}", file=sys.stderr)
    return configs, voices, scores


def _score(args: argparse.Namespace, fusion: str = "weighted_average", calibration: str | None = None):
    from tqdm import tqdm

    from pipeline.evaluation.datasets import load_dataset
    from pipeline.evaluation.scoring import parse_detector_spec, score_items
    from pipeline.judging.ensemble import EnsembleConfig, build_ensemble
    from pipeline.judging.fusion import FusionMethod
    from pipeline.models.faces.finder import FaceDetector, FacesConfig
    from pipeline.models.registry import ModelRegistry

    if args.frames < 1:
        raise ConfigError(f"--frames {args.frames}: must be at least 1")
    items = [item for item in load_dataset(args.dataset) if not item.is_audio]  # sound alone has no face
    if not items:
        raise ConfigError(f"{args.dataset}: only audio files: judge them with --audio-detectors")
    configs = [parse_detector_spec(text, args.device) for text in args.detectors]
    if args.config:
        from dfstream.config import load_config

        configs += load_config(args.config).detectors
    if not configs:
        raise ConfigError(f"{args.command}: give --detectors, or --config with a detectors section")
    if len({c.name for c in configs}) != len(configs):
        raise ConfigError("--detectors: each detector needs its own name")
    detectors = ModelRegistry().load_configured(configs)
    ensemble = build_ensemble(
        EnsembleConfig(fusion_method=FusionMethod(fusion), calibration=calibration), configs, detectors
    )
    faces = FaceDetector(FacesConfig(model=args.faces, device=args.device))
    with tqdm(total=len(items), desc=args.command, unit="item", disable=None) as bar:  # quiet when not on a terminal
        scores = score_items(items, detectors, ensemble, faces, args.frames, lambda done, total: bar.update(1))
    for skipped in scores.skipped:
        print(f"dfstream: skipped {skipped['path']}: {skipped['reason']}", file=sys.stderr)
    return items, configs, detectors, scores


def _eval(args: argparse.Namespace) -> int:
    from pipeline.evaluation.datasets import load_dataset
    from pipeline.evaluation.scoring import FUSED, report, write_outputs

    if not args.detectors and not args.config and not args.audio_detectors:
        raise ConfigError("eval: give --detectors or --config (faces), --audio-detectors (voices), or both")
    out = Path(args.out)
    if args.detectors or args.config:
        items, configs, detectors, scores = _score(args, args.fusion, args.calibration)
        names = list(detectors)
        result = report(scores, names)
        meta = {
            "dataset": str(args.dataset),
            "items": len(items),
            "frames_per_video": args.frames,
            "faces": args.faces,
            "fusion": args.fusion,
            "calibration": args.calibration,
            "detectors": {
                c.name: {"type": c.type, "weights": str(detectors[c.name].get_model_info().weights_path)}
                for c in configs
            },
        }
        for path in write_outputs(out, result, scores, names, meta):
            print(f"wrote {path}")
        # the cost beside the accuracy: ms per crop on this machine (a batch of a chunk's faces)
        print(f"{'model':<22} {'frame AUC':>9} {'video AUC':>9} {'video acc':>9} {'video F1':>8} {'ms/crop':>8}")
        for name in [*names, FUSED]:
            frame, video = result["models"][name]["frame"], result["models"][name]["video"]["mean"]
            cost = scores.ms_per_crop(name)
            print(
                f"{name:<22} {_show(frame['auc']):>9} {_show(video['auc']):>9} {_show(video['accuracy']):>9} "
                f"{_show(video['f1']):>8} {'' if cost is None else f'{cost:.2f}':>8}"
            )
    if args.audio_detectors:
        from pipeline.evaluation.voice import FUSED as VOICE_FUSED
        from pipeline.evaluation.voice import voice_report, write_voice_outputs

        items = load_dataset(args.dataset)
        configs, voices, voice_scores = _score_voice(args, items)
        names = list(voices)
        result = voice_report(voice_scores, names)
        meta = {
            "dataset": str(args.dataset),
            "items": len(items),
            "audio_detectors": {c.name: {"type": c.type, "weights": c.weights_name} for c in configs},
        }
        for path in write_voice_outputs(out, result, voice_scores, names, meta):
            print(f"wrote {path}")
        print(f"{'voice model':<22} {'window AUC':>10} {'window EER':>10} {'file AUC':>9} {'file EER':>9}")
        for name in [*names, VOICE_FUSED]:
            window, file = result["models"][name]["window"], result["models"][name]["file"]
            print(
                f"{name:<22} {_show(window['auc']):>10} {_show(window['eer']):>10} {_show(file['auc']):>9} "
                f"{_show(file['eer']):>9}"
            )
    return 0


def _show(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _calibrate(args: argparse.Namespace) -> int:
    if args.real_only:
        return _calibrate_voice_real_only(args) if args.audio_detectors else _calibrate_real_only(args)
    if args.audio_detectors:
        raise ConfigError("calibrate --audio-detectors: only with --real-only (the voice's real-speech baseline)")
    if args.faces == "both":
        raise ConfigError("--faces both: only with --real-only (a labelled calibration is per face finder)")
    import numpy as np

    from pipeline.judging.calibration import fit_calibrator, log_loss, save_calibrators

    _, _, detectors, scores = _score(args)
    calibrators = {}
    for name in detectors:
        p, y = np.array(scores.column(name)), np.array(scores.column("label"))
        if len(set(y.tolist())) < 2:
            raise ConfigError(
                f"{args.dataset}: calibration needs both real and fake faces; scored {len(y)} frames of one class"
            )
        calibrator = fit_calibrator(p, y, args.method)
        calibrators[name] = calibrator
        before, after = log_loss(p, y), log_loss(np.asarray(calibrator(p)), y)
        print(f"{name}: {calibrator.to_dict()} log loss {before:.4f} -> {after:.4f} on {len(y)} frames")
    save_calibrators(calibrators, args.out)
    print(f"wrote {args.out} (set ensemble.calibration to it)")
    return 0


def _calibrate_real_only(args: argparse.Namespace) -> int:
    from dfstream.baseline import calibrate_real_only, footage_of
    from dfstream.config import load_config, parse_config
    from pipeline.evaluation.scoring import parse_detector_spec
    from pipeline.judging.evidence import save_baseline
    from pipeline.models.registry import ModelRegistry

    config = load_config(args.config) if args.config else None
    extra = [parse_detector_spec(text, args.device) for text in args.detectors]
    detectors = (config.detectors if config is not None else []) + extra
    if not detectors:
        raise ConfigError("calibrate --real-only: give --detectors, or --config with a detectors section")
    base = config.model_dump(exclude={"streams", "detectors"}) if config is not None else {}
    config = parse_config({**base, "detectors": [d.model_dump() for d in detectors], "streams": []})
    finders = ["blazeface", "mtcnn"] if args.faces == "both" else [args.faces]
    footage = footage_of(args.dataset)
    real = sum(f.label == 0 for f in footage)
    print(f"{args.dataset}: {real} real source(s), {len(footage) - real} labelled fake(s); fitting on the real ones")
    calibrated = calibrate_real_only(
        footage,
        config,
        ModelRegistry().load_configured(detectors),
        finders,
        args.minutes * 60.0,
        f"{args.dataset}: {real} real source(s)",
        lambda finder, done, total: print(f"{finder}: {done}/{total} sources", file=sys.stderr),
    )
    _print_fits(calibrated, config.smoothing)
    save_baseline(calibrated.baseline, args.out)
    print(f"wrote {args.out} (set smoothing.baseline to it)")
    return 0


def _print_fits(calibrated, smoothing) -> None:  # noqa: ANN001
    """Each fit (per face finder, or the voice) and its thresholds; with labelled fakes, what it flags."""
    for finder, fitted in calibrated.baseline.real.items():
        print(
            f"{finder}: {fitted.tracks} real tracks, {fitted.seconds:.0f} s; between-track share {fitted.between:.2f}, "
            f"rho {fitted.rho:.2f} at {fitted.period_s:g} s"
        )
        table = ", ".join(
            f"{rate:g}/h: {rule.change:.1f} / {rule.absolute:.1f}"
            for rate, rule in calibrated.thresholds[finder].items()
        )
        print(
            f"  thresholds, change / absolute (shift {smoothing.shift:g}, tracks of {smoothing.track_s:g} s): {table}"
        )
        found = calibrated.detection.get(finder)
        if found is not None:
            median = f", median {sorted(found.flag_s)[len(found.flag_s) // 2]:.2f} s" if found.flag_s else ""
            print(
                f"  at {smoothing.false_alarms_per_hour:g}/h: {found.fake_flagged} of {found.fake_tracks} fake tracks "
                f"flagged{median}; {found.real_flagged} of {found.real_tracks} real tracks alarmed"
            )


def _calibrate_voice_real_only(args: argparse.Namespace) -> int:
    from dfstream.baseline import calibrate_voice_real_only, sounds_of
    from dfstream.config import load_config
    from pipeline.judging.evidence import save_baseline
    from pipeline.judging.listening import VoiceConfig

    if args.detectors:
        raise ConfigError(
            "calibrate --real-only: --detectors or --audio-detectors, not both "
            "(a baseline is for faces or for the voice)"
        )
    voice = load_config(args.config).voice if args.config else VoiceConfig()
    items = sounds_of(args.dataset)
    real = sum(item.label == 0 for item in items)
    print(f"{args.dataset}: {real} real recording(s), {len(items) - real} labelled fake(s); fitting on the real ones")
    configs, _, scores = _score_voice(args, items, voice)
    calibrated = calibrate_voice_real_only(scores, voice, configs, f"{args.dataset}: {real} real recording(s)")
    _print_fits(calibrated, voice.smoothing)
    save_baseline(calibrated.baseline, args.out)
    print(f"wrote {args.out} (set voice.smoothing.baseline to it)")
    return 0


def _models(args: argparse.Namespace) -> int:
    from core.errors import WeightsError
    from pipeline.models.weights import (
        download_progress,
        expected_sha256,
        fetch_by_hand,
        load_manifest,
        model_dir,
        pull,
        sha256_file,
        source_url,
        verify,
    )

    manifest = load_manifest()
    if args.models_command == "list":
        print(f"cache: {model_dir()}")
        for name, entry in manifest.items():
            present = (model_dir() / entry.file).is_file()
            state = "verified" if verify(entry) else ("unverified" if present else "missing")
            size = f"{entry.size:>10} B" if entry.size else (" sha256 only" if entry.pinned else "  unpinned  ")
            if entry.manual:
                state += ", by hand"  # its publisher's page is not a direct download
            print(f"{name:<22} {entry.architecture:<20} {entry.profile:<14} {size}  {entry.license:<13} {state}")
            if entry.trained_on or entry.citation:
                print(f"    trained on {entry.trained_on or 'unstated'}; {entry.citation or 'no citation'}")
        return 0
    if args.models_command == "pull":
        unknown = [n for n in args.names if n not in manifest]
        if unknown:
            print(f"dfstream: error: unknown model(s) {unknown}; known: {', '.join(manifest)}", file=sys.stderr)
            return 2
        wanted: list[str] = []
        for name in args.names or list(manifest):
            for needed in (*manifest[name].requires, name):  # what an entry requires comes first
                if needed not in wanted:
                    wanted.append(needed)
        for name in wanted:
            entry = manifest[name]
            url = f"{args.mirror.rstrip('/')}/{entry.file}" if args.mirror else source_url(entry)
            if entry.manual and url == entry.url:  # no mirror: nothing a script can download from
                placed = model_dir() / entry.file
                if placed.is_file():
                    state = "verified" if verify(entry) else "unverified (nothing pinned to check it against)"
                    print(f"{name}: {placed}, placed by hand, {state}")
                    continue
                if args.names:
                    raise WeightsError(fetch_by_hand(entry))
                print(f"{name}: skipped, {fetch_by_hand(entry).split(': ', 1)[1]}")
                continue
            if not entry.pinned and not args.accept_unpinned and args.names:
                raise WeightsError(
                    f"{name}: the manifest pins no sha256 for {entry.file}; add --accept-unpinned to fetch it "
                    "and record its digest"
                )
            if not entry.pinned and not args.accept_unpinned:
                print(f"{name}: skipped, no pinned sha256 (--accept-unpinned fetches it)")
                continue
            print(f"{name}: {url} (license {entry.license})")
            with download_progress(name) as progress:
                path = pull(entry, url=url, progress=progress, accept_unpinned=args.accept_unpinned)
            how = "verified sha256" if entry.pinned else f"recorded sha256 {sha256_file(path)} (unpinned)"
            print(f"{name}: {how}, saved to {path}")
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


if __name__ == "__main__":
    sys.exit(main())
