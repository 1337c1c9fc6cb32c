"""The per-frame arithmetic after the models: face tracks, fusion of the detectors' answers,
calibration, the ensemble, and smoothing over time. Synchronous and testable without asyncio."""
