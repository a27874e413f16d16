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
batch, then batches of new events, each once, nearly in order (see
:mod:`airflow_provider_flux.instance_events.frontier`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from contextlib import aclosing
from typing import Any

from airflow_provider_flux.aio.errors import (
    FluxConnectionError,
    FluxConnectionLost,
    FluxPermissionError,
)
from airflow_provider_flux.aio.journal import JournalResponse, journal, list_jobs
from airflow_provider_flux.aio.watch import Reconnect
from airflow_provider_flux.instance_events.frontier import LATE_EVENT_SECONDS, Frontier
from airflow_provider_flux.instance_events.model import (
    SOURCE_JOB_LIST,
    SOURCE_JOURNAL,
    EventBatch,
    InstanceEvent,
    JobSummary,
    Position,
)
from airflow_provider_flux.job.event import JobEvent

log = logging.getLogger(__name__)

# A history at least this big is sorted in a thread.
SORT_OFF_LOOP_EVENTS = 20_000

# What job-list is asked for when polling.
JOB_LIST_ATTRS = (
    "userid", "name", "queue", "state", "t_submit", "t_run", "t_cleanup", "t_inactive",
    "waitstatus", "exception_occurred", "exception_type", "exception_severity", "exception_note",
)  # fmt: skip
# A lost connection is retried without end; this says how long to wait in between.
RECONNECT = Reconnect(initial_delay=0.5, max_delay=30.0)


class JournalReader:
    """Turns journal responses into batches: the backlog sorted into one history
    batch at the sentinel, then one batch per live response."""

    def __init__(self) -> None:
        self._jobs: dict[int, JobSummary] = {}
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

    def _job(self, response: JournalResponse) -> JobSummary:
        job = self._jobs.get(response.jobid)
        if job is None or response.jobspec is not None:
            userid = next(
                (e.context.get("userid") for e in response.events if e.name == "submit"),
                job.userid if job else None,
            )
            job = JobSummary.from_jobspec(response.jobspec, None if userid is None else int(userid))
            self._jobs[response.jobid] = job
        return job


def job_list_events(entry: Mapping[str, Any]) -> list[InstanceEvent]:
    """The events a job-list entry implies, as far as job-list knows them."""
    jobid = int(entry["id"])
    userid = entry.get("userid")
    job = JobSummary(entry.get("name"), entry.get("queue"), None if userid is None else int(userid))

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


async def _list_job_events(
    uri: str | None, frontier: Frontier | None, userid: int | None
) -> list[InstanceEvent]:
    """The events job-list shows of ``userid``'s jobs (None: every user's) that are
    active, or ended within the window before the ``frontier`` (no frontier: before
    now; a reader without one fires only for what happens from now on), by timestamp."""
    newest = time.time() if frontier is None else frontier.newest
    payload: dict[str, Any] = {
        "max_entries": 0,
        "attrs": list(JOB_LIST_ATTRS),
        "since": max(0.0, newest - LATE_EVENT_SECONDS),
    }
    if userid is not None:
        payload["constraint"] = {"userid": [userid]}
    entries = await list_jobs(payload, uri)
    events = [event for entry in entries for event in job_list_events(entry)]
    return list((await by_timestamp(EventBatch(tuple(events)))).events)


async def instance_history(
    uri: str | None, after: Frontier | None, userid: int | None = None
) -> EventBatch:
    """One look at the instance: the events it still knows (from the journal, else
    from job-list: then those of ``userid``'s jobs not behind ``after``), as a history
    batch."""
    try:
        async with aclosing(journal(uri, full=True)) as responses:
            reader = JournalReader()
            async for response in responses:
                batch = reader.feed(response)
                if batch is not None:
                    return await by_timestamp(batch)
    except FluxPermissionError:
        pass
    return EventBatch(tuple(await _list_job_events(uri, after, userid)), history=True)


async def instance_events(
    uri: str | None, *, poll_interval: float, userid: int | None = None
) -> AsyncGenerator[EventBatch]:
    """The instance's events for as long as the caller reads: its history first, then
    new events as they happen, each once. The journal when it answers (every user's
    jobs), else job-list polled every ``poll_interval`` seconds, asked only for
    ``userid``'s jobs (None: every user's). A lost connection is retried without end;
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
                async for batch in _job_list_batches(uri, poll_interval, userid):
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


async def _job_list_batches(
    uri: str | None, poll_interval: float, userid: int | None
) -> AsyncIterator[EventBatch]:
    """The first poll as history, then what each poll shows that the ones before did not."""
    frontier: Frontier | None = None
    while True:
        started = time.monotonic()
        events = await _list_job_events(uri, frontier, userid)
        first = frontier is None
        frontier = frontier or Frontier()
        new = [item for item in events if frontier.is_new(item)]
        for item in new:
            frontier.advance(item)
        frontier.prune()
        if first or new:
            yield EventBatch(tuple(new), history=first)
        await asyncio.sleep(max(0.0, poll_interval - (time.monotonic() - started)))
