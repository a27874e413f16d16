"""What the provider's deferring tasks share: whether they defer by default, and the
error a failed wait (a trigger event payload) fails the task with."""

from __future__ import annotations

import os
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
from airflow_provider_flux.triggers.flux import (
    REASON_CONNECTION,
    REASON_EVENTLOG_ENDED,
    REASON_INVALID,
    REASON_JOB_EXCEPTION,
    REASON_JOBS_FAILED,
    REASON_TIMED_OUT,
)
from airflow_provider_flux.version_compat import AirflowTaskTimeout, conf


def default_deferrable() -> bool:
    """Deferrable unless ``[operators] default_deferrable`` is set to something else.

    Airflow's own default for that option is False; this provider's sensor exists to
    free worker slots, so it defers unless the deployment configured the option.
    """
    configured = conf.get("operators", "default_deferrable", fallback=None)
    if "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE" in os.environ or (
        configured is not None
        and configured != conf.get_default_value("operators", "default_deferrable")
    ):
        return conf.getboolean("operators", "default_deferrable")
    return True


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
