"""Verdicts to a distant broker: messages acknowledged per second through a TCP proxy on
loopback that delays each direction by half the round trip (``tc netem`` is not available here).

    python -m bench.mqtt_distance [--rtt-ms 0 20 100] [--messages 2000]

A real Mosquitto (its limits as shipped, but for the queue towards the counting subscriber, which
would drop beyond 1000 waiting messages), the real ``MqttSink`` at ``max_inflight`` 1 (the old
one-at-a-time delivery) and at its default, a subscriber counting each stream's ``seq``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import aiomqtt

from pipeline.monitoring.keys import Count
from pipeline.runtime.events import Verdict
from sinks.mqtt import MQTT, MqttConfig, MqttSink


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DelayProxy:
    """Forwards 127.0.0.1:port to the broker, every chunk held ``delay`` seconds, order kept."""

    def __init__(self, target: int, delay: float):
        self.target, self.delay, self.port = target, delay, free_port()

    async def __aenter__(self) -> DelayProxy:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True)
        except asyncio.CancelledError:  # the run is over and its loop closing: nothing left to forward
            pass

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def deliver() -> None:
            while True:
                due, data = await queue.get()
                if not data:
                    writer.close()
                    return
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                writer.write(data)
                await writer.drain()

        sender = asyncio.create_task(deliver())
        try:
            while data := await reader.read(65536):
                queue.put_nowait((time.monotonic() + self.delay, data))
        finally:
            queue.put_nowait((0.0, b""))
            await sender


def broker(directory: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    conf = directory / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages "
        "100000\nlog_dest none\n"
    )
    process = subprocess.Popen(
        [shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(100):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return process, port
        time.sleep(0.05)
    raise RuntimeError("mosquitto did not start")


def verdict(stream: str, seq: int) -> Verdict:
    return Verdict(
        stream, 1, seq, time.time(), seq, seq / 30, "real", 0.0, 0.1, 0.1, 0.05, {"meso4": 0.1}, (1, 2, 3, 4), 1, 10.0
    )


async def run(port: int, rtt: float, inflight: int, messages: int, streams: int = 8) -> dict:
    received: dict[str, list[int]] = {f"s{i}": [] for i in range(streams)}
    async with (
        DelayProxy(port, rtt / 2) as proxy,
        aiomqtt.Client("127.0.0.1", port, identifier="bench-reader") as reader,
    ):
        await reader.subscribe("bench/+/verdict", qos=1)
        sink = MqttSink(
            MqttConfig(
                port=proxy.port,
                topic_prefix="bench",
                discovery=False,
                verdict_interval_s=0,
                max_inflight=inflight,
                outbox_capacity=messages * 2,
                client_id="bench-sink",
            )
        )
        async with sink:
            while sink.outbox_depth():  # connected: the discovery and online messages are out
                await asyncio.sleep(0.01)
            start = time.monotonic()
            for i in range(messages):
                await sink.publish(verdict(f"s{i % streams}", i // streams + 1))
            while sink.outbox_depth():
                await asyncio.sleep(0.005)
            seconds = time.monotonic() - start

            async def collect() -> None:
                async for message in reader.messages:
                    data = json.loads(message.payload)
                    received[data["stream"]].append(data["seq"])
                    if sum(map(len, received.values())) >= messages:
                        return

            await asyncio.wait_for(collect(), 30)
    gaps = sum(len(set(range(1, max(v) + 1)) - set(v)) for v in received.values())
    return {
        "messages_per_s": round(messages / seconds, 1),
        "lost": messages - sum(len(set(v)) for v in received.values()),
        "seq_gaps": gaps,
        "published": sink.monitor.counter(MQTT, Count.PUBLISHED),
    }


def measure(rtts_ms: list[float], messages: int) -> dict:
    out: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        process, port = broker(Path(tmp))
        try:
            for rtt in rtts_ms:
                for inflight in (1, MqttConfig().max_inflight):
                    n = messages if inflight > 1 or rtt == 0 else max(50, int(messages * 10 / max(rtt, 10)))
                    out[f"rtt_{rtt:g}ms_inflight_{inflight}"] = asyncio.run(run(port, rtt / 1000, inflight, n))
        finally:
            process.terminate()
            process.wait(5)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.mqtt_distance")
    parser.add_argument("--rtt-ms", type=float, nargs="+", default=[0, 20, 100])
    parser.add_argument("--messages", type=int, default=2000)
    args = parser.parse_args()
    print(json.dumps(measure(args.rtt_ms, args.messages), indent=1))


if __name__ == "__main__":
    main()
