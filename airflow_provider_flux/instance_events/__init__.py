"""Events of every job of a Flux instance: what one is, the sources that give them
(the job-manager journal, job-list), how far a reader got, and which ones a
watcher wants."""

from airflow_provider_flux.instance_events.filter import JobEventFilter
from airflow_provider_flux.instance_events.frontier import LATE_EVENT_SECONDS, Frontier
from airflow_provider_flux.instance_events.model import (
    SOURCE_JOB_LIST,
    SOURCE_JOURNAL,
    EventBatch,
    InstanceEvent,
    JobSummary,
)
from airflow_provider_flux.instance_events.sources import (
    JournalReader,
    instance_events,
    instance_history,
    job_list_events,
)

__all__ = [
    "LATE_EVENT_SECONDS",
    "SOURCE_JOB_LIST",
    "SOURCE_JOURNAL",
    "EventBatch",
    "Frontier",
    "InstanceEvent",
    "JobEventFilter",
    "JobSummary",
    "JournalReader",
    "instance_events",
    "instance_history",
    "job_list_events",
]
