"""What turns pixels into numbers: the detector contract, the registry that builds detectors by
name, the built-in detectors with their weights, checkpoints and preprocessing, and the face
detector. Importing this package registers the built-in detectors."""

from pipeline.models import detectors as _builtin_detectors  # noqa: F401  (each registers itself)
