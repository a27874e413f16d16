"""How far a reader of an instance's events got.

Timestamps order an instance's events nearly, not exactly: job-ingest stamps a
``submit`` before the job manager posts it, so other jobs' events, stamped later,
can come first (measured on flux-core 0.88.0 with two jobs a few milliseconds
apart). A reader that resumes after what it handled keeps a :class:`Frontier`: the
newest timestamp it saw, and which of the events stamped up to
:data:`LATE_EVENT_SECONDS` before it it has seen.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_flux.instance_events.model import EventKey, InstanceEvent

# How much earlier than events that came before it an event may be stamped: a
# submit waits this long in job-ingest at most, or it may be taken as seen.
LATE_EVENT_SECONDS = 30.0


@dataclass
class Frontier:
    """How far a reader got: the newest timestamp it saw, and the events stamped up to
    :data:`LATE_EVENT_SECONDS` before it that it has seen (of those it keeps).

    :param newest: the newest timestamp seen.
    :param recent: the keys of the events kept, stamped within the window, each with
        a time of the keeper's choosing (when it handed the event over, say).
    """

    newest: float = 0.0
    recent: dict[EventKey, float] = field(default_factory=dict)
    _pruned_at: float = 0.0

    def is_new(self, item: InstanceEvent) -> bool:
        """Not seen yet: stamped after the newest, or within the window and not kept."""
        stamp = item.event.timestamp
        if stamp > self.newest:
            return True
        return stamp > self.newest - LATE_EVENT_SECONDS and item.key not in self.recent

    def advance(self, item: InstanceEvent, keep: bool = True, when: float = 0.0) -> None:
        """``item`` is seen; ``keep`` it (at ``when``) to tell it apart within the window."""
        self.newest = max(self.newest, item.event.timestamp)
        if keep:
            self.recent[item.key] = when

    def prune(self) -> None:
        """Forget what the window has left behind (every quarter of a window at most:
        a burst calls this once per batch)."""
        if self.newest - self._pruned_at < LATE_EVENT_SECONDS / 4:
            return
        self._pruned_at = self.newest
        horizon = self.newest - LATE_EVENT_SECONDS
        self.recent = {key: when for key, when in self.recent.items() if key[2] > horizon}

    def to_json(self, newest: float | None = None, kept_by: float | None = None) -> dict[str, Any]:
        """JSON-friendly form; or the frontier as it was when it was at ``newest``,
        counting the events kept by ``kept_by`` only."""
        newest = self.newest if newest is None else newest
        horizon = newest - LATE_EVENT_SECONDS
        recent = [
            list(key)
            for key, when in self.recent.items()
            if horizon < key[2] <= newest and (kept_by is None or when <= kept_by)
        ]
        return {"newest": newest, "recent": sorted(recent)}

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> Frontier:
        recent = {(int(j), str(n), float(t)): 0.0 for j, n, t in value.get("recent", [])}
        return cls(float(value["newest"]), recent)
