"""The one place every package meets: a config in, the runtime with its detectors, sinks and
metrics endpoint wired and running until the streams end or a signal stops it; under ``serve``,
the HTTP service beside it in the same event loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import Callable, Iterator

import uvicorn

from core.errors import ConfigError
from dfstream.config import DfstreamConfig
from pipeline.models import loading
from pipeline.models.audio.scorer import VoiceModel
from pipeline.models.detector import BaseDetector
from pipeline.monitoring.monitor import PerformanceMonitor
from pipeline.runtime.live import LiveTap
from pipeline.runtime.runtime import Runtime, share_cpu_threads
from pipeline.runtime.sink import Sink
from service.config import TlsConfig
from service.db.events import close_left_open, store_sink
from service.db.schema import make_engine, prepare, sessions
from sinks import PrometheusConfig, PrometheusExporter, StoreConfig, build_sinks

log = logging.getLogger("dfstream")


def load_detectors(config: DfstreamConfig, offline: bool, say: Callable[[str], None]) -> dict[str, BaseDetector]:
    """Fetch missing weights (unless ``offline``), load every detector (any failure stops here)."""
    # the face stage and each detector run side by side; set first, as backends size their thread pools when they load
    share_cpu_threads(len(config.detectors) + len(config.audio_detectors) + 1)
    return loading.load_detectors(config.detectors, offline, say)


def load_voices(config: DfstreamConfig, offline: bool, say: Callable[[str], None]) -> dict[str, VoiceModel]:
    """The ``audio_detectors``, fetched as the detectors' weights are and loaded (after ``load_detectors``)."""
    return loading.load_voices(config.audio_detectors, offline, say)


def _stop_on_signals(*actions: Callable[[], None]) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, lambda: [action() for action in actions])


def run(
    config: DfstreamConfig,
    offline: bool = False,
    say: Callable[[str], None] = print,
    config_path: str = "CONFIG",
    reload: Callable[[], DfstreamConfig] | None = None,
) -> None:
    """Judge every stream until they end or SIGINT / SIGTERM (on the engine ``runtime`` names;
    under Ray, SIGHUP applies ``reload()``)."""
    _runnable(config)
    if config.runtime.engine == "ray":
        engine = ray_engine(config, offline, say)
        engine.run(reload)
        return
    detectors = load_detectors(config, offline, say)
    voices = load_voices(config, offline, say)
    engine = None
    if config.sinks.store is not None:  # events into the api section's database, without the API
        engine = make_engine(config.api.database_url)
        log.info(prepare(engine, config_path))
        _close_left_open(engine, [s.id for s in config.streams], say)
    monitor = PerformanceMonitor(config.monitoring)
    exporter = PrometheusExporter(config.sinks.prometheus, monitor).start() if config.sinks.prometheus else None

    async def supervise() -> None:
        tap = LiveTap()
        outputs = config.sinks.with_spool_defaults(config.api.data_dir, durable=False)
        sinks: list[Sink] = build_sinks(outputs, monitor, tap, [s.id for s in config.streams])
        if engine is not None:
            sinks.append(store_sink(outputs.store, engine, monitor))
        runtime = Runtime(config, detectors, sinks, monitor, tap=tap, voices=voices)
        _stop_on_signals(runtime.stop.set)
        await runtime.run()

    try:
        asyncio.run(supervise())
    finally:
        if exporter is not None:
            exporter.close()


def _close_left_open(engine, streams: list[str], say: Callable[[str], None]) -> None:  # noqa: ANN001 -- an Engine
    """No ghost episodes: what a run that died left ongoing, for the streams this one owns, is closed."""
    closed = close_left_open(engine, streams)
    if closed:
        say(f"closed {closed} event(s) a previous run left ongoing (end_reason restart)")


def _runnable(config: DfstreamConfig) -> None:
    """What only `serve` can do: start with no stream, receive calls."""
    if not config.streams:
        raise ConfigError("streams: `dfstream run` needs at least one stream (`dfstream serve` may start with none)")
    for i, stream in enumerate(config.streams):
        if stream.kind == "webrtc":
            raise ConfigError(
                f"streams[{i}].url: {stream.url} is pushed to `dfstream serve` over WebRTC (POST /whip/{stream.id}); "
                "`dfstream run` has no server to receive it"
            )


def ray_engine(config: DfstreamConfig, offline: bool, say: Callable[[str], None]):  # noqa: ANN201
    """Connected to the cluster ``runtime.address`` names."""
    if config.sinks.mqtt is not None and config.sinks.mqtt.outbox.durable:
        # a file on whichever node a stream runs, left behind when it moves, is not an outbox anyone finds again
        raise ConfigError(
            "sinks.mqtt.outbox.durable: the Ray engine keeps each node runtime's outbox in memory; "
            "a durable outbox needs runtime.engine local"
        )
    try:
        from dfstream.ray.engine import RayEngine, connect
    except ImportError as exc:
        raise ConfigError(
            f"runtime.engine ray: Ray is not installed ({exc.name}): pip install 'dfstream[ray]'"
        ) from None
    connect(config)
    return RayEngine(config, offline, say)


def serve(
    config: DfstreamConfig, offline: bool = False, say: Callable[[str], None] = print, config_path: str = "CONFIG"
) -> None:
    """The runtime and the HTTP API in one process, until SIGINT / SIGTERM. The streams ending
    (files) does not stop the API: events and media stay reachable."""
    from pipeline.models.faces.finder import FaceDetector, FacesConfig
    from service.analysis import Analyzer, VoiceJudge
    from service.app import create_app
    from service.calls import CallDesk
    from service.deps import Service
    from service.feed.history import FeedHistory
    from service.feed.sink import FeedSink
    from service.retention import run_retention
    from service.uploads import sweep_orphans
    from stream.calls import CallHub

    if config.runtime.engine == "ray":
        raise ConfigError(
            "runtime.engine: dfstream serve runs its streams on the local engine; on Ray run them with "
            "`dfstream ray apply` (their store sinks fill the same database) and serve the API beside them"
        )
    api = config.api
    engine = make_engine(api.database_url)
    say(prepare(engine, config_path))
    _close_left_open(engine, [s.id for s in config.streams], say)
    api.media_dir.mkdir(parents=True, exist_ok=True)
    sweep_orphans(api.media_dir, sessions(engine))  # before the port listens: no upload can be under way
    listener = _bind(api.host, api.port)  # before the models load: a taken port fails fast
    detectors = load_detectors(config, offline, say)
    voices = load_voices(config, offline, say)
    monitor = PerformanceMonitor(config.monitoring)
    exporter = PrometheusExporter(config.sinks.prometheus or PrometheusConfig(port=0), monitor)
    if config.sinks.prometheus is not None:
        exporter.start()

    async def supervise() -> None:
        history = FeedHistory(api.feed_history.minutes, api.feed_history.events)
        feed, tap = FeedSink(monitor, api.feed_queue, history), LiveTap()
        streams = list(config.streams)  # and the calls, while they last (CallDesk)
        # serve always stores events; its outbox and its events wait on disk unless told otherwise
        outputs = config.sinks.model_copy(update={"store": config.sinks.store or StoreConfig()})
        outputs = outputs.with_spool_defaults(api.data_dir, durable=True)
        sinks: list[Sink] = [
            *build_sinks(outputs, monitor, tap, [s.id for s in streams]),
            feed,
            store_sink(outputs.store, engine, monitor),
        ]
        hub = CallHub(api.calls.ice_servers, policy=api.calls, listens=bool(voices))
        runtime = Runtime(config, detectors, sinks, monitor, tap=tap, voices=voices, calls=hub)

        def forget(stream_id: str) -> None:  # a page call's stream, gone after its linger
            feed.forget(stream_id)
            runtime.tap.forget(stream_id)

        thresholds = (config.smoothing.enter, config.smoothing.leave)
        # its own face detector (they are thread-confined), set as `dfstream eval` sets it: the same
        # file, the same numbers
        faces = FaceDetector(FacesConfig(device=config.faces.device))
        database = sessions(engine)
        voice = VoiceJudge(voices, runtime.voice_ensemble, config.voice) if voices else None
        analyzer = Analyzer(
            api.analysis,
            api.data_dir,
            database,
            detectors,
            runtime.ensemble,
            faces,
            thresholds,
            monitor,
            api.media,
            voice,
        )
        service = Service(
            api,
            engine,
            database,
            monitor,
            feed,
            analyzer,
            streams,
            exporter.registry,
            lambda: exporter.ready(need_stream=any(s.kind != "webrtc" for s in config.streams)),
            runtime.tap,
            CallDesk(api.calls, hub, streams, runtime.add_stream, monitor, forget_stream=forget),
        )
        server = _ApiServer(
            uvicorn.Config(
                create_app(service),
                log_level="warning",
                access_log=False,
                timeout_graceful_shutdown=3,
                # h11: the parser whose request-head limit can be set (httptools' cannot)
                http="h11",
                h11_max_incomplete_event_size=int(api.connections.max_header_kb * 1024),
                limit_concurrency=api.connections.max_connections,
                timeout_keep_alive=api.connections.keep_alive_s,
                # X-Forwarded-For believed only from the proxies named: nobody else picks their address
                proxy_headers=bool(api.trusted_proxies),
                forwarded_allow_ips=api.trusted_proxies or None,
                server_header=False,
                **_tls(api.tls),
            )
        )
        _stop_on_signals(runtime.stop.set, lambda: setattr(server, "should_exit", True))
        async with analyzer:
            retention = asyncio.create_task(run_retention(api, database, monitor), name="dfstream.retention")
            judging = asyncio.create_task(runtime.run(keep_open=True), name="dfstream.runtime")
            host, port = listener.getsockname()[:2]
            say(f"dfstream API on {'https' if api.tls else 'http'}://{host}:{port} (docs: /docs)")
            serving = asyncio.create_task(server.serve(sockets=[listener]), name="dfstream.api")
            await asyncio.wait([serving, judging], return_when=asyncio.FIRST_COMPLETED)
            if judging.done() and judging.exception() is not None:
                server.should_exit = True  # the runtime failed: stop, and say why below
            await asyncio.gather(serving, return_exceptions=True)  # until a signal
            runtime.stop.set()
            await service.calls.close()  # type: ignore[union-attr]
            retention.cancel()
            await asyncio.gather(judging, retention, return_exceptions=True)
        if judging.exception() is not None:
            raise judging.exception()  # type: ignore[misc]

    try:
        asyncio.run(supervise())
    finally:
        exporter.close()
        engine.dispose()


def _tls(tls: TlsConfig | None) -> dict[str, object]:
    if tls is None:
        return {}
    return {
        "ssl_certfile": str(tls.certfile),
        "ssl_keyfile": str(tls.keyfile),
        "ssl_keyfile_password": tls.key_password,
    }


class _ApiServer(uvicorn.Server):
    """uvicorn's server without its own signal handling: ``serve``'s handlers stop the runtime too."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP said outright: asyncio sets TCP_NODELAY only on sockets whose proto says TCP, and
    # without it every keep-alive response waited 40 ms for a delayed ACK (measured: 44 ms vs 1 ms)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"api: cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock
