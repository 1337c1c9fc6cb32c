"""Prometheus exposition of the PerformanceMonitor, plus /healthz and /readyz.

Nothing is counted twice: a collector reads the monitor at scrape time and turns its series into
Prometheus families (conventions: ``dfstream_`` prefix, base units, ``_total`` counters, 0–1
ratios). Served by a small threaded HTTP server bound to 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from pydantic import Field

from pipeline.configbase import StrictModel
from pipeline.monitor import Histogram, PerformanceMonitor

log = logging.getLogger(__name__)

STAGES = ("decode_to_faces", "faces_to_scores", "scores_to_verdict")
# (monitor key, metric, help, scale); the GPU ones appear only where NVML finds a GPU
SYSTEM_GAUGES = (
    ("cpu_usage_percent", "dfstream_system_cpu_ratio", "Machine CPU use, 0-1", 0.01),
    ("memory_usage_percent", "dfstream_system_memory_ratio", "Machine memory use, 0-1", 0.01),
    ("gpu_utilization_percent", "dfstream_gpu_utilization_ratio", "GPU utilisation, 0-1 (busiest GPU)", 0.01),
    ("gpu_memory_percent", "dfstream_gpu_memory_ratio", "GPU memory use, 0-1", 0.01),
    ("gpu_memory_used_bytes", "dfstream_gpu_memory_used_bytes", "GPU memory used", 1.0),
)


class PrometheusConfig(StrictModel):
    host: str = "127.0.0.1"  # metrics and health are private by default
    port: int = Field(9108, ge=0, le=65535)  # 0: any free port


class MonitorCollector:
    """Reads one PerformanceMonitor into Prometheus metric families at every scrape."""

    def __init__(self, monitor: PerformanceMonitor):
        self.monitor = monitor

    def collect(self) -> Iterator[Metric]:
        report = self.monitor.get_performance_report()
        yield from self._streams(report["streams"])
        yield from self._models(report["models"])
        yield from self._stages(report["stages"])
        yield from self._system(report["system"])
        active = GaugeMetricFamily("dfstream_alert_active", "1 while a PerformanceMonitor alert threshold is exceeded",
                                   labels=["alert", "subject"])  # fmt: skip
        for alert in self.monitor.check_alerts(report):
            active.add_metric([alert["type"], alert["subject"]], 1.0)
        yield active

    def _streams(self, streams: dict) -> Iterator[Metric]:
        counters = {
            "frames_decoded": CounterMetricFamily("dfstream_frames_decoded", "Frames decoded", labels=["stream"]),
            "frames_processed": CounterMetricFamily("dfstream_frames_processed", "Frames through the whole pipeline", labels=["stream"]),
            "faces_detected": CounterMetricFamily("dfstream_faces_detected", "Faces found by the face detector", labels=["stream"]),
            "reconnects": CounterMetricFamily("dfstream_stream_reconnects", "Reconnection attempts", labels=["stream"]),
            "errors": CounterMetricFamily("dfstream_stream_errors", "Open or read errors of the source", labels=["stream"]),
            "decode_errors": CounterMetricFamily("dfstream_decode_errors", "Packets that failed to decode", labels=["stream"]),
            "stalls": CounterMetricFamily("dfstream_stream_stalls", "Watchdog stalls (no frame for stall_timeout_s)", labels=["stream"]),
            "verdicts_skipped": CounterMetricFamily("dfstream_verdicts_skipped", "Faces left without a verdict (too few models)", labels=["stream"]),
        }  # fmt: skip
        dropped = CounterMetricFamily("dfstream_frames_dropped", "Frames dropped, by reason", labels=["stream", "reason"])
        verdicts = CounterMetricFamily("dfstream_verdicts", "Verdicts, by label", labels=["stream", "label"])
        gauges = {
            "up": GaugeMetricFamily("dfstream_stream_up", "1 while the stream delivers frames", labels=["stream"]),
            "queue_depth": GaugeMetricFamily("dfstream_queue_depth", "Decoded frames waiting for the pipeline", labels=["stream"]),
            "active_tracks": GaugeMetricFamily("dfstream_active_tracks", "Face tracks being judged", labels=["stream"]),
            "expected_fps": GaugeMetricFamily("dfstream_stream_expected_fps", "The source's frame rate (after the fps cap)", labels=["stream"]),
        }  # fmt: skip
        for stream, m in streams.items():
            for key, value in m["counters"].items():
                if key in counters:
                    counters[key].add_metric([stream], value)
                elif key.startswith("dropped:"):
                    dropped.add_metric([stream, key.split(":", 1)[1]], value)
                elif key.startswith("verdicts:"):
                    verdicts.add_metric([stream, key.split(":", 1)[1]], value)
            for key, value in m["gauges"].items():
                if key in gauges:
                    gauges[key].add_metric([stream], value)
        yield from counters.values()
        yield dropped
        yield verdicts
        yield from gauges.values()

    def _models(self, models: dict) -> Iterator[Metric]:
        batch = HistogramMetricFamily("dfstream_detector_batch_size", "Crops per detector batch", labels=["detector"])
        seconds = HistogramMetricFamily("dfstream_detector_inference_seconds", "Seconds per detector batch", labels=["detector"])
        errors = CounterMetricFamily("dfstream_detector_errors", "Crops a detector failed to score", labels=["detector"])
        batches = CounterMetricFamily("dfstream_detector_batches", "Detector batches run, by outcome", labels=["detector", "outcome"])
        for name, m in models.items():
            histograms = self.monitor.histograms(name)
            if histograms and histograms[0].count:
                _add(seconds, [name], histograms[0])
                _add(batch, [name], histograms[1])
            errors.add_metric([name], m["counters"].get("errors", 0))
            batches.add_metric([name, "ok"], m["successes"])
            batches.add_metric([name, "failed"], m["failures"])
        yield from (batch, seconds, errors, batches)

    def _stages(self, stages: dict) -> Iterator[Metric]:
        stage = HistogramMetricFamily("dfstream_stage_latency_seconds", "Seconds spent in a pipeline stage", labels=["stage"])
        e2e = HistogramMetricFamily("dfstream_end_to_end_latency_seconds", "Seconds from a frame's arrival at decode to its verdict")
        faces = HistogramMetricFamily("dfstream_face_batch_size", "Frames per face-detection batch")
        mqtt = {
            "connected": GaugeMetricFamily("dfstream_mqtt_connected", "1 while connected to the MQTT broker"),
            "outbox_depth": GaugeMetricFamily("dfstream_mqtt_outbox_depth", "MQTT messages waiting for the broker"),
            "outbox_capacity": GaugeMetricFamily("dfstream_mqtt_outbox_capacity", "Capacity of the MQTT outbox"),
        }
        mqtt_counters = {
            "published": CounterMetricFamily("dfstream_mqtt_published", "MQTT messages the broker acknowledged"),
            "dropped:outbox_full": CounterMetricFamily("dfstream_mqtt_outbox_dropped", "MQTT messages dropped from a full outbox"),
            "connection_errors": CounterMetricFamily("dfstream_mqtt_connection_errors", "Failed or lost MQTT connections"),
        }
        sink_dropped = CounterMetricFamily("dfstream_sink_dropped", "Events a sink never got: it fell behind, or was still behind at shutdown",
                                           labels=["sink", "reason"])  # fmt: skip
        ready = GaugeMetricFamily("dfstream_models_ready", "Detectors loaded and serving")
        for name, m in stages.items():
            histograms = self.monitor.histograms(name)
            if name in STAGES and histograms:
                _add(stage, [name], histograms[0])
            elif name == "end_to_end" and histograms:
                _add(e2e, [], histograms[0])
            elif name == "faces" and histograms:
                _add(faces, [], histograms[1])
            elif name == "sink:mqtt":
                for key, family in mqtt.items():
                    if key in m["gauges"]:
                        family.add_metric([], m["gauges"][key])
                for key, family in mqtt_counters.items():
                    family.add_metric([], m["counters"].get(key, 0))
            elif name == "runtime":
                ready.add_metric([], m["gauges"].get("models_ready", 0))
            if name.startswith("sink:"):
                # MQTT's own full outbox has its own family (dfstream_mqtt_outbox_dropped)
                for reason in ("shutdown",) if name == "sink:mqtt" else ("outbox_full", "shutdown"):
                    if f"dropped:{reason}" in m["counters"]:
                        sink_dropped.add_metric([name[5:], reason], m["counters"][f"dropped:{reason}"])
        yield from (stage, e2e, faces, sink_dropped, ready, *mqtt.values(), *mqtt_counters.values())

    def _system(self, system: dict) -> Iterator[Metric]:
        for key, name, doc, scale in SYSTEM_GAUGES:
            if key in system:
                yield GaugeMetricFamily(name, doc, value=system[key] * scale)


def _add(family: HistogramMetricFamily, labels: list[str], histogram: Histogram) -> None:
    buckets = [("+Inf" if b == float("inf") else _le(b), c) for b, c in zip(histogram.bounds, histogram.cumulative)]
    family.add_metric(labels, buckets, histogram.total)


def _le(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() and bound >= 1 else repr(bound)


class PrometheusExporter:
    """``/metrics``, ``/healthz`` (the process answers) and ``/readyz`` (models loaded and at least
    one stream online) on one port, in a daemon thread."""

    def __init__(self, config: PrometheusConfig, monitor: PerformanceMonitor):
        self.config = config
        self.monitor = monitor
        self.registry = CollectorRegistry()
        self.registry.register(MonitorCollector(monitor))
        self.registry.register(ProcessCollector(registry=None))  # process_cpu_seconds_total, resident memory
        self._server: ThreadingHTTPServer | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.server_address[1]

    def ready(self) -> tuple[bool, str]:
        report = self.monitor.get_performance_report()
        models = report["stages"].get("runtime", {}).get("gauges", {}).get("models_ready", 0)
        online = [s for s, m in report["streams"].items() if m["gauges"].get("up") == 1]
        if not models:
            return False, "no detector loaded"
        if not online:
            return False, "no stream online"
        return True, f"{int(models)} detectors, {len(online)} streams online"

    def start(self) -> "PrometheusExporter":
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._send(200, generate_latest(exporter.registry), CONTENT_TYPE_LATEST)
                elif path == "/healthz":
                    self._send(200, b"ok\n")
                elif path == "/readyz":
                    ok, why = exporter.ready()
                    self._send(200 if ok else 503, (why + "\n").encode())
                else:
                    self._send(404, b"not found: try /metrics, /healthz or /readyz\n")

            def _send(self, code: int, body: bytes, content_type: str = "text/plain; charset=utf-8") -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:  # scrapes every few seconds: not worth a log line
                pass

        self._server = ThreadingHTTPServer((self.config.host, self.config.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="dfstream.metrics", daemon=True).start()
        log.info("metrics on http://%s:%d/metrics", self.config.host, self.port)
        return self

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
