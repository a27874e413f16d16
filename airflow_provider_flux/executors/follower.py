"""The executor's Flux side: a thread of its own with an asyncio loop, which owns every
Flux handle the executor opens, so that the scheduler's loop never waits on Flux.

The scheduler's thread hands it work (:meth:`JobFollower.submit`, :meth:`follow`,
:meth:`cancel`, :meth:`call`); it follows every job of the instance in one stream
(:func:`~airflow_provider_flux.instance_events.sources.instance_events`: the journal
for the instance owner, else one job-list poll for all the user's jobs) and puts what
happened to the executor's jobs in a queue that :meth:`drain` empties on each
heartbeat.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import json
import logging
import queue
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any, TypeVar

from airflow_provider_flux.aio.errors import FluxConnectionError
from airflow_provider_flux.aio.journal import list_jobs, queue_status
from airflow_provider_flux.aio.watch import Reconnect, cancel_job, submit_job
from airflow_provider_flux.executors.workload_job import NAME_PREFIX
from airflow_provider_flux.instance_events.sources import instance_events
from airflow_provider_flux.job.ending import JobEnding
from airflow_provider_flux.job.event import JobEvent
from airflow_provider_flux.job.jobid import format_jobid

log = logging.getLogger(__name__)

T = TypeVar("T")

# A submit that could not reach Flux is tried again this often, then the task fails.
SUBMIT_ATTEMPTS = 5
SUBMIT_RETRY = Reconnect(initial_delay=1.0, max_delay=30.0)
# Ended jobs of the executor's that nobody followed yet, kept for a scheduler that
# adopts them (or a submit whose answer came after the job's events): the newest.
KEPT_ENDED_JOBS = 10_000
# Seconds before following the jobs again after an error no reconnect mends.
FOLLOW_AGAIN = 5.0
# job-list's names for the states of a job that has not started, and their numbers.
NOT_STARTED_STATES = ["depend", "priority", "sched"]
STATE_DEPEND, STATE_PRIORITY = 2, 4


@dataclass(frozen=True)
class Submitted:
    """Flux accepted the job of a submission."""

    key: Hashable
    serial: int
    jobid: int


@dataclass(frozen=True)
class SubmitFailed:
    """A submission's job could not be submitted."""

    key: Hashable
    serial: int
    reason: str


@dataclass(frozen=True)
class JobEnded:
    """A followed job is over: ``failure`` says what went wrong that the task could not
    report itself (None: it ran and exited 0)."""

    key: Hashable
    serial: int
    jobid: int
    failure: str | None


@dataclass(frozen=True)
class JobPending:
    """Why a followed job waits in Flux's queue (its ``sched.reason_pending``)."""

    key: Hashable
    serial: int
    jobid: int
    reason: str


Update = Submitted | SubmitFailed | JobEnded | JobPending


@dataclass
class _Followed:
    key: Hashable
    serial: int
    events: list[JobEvent] = field(default_factory=list)
    reason_pending: str | None = None


def job_failure(jobid: int, events: Sequence[JobEvent]) -> str | None:
    """What went wrong with an ended job, in words (None: it ran and exited 0)."""
    failure = JobEnding.from_events(events).failure()
    if failure is None:
        return None
    ran = "" if any(event.name == "start" for event in events) else " before it started"
    return f"Flux job {format_jobid(jobid)} ended{ran}: {failure}"


class JobFollower:
    """Submits, follows and cancels the executor's jobs on one Flux instance.

    :param uri: the instance.
    :param userid: the executor's Flux user (job-list is asked for its jobs only).
    :param poll_interval: seconds between job-list polls, when the journal is not
        readable.
    :param pending_check_interval: seconds between looks at why jobs wait.
    """

    def __init__(
        self,
        uri: str | None,
        *,
        userid: int | None,
        poll_interval: float,
        pending_check_interval: float,
    ) -> None:
        self.uri = uri
        self._userid = userid
        self._poll_interval = poll_interval
        self._pending_check_interval = pending_check_interval
        self._updates: queue.SimpleQueue[Update] = queue.SimpleQueue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopping: asyncio.Event | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        # Used in the follower's thread only.
        self._followed: dict[int, _Followed] = {}
        self._unclaimed: dict[int, list[JobEvent]] = {}
        self._ended: OrderedDict[int, list[JobEvent]] = OrderedDict()

    # -- the scheduler's side ------------------------------------------------------

    def start(self) -> None:
        """Start the thread and its loop."""
        ready = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(ready,), name="flux-executor", daemon=True
        )
        self._thread.start()
        ready.wait()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop following (the jobs keep running) and close the thread's handles."""
        if self._loop is None or self._thread is None or self._stopping is None:
            return
        self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(timeout)

    def drain(self) -> list[Update]:
        """What happened since the last call."""
        updates: list[Update] = []
        while True:
            try:
                updates.append(self._updates.get_nowait())
            except queue.Empty:
                return updates

    def submit(self, key: Hashable, serial: int, jobspec: Mapping[str, Any]) -> None:
        """Submit a job for ``key``'s submission ``serial``; :class:`Submitted` or
        :class:`SubmitFailed` says how it went, then :class:`JobEnded`."""
        text = json.dumps(jobspec)
        self._soon(lambda: self._submit(key, serial, text))

    def follow(
        self, jobid: int, key: Hashable, serial: int, events: Sequence[JobEvent] = ()
    ) -> None:
        """Follow a job submitted earlier (by a scheduler before this one), whose
        eventlog so far is ``events``."""
        self._threadsafe(self._claim, jobid, key, serial, tuple(events))

    def forget(self, jobid: int) -> None:
        """Stop following a job: nothing more is said of it."""
        self._threadsafe(self._followed.pop, jobid, None)

    def cancel(self, jobid: int, reason: str) -> None:
        """Cancel a job and forget it; a failure is logged."""
        self.forget(jobid)
        self._soon(lambda: self._cancel(jobid, reason))

    def call(self, make: Callable[[], Awaitable[T]], timeout: float) -> T:
        """Run a coroutine on the thread's loop and wait for its result."""
        if self._loop is None:
            raise RuntimeError("the follower is not started")
        future = asyncio.run_coroutine_threadsafe(_awaited(make), self._loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"Flux did not answer within {timeout:g}s") from None

    # -- the follower's thread -----------------------------------------------------

    def _threadsafe(self, function: Callable[..., Any], *args: Any) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(function, *args)

    def _soon(self, make: Callable[[], Awaitable[None]]) -> None:
        self._threadsafe(self._spawn, make)

    def _spawn(self, make: Callable[[], Awaitable[None]]) -> None:
        task = asyncio.ensure_future(make())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _run(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main(ready))
        finally:
            loop.close()

    async def _main(self, ready: threading.Event) -> None:
        self._stopping = asyncio.Event()
        ready.set()
        self._spawn(self._follow)
        self._spawn(self._check_pending)
        await self._stopping.wait()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _submit(self, key: Hashable, serial: int, jobspec: str) -> None:
        attempt = 0
        while True:
            try:
                jobid = await submit_job(jobspec, uri=self.uri)
                break
            except OSError as err:
                # Not sent (no connection), or refused unread by a broker not yet online:
                # trying again cannot run the task twice.
                unsent = isinstance(err, FluxConnectionError) or err.errno == errno.EAGAIN
                attempt += 1
                if not unsent or attempt >= SUBMIT_ATTEMPTS:
                    reason = str(err) if unsent else f"Flux refused the job: {err.strerror or err}"
                    self._updates.put(SubmitFailed(key, serial, reason))
                    return
                await asyncio.sleep(SUBMIT_RETRY.delay(attempt))
        self._updates.put(Submitted(key, serial, jobid))
        self._claim(jobid, key, serial, ())

    async def _cancel(self, jobid: int, reason: str) -> None:
        try:
            await cancel_job(jobid, reason, uri=self.uri)
        except OSError as err:
            log.warning("Could not cancel Flux job %s: %s", format_jobid(jobid), err)

    def _claim(self, jobid: int, key: Hashable, serial: int, events: tuple[JobEvent, ...]) -> None:
        followed = self._followed[jobid] = _Followed(key, serial)
        seen = self._ended.pop(jobid, None) or self._unclaimed.pop(jobid, [])
        for event in sorted([*events, *seen], key=lambda event: event.timestamp):
            if jobid in self._followed:
                self._seen(jobid, followed, event)

    async def _follow(self) -> None:
        while True:
            # A lost connection is retried inside; an error no reconnect mends must not
            # leave the tasks' jobs unfollowed: follow again, from the history.
            try:
                await self._follow_once()
            except OSError as err:
                log.error("Following Flux's jobs failed: %s; again in %gs", err, FOLLOW_AGAIN)
                await asyncio.sleep(FOLLOW_AGAIN)

    async def _follow_once(self) -> None:
        stream = instance_events(self.uri, poll_interval=self._poll_interval, userid=self._userid)
        async with aclosing(stream) as batches:
            async for batch in batches:
                for item in batch.events:
                    followed = self._followed.get(item.jobid)
                    if followed is not None:
                        self._seen(item.jobid, followed, item.event)
                    elif (item.job.name or "").startswith(NAME_PREFIX):
                        self._keep_unclaimed(item.jobid, item.event)

    def _seen(self, jobid: int, followed: _Followed, event: JobEvent) -> None:
        if any(
            (event.name, event.timestamp) == (seen.name, seen.timestamp) for seen in followed.events
        ):
            return  # a reconnect's history repeats what was seen
        followed.events.append(event)
        if event.name == "clean":
            del self._followed[jobid]
            failure = job_failure(jobid, followed.events)
            self._updates.put(JobEnded(followed.key, followed.serial, jobid, failure))

    def _keep_unclaimed(self, jobid: int, event: JobEvent) -> None:
        events = self._unclaimed.setdefault(jobid, [])
        events.append(event)
        if event.name == "clean":
            self._ended[jobid] = self._unclaimed.pop(jobid)
            while len(self._ended) > KEPT_ENDED_JOBS:
                self._ended.popitem(last=False)

    async def _check_pending(self) -> None:
        """Every while, one job-list call for the user's jobs that have not started:
        why each waits, when that changed."""
        while True:
            await asyncio.sleep(self._pending_check_interval)
            if not self._followed:
                continue
            constraint: dict[str, Any] = {"states": NOT_STARTED_STATES}
            if self._userid is not None:
                constraint = {"and": [constraint, {"userid": [self._userid]}]}
            attrs = ["annotations", "state", "urgency"]
            payload = {"max_entries": 0, "attrs": attrs, "constraint": constraint}
            try:
                entries = await list_jobs(payload, self.uri)
                stopped = await self._scheduling_stopped() if entries else None
            except OSError as err:
                log.debug("Could not ask Flux why jobs wait: %s", err)
                continue
            for entry in entries:
                followed = self._followed.get(int(entry["id"]))
                reason = why_pending(entry, stopped)
                if followed is not None and reason != followed.reason_pending:
                    followed.reason_pending = reason
                    update = JobPending(followed.key, followed.serial, int(entry["id"]), reason)
                    self._updates.put(update)

    async def _scheduling_stopped(self) -> str | None:
        """Why Flux's scheduling is stopped (``flux queue stop``), if it is."""
        try:
            status = await queue_status(self.uri)
        except OSError:  # several named queues, or an instance that does not say
            return None
        if status.get("start", True):
            return None
        return str(status.get("stop_reason") or "no reason given")


def why_pending(entry: Mapping[str, Any], scheduling_stopped: str | None) -> str:
    """Why a job that has not started waits, in words: the scheduler's own reason
    (``sched.reason_pending``, as Fluxion gives it) when there is one."""
    sched = (entry.get("annotations") or {}).get("sched") or {}
    reason = sched.get("reason_pending") if isinstance(sched, Mapping) else None
    if reason:
        return str(reason)
    if entry.get("urgency") == 0:
        return "held (urgency 0)"
    state = entry.get("state")
    if state == STATE_DEPEND:
        return "waits for its dependencies"
    if state == STATE_PRIORITY:
        return "waits for its priority"
    if scheduling_stopped is not None:
        return f"Flux's scheduling is stopped: {scheduling_stopped}"
    return "waits for resources"


async def _awaited(make: Callable[[], Awaitable[T]]) -> T:
    return await make()
