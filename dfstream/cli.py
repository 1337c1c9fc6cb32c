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
        ("status", "each stream: state, node, frames, verdicts, moves"),
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


def _eval(args: argparse.Namespace) -> int:
    from dfstream.measure import eval_command

    return eval_command(args)


def _calibrate(args: argparse.Namespace) -> int:
    from dfstream.measure import calibrate_command

    return calibrate_command(args)


def _models(args: argparse.Namespace) -> int:
    from dfstream.pull import models_command

    return models_command(args)


if __name__ == "__main__":
    sys.exit(main())
