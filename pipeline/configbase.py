"""The strict base every configuration model shares (unknown keys are errors). It is defined where
the data flow starts, in ``stream.config``; ``sinks`` reaches it here, never through ``stream``."""

from stream.config import StrictModel

__all__ = ["StrictModel"]
