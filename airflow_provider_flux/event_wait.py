"""What "wait for a job event" means, shared by the trigger, the poking sensor and the operator.

It follows ``flux.job.event_wait`` and ``flux job wait-event``: the first event named
``event`` whose context matches ``match_context`` ends the wait; a fatal job
exception (severity 0) that comes before it fails the wait, unless exceptions are
not raised; an eventlog that ends without the event fails it too.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from airflow_provider_flux.events import JobEvent

Verdict = Literal["matched", "job_exception", "eventlog_ended"]


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
    """

    event: str
    match_context: Mapping[str, Any] = field(default_factory=dict)
    raise_on_exception: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.event, str) or not self.event.strip():
            raise ValueError(f"event must be a non-empty event name, not {self.event!r}")
        if not isinstance(self.match_context, Mapping):
            raise ValueError(
                f"match_context must be a mapping of context keys to values, "
                f"not {type(self.match_context).__name__}"
            )

    def matches(self, event: JobEvent) -> bool:
        """True for the event this wait is for."""
        if event.name != self.event:
            return False
        return all(
            key in event.context and context_value_matches(event.context[key], wanted)
            for key, wanted in self.match_context.items()
        )

    def judge(self, event: JobEvent) -> Verdict | None:
        """The verdict this event gives, or ``None`` to keep waiting."""
        if self.matches(event):
            return "matched"
        if self.raise_on_exception and event.is_fatal_exception:
            return "job_exception"
        return None

    def judge_eventlog(self, events: Iterable[JobEvent], complete: bool) -> WaitResult | None:
        """Apply the wait to events read so far; ``complete`` when the eventlog has ended."""
        for event in events:
            verdict = self.judge(event)
            if verdict is not None:
                return WaitResult(verdict, event)
        return WaitResult("eventlog_ended", None) if complete else None

    def describe(self) -> str:
        """``event='start'`` (with its context match), for messages."""
        text = f"event={self.event!r}"
        if self.match_context:
            text += " with context " + _compact(dict(self.match_context))
        return text


@dataclass(frozen=True)
class WaitResult:
    """How a wait ended: the matching event, the fatal exception, or the eventlog's end."""

    verdict: Verdict
    event: JobEvent | None
