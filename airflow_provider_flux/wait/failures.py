"""The error a failed wait (a trigger event payload) fails its task with."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow_provider_flux.exceptions import (
    FluxConnectionFailedError,
    FluxEventNeverHappenedError,
    FluxInvalidWaitError,
    FluxJobExceptionError,
    FluxJobNotFoundError,
    FluxJobsFailedError,
)
from airflow_provider_flux.version_compat import AirflowTaskTimeout
from airflow_provider_flux.wait.outcome import (
    REASON_CONNECTION,
    REASON_EVENTLOG_ENDED,
    REASON_INVALID,
    REASON_JOB_EXCEPTION,
    REASON_JOBS_FAILED,
    REASON_TIMED_OUT,
)


def raise_for_failure(event: Mapping[str, Any]) -> None:
    """Turn a failed wait (a trigger event payload) into the error the task fails with."""
    reason, message, jobid = event.get("reason"), event.get("message", ""), event.get("jobid")
    if reason == REASON_JOB_EXCEPTION:
        raise FluxJobExceptionError(message, int(jobid or 0), dict(event.get("event") or {}))
    if reason == REASON_JOBS_FAILED:
        raise FluxJobsFailedError(message, list(event.get("jobs") or []))
    if reason == REASON_EVENTLOG_ENDED:
        raise FluxEventNeverHappenedError(message)
    if reason == REASON_CONNECTION:
        raise FluxConnectionFailedError(message)
    if reason == REASON_TIMED_OUT:
        raise AirflowTaskTimeout(message)
    if reason == REASON_INVALID:
        raise FluxInvalidWaitError(message)
    raise FluxJobNotFoundError(message)
