"""What a wait on Flux jobs means: its arguments, the event-wait rule of
``flux job wait-event``, the rule of a wait on many jobs, how a wait ended (the
outcome protocol of trigger events) and the task error each outcome becomes."""

from airflow_provider_flux.wait.arguments import WaitArguments
from airflow_provider_flux.wait.ensemble import (
    WAIT_FOR_ALL,
    WAIT_FOR_ANY,
    EnsembleRule,
    ensemble_payload,
    ensemble_result,
)
from airflow_provider_flux.wait.failures import raise_for_failure
from airflow_provider_flux.wait.job_watch import wait_on_job
from airflow_provider_flux.wait.outcome import (
    REASON_CONNECTION,
    REASON_ERROR,
    REASON_EVENTLOG_ENDED,
    REASON_INVALID,
    REASON_JOB_EXCEPTION,
    REASON_JOBS_FAILED,
    REASON_NOT_FOUND,
    REASON_PERMISSION,
    REASON_TIMED_OUT,
    STATUS_START_IN_WORKER,
    JobOutcome,
    job_event_result,
    outcome_of,
)
from airflow_provider_flux.wait.spec import EventWaitSpec, WaitResult, resolve_eventlog

__all__ = [
    "REASON_CONNECTION",
    "REASON_ERROR",
    "REASON_EVENTLOG_ENDED",
    "REASON_INVALID",
    "REASON_JOBS_FAILED",
    "REASON_JOB_EXCEPTION",
    "REASON_NOT_FOUND",
    "REASON_PERMISSION",
    "REASON_TIMED_OUT",
    "STATUS_START_IN_WORKER",
    "WAIT_FOR_ALL",
    "WAIT_FOR_ANY",
    "EnsembleRule",
    "EventWaitSpec",
    "JobOutcome",
    "WaitArguments",
    "WaitResult",
    "ensemble_payload",
    "ensemble_result",
    "job_event_result",
    "outcome_of",
    "raise_for_failure",
    "resolve_eventlog",
    "wait_on_job",
]
