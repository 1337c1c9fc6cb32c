"""Models that judge the voice: they read waveforms, not faces."""
