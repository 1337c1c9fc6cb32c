"""SIGTERM under full load: `dfstream run` exits within 5 s and every verdict it judged reaches a
real, connected Mosquitto before it does; a sink that cannot open leaves none of the others open."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest
import yaml

from core.lifecycle import State
from pipeline.runtime.runtime import Runtime
from tests.helpers import MemorySink, load_detectors, make_config, mesonets
from tests.mqtt_broker import Subscriber

pytestmark = pytest.mark.weights


def test_sigterm_under_load_exits_in_5s_and_flushes_to_the_broker(
    weights_dir, face_clip, mosquitto, creds, tmp_path, figures
):
    out = tmp_path / "verdicts.jsonl"
    config = tmp_path / "run.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "streams": [
                    {"id": f"cam{i}", "url": str(face_clip), "pace": "realtime", "loop": True} for i in (1, 2, 3)
                ],
                "detectors": mesonets(weights_dir),
                "sinks": {
                    "jsonl": {"path": str(out), "events": ["verdict"]},
                    "mqtt": {"port": mosquitto.port, "verdict_interval_s": 0, "discovery": False},
                },
            }
        )
    )

    async def scenario() -> dict:
        async with Subscriber(mosquitto, topics=("dfstream/#",)) as sub:
            process = subprocess.Popen(
                [sys.executable, "-m", "dfstream", "run", str(config)],
                stderr=subprocess.PIPE,
                text=True,
                env={**os.environ},
            )
            await sub.wait_for(lambda: len(sub.on("/verdict")) >= 150, 90)  # three streams, the CPU saturated
            process.send_signal(signal.SIGTERM)
            sent = time.monotonic()
            while process.poll() is None:
                assert time.monotonic() - sent < 15, "no exit 15 s after SIGTERM"
                await asyncio.sleep(0.02)
            exit_s = time.monotonic() - sent
            stderr = process.stderr.read()
            await sub.wait_for(lambda: "offline" in sub.on("/available"), 5)
            return {"code": process.returncode, "exit_s": exit_s, "stderr": stderr, "mqtt": sub.on("/verdict")}

    result = asyncio.run(scenario())
    assert result["code"] == 0, result["stderr"]
    judged = Counter(json.loads(line)["stream"] for line in out.read_text().splitlines())
    delivered = Counter(v["stream"] for v in result["mqtt"])
    seqs = {s: sorted(v["seq"] for v in result["mqtt"] if v["stream"] == s) for s in delivered}
    figures(
        exit_s=result["exit_s"],
        judged=sum(judged.values()),
        delivered=sum(delivered.values()),
        lost=sum(judged.values()) - sum(delivered.values()),
    )
    assert result["exit_s"] < 5.0
    assert delivered == judged and sum(judged.values()) >= 150  # every verdict judged before the exit
    assert all(s == list(range(1, len(s) + 1)) for s in seqs.values())  # in order, no gap, no duplicate


class _Unopenable(MemorySink):
    """A sink whose connection is refused when it opens (a broker that is not there)."""

    async def _open(self) -> None:
        raise ConnectionRefusedError("the broker refused")


def test_a_sink_that_fails_to_open_closes_the_sinks_opened_before_it(weights_dir, face_clip):
    """The runtime opens its sinks' outboxes in order: the second refusing leaves none open (the
    first delivered nothing, closed), and the error is the sink's own."""
    config = make_config(weights_dir, [{"id": "cam", "url": str(face_clip), "pace": "asap"}])
    first, second = MemorySink("first"), _Unopenable("second")
    runtime = Runtime(config, load_detectors(config), [first, second])
    with pytest.raises(ConnectionRefusedError, match="the broker refused"):
        asyncio.run(runtime.run())
    assert first.state is State.CLOSED and second.state is State.CLOSED
    assert all(outbox.state is State.CLOSED for outbox in runtime.outboxes)
