"""The ``dfstream`` command."""

from __future__ import annotations

import argparse
import logging
import sys

from .errors import DfstreamError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dfstream", description="Real-time multi-model deepfake detection")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="run the MesoNet ensemble on a generated sample clip (or --input)")
    demo.add_argument("--input", help="a video file instead of the generated sample")
    demo.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    demo.add_argument("--offline", action="store_true", help="never download weights")

    models = commands.add_parser("models", help="published weights: list, pull, verify")
    models_cmd = models.add_subparsers(dest="models_command", required=True)
    models_cmd.add_parser("list", help="the manifest and what is in the cache")
    pull_cmd = models_cmd.add_parser("pull", help="download weights (sha256-checked) into the cache")
    pull_cmd.add_argument("names", nargs="*", help="manifest names (default: all)")
    pull_cmd.add_argument("--mirror", help="base URL holding the same files (also $DFSTREAM_MODEL_MIRROR)")
    models_cmd.add_parser("verify", help="check every cached file against its sha256")

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "demo":
            from .demo import run_demo

            return run_demo(args.input, args.device, args.offline)
        return _models(args)
    except DfstreamError as exc:
        print(f"dfstream: error: {exc}", file=sys.stderr)
        return 2


def _models(args: argparse.Namespace) -> int:
    from .weights import load_manifest, model_dir, pull, source_url, verify

    manifest = load_manifest()
    if args.models_command == "list":
        print(f"cache: {model_dir()}")
        for name, entry in manifest.items():
            state = "verified" if verify(entry) else "missing"
            print(f"{name:<22} {entry.architecture:<16} {entry.size:>10} B  {entry.license:<12} {state}")
        return 0
    if args.models_command == "pull":
        unknown = [n for n in args.names if n not in manifest]
        if unknown:
            print(f"dfstream: error: unknown model(s) {unknown}; known: {', '.join(manifest)}", file=sys.stderr)
            return 2
        for name in args.names or list(manifest):
            entry = manifest[name]
            url = f"{args.mirror.rstrip('/')}/{entry.file}" if args.mirror else source_url(entry)
            print(f"{name}: {url} (license {entry.license})")
            path = pull(entry, url=url, progress=_progress(name))
            print(f"\n{name}: verified sha256, saved to {path}")
        return 0
    bad = [name for name, entry in manifest.items() if (model_dir() / entry.file).exists() and not verify(entry)]
    for name in bad:
        print(f"{name}: sha256 mismatch in {model_dir() / manifest[name].file}")
    return 1 if bad else 0


def _progress(name: str):
    def show(received: int, total: int) -> None:
        print(f"\r{name}: {received * 100 // max(total, 1):3d}% of {total} bytes", end="", file=sys.stderr, flush=True)

    return show


if __name__ == "__main__":
    sys.exit(main())
