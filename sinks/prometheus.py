"""Prometheus exposition of the PerformanceMonitor, plus /healthz and /readyz.

Nothing is counted twice: a collector reads the monitor at scrape time and turns its series into
Prometheus families (conventions: ``dfstream_`` prefix, base units, ``_total`` counters, 0–1
ratios). Served by a small threaded HTTP server bound to 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from pydantic import Field

from core.strict import StrictModel
from pipeline.monitoring.keys import END_TO_END, FACES, LIVE_VIEW, RUNTIME, STAGE_SPANS, Count, Gauge, Kind, Subject
from pipeline.monitoring.monitor import PerformanceMonitor
from pipeline.monitoring.store import Histogram, SeriesSnapshot

log = logging.getLogger(__name__)

# (monitor key, metric, help, scale); the GPU ones appear only where NVML finds a GPU
SYSTEM_GAUGES = (
    ("cpu_usage_percent", "dfstream_system_cpu_ratio", "Machine CPU use, 0-1", 0.01),
    ("memory_usage_percent", "dfstream_system_memory_ratio", "Machine memory use, 0-1", 0.01),
    ("gpu_utilization_percent", "dfstream_gpu_utilization_ratio", "GPU utilisation, 0-1 (busiest GPU)", 0.01),
    ("gpu_memory_percent", "dfstream_gpu_memory_ratio", "GPU memory use, 0-1", 0.01),
    ("gpu_memory_used_bytes", "dfstream_gpu_memory_used_bytes", "GPU memory used", 1.0),
)


# the MQTT families have no sink label: only the MQTT sink feeds them (so for the store and the service)
MQTT = Subject.sink("mqtt")
STORE = Subject.sink("store")
VIDEO = Subject.sink("video")
API, ANALYSIS, RETENTION, FEED, LIVE, CALLS = (
    Subject.service(n) for n in ("api", "analysis", "retention", "feed", "live", "calls")
)


@dataclass(frozen=True)
class Family:
    """A Prometheus family fed by one typed monitor key. ``by``: the label that names the subject
    (every subject of the key's kind feeds it), or the one Subject that feeds it, unlabelled.
    ``labels``: the key's own labels, in this order."""

    name: str
    help: str
    by: str | Subject
    labels: tuple[str, ...] = ()
    zero: bool = False  # exported as 0 for every subject of its kind before the first count


COUNTERS: dict[tuple[Kind, Count], Family] = {
    (Kind.STREAM, Count.FRAMES_DECODED): Family("dfstream_frames_decoded", "Frames decoded", "stream"),
    (Kind.STREAM, Count.FRAMES_PROCESSED): Family(
        "dfstream_frames_processed", "Frames through the whole pipeline", "stream"
    ),
    (Kind.STREAM, Count.FRAMES_DROPPED): Family(
        "dfstream_frames_dropped", "Frames dropped, by reason", "stream", ("reason",)
    ),
    (Kind.STREAM, Count.FACES_DETECTED): Family(
        "dfstream_faces_detected", "Faces found by the face detector", "stream"
    ),
    (Kind.STREAM, Count.FACE_ERRORS): Family("dfstream_face_errors", "Frames whose face detection failed", "stream"),
    (Kind.STREAM, Count.RECONNECTS): Family("dfstream_stream_reconnects", "Reconnection attempts", "stream"),
    (Kind.STREAM, Count.SOURCE_ERRORS): Family("dfstream_stream_errors", "Open or read errors of the source", "stream"),
    (Kind.STREAM, Count.DECODE_ERRORS): Family("dfstream_decode_errors", "Packets that failed to decode", "stream"),
    (Kind.STREAM, Count.STALLS): Family(
        "dfstream_stream_stalls", "Watchdog stalls (no frame for stall_timeout_s)", "stream"
    ),
    (Kind.STREAM, Count.VERDICTS): Family("dfstream_verdicts", "Verdicts, by label", "stream", ("label",)),
    (Kind.STREAM, Count.INCIDENTS): Family(
        "dfstream_incidents",
        "Incidents opened (one per fake face or voice, however its label wavers)",
        "stream",
        ("modality",),
    ),
    (Kind.STREAM, Count.FACES_UNJUDGED): Family(
        "dfstream_faces_unjudged", "Faces too poor to judge (not scored), by reason", "stream", ("reason",)
    ),
    (Kind.STREAM, Count.VERDICTS_SKIPPED): Family(
        "dfstream_verdicts_skipped", "Faces left without a verdict (too few models)", "stream"
    ),
    (Kind.STREAM, Count.VERDICTS_CARRIED): Family(
        "dfstream_verdicts_carried",
        "Verdicts that carried their track's last score instead of scoring it again",
        "stream",
    ),
    (Kind.STREAM, Count.AUDIO_CHUNKS): Family(
        "dfstream_audio_chunks", "0.1 s chunks of the stream's sound decoded (when a voice model listens)", "stream"
    ),
    (Kind.STREAM, Count.AUDIO_DROPPED): Family(
        "dfstream_audio_dropped", "0.1 s chunks of sound dropped: the voice path fell behind", "stream"
    ),
    (Kind.STREAM, Count.AUDIO_DECODE_ERRORS): Family(
        "dfstream_audio_decode_errors", "Audio packets or frames that failed to decode", "stream"
    ),
    (Kind.STREAM, Count.VOICE_WINDOWS): Family(
        "dfstream_voice_windows",
        "Voice windows, by result (judged, no_speech, skipped: too few voice models answered)",
        "stream",
        ("result",),
    ),
    (Kind.MODEL, Count.CROP_ERRORS): Family(
        "dfstream_detector_errors", "Crops a detector failed to score", "detector", zero=True
    ),
    (Kind.SINK, Count.EVENTS_DROPPED): Family(
        "dfstream_sink_dropped",
        "Events a sink never got or could not keep: behind, still behind at shutdown, or refused by the database",
        "sink",
        ("reason",),
    ),
    (Kind.SINK, Count.MESSAGES_DROPPED): Family(
        "dfstream_mqtt_outbox_dropped", "MQTT messages dropped from a full outbox", MQTT, zero=True
    ),
    (Kind.SINK, Count.PUBLISHED): Family(
        "dfstream_mqtt_published", "MQTT messages the broker acknowledged", MQTT, zero=True
    ),
    (Kind.SINK, Count.CONNECTION_ERRORS): Family(
        "dfstream_mqtt_connection_errors", "Failed or lost MQTT connections", MQTT, zero=True
    ),
    (Kind.SINK, Count.ROWS_WRITTEN): Family(
        "dfstream_store_rows_written", "Event rows the store sink wrote (an update counts again)", STORE, zero=True
    ),
    (Kind.SINK, Count.WRITE_ERRORS): Family(
        "dfstream_store_write_errors", "Failed database writes of the store sink (each retried)", STORE, zero=True
    ),
    (Kind.SINK, Count.FRAMES_WRITTEN): Family(
        "dfstream_video_frames_written", "Annotated frames the video sink sent, per stream", VIDEO, ("stream",)
    ),
    (Kind.SINK, Count.FRAMES_DROPPED): Family(
        "dfstream_video_dropped",
        "Annotated frames dropped before the video sink's encoder",
        VIDEO,
        ("reason", "stream"),
    ),
    (Kind.SINK, Count.OUTPUT_ERRORS): Family(
        "dfstream_video_output_errors", "Failed opens and writes of the video sink's outputs", VIDEO, ("stream",)
    ),
    (Kind.SERVICE, Count.REJECTED): Family(
        "dfstream_api_rejected", "API requests refused, by reason", API, ("reason",)
    ),
    (Kind.SERVICE, Count.CALLS): Family(
        "dfstream_calls",
        "WebRTC call sessions (the Check a call page, WHIP), by event: started, ended, refused:<why>",
        CALLS,
        ("event",),
    ),
    (Kind.SERVICE, Count.JOBS): Family(
        "dfstream_analysis_jobs", "Media analyses, by outcome (done, failed, resumed)", ANALYSIS, ("outcome",)
    ),
    (Kind.SERVICE, Count.PRUNED): Family(
        "dfstream_retention_pruned",
        "Rows removed by retention, by what and why (age, disk)",
        RETENTION,
        ("what", "reason"),
    ),
    (Kind.SERVICE, Count.FRAMES_DROPPED): Family(
        "dfstream_live_view_missed",
        "Live view frames a viewer missed by reading slower than its fps",
        LIVE,
        ("reason", "stream"),
    ),
    (Kind.SERVICE, Count.EVENTS_DROPPED): Family(
        "dfstream_feed_dropped", "Live feed events dropped for clients that read too slowly", FEED, ("reason",)
    ),
    (Kind.SERVICE, Count.FEED_RESUMES): Family(
        "dfstream_feed_resumes",
        "Feed clients back with Last-Event-ID, by outcome: replayed, or reset:<why> (restarted, too_old, unknown)",
        FEED,
        ("outcome",),
    ),
    (Kind.SINK, Count.SPOOL_ERRORS): Family(
        "dfstream_spool_errors",
        "Records a sink could not write to its durable spool (kept in memory only: lost if dfstream dies)",
        "sink",
    ),
    (Kind.SINK, Count.SPOOL_LOST): Family(
        "dfstream_spool_lost",
        "Records a sink's spool had accepted and could not read back at start (a damaged file)",
        "sink",
    ),
}

GAUGES: dict[tuple[Kind, Gauge], Family] = {
    (Kind.STREAM, Gauge.UP): Family("dfstream_stream_up", "1 while the stream delivers frames", "stream"),
    (Kind.STREAM, Gauge.QUEUE_DEPTH): Family(
        "dfstream_queue_depth", "Decoded frames waiting for the pipeline", "stream"
    ),
    (Kind.STREAM, Gauge.ACTIVE_TRACKS): Family("dfstream_active_tracks", "Face tracks being judged", "stream"),
    (Kind.STREAM, Gauge.INCIDENTS_OPEN): Family(
        "dfstream_incidents_open",
        "Open incidents: a fake face or voice, from its alarm until quiet_s of real",
        "stream",
    ),
    (Kind.STREAM, Gauge.TRACKS_SKIMMED): Family(
        "dfstream_tracks_skimmed", "Face tracks judged at judge.min_rate_hz: calm (real, far from an alarm)", "stream"
    ),
    (Kind.STREAM, Gauge.DEGRADED): Family(
        "dfstream_stream_degraded",
        "1 while the stream sheds work: the machine cannot keep up (overload)",
        "stream",
    ),
    (Kind.STREAM, Gauge.JUDGE_RATE): Family(
        "dfstream_judge_rate_hz", "How often a track at the full rate is judged now (lowered under overload)", "stream"
    ),
    (Kind.STREAM, Gauge.FACES_RATE): Family(
        "dfstream_faces_rate_hz", "How often faces are looked for now (lowered under overload)", "stream"
    ),
    (Kind.STREAM, Gauge.FRAMES_SHED): Family(
        "dfstream_frames_shed_ratio", "Share of frames dropped to keep up, past the judge and face floors", "stream"
    ),
    (Kind.STREAM, Gauge.EXPECTED_FPS): Family(
        "dfstream_stream_expected_fps", "The source's frame rate (after the fps cap)", "stream"
    ),
    (Kind.STREAM, Gauge.SPEECH_SHARE): Family(
        "dfstream_speech_ratio", "Share of the stream's last voice window that was speech, 0-1", "stream"
    ),
    (Kind.STAGE, Gauge.MODELS_READY): Family("dfstream_models_ready", "Detectors loaded and serving", RUNTIME),
    (Kind.SINK, Gauge.CONNECTED): Family("dfstream_mqtt_connected", "1 while connected to the MQTT broker", MQTT),
    (Kind.SINK, Gauge.OUTBOX_DEPTH): Family("dfstream_mqtt_outbox_depth", "MQTT messages waiting for the broker", MQTT),
    (Kind.SINK, Gauge.OUTBOX_CAPACITY): Family("dfstream_mqtt_outbox_capacity", "Capacity of the MQTT outbox", MQTT),
    (Kind.SINK, Gauge.OUTPUT_UP): Family(
        "dfstream_video_output_up", "1 while the video sink's output for a stream is open", VIDEO, ("stream",)
    ),
    (Kind.SINK, Gauge.SPOOL_BYTES): Family(
        "dfstream_spool_bytes", "Record bytes a sink's durable spool holds on disk", "sink"
    ),
    (Kind.SINK, Gauge.PENDING_WRITES): Family(
        "dfstream_store_pending_writes", "Event rows waiting for the database", STORE
    ),
    (Kind.SERVICE, Gauge.JOBS_WAITING): Family("dfstream_analysis_queue_depth", "Media analyses waiting", ANALYSIS),
    (Kind.SERVICE, Gauge.FEED_CLIENTS): Family("dfstream_feed_clients", "Live feed subscribers", FEED),
    (Kind.SERVICE, Gauge.CALL_SESSIONS): Family(
        "dfstream_call_sessions", "WebRTC call sessions sending now (page calls and WHIP pushes)", CALLS
    ),
    (Kind.SERVICE, Gauge.VIEWERS): Family(
        "dfstream_live_viewers", "Clients watching a stream's live view", LIVE, ("stream",)
    ),
}


class PrometheusConfig(StrictModel):
    host: str = "127.0.0.1"  # metrics and health are private by default
    port: int = Field(9108, ge=0, le=65535)  # 0: any free port


class MonitorCollector:
    """Reads one PerformanceMonitor into Prometheus metric families at every scrape, from one
    snapshot (the monitor's lock is held only while it copies)."""

    def __init__(self, monitor: PerformanceMonitor):
        self.monitor = monitor

    def collect(self) -> Iterator[Metric]:
        snapshots, system = self.monitor.snapshot(), self.monitor.get_system_metrics()
        counters = {key: CounterMetricFamily(f.name, f.help, labels=_label_names(f)) for key, f in COUNTERS.items()}
        gauges = {key: GaugeMetricFamily(f.name, f.help, labels=_label_names(f)) for key, f in GAUGES.items()}
        for series in snapshots:
            kind, name = series.subject.kind, series.subject.name
            for (count, labelled), value in series.counters.items():
                family = COUNTERS.get((kind, count))
                if family is not None and _feeds(family, series.subject):
                    counters[(kind, count)].add_metric(_values(family, name, dict(labelled)), value)
            for (kind_, count), family in COUNTERS.items():
                if kind_ is kind and family.zero and _feeds(family, series.subject) and series.counter(count) == 0:
                    counters[(kind, count)].add_metric(_values(family, name, {}), 0)
            for (gauge, labelled), value in series.gauges.items():
                family = GAUGES.get((kind, gauge))
                if family is not None and _feeds(family, series.subject):
                    gauges[(kind, gauge)].add_metric(_values(family, name, dict(labelled)), value)
        yield from counters.values()
        yield from gauges.values()
        yield from self._histograms(snapshots)
        yield from self._system(system)
        active = GaugeMetricFamily(
            "dfstream_alert_active",
            "1 while a PerformanceMonitor alert threshold is exceeded",
            labels=["alert", "subject"],
        )
        # from the same readings: a second psutil CPU reading right after the first would span ~0 s
        for alert in self.monitor.check_alerts(self.monitor.report_of(snapshots, system)):
            active.add_metric([alert["type"], alert["subject"]], 1.0)
        yield active

    def _histograms(self, snapshots: list[SeriesSnapshot]) -> Iterator[Metric]:
        batch = HistogramMetricFamily("dfstream_detector_batch_size", "Crops per detector batch", labels=["detector"])
        seconds = HistogramMetricFamily(
            "dfstream_detector_inference_seconds", "Seconds per detector batch", labels=["detector"]
        )
        batches = CounterMetricFamily(
            "dfstream_detector_batches", "Detector batches run, by outcome", labels=["detector", "outcome"]
        )
        stage = HistogramMetricFamily(
            "dfstream_stage_latency_seconds", "Seconds spent in a pipeline stage", labels=["stage"]
        )
        e2e = HistogramMetricFamily(
            "dfstream_end_to_end_latency_seconds", "Seconds from a frame's arrival at decode to its verdict"
        )
        faces = HistogramMetricFamily("dfstream_face_batch_size", "Frames per face-detection batch")
        for series in snapshots:
            subject = series.subject
            if subject.kind is Kind.MODEL:
                if series.latency.count:
                    _add(seconds, [subject.name], series.latency)
                    _add(batch, [subject.name], series.sizes)
                batches.add_metric([subject.name, "ok"], series.successes)
                batches.add_metric([subject.name, "failed"], series.failures)
            elif (subject in STAGE_SPANS or subject == LIVE_VIEW) and series.latency.count:
                _add(stage, [subject.name], series.latency)
            elif subject == END_TO_END and series.latency.count:
                _add(e2e, [], series.latency)
            elif subject == FACES and series.sizes.count:
                _add(faces, [], series.sizes)
        yield from (batch, seconds, batches, stage, e2e, faces)

    def _system(self, system: dict) -> Iterator[Metric]:
        for key, name, doc, scale in SYSTEM_GAUGES:
            if key in system:
                yield GaugeMetricFamily(name, doc, value=system[key] * scale)


def _feeds(family: Family, subject: Subject) -> bool:
    return not isinstance(family.by, Subject) or family.by == subject


def _label_names(family: Family) -> list[str]:
    return ([family.by] if isinstance(family.by, str) else []) + list(family.labels)


def _values(family: Family, subject: str, labelled: dict[str, str]) -> list[str]:
    return ([subject] if isinstance(family.by, str) else []) + [labelled.get(k, "") for k in family.labels]


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

    def ready(self, need_stream: bool = True) -> tuple[bool, str]:
        """``need_stream``: not ready until a stream is online (False for a server that only takes calls)."""
        snapshots = self.monitor.snapshot()
        models = self.monitor.gauge(RUNTIME, Gauge.MODELS_READY) or 0
        online = [s for s in snapshots if s.subject.kind is Kind.STREAM and s.gauge(Gauge.UP) == 1]
        if not models:
            return False, "no detector loaded"
        if not online and need_stream:
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
