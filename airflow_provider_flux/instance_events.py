"""Events of every job of a Flux instance, in order, from whichever source answers.

Two sources, with different rights (see ``flux.job.JournalConsumer`` and
``flux.job.JobList``):

- the job-manager journal, for the instance owner: every event of every job, with
  timestamps that are unique and increasing, first the history then live;
- job-list, for a guest on a multi-user instance (the journal answers EPERM):
  polled, each job's state turned into the events it implies (``submit``;
  ``alloc`` and ``start`` at its ``t_run``; ``finish`` with its wait status at
  ``t_cleanup``; once inactive, its most severe ``exception`` and ``clean`` at
  ``t_inactive``). job-list follows the journal in order, so each poll shows a
  prefix of the instance's history and the events come out in order too.

Both give :class:`EventBatch` es of :class:`InstanceEvent` s: first one history
batch, then batches of new events. An event's :attr:`~InstanceEvent.position`
orders it among all others, so a reader that saved the position of the last event
it handled can resume after it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

from airflow_provider_flux.aio import FluxConnectionError, FluxConnectionLost, FluxPermissionError
from airflow_provider_flux.aio.instance import JournalResponse, journal, list_jobs
from airflow_provider_flux.aio.watch import Reconnect
from airflow_provider_flux.events import JobEvent
from airflow_provider_flux.jobid import format_jobid
from airflow_provider_flux.jobspec import job_name, job_queue

log = logging.getLogger(__name__)

SOURCE_JOURNAL = "journal"
SOURCE_JOB_LIST = "job-list"

# (timestamp, job ID, order among the job's events of that timestamp)
Position = tuple[float, int, int]
# Before every event: where a reader that has seen nothing stands.
ORIGIN: Position = (0.0, 0, 0)

# What job-list is asked for when polling.
JOB_LIST_ATTRS = (
    "userid", "name", "queue", "state", "t_submit", "t_run", "t_cleanup", "t_inactive",
    "waitstatus", "exception_occurred", "exception_type", "exception_severity", "exception_note",
)  # fmt: skip
# Polls ask for jobs that ended up to this long before the last event seen, so that
# a job which ended in the same instant as it is never left out.
POLL_OVERLAP_SECONDS = 1.0
# A lost connection is retried without end, waiting at most this long in between.
RECONNECT = Reconnect(attempts=1_000_000, initial_delay=0.5, max_delay=30.0)


@dataclass(frozen=True)
class JobInfo:
    """What identifies a job for filters: its name, queue and owner.

    :param name: ``attributes.system.job.name``, else its command's basename.
    :param queue: the queue it was submitted to, if any.
    :param userid: the user who submitted it.
    """

    name: str | None = None
    queue: str | None = None
    userid: int | None = None

    @classmethod
    def from_jobspec(cls, jobspec: Mapping[str, Any] | None, userid: int | None) -> JobInfo:
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
    job: JobInfo
    source: str = SOURCE_JOURNAL
    order: int = 0

    @property
    def position(self) -> Position:
        """Where this event stands among all events of the instance."""
        return (self.event.timestamp, self.jobid, self.order)

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
    """Events in order; the first batch of a source is its history.

    :param events: the events, oldest first.
    :param history: this batch is everything the source knew when it started.
    :param covers_after: for history: it holds every event after this position
        (``None``: every event the instance still knows).
    :param watermark: for history: the newest position it covers.
    """

    events: tuple[InstanceEvent, ...]
    history: bool = False
    covers_after: Position | None = None
    watermark: Position = ORIGIN


class JournalReader:
    """Turns journal responses into batches: the backlog sorted into one history
    batch at the sentinel, then one batch per live response."""

    def __init__(self) -> None:
        self._jobs: dict[int, JobInfo] = {}
        self._backlog: list[InstanceEvent] = []
        self.live = False

    def feed(self, response: JournalResponse) -> EventBatch | None:
        """The batch ``response`` completes, if any."""
        if response.is_sentinel:
            self.live = True
            history = tuple(sorted(self._backlog, key=lambda e: e.position))
            self._backlog = []
            watermark = history[-1].position if history else ORIGIN
            return EventBatch(history, history=True, covers_after=None, watermark=watermark)
        job = self._job(response)
        events = tuple(InstanceEvent(response.jobid, event, job) for event in response.events)
        if any(event.name == "clean" for event in response.events):
            self._jobs.pop(response.jobid, None)  # its last event: forget it
        if not self.live:
            self._backlog.extend(events)
            return None
        return EventBatch(events) if events else None

    def _job(self, response: JournalResponse) -> JobInfo:
        job = self._jobs.get(response.jobid)
        if job is None or response.jobspec is not None:
            userid = next(
                (e.context.get("userid") for e in response.events if e.name == "submit"),
                job.userid if job else None,
            )
            job = JobInfo.from_jobspec(response.jobspec, None if userid is None else int(userid))
            self._jobs[response.jobid] = job
        return job


def job_list_events(entry: Mapping[str, Any]) -> list[InstanceEvent]:
    """The events a job-list entry implies, as far as job-list knows them."""
    jobid = int(entry["id"])
    userid = entry.get("userid")
    job = JobInfo(entry.get("name"), entry.get("queue"), None if userid is None else int(userid))

    def event(name: str, at: Any, order: int, **context: Any) -> InstanceEvent:
        return InstanceEvent(jobid, JobEvent(name, float(at), context), job, SOURCE_JOB_LIST, order)

    events = []
    if entry.get("t_submit"):
        events.append(event("submit", entry["t_submit"], 0, userid=job.userid))
    if entry.get("t_run"):
        events.append(event("alloc", entry["t_run"], 0))
        events.append(event("start", entry["t_run"], 1))
    if entry.get("t_cleanup") and entry.get("waitstatus") is not None:
        events.append(event("finish", entry["t_cleanup"], 0, status=int(entry["waitstatus"])))
    if entry.get("t_inactive"):
        if entry.get("exception_occurred"):
            events.append(
                event(
                    "exception", entry["t_inactive"], 0,
                    type=entry.get("exception_type"),
                    severity=entry.get("exception_severity"),
                    note=entry.get("exception_note") or "",
                )
            )  # fmt: skip
        events.append(event("clean", entry["t_inactive"], 1))
    return events


async def _poll_job_list(uri: str | None, after: Position) -> list[InstanceEvent]:
    """Every event job-list shows after ``after``, oldest first."""
    since = max(0.0, after[0] - POLL_OVERLAP_SECONDS)
    payload = {"max_entries": 0, "attrs": list(JOB_LIST_ATTRS), "since": since}
    entries = await list_jobs(payload, uri)
    events = [event for entry in entries for event in job_list_events(entry)]
    return sorted((e for e in events if e.position > after), key=lambda e: e.position)


@dataclass
class _SourceState:
    """Where a source is: what it saw last, and which one it is."""

    position: Position | None = None
    source: str | None = None
    history_done: bool = False


async def instance_history(uri: str | None, after: Position | None) -> EventBatch:
    """One look at the instance: every event after ``after`` that it still knows, as a
    history batch (from the journal, else from job-list), then nothing more."""
    try:
        async with aclosing(journal(uri, full=True)) as responses:
            reader = JournalReader()
            async for response in responses:
                batch = reader.feed(response)
                if batch is not None:
                    return _after(batch, after)
    except FluxPermissionError:
        pass
    events = await _poll_job_list(uri, after or ORIGIN)
    watermark = max([after or ORIGIN, *(e.position for e in events)])
    return EventBatch(tuple(events), history=True, covers_after=after, watermark=watermark)


def _after(batch: EventBatch, after: Position | None) -> EventBatch:
    if after is None:
        return batch
    events = tuple(e for e in batch.events if e.position > after)
    return EventBatch(events, True, batch.covers_after, max(batch.watermark, after))


async def instance_events(uri: str | None, *, poll_interval: float) -> AsyncGenerator[EventBatch]:
    """The instance's events for as long as the caller reads: its history first, then
    new events as they happen. The journal when it answers, else job-list polled
    every ``poll_interval`` seconds. A lost connection is retried without end, and
    resumes after the last event given (nothing twice, nothing skipped)."""
    state = _SourceState()
    attempt = 0
    while True:
        try:
            async for batch in _events_once(uri, poll_interval, state):
                attempt = 0
                yield batch
        except (FluxConnectionLost, FluxConnectionError) as err:
            attempt += 1
            delay = RECONNECT.delay(attempt)
            log.warning("%s; reading the instance's job events again in %.1fs", err.strerror, delay)
            await asyncio.sleep(delay)


async def _events_once(
    uri: str | None, poll_interval: float, state: _SourceState
) -> AsyncIterator[EventBatch]:
    if state.source in (None, SOURCE_JOURNAL):
        try:
            async for batch in _journal_batches(uri, state):
                yield batch
            return
        except FluxPermissionError as err:
            if state.source is None:
                log.info(
                    "%s: following the instance's jobs through job-list every %gs instead",
                    err.strerror, poll_interval,
                )  # fmt: skip
    state.source = SOURCE_JOB_LIST
    async for batch in _job_list_batches(uri, poll_interval, state):
        yield batch


async def _journal_batches(uri: str | None, state: _SourceState) -> AsyncIterator[EventBatch]:
    reader = JournalReader()
    async with aclosing(journal(uri, full=True)) as responses:
        async for response in responses:
            batch = reader.feed(response)
            if batch is None:
                continue
            state.source = SOURCE_JOURNAL
            if state.history_done:
                # After a reconnection: the new history repeats what was given.
                batch = _after(batch, state.position)
                batch = EventBatch(batch.events) if batch.history else batch
                if not batch.events:
                    continue
            state.history_done = True
            state.position = batch.events[-1].position if batch.events else batch.watermark
            yield batch


async def _job_list_batches(
    uri: str | None, poll_interval: float, state: _SourceState
) -> AsyncIterator[EventBatch]:
    while True:
        started = time.monotonic()
        events = await _poll_job_list(uri, state.position or ORIGIN)
        if not state.history_done:
            state.history_done = True
            watermark = events[-1].position if events else ORIGIN
            state.position = watermark
            yield EventBatch(tuple(events), history=True, covers_after=None, watermark=watermark)
        elif events:
            state.position = events[-1].position
            yield EventBatch(tuple(events))
        await asyncio.sleep(max(0.0, poll_interval - (time.monotonic() - started)))
