"""The root of dfstream's errors lives at the start of the data flow, so that ``stream/`` needs
nothing downstream; ``pipeline.errors`` grows the rest of the tree from it."""


class DfstreamError(Exception):
    """Root of every error dfstream raises on purpose."""


class SourceError(DfstreamError):
    """A stream cannot be opened or read (the message names the stream and the cause)."""


def one_line(exc: BaseException, *, with_type: bool = False, limit: int = 300) -> str:
    """An exception as the one line an error message or a log quotes: its first line (FFmpeg, torch
    and h5py write several), optionally after its type name; the type name alone when it says nothing."""
    lines = str(exc).strip().splitlines()
    text = lines[0][:limit] if lines else ""
    if with_type:
        return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text or type(exc).__name__
