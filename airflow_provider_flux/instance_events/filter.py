"""Which job events of an instance a watcher wants: names, job, queue, user, outcome."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from airflow_provider_flux.instance_events.model import InstanceEvent
from airflow_provider_flux.job.ending import exit_code

# What a watcher gives as ``userid`` to see every user's jobs (the default is its own).
ANY_USER = "any"


def _names(value: str | Iterable[str], what: str) -> tuple[str, ...]:
    names = (value,) if isinstance(value, str) else tuple(value)
    if not names or not all(isinstance(n, str) and n for n in names):
        raise ValueError(f"{what} must be a non-empty name or list of names, not {value!r}")
    return names


def _ints(value: int | Iterable[int] | None, what: str) -> tuple[int, ...] | None:
    if value is None:
        return None
    codes = (value,) if isinstance(value, int) else tuple(value)
    if not codes or not all(isinstance(c, int) and not isinstance(c, bool) for c in codes):
        raise ValueError(f"{what} must be an integer or a non-empty list of them, not {value!r}")
    return codes


@dataclass(frozen=True)
class JobEventFilter:
    """A job event matches when every condition given holds.

    :param events: the event names (``submit``, ``start``, ``finish``, ``exception``,
        ``clean``, ...).
    :param job_name: a shell-style pattern (``sim-*``) for the job's name.
    :param queue: the queue the job was submitted to.
    :param userid: the user who submitted the job.
    :param exit_codes: for ``finish``: the job's exit code is one of these (a task
        killed by signal N exits 128+N).
    :param exception_types: for ``exception``: its type is one of these (``timeout``,
        ``cancel``, ...).
    :param exception_severity: for ``exception``: its severity is at most this
        (0: fatal exceptions only).
    """

    events: tuple[str, ...] = ("finish",)
    job_name: str | None = None
    queue: str | None = None
    userid: int | None = None
    exit_codes: tuple[int, ...] | None = None
    exception_types: tuple[str, ...] | None = None
    exception_severity: int | None = None

    @classmethod
    def from_arguments(
        cls,
        events: str | Iterable[str] = ("finish",),
        job_name: str | None = None,
        queue: str | None = None,
        userid: int | None = None,
        exit_codes: int | Iterable[int] | None = None,
        exception_types: str | Iterable[str] | None = None,
        exception_severity: int | None = None,
    ) -> JobEventFilter:
        """Check and normalize what a DAG author wrote; ``ValueError`` says what is wrong."""
        names = _names(events, "events")
        if exit_codes is not None and "finish" not in names:
            raise ValueError("exit_codes filters finish events: add 'finish' to events")
        has_exception_filter = exception_types is not None or exception_severity is not None
        if has_exception_filter and "exception" not in names:
            raise ValueError(
                "exception_types and exception_severity filter exception events: "
                "add 'exception' to events"
            )
        for value, what in ((job_name, "job_name"), (queue, "queue")):
            if value is not None and (not isinstance(value, str) or not value):
                raise ValueError(f"{what} must be a non-empty string, not {value!r}")
        for number, what in ((userid, "userid"), (exception_severity, "exception_severity")):
            if number is not None and (not isinstance(number, int) or number < 0):
                raise ValueError(f"{what} must be an integer >= 0, not {number!r}")
        types = None if exception_types is None else _names(exception_types, "exception_types")
        return cls(
            names, job_name, queue, userid, _ints(exit_codes, "exit_codes"), types,
            exception_severity,
        )  # fmt: skip

    def to_arguments(self) -> dict[str, Any]:
        """What :meth:`from_arguments` takes back: JSON-friendly, for ``serialize()``."""
        return {
            "events": list(self.events),
            "job_name": self.job_name,
            "queue": self.queue,
            "userid": self.userid,
            "exit_codes": None if self.exit_codes is None else list(self.exit_codes),
            "exception_types": None if self.exception_types is None else list(self.exception_types),
            "exception_severity": self.exception_severity,
        }

    def describe(self) -> str:
        """In words, for logs: ``finish of jobs named 'sim-*' with exit code 0``."""
        words = [" or ".join(self.events)]
        for value, what in (
            (self.job_name, "named {!r}"), (self.queue, "in queue {!r}"),
            (self.userid, "of user {}"),
        ):  # fmt: skip
            if value is not None:
                words.append(what.format(value))
        if self.exit_codes is not None:
            words.append("exit code " + " or ".join(map(str, self.exit_codes)))
        if self.exception_types is not None:
            words.append("exception " + " or ".join(self.exception_types))
        if self.exception_severity is not None:
            words.append(f"severity <= {self.exception_severity}")
        return ", ".join(words)

    def matches(self, item: InstanceEvent) -> bool:
        """Whether ``item`` is an event this filter wants."""
        event, job = item.event, item.job
        if event.name not in self.events:
            return False
        if self.job_name is not None and not fnmatch.fnmatchcase(job.name or "", self.job_name):
            return False
        if self.queue is not None and job.queue != self.queue:
            return False
        if self.userid is not None and job.userid != self.userid:
            return False
        if event.name == "finish" and self.exit_codes is not None:
            status = event.context.get("status")
            if not isinstance(status, int) or exit_code(status) not in self.exit_codes:
                return False
        if event.name == "exception":
            return self._exception_matches(event.context)
        return True

    def _exception_matches(self, context: Mapping[str, Any]) -> bool:
        if self.exception_types is not None and context.get("type") not in self.exception_types:
            return False
        if self.exception_severity is not None:
            severity = context.get("severity")
            return isinstance(severity, int) and severity <= self.exception_severity
        return True
