"""JSON lines: one event per line, to stdout ("-") or a file (appended)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Literal

from pydantic import Field

from core.errors import SinkError
from core.lifecycle import Lifecycle
from core.strict import StrictModel
from pipeline.runtime.events import Event


class JsonlConfig(StrictModel):
    path: str = "-"
    events: list[Literal["verdict", "voice", "status", "state", "alert"]] = Field(
        default_factory=lambda: ["verdict", "voice", "status", "state", "alert"]
    )
    flush: bool = True  # flush after every line, so a reader (tail -f, a pipe) sees verdicts at once


class JsonlSink(Lifecycle):
    def __init__(self, config: JsonlConfig):
        super().__init__("jsonl")
        self.config = config
        try:
            self._file = sys.stdout if config.path == "-" else Path(config.path).open("a", buffering=1)
        except OSError as exc:
            raise SinkError(f"sinks.jsonl.path: cannot open {config.path!r}: {exc.strerror or exc}") from None
        self._kinds = set(config.events)

    async def publish(self, event: Event) -> None:
        if event.kind not in self._kinds:
            return
        line = json.dumps({"type": event.kind, **event.to_dict()}, separators=(",", ":"), allow_nan=False)
        await asyncio.to_thread(self._write, line)  # a full pipe or a slow disk blocks a thread, not the loop

    def _write(self, line: str) -> None:
        self._file.write(line + "\n")
        if self.config.flush:
            self._file.flush()

    async def _close(self) -> None:
        self._file.flush()
        if self._file is not sys.stdout:
            self._file.close()
