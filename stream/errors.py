"""The root of dfstream's errors lives at the start of the data flow, so that ``stream/`` needs
nothing downstream; ``pipeline.errors`` grows the rest of the tree from it."""


class DfstreamError(Exception):
    """Root of every error dfstream raises on purpose."""


class SourceError(DfstreamError):
    """A stream cannot be opened or read (the message names the stream and the cause)."""
