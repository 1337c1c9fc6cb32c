"""``dfstream models``: the manifest's weights listed, pulled (an entry's requirements first; a
manual entry from a mirror or by hand; an unpinned one only when accepted) and verified. The command
parses; this runs it."""

from __future__ import annotations

import argparse
import sys


def models_command(args: argparse.Namespace) -> int:
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
