"""Where frames come from: PyAV decoding, converted at this edge into dfstream's ``Frame``."""

from .decode import iter_file_frames
from .frame import Frame
from .sample import make_sample_clip

__all__ = ["Frame", "iter_file_frames", "make_sample_clip"]
