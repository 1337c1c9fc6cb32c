"""What the durable MQTT outbox costs, measured in one run:

    python -m bench.spool --weights ../shared/models/mesonet [--messages 20000] [--seconds 15] [--rounds 3]

1. The spool alone (SQLite, WAL): records committed per second and each append's latency, for
   ``sync: normal`` (survives any crash of dfstream) and ``sync: full`` (an fsync per commit: a
   power cut too), delivered records removed as the outbox removes them (every 100); and the same
   workload in what it could have been: SQLite's default rollback journal, LMDB (if installed).
2. The MQTT sink end to end into a real Mosquitto on loopback: messages acknowledged per second,
   and the time one ``publish`` takes (what each verdict waits for), in memory vs durable.
3. The pipeline: one live 360p30 RTSP stream judged with the MQTT sink to that broker, CPU seconds
   per stream second with the outbox in memory and on disk, at the default verdict rate
   (``verdict_interval_s`` 1) and at every verdict published (0); the two alternated ``--rounds``
   times, the median kept.

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


def alternatives(messages: int, folder: Path) -> dict:
    """The same workload (commit each record, remove delivered ones every 100) in the stores the
    spool could have been: SQLite with its default rollback journal, and LMDB where it is installed
    (``pip install lmdb``; not a dependency), with and without an fsync per commit."""
    import sqlite3

    data = os.urandom(RECORD)
    out: dict = {}
    db = sqlite3.connect(folder / "rollback.sqlite3", isolation_level=None)
    db.execute("PRAGMA journal_mode=DELETE")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE records (n INTEGER PRIMARY KEY, data BLOB)")
    start = time.perf_counter()
    for n in range(1, messages + 1):
        db.execute("INSERT INTO records VALUES (?, ?)", (n, data))  # autocommit: one transaction each
        if n % 100 == 0:
            db.execute("DELETE FROM records WHERE n <= ?", (n - 50,))
    out["sqlite_rollback_journal_full"] = round(messages / (time.perf_counter() - start), 1)
    db.close()
    try:
        import lmdb
    except ImportError:
        out["lmdb"] = "not installed"
        return out
    for sync in (False, True):
        env = lmdb.open(str(folder / f"lmdb-{sync}"), map_size=2**30, sync=sync)
        start = time.perf_counter()
        for n in range(1, messages + 1):
            with env.begin(write=True) as txn:
                txn.put(n.to_bytes(8, "big"), data)
                if n % 100 == 0:
                    for k in range(n - 149, n - 49):
                        if k > 0:
                            txn.delete(k.to_bytes(8, "big"))
        out[f"lmdb_sync_{str(sync).lower()}"] = round(messages / (time.perf_counter() - start), 1)
        env.close()
    return out


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
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--weights", type=Path, **weights_argument())
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("spool_results.json"))
    args = parser.parse_args()
    figures: dict = {"spool": {}, "sink": {}, "pipeline": {}}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for sync in ("normal", "full"):
            figures["spool"][sync] = spool_alone(args.messages, sync, folder)
        figures["spool"]["alternatives_records_per_s"] = alternatives(args.messages, folder)
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
                runs: dict[str, list[float]] = {"memory": [], "durable": []}
                for _ in range(args.rounds):  # alternated, the median kept: this machine's noise is a few %
                    for name in runs:
                        mqtt = {"port": port, "discovery": False, "verdict_interval_s": interval}
                        if name == "durable":
                            mqtt["outbox"] = {"durable": True, "path": str(folder / f"run-{interval:g}.sqlite3")}
                        run = measure(1, args.seconds, args.weights, overrides={"sinks": {"mqtt": mqtt}})
                        runs[name].append(run["cpu_s_per_stream_s"])
                costs: dict = {name: round(float(np.median(v)), 3) for name, v in runs.items()}
                costs["runs"] = runs
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
