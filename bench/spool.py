"""What the durable MQTT outbox costs, measured in one run:

    python -m bench.spool --weights ../shared/models/mesonet [--messages 20000] [--seconds 20]

1. The spool alone (SQLite, WAL): records committed per second and each append's latency, for
   ``sync: normal`` (survives any crash of dfstream) and ``sync: full`` (an fsync per commit: a
   power cut too), delivered records removed as the outbox removes them (every 100).
2. The MQTT sink end to end into a real Mosquitto on loopback: messages acknowledged per second,
   and the time one ``publish`` takes (what each verdict waits for), in memory vs durable.
3. The pipeline: one live 360p30 RTSP stream judged with the MQTT sink to that broker, CPU seconds
   per stream second with the outbox in memory and on disk, at the default verdict rate
   (``verdict_interval_s`` 1) and at every verdict published (0).

Figures are printed and written to bench/spool_results.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.mqtt_distance import broker, verdict
from bench.rtsp_latency import measure
from bench.stages import weights_argument
from sinks.mqtt import MqttConfig, MqttSink
from sinks.spool import Spool

RECORD = 700  # bytes: a verdict message as the MQTT sink spools it


def _percentiles(seconds: list[float]) -> dict:
    us = np.array(seconds) * 1e6
    return {"p50_us": round(float(np.percentile(us, 50)), 1), "p99_us": round(float(np.percentile(us, 99)), 1)}


def spool_alone(messages: int, sync: str, folder: Path) -> dict:
    spool = Spool(folder / f"alone-{sync}.sqlite3", sync)  # type: ignore[arg-type]
    spool.open()
    data = os.urandom(RECORD)
    took = []
    start = time.perf_counter()
    for n in range(1, messages + 1):
        t = time.perf_counter()
        spool.append(n, data, {"cam1/mqtt": n})
        took.append(time.perf_counter() - t)
        if n % 100 == 0:
            spool.remove_through(n - 50)  # the broker acknowledges, a window behind
    seconds = time.perf_counter() - start
    spool.close()
    return {"records_per_s": round(messages / seconds, 1), "append": _percentiles(took)}


async def _through_sink(port: int, messages: int, outbox: dict) -> dict:
    sink = MqttSink(
        MqttConfig(
            port=port,
            topic_prefix="bench",
            discovery=False,
            verdict_interval_s=0,
            outbox_capacity=messages * 2,
            client_id=f"bench-spool-{outbox.get('sync', 'memory')}",
            outbox=outbox,
        )
    )
    took = []
    async with sink:
        while sink.outbox_depth():
            await asyncio.sleep(0.01)
        start = time.monotonic()
        for i in range(messages):
            t = time.perf_counter()
            await sink.publish(verdict(f"s{i % 8}", i // 8 + 1))
            took.append(time.perf_counter() - t)
            if i % 200 == 0:
                await asyncio.sleep(0)  # let the delivery loop run, as the pipeline's awaits do
        while sink.outbox_depth():
            await asyncio.sleep(0.005)
        seconds = time.monotonic() - start
    return {"messages_per_s": round(messages / seconds, 1), "publish": _percentiles(took)}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.spool", description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--weights", type=Path, **weights_argument())
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("spool_results.json"))
    args = parser.parse_args()
    figures: dict = {"spool": {}, "sink": {}, "pipeline": {}}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for sync in ("normal", "full"):
            figures["spool"][sync] = spool_alone(args.messages, sync, folder)
        print(json.dumps({"spool": figures["spool"]}), flush=True)
        process, port = broker(folder)
        try:
            outboxes = {
                "memory": {},
                "durable": {"durable": True, "path": str(folder / "sink.sqlite3")},
                "durable_full": {"durable": True, "path": str(folder / "sink-full.sqlite3"), "sync": "full"},
            }
            for name, outbox in outboxes.items():
                figures["sink"][name] = asyncio.run(_through_sink(port, args.messages // 4, outbox))
            print(json.dumps({"sink": figures["sink"]}), flush=True)
            for interval in (1.0, 0.0):
                costs = {}
                for name in ("memory", "durable"):
                    mqtt = {"port": port, "discovery": False, "verdict_interval_s": interval}
                    if name == "durable":
                        mqtt["outbox"] = {"durable": True, "path": str(folder / f"run-{interval:g}.sqlite3")}
                    run = measure(1, args.seconds, args.weights, overrides={"sinks": {"mqtt": mqtt}})
                    costs[name] = run["cpu_s_per_stream_s"]
                costs["durable_over_memory"] = round(costs["durable"] / costs["memory"], 3)
                figures["pipeline"][f"verdict_interval_s={interval:g}"] = costs
                print(json.dumps({f"pipeline verdict_interval_s={interval:g}": costs}), flush=True)
        finally:
            process.terminate()
            process.wait(5)
    figures["machine"] = {"cpus": os.cpu_count(), "when": time.strftime("%Y-%m-%d")}
    args.out.write_text(json.dumps(figures, indent=1) + "\n")


if __name__ == "__main__":
    main()
