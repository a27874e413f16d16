"""Job events as the provider hands them around: plain, typed and serializable."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

_decode = json.JSONDecoder().decode


@dataclass(frozen=True, slots=True)
class JobEvent:
    """One entry of a Flux job eventlog (RFC 18).

    :param name: the event name (``start``, ``finish``, ``exception``, ...).
    :param timestamp: seconds since the epoch, as Flux wrote it.
    :param context: the event's context object (empty when it has none).
    """

    name: str
    timestamp: float
    context: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_flux(cls, event: Any) -> JobEvent:
        """From a bindings ``EventLogEvent``, a dict, or a raw RFC 18 line."""
        if isinstance(event, (str, bytes)):
            event = json.loads(event)
        return cls(str(event["name"]), float(event["timestamp"]), dict(event.get("context") or {}))

    @classmethod
    def from_json(cls, line: str) -> JobEvent:
        """From one RFC 18 eventlog line, as ``flux_job_event_watch_get`` returns it
        (the engine's path, once per event: no type checks, no copy of a context
        that nothing else holds)."""
        event = _decode(line)
        return cls(event["name"], float(event["timestamp"]), event.get("context") or {})

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form, used in trigger events and XCom."""
        return {"name": self.name, "timestamp": self.timestamp, "context": self.context}

    @property
    def is_fatal_exception(self) -> bool:
        """An ``exception`` event with severity 0: the job is ending."""
        return self.name == "exception" and self.context.get("severity") == 0


def parse_eventlog(text: str) -> list[JobEvent]:
    """Parse an eventlog as ``job-info.lookup`` returns it: one JSON object per line."""
    return [JobEvent.from_flux(line) for line in text.splitlines() if line.strip()]
