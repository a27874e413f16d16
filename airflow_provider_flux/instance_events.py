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
batch, then batches of new events, each once. Timestamps order them nearly, not
exactly: job-ingest stamps a ``submit`` before the job manager posts it, so other
jobs' events, stamped later, can come first (measured on flux-core 0.88.0 with two
jobs a few milliseconds apart). A reader that resumes after what it handled keeps
a :class:`Frontier`: the newest timestamp it saw, and which of the events stamped
up to :data:`LATE_EVENT_SECONDS` before it it has seen.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from contextlib import aclosing
from dataclasses import dataclass, field
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

# (timestamp, job ID, order among the job's events of that timestamp): sorts events.
Position = tuple[float, int, int]
# How much earlier than events that came before it an event may be stamped: a
# submit waits this long in job-ingest at most, or it may be taken as seen.
LATE_EVENT_SECONDS = 30.0
# A history at least this big is sorted in a thread.
SORT_OFF_LOOP_EVENTS = 20_000

# What job-list is asked for when polling.
JOB_LIST_ATTRS = (
    "userid", "name", "queue", "state", "t_submit", "t_run", "t_cleanup", "t_inactive",
    "waitstatus", "exception_occurred", "exception_type", "exception_severity", "exception_note",
)  # fmt: skip
# A lost connection is retried without end; this says how long to wait in between.
RECONNECT = Reconnect(initial_delay=0.5, max_delay=30.0)


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


EventKey = tuple[int, str, float]


@dataclass(frozen=True)
class EventBatch:
    """Events in the order the source gave them; a source's first batch is its history.

    :param events: the events.
    :param history: every event the source knew of when it (re)started, by timestamp.
    """

    events: tuple[InstanceEvent, ...]
    history: bool = False


@dataclass
class Frontier:
    """How far a reader got: the newest timestamp it saw, and the events stamped up to
    :data:`LATE_EVENT_SECONDS` before it that it has seen (of those it keeps).

    :param newest: the newest timestamp seen.
    :param recent: the keys of the events kept, stamped within the window, each with
        a time of the keeper's choosing (when it handed the event over, say).
    """

    newest: float = 0.0
    recent: dict[EventKey, float] = field(default_factory=dict)
    _pruned_at: float = 0.0

    def is_new(self, item: InstanceEvent) -> bool:
        """Not seen yet: stamped after the newest, or within the window and not kept."""
        stamp = item.event.timestamp
        if stamp > self.newest:
            return True
        return stamp > self.newest - LATE_EVENT_SECONDS and item.key not in self.recent

    def advance(self, item: InstanceEvent, keep: bool = True, when: float = 0.0) -> None:
        """``item`` is seen; ``keep`` it (at ``when``) to tell it apart within the window."""
        self.newest = max(self.newest, item.event.timestamp)
        if keep:
            self.recent[item.key] = when

    def prune(self) -> None:
        """Forget what the window has left behind (every quarter of a window at most:
        a burst calls this once per batch)."""
        if self.newest - self._pruned_at < LATE_EVENT_SECONDS / 4:
            return
        self._pruned_at = self.newest
        horizon = self.newest - LATE_EVENT_SECONDS
        self.recent = {key: when for key, when in self.recent.items() if key[2] > horizon}

    def to_json(self, newest: float | None = None, kept_by: float | None = None) -> dict[str, Any]:
        """JSON-friendly form; or the frontier as it was when it was at ``newest``,
        counting the events kept by ``kept_by`` only."""
        newest = self.newest if newest is None else newest
        horizon = newest - LATE_EVENT_SECONDS
        recent = [
            list(key)
            for key, when in self.recent.items()
            if horizon < key[2] <= newest and (kept_by is None or when <= kept_by)
        ]
        return {"newest": newest, "recent": sorted(recent)}

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> Frontier:
        recent = {(int(j), str(n), float(t)): 0.0 for j, n, t in value.get("recent", [])}
        return cls(float(value["newest"]), recent)


class JournalReader:
    """Turns journal responses into batches: the backlog sorted into one history
    batch at the sentinel, then one batch per live response."""

    def __init__(self) -> None:
        self._jobs: dict[int, JobInfo] = {}
        self._backlog: list[InstanceEvent] = []
        self.live = False

    def feed(self, response: JournalResponse) -> EventBatch | None:
        """The batch ``response`` completes, if any (the history is not sorted yet:
        :func:`by_timestamp` does it)."""
        if response.is_sentinel:
            self.live = True
            history, self._backlog = self._backlog, []
            return EventBatch(tuple(history), history=True)
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


async def by_timestamp(batch: EventBatch) -> EventBatch:
    """``batch`` with its events sorted by timestamp; a big one (the history of a busy
    instance) sorted in a thread, so that the loop is not held for long."""
    if len(batch.events) < SORT_OFF_LOOP_EVENTS:
        return EventBatch(tuple(sorted(batch.events, key=_position)), batch.history)
    events = await asyncio.to_thread(sorted, batch.events, key=_position)
    return EventBatch(tuple(events), batch.history)


def _position(item: InstanceEvent) -> Position:
    return item.position


async def _list_job_events(uri: str | None, frontier: Frontier | None) -> list[InstanceEvent]:
    """The events job-list shows of jobs active, or ended within the window before the
    ``frontier`` (all jobs it knows: ``None``), by timestamp."""
    since = 0.0 if frontier is None else max(0.0, frontier.newest - LATE_EVENT_SECONDS)
    payload = {"max_entries": 0, "attrs": list(JOB_LIST_ATTRS), "since": since}
    entries = await list_jobs(payload, uri)
    events = [event for entry in entries for event in job_list_events(entry)]
    return list((await by_timestamp(EventBatch(tuple(events)))).events)


async def instance_history(uri: str | None, after: Frontier | None) -> EventBatch:
    """One look at the instance: the events it still knows (from the journal, else
    from job-list: then those not behind ``after``), as a history batch."""
    try:
        async with aclosing(journal(uri, full=True)) as responses:
            reader = JournalReader()
            async for response in responses:
                batch = reader.feed(response)
                if batch is not None:
                    return await by_timestamp(batch)
    except FluxPermissionError:
        pass
    return EventBatch(tuple(await _list_job_events(uri, after)), history=True)


async def instance_events(uri: str | None, *, poll_interval: float) -> AsyncGenerator[EventBatch]:
    """The instance's events for as long as the caller reads: its history first, then
    new events as they happen, each once. The journal when it answers, else job-list
    polled every ``poll_interval`` seconds. A lost connection is retried without end;
    the journal then starts with its history again (a reader tells what it has seen
    with its :class:`Frontier`)."""
    source: str | None = None
    attempt = 0
    while True:
        try:
            if source in (None, SOURCE_JOURNAL):
                try:
                    async for batch in _journal_batches(uri):
                        source, attempt = SOURCE_JOURNAL, 0
                        yield batch
                except FluxPermissionError as err:
                    if source is not None:
                        raise
                    log.info(
                        "%s: following the instance's jobs through job-list every %gs instead",
                        err.strerror, poll_interval,
                    )  # fmt: skip
                    source = SOURCE_JOB_LIST
            if source == SOURCE_JOB_LIST:
                async for batch in _job_list_batches(uri, poll_interval):
                    attempt = 0
                    yield batch
        except (FluxConnectionLost, FluxConnectionError) as err:
            attempt += 1
            delay = RECONNECT.delay(attempt)
            log.warning("%s; reading the instance's job events again in %.1fs", err.strerror, delay)
            await asyncio.sleep(delay)


async def _journal_batches(uri: str | None) -> AsyncIterator[EventBatch]:
    reader = JournalReader()
    async with aclosing(journal(uri, full=True)) as responses:
        async for response in responses:
            batch = reader.feed(response)
            if batch is not None:
                yield await by_timestamp(batch) if batch.history else batch


async def _job_list_batches(uri: str | None, poll_interval: float) -> AsyncIterator[EventBatch]:
    """The first poll as history, then what each poll shows that the ones before did not."""
    frontier: Frontier | None = None
    while True:
        started = time.monotonic()
        events = await _list_job_events(uri, frontier)
        first = frontier is None
        frontier = frontier or Frontier()
        new = [item for item in events if frontier.is_new(item)]
        for item in new:
            frontier.advance(item)
        frontier.prune()
        if first or new:
            yield EventBatch(tuple(new), history=first)
        await asyncio.sleep(max(0.0, poll_interval - (time.monotonic() - started)))
