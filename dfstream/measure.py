"""``dfstream eval`` and ``dfstream calibrate``: a labelled set (or a real-only one) scored by the
detectors or voice models named, then reported, fitted or written as a baseline. The command parses;
this runs it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from core.errors import ConfigError


def score_voice(args: argparse.Namespace, items, voice=None):  # noqa: ANN001
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


def score(args: argparse.Namespace, fusion: str = "weighted_average", calibration: str | None = None):
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


def eval_command(args: argparse.Namespace) -> int:
    from pipeline.evaluation.datasets import load_dataset
    from pipeline.evaluation.scoring import FUSED, report, write_outputs

    if not args.detectors and not args.config and not args.audio_detectors:
        raise ConfigError("eval: give --detectors or --config (faces), --audio-detectors (voices), or both")
    out = Path(args.out)
    if args.detectors or args.config:
        items, configs, detectors, scores = score(args, args.fusion, args.calibration)
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
        configs, voices, voice_scores = score_voice(args, items)
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


def calibrate_command(args: argparse.Namespace) -> int:
    if args.real_only:
        return _calibrate_voice_real_only(args) if args.audio_detectors else _calibrate_real_only(args)
    if args.audio_detectors:
        raise ConfigError("calibrate --audio-detectors: only with --real-only (the voice's real-speech baseline)")
    if args.faces == "both":
        raise ConfigError("--faces both: only with --real-only (a labelled calibration is per face finder)")
    import numpy as np

    from pipeline.judging.calibration import fit_calibrator, log_loss, save_calibrators

    _, _, detectors, scores = score(args)
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
    configs, _, scores = score_voice(args, items, voice)
    calibrated = calibrate_voice_real_only(scores, voice, configs, f"{args.dataset}: {real} real recording(s)")
    _print_fits(calibrated, voice.smoothing)
    save_baseline(calibrated.baseline, args.out)
    print(f"wrote {args.out} (set voice.smoothing.baseline to it)")
    return 0
