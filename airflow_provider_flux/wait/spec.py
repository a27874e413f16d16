"""What "wait for a job event" means, shared by the triggers, the poking sensors and the operator.

It follows ``flux.job.event_wait`` and ``flux job wait-event``: the ``count``-th event
named ``event`` whose context matches ``match_context`` (the first, by default) ends
the wait; a fatal job exception (severity 0) that comes before it fails the wait,
unless exceptions are not raised; an eventlog that ends without it fails it too.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from airflow_provider_flux.job.event import JobEvent
from airflow_provider_flux.job.limits import shorten

Verdict = Literal["matched", "job_exception", "eventlog_ended"]

# ``flux job wait-event -p`` short names (src/cmd/job/eventlog.c of flux-core).
EVENTLOG_SHORT_NAMES = {
    "exec": "guest.exec.eventlog",
    "output": "guest.output",
    "input": "guest.input",
}


def resolve_eventlog(name: str) -> str:
    """The eventlog path ``name`` stands for, as ``flux job wait-event -p NAME`` reads it.

    ``eventlog``, a guest path (``guest.exec.eventlog``, ``guest.output``, ...) or a
    short name (``exec``, ``output``, ``input``). Other keys of a job (``R``,
    ``jobspec``, ``J``) are not eventlogs: a watch on them would wait forever, so
    they are refused.
    """
    if not isinstance(name, str):
        raise ValueError(f"eventlog must be a string, not {type(name).__name__}")
    path = EVENTLOG_SHORT_NAMES.get(name, name)
    if path == "eventlog" or (path.startswith("guest.") and len(path) > len("guest.")):
        return path
    short = ", ".join(f"{short!r} ({long})" for short, long in EVENTLOG_SHORT_NAMES.items())
    raise ValueError(
        f"eventlog {shorten(name)!r} is not an eventlog of a job: expected 'eventlog', a guest "
        f"eventlog path such as 'guest.exec.eventlog', or a short name: {short}"
    )


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def context_value_matches(actual: Any, wanted: Any) -> bool:
    """``flux job wait-event --match-context KEY=VAL`` equality.

    The value matches when its compact JSON text equals ``wanted`` (a string, as
    typed on the command line) or, for a string value, when the strings are equal.
    Non-string ``wanted`` values compare by their JSON text, so ``1`` does not
    match ``true``.
    """
    wanted_text = wanted if isinstance(wanted, str) else _compact(wanted)
    return _compact(actual) == wanted_text or (isinstance(actual, str) and actual == wanted)


@dataclass(frozen=True)
class EventWaitSpec:
    """The event to wait for.

    :param event: the event name (``start``, ``finish``, ``clean``, ``shell.start``, ...).
    :param match_context: key/values the event's context must contain.
    :param raise_on_exception: fail on a fatal job exception before the event.
    :param count: wait for the ``count``-th matching event (``flux job wait-event --count``).
    """

    event: str
    match_context: Mapping[str, Any] = field(default_factory=dict)
    raise_on_exception: bool = True
    count: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.event, str) or not self.event.strip():
            raise ValueError(
                f"event must be a non-empty event name, not {shorten(repr(self.event))}"
            )
        if not isinstance(self.match_context, Mapping):
            raise ValueError(
                f"match_context must be a mapping of context keys to values, "
                f"not {type(self.match_context).__name__}"
            )
        if isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < 1:
            raise ValueError(
                f"count must be a whole number of at least 1, not {shorten(repr(self.count))}"
            )

    def matches(self, event: JobEvent) -> bool:
        """True for the event this wait is for."""
        if event.name != self.event:
            return False
        return all(
            key in event.context and context_value_matches(event.context[key], wanted)
            for key, wanted in self.match_context.items()
        )

    def start(self) -> EventWait:
        """A wait in progress: feed it a job's events in order."""
        return EventWait(self)

    def judge_eventlog(self, events: Iterable[JobEvent], complete: bool) -> WaitResult | None:
        """Apply the wait to events read so far; ``complete`` when the eventlog has ended."""
        wait = self.start()
        for event in events:
            verdict = wait.feed(event)
            if verdict is not None:
                return WaitResult(verdict, event)
        return WaitResult("eventlog_ended", None) if complete else None

    def describe(self) -> str:
        """``event='start'`` (with its context match and count), for messages."""
        text = f"event={self.event!r}"
        if self.match_context:
            text += " with context " + _compact(dict(self.match_context))
        if self.count > 1:
            text += f" (occurrence {self.count})"
        return text


class EventWait:
    """One wait in progress: counts the matching events it is fed."""

    def __init__(self, spec: EventWaitSpec) -> None:
        self.spec = spec
        self.matched = 0

    def feed(self, event: JobEvent) -> Verdict | None:
        """The verdict this event gives, or ``None`` to keep waiting."""
        if self.spec.matches(event):
            self.matched += 1
            return "matched" if self.matched == self.spec.count else None
        if self.spec.raise_on_exception and event.is_fatal_exception:
            return "job_exception"
        return None


@dataclass(frozen=True)
class WaitResult:
    """How a wait ended: the matching event, the fatal exception, or the eventlog's end."""

    verdict: Verdict
    event: JobEvent | None
