"""The durable spool on its own: what is appended survives a reopen with its numbers; what was
delivered does not come back; a file truncated or bit-flipped still opens, every record it gives
back is one that was written, in order, and what it cannot give back is counted in one line."""

from __future__ import annotations

import logging
import random
import shutil

import pytest

from sinks.spool import Spool

N = 1500


def payload(n: int) -> bytes:
    return (f'{{"stream":"cam1","seq":{n},"label":"fake",' + '"pad":"' + "x" * (300 + n % 200) + '"}').encode()


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """A spool of N records (numbers given with each), the first 200 delivered, closed cleanly."""
    path = tmp_path_factory.mktemp("spool") / "mqtt.sqlite3"
    spool = Spool(path, name="mqtt")
    assert spool.open().records == []
    for n in range(1, N + 201):
        spool.append(n, payload(n), {"cam1/mqtt": n})
    spool.remove_through(200)
    spool.close()
    return path


def test_records_survive_a_reopen_in_order_with_their_numbers(written, tmp_path):
    copy = tmp_path / "copy.sqlite3"
    shutil.copy(written, copy)
    spool = Spool(copy)
    recovered = spool.open()
    assert [n for n, _ in recovered.records] == list(range(201, N + 201))
    assert all(data == payload(n) for n, data in recovered.records)
    assert recovered.numbers == {"cam1/mqtt": N + 200} and recovered.last_n == N + 200
    assert recovered.lost == 0 and recovered.problem is None
    assert spool.count == N and spool.bytes == sum(len(payload(n)) for n in range(201, N + 201))
    spool.remove_through(N + 100)
    spool.close()
    again = Spool(copy).open()
    assert [n for n, _ in again.records] == list(range(N + 101, N + 201))


def test_a_killed_writer_loses_nothing_it_committed(tmp_path):
    """No close, no checkpoint: the WAL as a SIGKILL leaves it."""
    path = tmp_path / "mqtt.sqlite3"
    spool = Spool(path)
    spool.open()
    for n in range(1, 101):
        spool.append(n, payload(n), {"cam1/mqtt": n})
    spool.remove_through(10)
    assert (tmp_path / "mqtt.sqlite3-wal").stat().st_size > 0
    shutil.copytree(tmp_path, tmp_path.with_name(tmp_path.name + "-crashed"))  # the files as they are now
    recovered = Spool(tmp_path.with_name(tmp_path.name + "-crashed") / "mqtt.sqlite3").open()
    assert [n for n, _ in recovered.records] == list(range(11, 101)) and recovered.lost == 0


def damaged_copies(written, tmp_path, how: str, trials: int):
    data = written.read_bytes()
    rng = random.Random(f"{how}-spool")
    for trial in range(trials):
        broken = bytearray(data)
        if how == "truncated":
            broken = broken[: rng.randrange(100, len(data))]
        else:
            for _ in range(rng.randint(1, 8)):
                i = rng.randrange(len(broken))
                broken[i] ^= 1 << rng.randrange(8)
        path = tmp_path / f"{how}-{trial}.sqlite3"
        path.write_bytes(bytes(broken))
        yield path


@pytest.mark.parametrize("how", ["truncated", "bit-flipped"])
def test_a_damaged_file_opens_gives_back_only_intact_records_and_counts_the_rest(written, tmp_path, how, caplog):
    losses = []
    for path in damaged_copies(written, tmp_path, how, 25):
        caplog.clear()
        with caplog.at_level(logging.ERROR, logger="sinks.spool"):
            spool = Spool(path, name="mqtt")
            recovered = spool.open()  # never raises
        ns = [n for n, _ in recovered.records]
        assert ns == sorted(ns) and len(set(ns)) == len(ns)
        assert all(data == payload(n) for n, data in recovered.records), "a damaged record was given back"
        if recovered.problem is None:  # the damage fell where nothing is read (free space, a deleted record)
            assert len(ns) == N
        else:
            assert "\n" not in recovered.problem
            (said,) = [r.getMessage() for r in caplog.records]
            assert recovered.problem in said and str(path) in said
            if "at least" in recovered.problem:  # the file's own count was on a lost page
                assert len(ns) + recovered.lost <= N
            else:
                assert len(ns) + recovered.lost == N
        losses.append(recovered.lost)
        # the file is usable again: the next record goes in, and the loss is not counted twice
        spool.append(N + 201, payload(N + 201))
        spool.close()
        reopened = Spool(path).open()
        assert reopened.lost == 0 and reopened.records[-1] == (N + 201, payload(N + 201))
    assert any(losses), "no trial damaged a record: the test shows nothing"


def test_the_numbers_continue_across_a_restart_even_with_nothing_pending(tmp_path):
    path = tmp_path / "mqtt.sqlite3"
    spool = Spool(path)
    spool.open()
    spool.append(1, b"a", {"cam1/mqtt": 7, "cam2/mqtt": 3})
    spool.remove_through(1)
    spool.close()
    recovered = Spool(path).open()
    assert recovered.records == [] and recovered.numbers == {"cam1/mqtt": 7, "cam2/mqtt": 3}
    assert recovered.last_n == 1


def test_serve_keeps_the_mqtt_outbox_on_disk_by_default_run_in_memory_ray_refuses_it(tmp_path):
    from core.errors import ConfigError
    from dfstream.config import parse_config
    from dfstream.wiring import ray_engine

    def config(**sections):
        base = {"streams": [{"id": "cam1", "url": "sample://"}], "detectors": [{"name": "meso4", "type": "meso4"}]}
        return parse_config({**base, **sections})

    plain = config(sinks={"mqtt": {}})
    served = plain.sinks.with_spool_defaults(tmp_path, durable=True).mqtt.outbox
    assert served.durable and served.path == tmp_path / "spool" / "mqtt.sqlite3"
    assert not plain.sinks.with_spool_defaults(tmp_path, durable=False).mqtt.outbox.durable
    off = config(sinks={"mqtt": {"outbox": {"durable": False}}})
    assert not off.sinks.with_spool_defaults(tmp_path, durable=True).mqtt.outbox.durable  # said is said
    on_ray = config(runtime={"engine": "ray"}, sinks={"mqtt": {"outbox": {"durable": True}}})
    with pytest.raises(ConfigError, match="sinks.mqtt.outbox.durable"):
        ray_engine(on_ray, offline=True, say=print)
