"""Where verdicts leave dfstream (MQTT, Prometheus, JSON lines): filled by the sinks issue."""
