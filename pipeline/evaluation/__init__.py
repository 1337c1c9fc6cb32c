"""Offline: score a labelled set the way the runtime scores a stream, and report metrics."""
