"""How a wait ended, as the triggers tell it (the ``reason`` of a trigger event
payload) and as the poking sensors and the operator read it."""

from __future__ import annotations

import errno
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from airflow_provider_flux.aio.errors import (
    CONNECTION_ERRNOS,
    FluxConnectionError,
    FluxConnectionLost,
    FluxWatchError,
)
from airflow_provider_flux.job.event import JobEvent
from airflow_provider_flux.job.jobid import format_jobid
from airflow_provider_flux.job.limits import shorten
from airflow_provider_flux.wait.spec import EventWaitSpec, WaitResult

# Why a wait failed, as carried in the trigger event's ``reason``.
REASON_JOB_EXCEPTION = "job_exception"
REASON_EVENTLOG_ENDED = "eventlog_ended"
REASON_NOT_FOUND = "not_found"
REASON_PERMISSION = "permission"
REASON_CONNECTION = "connection"
REASON_ERROR = "error"
# A wait on many jobs failed: more of them failed than it tolerates.
REASON_JOBS_FAILED = "jobs_failed"
REASON_TIMED_OUT = "timed_out"
# The wait's arguments (as rendered in the triggerer) are not a valid wait.
REASON_INVALID = "invalid"

# Characters of an exception's note carried in a payload, a message or an XCom.
NOTE_LENGTH = 200

# The ``status`` of an event that sends a task started in the triggerer to a worker,
# to start there: the trigger did not get what it needs to wait.
STATUS_START_IN_WORKER = "start_in_worker"


@dataclass(frozen=True)
class JobOutcome:
    """How the wait on one job ended.

    :ivar reason: None when the event happened, else why not (a ``REASON_*``).
    :ivar event: the matching event, or the fatal exception.
    :ivar message: what happened, naming the job, for logs and errors.
    :ivar errno: the errno of a failed watch (``ENODATA`` when the eventlog ended).
    """

    reason: str | None
    event: JobEvent | None
    message: str
    errno: int | None = None

    def event_dict(self) -> dict[str, Any] | None:
        """The event, JSON-friendly, with an exception's note cut to ``NOTE_LENGTH``."""
        if self.event is None:
            return None
        event = self.event.to_dict()
        note = event["context"].get("note")
        if isinstance(note, str) and len(note) > NOTE_LENGTH:
            event["context"] = {**event["context"], "note": shorten(note, NOTE_LENGTH)}
        return event


def outcome_of(spec: EventWaitSpec, jobid: int, eventlog: str, result: WaitResult) -> JobOutcome:
    """The outcome, and its message, of a job whose wait has a verdict."""
    job = format_jobid(jobid)
    if result.verdict == "matched":
        return JobOutcome(None, result.event, f"job {job}: {spec.describe()} happened")
    if result.verdict == "job_exception":
        assert result.event is not None
        ctx = result.event.context
        return JobOutcome(
            REASON_JOB_EXCEPTION,
            result.event,
            f"job {job}: fatal exception type={ctx.get('type')} before "
            f"{spec.describe()}: {shorten(str(ctx.get('note') or '(no note)'), NOTE_LENGTH)}",
        )
    return JobOutcome(
        REASON_EVENTLOG_ENDED,
        None,
        f"job {job}: eventlog ended before {spec.describe()} (eventlog {eventlog!r})",
        errno.ENODATA,
    )


def failed_watch_outcome(err: FluxWatchError) -> JobOutcome:
    """The outcome of a job whose watch failed (the job or its eventlog cannot be
    read, or the instance was lost)."""
    errnum = err.errno
    if isinstance(err, (FluxConnectionError, FluxConnectionLost)) or errnum in CONNECTION_ERRNOS:
        reason = REASON_CONNECTION
    elif errnum == errno.ENOENT:
        reason = REASON_NOT_FOUND
    elif errnum == errno.EPERM:
        reason = REASON_PERMISSION
    else:
        reason = REASON_ERROR
    return JobOutcome(reason, None, str(err.strerror), errnum)


def job_event_result(payload: Mapping[str, Any]) -> dict[str, Any]:
    """What a successful wait on one job returns (the task's XCom): the event's
    ``name``, ``timestamp`` and ``context``, with ``jobid`` and ``job`` (F58)."""
    return {**payload["event"], "jobid": payload["jobid"], "job": payload["job"]}
