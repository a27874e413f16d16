"""One event of one job of an instance, and the batches the sources give them in."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from airflow_provider_flux.job.event import JobEvent
from airflow_provider_flux.job.jobid import format_jobid
from airflow_provider_flux.jobspec import job_name, job_queue

SOURCE_JOURNAL = "journal"
SOURCE_JOB_LIST = "job-list"

# (timestamp, job ID, order among the job's events of that timestamp): sorts events.
Position = tuple[float, int, int]
# What tells an event from every other: its job, name and timestamp.
EventKey = tuple[int, str, float]


@dataclass(frozen=True)
class JobSummary:
    """What identifies a job for filters: its name, queue and owner.

    :param name: ``attributes.system.job.name``, else its command's basename.
    :param queue: the queue it was submitted to, if any.
    :param userid: the user who submitted it.
    """

    name: str | None = None
    queue: str | None = None
    userid: int | None = None

    @classmethod
    def from_jobspec(cls, jobspec: Mapping[str, Any] | None, userid: int | None) -> JobSummary:
        if not jobspec:
            return cls(userid=userid)
        return cls(job_name(jobspec), job_queue(jobspec), userid)


@dataclass(frozen=True)
class InstanceEvent:
    """One event of one job of the instance.

    :param jobid: the job.
    :param event: the event, as in the job's eventlog.
    :param job: the job's name, queue and owner.
    :param source: :data:`SOURCE_JOURNAL` or :data:`SOURCE_JOB_LIST`.
    :param order: ranks events of one job that share a timestamp (job-list's).
    """

    jobid: int
    event: JobEvent
    job: JobSummary
    source: str = SOURCE_JOURNAL
    order: int = 0

    @property
    def position(self) -> Position:
        """Where this event stands among all events of the instance (nearly: see the
        module's notes)."""
        return (self.event.timestamp, self.jobid, self.order)

    @property
    def key(self) -> EventKey:
        """What tells this event from every other: its job, name and timestamp."""
        return (self.jobid, self.event.name, self.event.timestamp)

    def to_payload(self) -> dict[str, Any]:
        """JSON-friendly form: a trigger event's payload, an asset event's extra."""
        return {
            "jobid": self.jobid,
            "job": format_jobid(self.jobid),
            "name": self.job.name,
            "queue": self.job.queue,
            "userid": self.job.userid,
            "event": self.event.to_dict(),
            "source": self.source,
        }


@dataclass(frozen=True)
class EventBatch:
    """Events in the order the source gave them; a source's first batch is its history.

    :param events: the events.
    :param history: every event the source knew of when it (re)started, by timestamp.
    """

    events: tuple[InstanceEvent, ...]
    history: bool = False
