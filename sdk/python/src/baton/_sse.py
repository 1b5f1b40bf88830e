"""Server-Sent Events, read a line at a time (the same parser for the sync
and the asyncio client)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class RunEvent:
    """One event of a run's stream: `type` (`baton.run`, `baton.transitions`,
    `baton.decision`, `baton.progress`, …), its log `offset` (what a
    reconnection resumes after) and the event as the log holds it (`payload`
    is what docs/api.md describes for each type)."""

    type: str
    offset: int | None
    data: dict[str, Any]

    @property
    def payload(self) -> Any:
        return self.data.get("payload")

    @property
    def final(self) -> bool:
        """Whether this is the run's last event (the stream ends after it)."""
        if self.type != "baton.run":
            return False
        payload = self.payload
        status = payload.get("status") if isinstance(payload, dict) else None
        return status in ("completed", "failed", "cancelled")


class SseParser:
    """Feed it lines (without their line break); it returns an event at each
    blank line that ends one."""

    def __init__(self) -> None:
        self._type = "message"
        self._id: str | None = None
        self._data: list[str] = []

    def feed(self, line: str) -> RunEvent | None:
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "event":
            self._type = value
        elif name == "data":
            self._data.append(value)
        elif name == "id":
            self._id = value
        return None

    def _dispatch(self) -> RunEvent | None:
        if not self._data:
            self._type = "message"
            return None
        text = "\n".join(self._data)
        offset = int(self._id) if self._id and self._id.isdigit() else None
        event = RunEvent(self._type, offset, json.loads(text))
        self._type = "message"
        self._data = []
        return event
