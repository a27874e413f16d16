"""Job lifecycles captured from real Flux, replayed by the simulated instance.

Each file in ``eventlogs/`` is a job eventlog set recorded from flux-core 0.88.0
(``eventlog``, ``guest.exec.eventlog``, ``guest.output``, ``guest.input``). A scenario
turns it into a schedule: every event of every eventlog, in time order, with its
offset from the job's submission.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

DEFAULT_SCENARIO = "success"


@dataclass(frozen=True)
class ScheduledEvent:
    """One event of a scenario: when (seconds after submit), where, and what."""

    offset: float
    eventlog: str
    name: str
    context: dict[str, Any]


@dataclass(frozen=True)
class Scenario:
    """A recorded job lifecycle."""

    name: str
    eventlogs: dict[str, tuple[dict[str, Any], ...]]

    def schedule(self) -> list[ScheduledEvent]:
        """Every event of every eventlog, in the order Flux wrote them."""
        events = [
            (event["timestamp"], path, event)
            for path, log in self.eventlogs.items()
            for event in log
        ]
        events.sort(key=lambda item: item[0])
        start = events[0][0]
        return [
            ScheduledEvent(ts - start, path, event["name"], dict(event.get("context", {})))
            for ts, path, event in events
        ]


def _eventlog_files() -> dict[str, Any]:
    folder = resources.files(__package__) / "eventlogs"
    return {
        entry.name.removesuffix(".json"): entry
        for entry in folder.iterdir()
        if entry.name.endswith(".json") and entry.name != "errors.json"
    }


def scenario_names() -> list[str]:
    """Names of the recorded scenarios (``success``, ``cancel-running``, ...)."""
    return sorted(_eventlog_files())


@cache
def load_scenario(name: str) -> Scenario:
    """Load a recorded scenario by name."""
    files = _eventlog_files()
    if name not in files:
        raise ValueError(f"unknown scenario {name!r}; known: {', '.join(sorted(files))}")
    raw = json.loads(files[name].read_text(encoding="utf-8"))
    eventlogs = {
        path: tuple(json.loads(line) for line in lines)
        # A path recorded as an error object did not exist for that job.
        for path, lines in raw["eventlogs"].items()
        if isinstance(lines, list)
    }
    return Scenario(name, eventlogs)
