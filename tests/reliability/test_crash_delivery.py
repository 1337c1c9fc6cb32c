"""dfstream itself dies: the broker is down, `dfstream run` judging a live RTSP stream is SIGKILLed
with verdicts in its durable outbox, started again, and the broker comes back: every verdict the
killed run accepted arrives, in order, with its seq, and the new run's numbers go on from there.
The outbox file damaged between runs, or its disk full: dfstream starts (or goes on), the good
records are delivered and the loss is counted and said in one line."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from pipeline.monitoring.keys import Count, Gauge, Subject
from pipeline.monitoring.monitor import PerformanceMonitor
from sinks.mqtt import MqttConfig, MqttSink
from tests.helpers import mesonets
from tests.mqtt_broker import Mosquitto, Subscriber, verdict

MQTT = Subject.sink("mqtt")


def spooled_verdicts(path: Path) -> list[int]:
    """The seqs of the verdict messages a (killed) run left in its spool, read as the file is."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT data FROM records ORDER BY n").fetchall()
    finally:
        db.close()
    seqs = []
    for (data,) in rows:
        header, _, payload = bytes(data).partition(b"\n")
        if json.loads(header)["topic"].endswith("/verdict"):
            seqs.append(json.loads(payload)["seq"])
    return seqs


def run_config(tmp_path: Path, weights_dir: Path, url: str, broker_port: int) -> Path:
    config = tmp_path / "run.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "streams": [{"id": "cam1", "url": url}],
                "detectors": mesonets(weights_dir),
                "sinks": {
                    "mqtt": {
                        "port": broker_port,
                        "verdict_interval_s": 0,  # every verdict a message: many to lose
                        "discovery": False,
                        "retry_initial_s": 0.2,
                        "retry_max_s": 1.0,
                        "outbox": {"durable": True, "path": str(tmp_path / "spool" / "mqtt.sqlite3")},
                    }
                },
            }
        )
    )
    return config


@pytest.mark.weights
@pytest.mark.timeout(240)
def test_verdicts_queued_when_dfstream_is_killed_arrive_after_its_restart(
    weights_dir, rtsp_server, long_clip, creds, tmp_path, figures
):
    broker = Mosquitto(persistent=True).start()
    camera = rtsp_server({"/cam1": long_clip})
    config = run_config(tmp_path, weights_dir, camera.url("/cam1"), broker.port)
    spool = tmp_path / "spool" / "mqtt.sqlite3"
    logs = [open(tmp_path / f"run{i}.log", "w") for i in (1, 2)]  # noqa: SIM115
    dfstream = [sys.executable, "-m", "dfstream", "run", str(config)]
    found: dict = {}

    async def scenario():
        async with Subscriber(broker, topics=("dfstream/#",)) as sub:
            await asyncio.sleep(2.5)  # the subscriber's session is on disk before the broker dies
            broker.kill()
            first = subprocess.Popen(dfstream, stderr=logs[0], env={**os.environ})
            deadline = time.monotonic() + 120
            while not (spool.exists() and len(spooled_verdicts(spool)) >= 150):
                assert first.poll() is None, (tmp_path / "run1.log").read_text()[-2000:]
                assert time.monotonic() < deadline, "the first run never queued 150 verdicts"
                await asyncio.sleep(0.2)
            first.send_signal(signal.SIGKILL)
            first.wait(10)
            found["queued"] = spooled_verdicts(spool)
            found["disk_bytes"] = sum(p.stat().st_size for p in spool.parent.iterdir() if p.name.startswith(spool.name))
            db = sqlite3.connect(f"file:{spool}?mode=ro", uri=True)
            sizes = db.execute("SELECT sum(length(data)), count(*) FROM records").fetchone()
            found["record_bytes"], found["records"] = sizes
            db.close()
            second = subprocess.Popen(dfstream, stderr=logs[1], env={**os.environ})
            await asyncio.sleep(8.0)  # the second run is judging (into the outbox) before the broker is back
            broker.start()
            back = time.monotonic()
            last = found["queued"][-1]
            await sub.wait_for(lambda: last in {v["seq"] for v in sub.on("/cam1/verdict")}, 60)
            found["drain_s"] = time.monotonic() - back
            await sub.wait_for(lambda: max(v["seq"] for v in sub.on("/cam1/verdict")) > last + 30, 60)
            second.send_signal(signal.SIGTERM)
            assert second.wait(20) == 0, (tmp_path / "run2.log").read_text()[-2000:]
            await sub.wait_for(lambda: "offline" in sub.on("/available"), 15)
            return [v["seq"] for v in sub.on("/cam1/verdict")]

    try:
        seqs = asyncio.run(scenario())
    finally:
        broker.close()
        for log in logs:
            log.close()
    queued = found["queued"]
    assert queued == list(range(1, len(queued) + 1)), "the killed run's outbox is not 1..n"
    distinct = sorted(set(seqs))
    assert distinct == list(range(1, distinct[-1] + 1)), "a gap in seq"
    firsts = list(dict.fromkeys(seqs))  # each seq's first arrival, in arrival order
    assert firsts == distinct, "delivered out of order"
    assert set(queued) <= set(seqs)  # every verdict the killed run accepted
    duplicates = len(seqs) - len(distinct)  # QoS 1 may repeat what was in flight
    figures(
        queued_at_kill=len(queued),
        delivered=len(distinct),
        duplicates=duplicates,
        gaps=0,
        drain_s=found["drain_s"],
        record_bytes_per_message=found["record_bytes"] / found["records"],
        disk_bytes_with_wal=found["disk_bytes"],
    )
    assert duplicates <= 100  # at most one window in flight (max_inflight) sent twice


async def publish_while_down(sink: MqttSink, count: int) -> None:
    async with sink:  # nothing reaches the broker: all of it stays in the spool
        for seq in range(1, count + 1):
            await sink.publish(verdict("cam1", seq, ts=time.time()))


def sink_config(port: int, spool: Path, **outbox) -> MqttConfig:
    return MqttConfig(
        port=port,
        verdict_interval_s=0,
        discovery=False,
        retry_initial_s=0.1,
        retry_max_s=0.5,
        flush_timeout_s=0.5,
        outbox={"durable": True, "path": spool, **outbox},
    )


def test_a_truncated_outbox_still_starts_delivers_its_good_records_and_counts_the_rest(tmp_path, creds, caplog):
    broker = Mosquitto()
    spool = tmp_path / "mqtt.sqlite3"
    asyncio.run(publish_while_down(MqttSink(sink_config(broker.port, spool)), 2000))
    spool.write_bytes(spool.read_bytes()[: spool.stat().st_size * 2 // 3])  # a third of the file gone
    broker.start()
    monitor = PerformanceMonitor()
    sink = MqttSink(sink_config(broker.port, spool), monitor)

    async def scenario():
        async with Subscriber(broker, topics=("dfstream/#",)) as sub:
            with caplog.at_level(logging.ERROR):
                async with sink:
                    lost = monitor.counter(MQTT, Count.SPOOL_LOST)
                    await sub.wait_for(lambda: len(sub.on("/verdict")) + lost >= 2000, 30)
                    await asyncio.sleep(0.5)  # and no more than that
            return [v["seq"] for v in sub.on("/verdict")]

    try:
        seqs = asyncio.run(scenario())
    finally:
        broker.close()
    lost = monitor.counter(MQTT, Count.SPOOL_LOST)
    said = [r.getMessage() for r in caplog.records if "spool" in r.getMessage()]
    assert len(said) == 1 and "damaged" in said[0] and "lost" in said[0], said
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert 0 < len(seqs) < 2000 and lost > 0
    # every verdict delivered or counted lost (the loss may include the last run's "offline", its last message)
    assert len(seqs) + lost in (2000, 2001), (len(seqs), lost)
    assert (tmp_path / "mqtt.sqlite3.damaged").exists()


@pytest.fixture
def small_disk(tmp_path):
    """A 192 KB tmpfs: the spool fills it."""
    mount = tmp_path / "small"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=192k", "tmpfs", str(mount)], capture_output=True)
    if made.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs (the test needs root): {made.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_is_one_error_counted_and_nothing_accepted_is_lost_while_running(small_disk, creds, caplog):
    broker = Mosquitto(persistent=True).start()
    monitor = PerformanceMonitor()
    sink = MqttSink(sink_config(broker.port, small_disk / "mqtt.sqlite3"), monitor)

    async def scenario():
        async with Subscriber(broker, topics=("dfstream/#",)) as sub:
            await asyncio.sleep(2.5)  # its session on disk: it gets what comes while it reconnects
            broker.kill()  # the outbox fills while the broker is down
            async with sink:
                with caplog.at_level(logging.ERROR):
                    for seq in range(1, 1001):  # ~700 KB of verdicts into 192 KB: the disk fills
                        await sink.publish(verdict("cam1", seq, ts=time.time()))
                errors = monitor.counter(MQTT, Count.SPOOL_ERRORS)
                broker.start()
                await sub.wait_for(lambda: len({v["seq"] for v in sub.on("/verdict")}) == 1000, 60)
                return errors, [v["seq"] for v in sub.on("/verdict")]

    try:
        errors, seqs = asyncio.run(scenario())
    finally:
        broker.close()
    assert errors > 0  # the disk did fill
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR and "spool" in r.getMessage()]
    # one line, not one per message (the rate-limited log may repeat it once with its count, "(xN)")
    assert len({line.split(" (x")[0] for line in said}) == 1 and "full" in said[0] and "\n" not in said[0], said
    assert sorted(set(seqs)) == list(range(1, 1001))  # kept in memory, delivered
    assert monitor.gauge(MQTT, Gauge.SPOOL_BYTES) is not None
