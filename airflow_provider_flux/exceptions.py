"""Errors a Flux task fails with. A job's own failure is not fixed by a retry, so those
are ``AirflowFailException``: no retry, and ``soft_fail`` turns them into a skip."""

from __future__ import annotations

from typing import Any

from airflow_provider_flux.version_compat import AirflowException, AirflowFailException


class FluxJobExceptionError(AirflowFailException):
    """A fatal job exception came before the awaited event.

    :ivar jobid: the job ID.
    :ivar type: the exception type (``cancel``, ``timeout``, ``exec``, ``dependency``, ...).
    :ivar note: the exception's note.
    :ivar severity: 0 for a fatal exception.
    """

    def __init__(self, message: str, jobid: int, event: dict[str, Any]) -> None:
        super().__init__(message)
        context = event.get("context", {})
        self.jobid = jobid
        self.type = context.get("type")
        self.note = context.get("note")
        self.severity = context.get("severity")
        self.timestamp = event.get("timestamp")


class FluxJobFailedError(AirflowFailException):
    """The job ran and exited with a non-zero status, or was killed by a signal.

    :ivar jobid: the job ID.
    :ivar exit_code: its exit code, when it exited.
    :ivar signal: the signal that killed it, when one did.
    """

    def __init__(self, message: str, jobid: int, exit_code: int | None, signal: int | None):
        super().__init__(message)
        self.jobid = jobid
        self.exit_code = exit_code
        self.signal = signal


class FluxJobsFailedError(AirflowFailException):
    """A wait on many jobs failed: more of them failed than it allows, or too few can
    still match.

    :ivar jobs: each job's outcome, in order (``jobid``, ``outcome``, ``event``, ``message``).
    """

    def __init__(self, message: str, jobs: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.jobs = jobs


class FluxEventNeverHappenedError(AirflowFailException):
    """The job's eventlog ended without the awaited event."""


class FluxJobNotFoundError(AirflowFailException):
    """The job, or its eventlog, does not exist, or is not the caller's to read."""


class FluxInvalidWaitError(AirflowFailException, ValueError):
    """The task's arguments do not describe a wait Flux can serve (a retry would not help)."""


class FluxConnectionFailedError(AirflowException):
    """The Flux instance could not be reached; a retry may succeed."""


class FluxFunctionError(AirflowException):
    """A ``@task.flux`` function raised (its traceback is in the task log). Retried as
    any error of a task's own code is.

    :ivar jobid: the job ID.
    :ivar type: the exception's class name.
    :ivar rank: the rank of the task that raised it.
    """

    def __init__(self, message: str, jobid: int, type_: str | None, rank: int | None) -> None:
        super().__init__(message)
        self.jobid = jobid
        self.type = type_
        self.rank = rank
