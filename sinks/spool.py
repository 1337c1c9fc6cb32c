"""A sink's queue on disk, so that what it accepted outlives dfstream itself (a ``kill -9``, the
OOM killer, a lost node): every record is written before it counts as accepted, removed once it
was delivered, and read back in order at the next start.

    spool = Spool(path, sync="normal", name="mqtt")
    recovered = spool.open()                  # what the last run left, in order; its numbers; its losses
    spool.append(n, data, numbers={"cam1/mqtt": 41})
    spool.remove_through(n)                   # delivered (or dropped and counted): n and all before it
    spool.close()

SQLite in WAL mode: on every machine, crash-safe, one file (``python -m bench.spool`` measures
what it costs). ``sync: normal`` commits without an fsync, which survives any crash of the process
and loses at most the last commits to a power cut; ``full`` fsyncs every commit and survives that
too, at the cost the bench prints. SQLite does not checksum what it stores, so each record carries
a CRC-32: a flipped bit is a record lost and counted, never a wrong message sent. A damaged file
(truncated, a page unreadable) is read as far as it can be, record by record, and moved aside as
``<name>.damaged``; the good records start a fresh one, the loss is counted and said in one line,
and dfstream starts anyway.

The numbers a sink hands out (MQTT's per-stream ``seq``) are kept beside the records, in the same
commit, so that after a restart they go on from where they were instead of from 1.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import Field

from core.errors import DfstreamError, one_line
from core.ratelog import RateLimitedLog
from core.strict import StrictModel

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (n INTEGER PRIMARY KEY, data BLOB NOT NULL, crc INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS numbers (key TEXT PRIMARY KEY, value INTEGER NOT NULL, crc INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL, crc INTEGER NOT NULL);
"""
# meta: last_n, the highest record number given; count, the records that should be in the file.
# Every row carries its CRC-32: a number read back wrong would repeat a seq subscribers already saw


class SpoolConfig(StrictModel):
    """``durable: true`` keeps the sink's queue on disk at ``path``; None: the command's default
    (``serve``: on, under ``api.data_dir``; ``run``: off)."""

    durable: bool | None = None
    path: Path | None = None  # None under serve: <api.data_dir>/spool/<sink>.sqlite3
    max_mb: float = Field(64.0, gt=0)  # beyond it the oldest records are dropped, and counted
    sync: Literal["normal", "full"] = "normal"  # full: an fsync per commit (survives a power cut too)


class SpoolError(DfstreamError):
    """A record could not be written (disk full, the file gone read-only)."""


@dataclass
class Recovered:
    """What a spool held at start: its records in order, the numbers handed out, what was lost."""

    records: list[tuple[int, bytes]] = field(default_factory=list)
    numbers: dict[str, int] = field(default_factory=dict)
    last_n: int = 0  # the highest record number ever given (0: none)
    lost: int = 0  # records that were accepted and could not be read back
    problem: str | None = None  # one line: what was wrong with the file


def _crc(n: int, data: bytes) -> int:
    return zlib.crc32(data, zlib.crc32(n.to_bytes(8, "little", signed=True)))


def _rows(values: dict[str, int]) -> list[tuple[str, int, int]]:
    return [(k, v, _crc(v, k.encode())) for k, v in values.items()]


def _pairs(rows) -> dict[str, int]:  # noqa: ANN001 -- a cursor
    """Key-value rows as read back, the damaged ones (CRC, even a changed type) left out."""
    return {
        k: v
        for k, v, crc in rows
        if isinstance(k, str) and isinstance(v, int) and isinstance(crc, int) and _crc(v, k.encode()) == crc
    }


def _intact(row: tuple) -> tuple[int, bytes] | None:
    """``(n, data)`` of a row read back, or None where a damaged page changed it (even its types)."""
    n, data, crc = row
    if not isinstance(n, int) or not isinstance(data, bytes) or not isinstance(crc, int):
        return None
    return (n, data) if _crc(n, data) == crc else None


class Spool:
    def __init__(self, path: Path, sync: Literal["normal", "full"] = "normal", name: str = "spool"):
        self.path, self.sync, self.name = Path(path), sync, name
        self.bytes = 0  # record bytes held now
        self._db: sqlite3.Connection | None = None
        self._sizes: dict[int, int] = {}  # n -> size: ``bytes`` and ``count`` without asking the file
        self.problems = RateLimitedLog(log)

    @property
    def count(self) -> int:
        return len(self._sizes)

    # ---- start ------------------------------------------------------------------------------------
    def open(self) -> Recovered:
        """Open (or create) the file and read back what it holds; a damaged one is salvaged."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            recovered = self._read()
        except sqlite3.DatabaseError as exc:
            recovered = self._salvage(exc)
        self._db = self._connect()
        if recovered.problem is not None:
            self._rewrite(recovered)
        self._sizes = {n: len(data) for n, data in recovered.records}
        self.bytes = sum(self._sizes.values())
        if recovered.problem is not None:
            log.error("%s: spool %s: %s", self.name, self.path, recovered.problem)
        return recovered

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={'FULL' if self.sync == 'full' else 'NORMAL'}")
        db.executescript(_SCHEMA)
        return db

    def _rewrite(self, recovered: Recovered) -> None:
        """The file as it should be after a loss: the good records, their numbers, their count (so
        the next start does not count the same loss again)."""
        assert self._db is not None
        with self._db:
            self._db.execute("DELETE FROM records")
            self._db.executemany(
                "INSERT INTO records (n, data, crc) VALUES (?, ?, ?)",
                [(n, data, _crc(n, data)) for n, data in recovered.records],
            )
            self._db.execute("DELETE FROM numbers")
            self._db.executemany("INSERT INTO numbers VALUES (?, ?, ?)", _rows(recovered.numbers))
            self._db.executemany(
                "INSERT OR REPLACE INTO meta VALUES (?, ?, ?)",
                _rows({"last_n": recovered.last_n, "count": len(recovered.records)}),
            )

    def _read(self) -> Recovered:
        """Every record, CRC-checked; ``DatabaseError`` where the file itself is damaged."""
        if not self.path.exists():
            return Recovered()
        db = sqlite3.connect(self.path, isolation_level=None)
        try:
            check = db.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise sqlite3.DatabaseError(f"quick_check: {check}")
            db.executescript(_SCHEMA)
            recovered = Recovered(numbers=_pairs(db.execute("SELECT key, value, crc FROM numbers")))
            meta = _pairs(db.execute("SELECT key, value, crc FROM meta"))
            bad = 0
            for row in db.execute("SELECT n, data, crc FROM records ORDER BY n").fetchall():
                record = _intact(row)
                if record is not None:
                    recovered.records.append(record)
                else:
                    bad += 1
        finally:
            db.close()
        recovered.last_n = max(meta.get("last_n", 0), recovered.records[-1][0] if recovered.records else 0)
        recovered.lost = max(bad, meta.get("count", len(recovered.records)) - len(recovered.records))
        if recovered.lost:
            recovered.problem = (
                f"{recovered.lost} record(s) lost ({bad} failed their CRC check); "
                f"{len(recovered.records)} read back intact"
            )
        return recovered

    def _salvage(self, error: Exception) -> Recovered:
        """What can be read of a damaged file, record by record; the file is moved aside."""
        recovered = Recovered()
        meta: dict[str, int] = {}
        bad = 0
        db = None
        try:
            db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, isolation_level=None)
            # a truncated file is shorter than its header says: SQLite refuses it, unless told to read on
            db.execute("PRAGMA writable_schema=ON")
            for table, target in (("numbers", recovered.numbers), ("meta", meta)):
                try:
                    target.update(_pairs(db.execute(f"SELECT key, value, crc FROM {table}")))  # noqa: S608 -- fixed
                except sqlite3.DatabaseError:
                    pass
            last = 0
            while True:  # one at a time from the last one read: a broken page loses its own records only
                try:
                    query = "SELECT n, data, crc FROM records WHERE n > ? ORDER BY n LIMIT 1"
                    row = db.execute(query, (last,)).fetchone()
                except sqlite3.DatabaseError:
                    row = _next_readable(db, last, meta.get("last_n"))
                if row is None:
                    break
                if not isinstance(row[0], int) or row[0] <= last:
                    break  # the order itself is broken past here
                last = row[0]
                record = _intact(row)
                if record is not None:
                    recovered.records.append(record)
                else:
                    bad += 1
        except sqlite3.DatabaseError:
            pass  # not even a database any more: nothing to read back
        finally:
            if db is not None:
                db.close()
        recovered.last_n = max(meta.get("last_n", 0), recovered.records[-1][0] if recovered.records else 0)
        if "count" in meta:
            recovered.lost = max(bad, meta["count"] - len(recovered.records))
            floor = ""
        else:  # the gaps between the records read are a floor
            ns = [n for n, _ in recovered.records]
            recovered.lost = bad + (ns[-1] - ns[0] + 1 - len(ns) if ns else 0)
            floor = " at least (the file's own count was unreadable)"
        damaged = self.path.with_name(self.path.name + ".damaged")
        self.path.replace(damaged)
        for suffix in ("-wal", "-shm"):
            Path(str(self.path) + suffix).unlink(missing_ok=True)
        recovered.problem = (
            f"the file was damaged ({one_line(error)}): {len(recovered.records)} record(s) read back, "
            f"{recovered.lost} lost{floor}; the damaged file is kept as {damaged.name}"
        )
        return recovered

    # ---- running ----------------------------------------------------------------------------------
    def append(self, n: int, data: bytes, numbers: dict[str, int] | None = None) -> None:
        """Record ``n`` on disk, with the numbers handed out with it; ``SpoolError`` if it cannot be."""
        statements = [
            ("INSERT INTO records (n, data, crc) VALUES (?, ?, ?)", [(n, data, _crc(n, data))]),
            ("INSERT OR REPLACE INTO numbers VALUES (?, ?, ?)", _rows(numbers or {})),
            ("INSERT OR REPLACE INTO meta VALUES (?, ?, ?)", _rows({"last_n": n, "count": self.count + 1})),
        ]
        try:
            self._commit(statements)
        except sqlite3.Error as exc:
            raise SpoolError(f"{self.name}: cannot write to the spool {self.path}: {one_line(exc)}") from None
        self._sizes[n] = len(data)
        self.bytes += len(data)

    def _commit(self, statements: list[tuple[str, list[tuple]]]) -> None:
        """One transaction; on a full disk, once more after the WAL is checkpointed and truncated
        (the file's free pages take what the WAL could not)."""
        assert self._db is not None, "open() first"
        for attempt in (1, 2):
            try:
                self._db.execute("BEGIN")
                for sql, rows in statements:
                    if rows:
                        self._db.executemany(sql, rows)
                self._db.execute("COMMIT")
                return
            except sqlite3.Error as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                if attempt == 2 or getattr(exc, "sqlite_errorcode", None) != sqlite3.SQLITE_FULL:
                    raise
                try:
                    self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                except sqlite3.Error:
                    raise exc from None

    def remove_through(self, n: int) -> None:
        """Records up to ``n`` are done with (delivered, or dropped and counted)."""
        gone = [k for k in self._sizes if k <= n]
        if gone:
            self._remove(gone, "DELETE FROM records WHERE n <= ?", (n,))

    def remove(self, ns: list[int]) -> None:
        """These records are done with (a newer version replaced them, or they were delivered)."""
        gone = [k for k in ns if k in self._sizes]
        if gone:
            self._remove(gone, "DELETE FROM records WHERE n IN (SELECT value FROM json_each(?))", (json.dumps(gone),))

    def _remove(self, ns: list[int], sql: str, args: tuple) -> None:
        for k in ns:
            self.bytes -= self._sizes.pop(k)
        count = ("INSERT OR REPLACE INTO meta VALUES (?, ?, ?)", _rows({"count": self.count}))
        try:
            self._commit([(sql, [args]), count])
            self.problems.clear("remove")
        except sqlite3.Error as exc:
            # delivered but still on disk: sent again after a restart, a duplicate and not a loss
            self.problems(
                "remove",
                "%s: spool %s: cannot remove delivered records (%s): after a restart they are sent again",
                self.name,
                self.path,
                one_line(exc),
            )

    def close(self) -> None:
        if self._db is not None:
            try:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error:
                pass
            self._db.close()
            self._db = None


def _next_readable(db: sqlite3.Connection, last: int, last_n: int | None) -> tuple | None:
    """The next record after ``last`` that can be read, probing one number at a time past a broken
    page (up to ``last_n`` where the file still says it, else a bounded distance)."""
    end = last_n if last_n is not None else last + 100_000
    for probe in range(last + 1, end + 1):
        try:
            row = db.execute("SELECT n, data, crc FROM records WHERE n = ?", (probe,)).fetchone()
        except sqlite3.DatabaseError:
            continue
        if row is not None:
            return row
    return None
