"""``FluxJobEventTrigger``: waits in the triggerer for an event of a Flux job."""

from __future__ import annotations

import asyncio
import errno
import json
import time
from abc import abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import aclosing, suppress
from dataclasses import dataclass
from typing import Any, Protocol

from airflow_provider_flux.aio import (
    FluxConnectionError,
    FluxConnectionLost,
    FluxWatchError,
    cancel_job,
    watch,
)
from airflow_provider_flux.aio.errors import CONNECTION_ERRNOS, ENDED_JOB_ERRNOS
from airflow_provider_flux.aio.watch import Reconnect
from airflow_provider_flux.event_wait import (
    WAIT_FOR_ALL,
    EnsembleRule,
    EventWaitSpec,
    WaitResult,
    resolve_eventlog,
)
from airflow_provider_flux.events import JobEvent
from airflow_provider_flux.hooks.flux import FluxHook
from airflow_provider_flux.job_output import DEFAULT_OUTPUT_LIMIT, OutputFollower, OutputProgress
from airflow_provider_flux.jobid import format_jobid, parse_jobid
from airflow_provider_flux.jobids import pack_jobids, parse_jobids
from airflow_provider_flux.version_compat import (
    TRIGGER_ON_KILL_SUPPORTED,
    BaseTrigger,
    TaskSuccessEvent,
    TriggerEvent,
)

# Why a wait failed, as carried in the trigger event's ``reason``.
REASON_JOB_EXCEPTION = "job_exception"
REASON_EVENTLOG_ENDED = "eventlog_ended"
REASON_NOT_FOUND = "not_found"
REASON_PERMISSION = "permission"
REASON_CONNECTION = "connection"
REASON_ERROR = "error"
# A wait on many jobs failed: more of them failed than it tolerates.
REASON_JOBS_FAILED = "jobs_failed"
REASON_TIMED_OUT = "timed_out"
# The wait's arguments (as rendered in the triggerer) are not a valid wait.
REASON_INVALID = "invalid"

# The ``status`` of an event that sends a task started in the triggerer to a worker,
# to start there: the trigger did not get what it needs to wait.
STATUS_START_IN_WORKER = "start_in_worker"

# After cancelling a job at its deadline, how long to wait for it to end (its
# output is complete then).
CANCEL_GRACE_SECONDS = 60.0

# How long ``on_kill`` may take to read the task's state and cancel the jobs: less
# than the triggerer gives it (``[triggerer] on_kill_timeout``, 30 s by default).
ON_KILL_SECONDS = 25.0

# A task state that could not be read (None is a state: that of a cleared task).
UNKNOWN_STATE = "<unknown>"

# How long a question to the triggerer's supervisor may take (it may be shutting down).
SUPERVISOR_TIMEOUT_SECONDS = 10.0

# The XCom a trigger that streams a job's output saves its progress in, so that a
# trigger re-created after a triggerer restart does not show the output again.
OUTPUT_PROGRESS_XCOM_KEY = "flux_output"

# Above this many jobs, a trigger's serialized form packs their IDs (jobids.pack_jobids).
PACK_JOBIDS_ABOVE = 16
# Failed jobs named in a message, at most.
FAILURES_SHOWN = 10


class CancelsJobsOnKill(BaseTrigger):
    """Cancel-on-kill for triggers that wait on jobs a task submitted.

    When a user kills, clears or marks the deferred task, Airflow 3.3 calls
    ``on_kill``; before 3.3 the triggerer calls only ``cleanup()``, whatever ended the
    trigger, so a trigger stopped before it fired makes the same decision there. The
    jobs are cancelled with ``cancel_reason`` unless the task is still deferred on
    them (the trigger is moving to another triggerer, apache/airflow#73454, or a
    triggerer is stopping) or its state cannot be read. A cleared task's new try that
    is deferred on other jobs (its own XCom ``jobid``) does not save them.

    It also keeps the ``deadline`` (a task's ``execution_timeout``, which Airflow does
    not enforce on deferred tasks in a way that reaches Flux): see :meth:`_watch_until`.
    """

    cancel_on_kill: bool
    cancel_reason: str | None
    deadline: float | None
    flux_conn_id: str
    _fired: bool

    @abstractmethod
    def _jobs_to_cancel(self) -> list[int]:
        """The jobs this trigger waits on."""

    async def on_kill(self) -> None:
        """Cancel the jobs when a user killed, cleared or marked the deferred task."""
        await finish_despite_cancels(self._cancel_jobs_if_task_stopped(), ON_KILL_SECONDS)

    async def cleanup(self) -> None:
        """Before Airflow 3.3, do what ``on_kill`` does, if the trigger had not fired."""
        if not TRIGGER_ON_KILL_SUPPORTED and not self._fired:
            await finish_despite_cancels(self._cancel_jobs_if_task_stopped(), ON_KILL_SECONDS)

    async def _cancel_jobs_if_task_stopped(self) -> None:
        if not self.cancel_on_kill:
            return
        jobids = self._jobs_to_cancel()
        jobs = _describe_jobs(jobids)
        state = await self.task_state()
        if state == UNKNOWN_STATE:
            self.log.info("%s left running: the task's state cannot be read", jobs)
            return
        if state == "deferred":
            waiting_on = await self.task_jobids()
            if waiting_on is None or set(waiting_on) == set(jobids):
                # Still deferred on these jobs: another triggerer goes on watching.
                self.log.info("%s left running: the task is still deferred on it", jobs)
                return
            # A new try of a cleared task waits on jobs of its own.
            state = f"cleared (its new try waits on {_describe_jobs(waiting_on)})"
        reason = self.cancel_reason or "the Airflow task was killed"
        self.log.info("task is %s: cancelling %s (%s)", state, jobs, reason)
        uri = await FluxHook(self.flux_conn_id).aget_uri()
        await cancel_jobs(jobids, reason, uri)

    async def _watch_until(
        self,
        watch: Callable[[], Awaitable[dict[str, Any]]],
        running: Callable[[], list[int]],
        uri: str | None,
    ) -> dict[str, Any] | list[int]:
        """The payload ``watch()`` comes to or, when the deadline comes first, the jobs
        it cancelled: those still ``running()``; ``watch()`` is then given
        ``CANCEL_GRACE_SECONDS`` more to see them end (their output is complete then)."""
        if self.deadline is None:
            return await watch()
        try:
            return await asyncio.wait_for(watch(), self.deadline - time.time())
        except asyncio.TimeoutError:
            pass
        jobids = running()
        reason = self.timeout_reason()
        self.log.warning("deadline reached, cancelling %s: %s", _describe_jobs(jobids), reason)
        try:
            await cancel_jobs(jobids, reason, uri)
            await asyncio.wait_for(watch(), CANCEL_GRACE_SECONDS)
        except (asyncio.TimeoutError, OSError) as err:
            self.log.warning("after the cancel: %s", err)
        return jobids

    def timeout_reason(self) -> str:
        """The note of the cancel at the deadline."""
        return self.cancel_reason or "the Airflow task timed out"

    async def task_state(self) -> str | None:
        """The task instance's live state (``UNKNOWN_STATE`` when it cannot be read)."""
        return await _task_state(self)

    async def task_jobids(self) -> list[int] | None:
        """The jobs the task's live try submitted: its XCom ``jobid`` (pushed by
        ``FluxSubmitJobOperator``; Airflow clears it when a new try starts), or None."""
        return await _task_jobids(self)


async def finish_despite_cancels(work: Awaitable[None], budget: float) -> None:
    """Run ``work`` to its end even if this task is cancelled meanwhile, for at most
    ``budget`` seconds (then ``work`` is cancelled and the cancel goes on).

    The triggerer cancels a trigger that a user stopped again at each of its syncs,
    even while the trigger's ``on_kill`` runs (Airflow 3.3.2): a cancel of a Flux job
    that waits on the task's state would be cut short by the next sync.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + budget
    task = asyncio.ensure_future(work)
    while True:
        try:
            await asyncio.wait_for(asyncio.shield(task), max(0.0, deadline - loop.time()))
            return
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if loop.time() >= deadline or current is None:
                task.cancel()
                raise
            if hasattr(current, "uncancel"):  # Python 3.11+: this cancel is handled
                current.uncancel()
        except asyncio.TimeoutError:
            task.cancel()
            raise


async def log_off_loop(trigger: BaseTrigger, level: str, message: str, *args: Any) -> None:
    """Log from a trigger without holding the event loop.

    The triggerer's structlog loggers write each line to a socket that its supervisor
    reads; when the supervisor lags (a burst: every trigger logging at once, on a
    busy machine), a plain call blocks the loop that every trigger shares. Their
    async methods write from a thread, as the triggerer itself does.
    """
    write = getattr(trigger.log, f"a{level}", None)
    if write is None:  # a standard library logger
        getattr(trigger.log, level)(message, *args)
        return
    await write(message, *args)


def _describe_jobs(jobids: Sequence[int]) -> str:
    if len(jobids) == 1:
        return f"job {format_jobid(jobids[0])}"
    return f"{len(jobids)} jobs ({format_jobid(jobids[0])} ...)"


async def cancel_jobs(jobids: Sequence[int], reason: str, uri: str | None) -> None:
    """Cancel jobs on the shared connection, all requests in flight at once; jobs that
    are inactive already are passed over."""
    results = await asyncio.gather(
        *(cancel_job(jobid, reason, uri=uri) for jobid in jobids), return_exceptions=True
    )
    for result in results:
        if isinstance(result, OSError) and result.errno in ENDED_JOB_ERRNOS:
            continue
        if isinstance(result, BaseException):
            raise result


class FluxJobEventTrigger(CancelsJobsOnKill):
    """Fires once when a Flux job's eventlog has the awaited event, or when it never will.

    The semantics are those of ``flux.job.event_wait`` and ``flux job wait-event``:
    the first event named ``event`` whose context contains ``match_context`` is a
    success; a fatal job exception (severity 0) before it is a failure, unless
    ``raise_on_exception`` is false; an eventlog that ends without the event is a
    failure. A re-created trigger replays the eventlog from its start, so an event
    that happened while no triggerer ran is not lost.

    The event payload has ``status`` (``"success"`` or ``"error"``), ``jobid`` (int),
    ``job`` (F58), ``eventlog``, ``message``, and ``event`` (the matching or fatal
    event: ``name``, ``timestamp``, ``context``) or ``reason`` and ``errno`` on errors.

    :param jobid: the job ID, in any encoding Flux accepts.
    :param event: the event name to wait for (``start``, ``finish``, ``clean``, ...).
    :param eventlog: ``eventlog``, a guest eventlog such as ``guest.exec.eventlog``, or
        a short name as ``flux job wait-event -p`` takes: ``exec``, ``output``, ``input``.
    :param flux_conn_id: the ``flux`` Airflow connection of the instance.
    :param match_context: key/values the event's context must contain.
    :param raise_on_exception: fail on a fatal job exception before the event.
    :param count: wait for the ``count``-th matching event (``flux job wait-event --count``).
    :param waitcreate: wait for a guest eventlog that does not exist yet.
    :param reconnect_attempts: reconnections in a row after a lost connection.
    :param include_events: names of events to carry, every occurrence before the end
        of the wait, in the payload's ``events`` list (e.g. ``finish``, ``exception``).
    :param cancel_on_kill: cancel the job, with ``cancel_reason``, when the task is
        killed, cleared or marked while deferred. Not when the trigger merely moves to
        another triggerer (apache/airflow#73454): the task is then still deferred, and
        its XCom ``jobid``, when it has one, still names this job (a cleared task's new
        try defers on the job it submitted). When the task's state cannot be read the
        job is left alone.
    :param cancel_reason: the note of that cancel exception.
    :param deadline: a wall-clock time (seconds since the epoch) at which the job is
        cancelled and the wait fails as timed out (Airflow calls no ``on_kill`` then).
    :param end_from_trigger: end the task here when the wait succeeds
        (``TaskSuccessEvent``, with :func:`job_event_result` as its XCom
        ``return_value`` when ``xcom_push``), so it never returns to a worker. A
        failed wait still resumes the task in a worker, where it fails without retry
        or, with ``soft_fail``, skips.
    :param xcom_push: with ``end_from_trigger``, push the result as the task's XCom.
    :param stream_output: while waiting, log the job's stdout and stderr lines as the
        job writes them (they show in the deferred task's log), ``output_limit`` bytes
        at most; the payload's ``output`` then says how much was shown and cut. The
        progress is saved in the task's XCom ``flux_output``, so a trigger re-created
        after a triggerer restart goes on where it was (the last seconds may show
        twice, and the log says so).
    :param output_limit: bytes of output to log with ``stream_output``.

    A task that starts in the triggerer (``start_from_trigger``) may give ``jobid``,
    ``event``, ``eventlog`` and ``match_context`` as Jinja templates, which Airflow
    renders here; they are checked when the trigger runs, and a bad one fails the wait
    (``reason`` ``invalid``). With no ``jobid`` at all (a mapped task, whose arguments
    Airflow expands only in a worker) the trigger sends the task to a worker to start
    there (``status`` ``start_in_worker``).
    """

    spec: EventWaitSpec

    def __init__(
        self,
        jobid: int | str | None,
        event: str,
        eventlog: str = "eventlog",
        flux_conn_id: str = FluxHook.default_conn_name,
        match_context: Mapping[str, Any] | None = None,
        raise_on_exception: bool = True,
        waitcreate: bool = False,
        reconnect_attempts: int = 5,
        include_events: Sequence[str] = (),
        cancel_on_kill: bool = False,
        cancel_reason: str | None = None,
        deadline: float | None = None,
        count: int = 1,
        end_from_trigger: bool = False,
        xcom_push: bool = True,
        stream_output: bool = False,
        output_limit: int = DEFAULT_OUTPUT_LIMIT,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # BaseTrigger is unannotated
        # Until _resolve() (at once, unless a field is a template rendered later in
        # the triggerer), these are the values as given.
        self.jobid: Any = jobid
        self.event = event
        self.eventlog = eventlog
        self.match_context: Any = match_context or {}
        self.flux_conn_id = flux_conn_id
        self.raise_on_exception = raise_on_exception
        self.waitcreate = waitcreate
        self.reconnect_attempts = reconnect_attempts
        self.include_events = list(include_events)
        self.cancel_on_kill = cancel_on_kill
        self.cancel_reason = cancel_reason
        self.deadline = deadline
        self.count = count
        self.end_from_trigger = end_from_trigger
        self.xcom_push = xcom_push
        self.stream_output = stream_output
        self.output_limit = output_limit
        self._fired = False
        if jobid is not None and not any(
            is_template(value) for value in (jobid, event, eventlog, match_context)
        ):
            self._resolve()

    def _resolve(self) -> None:
        """Check the wait's fields and turn them into the job ID, eventlog path and
        :class:`EventWaitSpec` the wait uses.

        :raises ValueError: the fields do not make a valid wait.
        """
        self.jobid = parse_jobid(self.jobid)
        self.eventlog = resolve_eventlog(self.eventlog)
        if not isinstance(self.match_context, Mapping):
            raise ValueError(f"match_context must be a mapping, not {self.match_context!r}")
        self.match_context = dict(self.match_context)
        self.spec = EventWaitSpec(
            self.event, self.match_context, self.raise_on_exception, self.count
        )

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "jobid": self.jobid,
                "event": self.event,
                "eventlog": self.eventlog,
                "flux_conn_id": self.flux_conn_id,
                "match_context": self.match_context,
                "raise_on_exception": self.raise_on_exception,
                "waitcreate": self.waitcreate,
                "reconnect_attempts": self.reconnect_attempts,
                "include_events": self.include_events,
                "cancel_on_kill": self.cancel_on_kill,
                "cancel_reason": self.cancel_reason,
                "deadline": self.deadline,
                "count": self.count,
                "end_from_trigger": self.end_from_trigger,
                "xcom_push": self.xcom_push,
                "stream_output": self.stream_output,
                "output_limit": self.output_limit,
            },
        )

    def _jobs_to_cancel(self) -> list[int]:
        return [self.jobid] if isinstance(self.jobid, int) else []

    async def run(self) -> AsyncIterator[TriggerEvent]:
        if self.jobid is None:
            message = (
                "no job ID reached the triggerer (Airflow expands a mapped task's arguments "
                "only in a worker): the task starts in a worker instead"
            )
            await log_off_loop(self, "info", "%s", message)
            self._fired = True
            yield TriggerEvent({"status": STATUS_START_IN_WORKER, "message": message})
            return
        try:
            self._resolve()  # the fields as rendered, if the task started here
        except (TypeError, ValueError) as err:
            payload = {"status": "error", "reason": REASON_INVALID, "message": str(err)}
        else:
            payload = await self._wait()
        level = "info" if payload["status"] == "success" else "error"
        await log_off_loop(self, level, "%s", payload["message"])
        self._fired = True
        # dag.test() runs a trigger inline, with no trigger ID, and resumes the task
        # whatever the event: it gets the payload, as from a trigger that does not end.
        ran_by_triggerer = self.trigger_id is not None
        if payload["status"] == "success" and self.end_from_trigger and ran_by_triggerer:
            result = job_event_result(payload)
            yield TaskSuccessEvent(xcoms={"return_value": result} if self.xcom_push else None)
            return
        yield TriggerEvent(payload)

    def _payload(self, status: str, message: str, **extra: Any) -> dict[str, Any]:
        payload = {
            "status": status,
            "jobid": self.jobid,
            "job": format_jobid(self.jobid),
            "eventlog": self.eventlog,
            "message": message,
            **extra,
        }
        if self.include_events:
            payload["events"] = [event.to_dict() for event in self._included]
        return payload

    async def _wait(self) -> dict[str, Any]:
        job = format_jobid(self.jobid)
        self._included: list[JobEvent] = []
        try:
            uri = await FluxHook(self.flux_conn_id).aget_uri()
        except Exception as err:
            return self._payload(
                "error",
                f"cannot read Flux connection {self.flux_conn_id!r}: {err}",
                reason=REASON_CONNECTION,
            )
        await log_off_loop(
            self, "info", "waiting for %s of job %s (%s)", self.spec.describe(), job, self.eventlog
        )
        follower = await self._output_follower(uri) if self.stream_output else None
        try:
            payload = await self._watch_until(
                lambda: self._watch(uri, job, follower), self._jobs_to_cancel, uri
            )
            output = await follower.close() if follower is not None else None
        finally:
            if follower is not None:
                await follower.cancel()
        if not isinstance(payload, dict):
            payload = self._payload(
                "error",
                f"job {job}: the task timed out; the job was cancelled ({self.timeout_reason()})",
                reason=REASON_TIMED_OUT,
            )
        if output is not None:
            payload["output"] = output.to_dict()
        return payload

    async def _output_follower(self, uri: str | None) -> OutputFollower:
        """A follower of the job's output that logs here; in a triggerer (not inline
        in ``dag.test()``) it saves its progress in the task's XCom and resumes it."""

        async def emit(text: str) -> None:
            await log_off_loop(self, "info", "%s", text)

        if self.trigger_id is None:
            return OutputFollower(self.jobid, uri, self.output_limit, emit)

        async def checkpoint(progress: OutputProgress) -> None:
            await _set_task_xcom(self, OUTPUT_PROGRESS_XCOM_KEY, progress.to_dict())

        saved = await _get_task_xcom(self, OUTPUT_PROGRESS_XCOM_KEY)
        return OutputFollower(
            self.jobid, uri, self.output_limit, emit, OutputProgress.from_dict(saved), checkpoint
        )

    async def _watch(
        self, uri: str | None, job: str, follower: OutputFollower | None
    ) -> dict[str, Any]:
        """Watch until the wait has an outcome; its trigger event payload."""
        self._included.clear()
        # Looked up once: each lookup on the triggerer's lazy structlog proxy binds a
        # new logger, which in a burst of events costs the shared loop more than the
        # event itself.
        debug = self.log.debug

        def seen(event: JobEvent) -> None:
            debug("job %s: %s %s", job, event.name, event.context)
            if event.name in self.include_events:
                self._included.append(event)
            if follower is not None:
                follower.seen(event)

        outcome = await wait_on_job(
            self.spec, self.jobid, self.eventlog, uri=uri, waitcreate=self.waitcreate,
            reconnect=Reconnect(attempts=self.reconnect_attempts), log=self.log, seen=seen,
        )  # fmt: skip
        if outcome.reason is None:
            return self._payload("success", outcome.message, event=outcome.event_dict())
        extra: dict[str, Any] = {}
        if outcome.event is not None:
            extra["event"] = outcome.event_dict()
        if outcome.errno is not None:
            extra["errno"] = outcome.errno
        return self._payload("error", outcome.message, reason=outcome.reason, **extra)


def job_event_result(payload: Mapping[str, Any]) -> dict[str, Any]:
    """What a successful wait on one job returns (the task's XCom): the event's
    ``name``, ``timestamp`` and ``context``, with ``jobid`` and ``job`` (F58)."""
    return {**payload["event"], "jobid": payload["jobid"], "job": payload["job"]}


def is_template(value: Any) -> bool:
    """Whether a field is (or holds) a Jinja template that Airflow has yet to render."""
    if isinstance(value, str):
        return any(mark in value for mark in ("{{", "{%", "{#"))
    if isinstance(value, Mapping):
        return any(is_template(item) for item in value.values())
    return False


class FluxJobsEventTrigger(CancelsJobsOnKill):
    """Fires once when a wait on many jobs is decided, on one shared connection.

    Each job is waited on as :class:`FluxJobEventTrigger` waits on one (the same
    ``event``, ``eventlog``, ``match_context``, ``raise_on_exception`` and ``count``);
    a job *fails* when its wait does (a fatal exception, an eventlog that ends without
    the event, a job that cannot be read). The wait is over as soon as ``wait_for`` is
    decided (:class:`~airflow_provider_flux.event_wait.EnsembleRule`), and the watches
    still open are then cancelled on the broker.

    The event payload has ``status``, ``message``, ``matched``, ``failed``, ``pending``
    (counts), ``reason`` on errors (``connection`` if a job's watch lost the instance,
    else ``jobs_failed``), and ``jobs``: one entry per job, in the order given, with
    ``jobid``, ``outcome`` (``matched``, why it failed, or ``pending``: undecided when
    the wait ended), ``event`` (the match or the fatal exception) and ``message``.

    :param jobids: the jobs, in any encoding Flux accepts (a list, or text:
        a JSON list, or IDs separated by commas or white space).
    :param event: the event name to wait for on each job.
    :param eventlog: as for :class:`FluxJobEventTrigger`.
    :param flux_conn_id: the ``flux`` Airflow connection of the instance.
    :param match_context: key/values the event's context must contain.
    :param raise_on_exception: a fatal job exception before the event fails the job.
    :param count: wait for the ``count``-th matching event of each job.
    :param waitcreate: wait for guest eventlogs that do not exist yet.
    :param wait_for: ``"all"``, ``"any"``, or a number N: at least N jobs.
    :param max_failures: how many jobs may fail before the wait fails.
    :param reconnect_attempts: reconnections in a row after a lost connection.
    :param cancel_on_kill: cancel the jobs, with ``cancel_reason``, when the task is
        killed, cleared or marked while deferred (see :class:`CancelsJobsOnKill`).
    :param cancel_reason: the note of that cancel exception.
    :param deadline: a wall-clock time (seconds since the epoch) at which the jobs
        still running are cancelled and the wait fails as timed out.
    """

    def __init__(
        self,
        jobids: Sequence[int | str] | str,
        event: str,
        eventlog: str = "eventlog",
        flux_conn_id: str = FluxHook.default_conn_name,
        match_context: Mapping[str, Any] | None = None,
        raise_on_exception: bool = True,
        count: int = 1,
        waitcreate: bool = False,
        wait_for: str | int = WAIT_FOR_ALL,
        max_failures: int = 0,
        reconnect_attempts: int = 5,
        cancel_on_kill: bool = False,
        cancel_reason: str | None = None,
        deadline: float | None = None,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # BaseTrigger is unannotated
        self.jobids = parse_jobids(jobids)
        self.event = event
        self.eventlog = resolve_eventlog(eventlog)
        self.flux_conn_id = flux_conn_id
        self.match_context = dict(match_context or {})
        self.raise_on_exception = raise_on_exception
        self.count = count
        self.waitcreate = waitcreate
        self.wait_for = wait_for
        self.max_failures = max_failures
        self.reconnect_attempts = reconnect_attempts
        self.cancel_on_kill = cancel_on_kill
        self.cancel_reason = cancel_reason
        self.deadline = deadline
        self.spec = EventWaitSpec(event, self.match_context, raise_on_exception, count)
        self.rule = EnsembleRule(wait_for, max_failures, len(self.jobids))
        self._fired = False

    def _jobs_to_cancel(self) -> list[int]:
        return self.jobids

    def serialize(self) -> tuple[str, dict[str, Any]]:
        jobids: list[int] | str = self.jobids
        if len(self.jobids) > PACK_JOBIDS_ABOVE:
            jobids = pack_jobids(self.jobids)  # one trigger row, even at 10,000 jobs
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "jobids": jobids,
                "event": self.event,
                "eventlog": self.eventlog,
                "flux_conn_id": self.flux_conn_id,
                "match_context": self.match_context,
                "raise_on_exception": self.raise_on_exception,
                "count": self.count,
                "waitcreate": self.waitcreate,
                "wait_for": self.wait_for,
                "max_failures": self.max_failures,
                "reconnect_attempts": self.reconnect_attempts,
                "cancel_on_kill": self.cancel_on_kill,
                "cancel_reason": self.cancel_reason,
                "deadline": self.deadline,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        payload = await self._wait()
        level = "info" if payload["status"] == "success" else "error"
        await log_off_loop(self, level, "%s", payload["message"])
        self._fired = True
        yield TriggerEvent(payload)

    async def _wait(self) -> dict[str, Any]:
        try:
            uri = await FluxHook(self.flux_conn_id).aget_uri()
        except Exception as err:
            return self._payload(
                "failure", {}, f"cannot read Flux connection {self.flux_conn_id!r}: {err}"
            )
        await log_off_loop(
            self, "info", "waiting for %s of %s (%s)",
            self.spec.describe(), self.rule.describe(), self.eventlog,
        )  # fmt: skip
        outcomes: dict[int, JobOutcome] = {}
        payload = await self._watch_until(
            lambda: self._watch(uri, outcomes),
            lambda: [jobid for jobid in self.jobids if jobid not in outcomes],
            uri,
        )
        if isinstance(payload, dict):
            return payload
        return self._payload(
            "failure", outcomes, f"the task timed out; {len(payload)} jobs were cancelled "
            f"({self.timeout_reason()})", REASON_TIMED_OUT,
        )  # fmt: skip

    async def _watch(self, uri: str | None, outcomes: dict[int, JobOutcome]) -> dict[str, Any]:
        """Watch the jobs not decided yet until the rule decides; fills ``outcomes``."""
        decided: asyncio.Queue[tuple[int, JobOutcome]] = asyncio.Queue()
        reconnect = Reconnect(attempts=self.reconnect_attempts)

        async def wait_on(jobid: int) -> None:
            try:
                outcome = await wait_on_job(
                    self.spec, jobid, self.eventlog, uri=uri, waitcreate=self.waitcreate,
                    reconnect=reconnect, log=self.log,
                )  # fmt: skip
            except Exception as err:  # a bug must not leave the wait hanging
                outcome = JobOutcome(REASON_ERROR, None, f"job {format_jobid(jobid)}: {err!r}")
            decided.put_nowait((jobid, outcome))

        matched = sum(1 for outcome in outcomes.values() if outcome.reason is None)
        failed = len(outcomes) - matched
        decision = self.rule.decide(matched, failed)
        if decision is not None:  # decided before an interruption
            return self._payload(decision, outcomes)
        tasks = [
            asyncio.create_task(wait_on(jobid)) for jobid in self.jobids if jobid not in outcomes
        ]
        try:
            while True:
                jobid, outcome = await decided.get()
                outcomes[jobid] = outcome
                if outcome.reason is None:
                    matched += 1
                    self.log.debug("%s", outcome.message)
                else:
                    failed += 1
                    self.log.warning("%s", outcome.message)
                decision = self.rule.decide(matched, failed)
                if decision is not None:
                    return self._payload(decision, outcomes)
        finally:
            for task in tasks:
                task.cancel()  # the remaining watches are cancelled on the broker
            await asyncio.gather(*tasks, return_exceptions=True)

    def _payload(
        self,
        decision: str,
        outcomes: Mapping[int, JobOutcome],
        error: str | None = None,
        error_reason: str = REASON_CONNECTION,
    ) -> dict[str, Any]:
        return ensemble_payload(
            self.spec, self.rule, self.eventlog, self.jobids, outcomes, decision,
            error, error_reason,
        )  # fmt: skip


def ensemble_payload(
    spec: EventWaitSpec,
    rule: EnsembleRule,
    eventlog: str,
    jobids: Sequence[int],
    outcomes: Mapping[int, JobOutcome],
    decision: str,
    error: str | None = None,
    error_reason: str = REASON_CONNECTION,
) -> dict[str, Any]:
    """The trigger event payload of a decided wait on many jobs (see
    :class:`FluxJobsEventTrigger`); the poking sensor builds the same. ``error`` (with
    ``error_reason``) ends the wait whatever the jobs did."""
    jobs = [job_entry(jobid, outcomes.get(jobid)) for jobid in jobids]
    failures = [o for o in outcomes.values() if o.reason is not None]
    matched = len(outcomes) - len(failures)
    pending = len(jobids) - len(outcomes)
    what = f"{spec.describe()} of {rule.describe()}"
    counts = f"{matched} matched, {len(failures)} failed, {pending} pending"
    shown = "; ".join(o.message for o in failures[:FAILURES_SHOWN])
    if len(failures) > FAILURES_SHOWN:
        shown += f"; and {len(failures) - FAILURES_SHOWN} more"
    payload: dict[str, Any] = {
        "status": "success" if decision == "success" else "error",
        "eventlog": eventlog,
        "matched": matched,
        "failed": len(failures),
        "pending": pending,
        "jobs": jobs,
    }
    if decision == "success":
        payload["message"] = f"{what}: done ({counts})" + (f": {shown}" if shown else "")
        return payload
    connection_lost = any(o.reason == REASON_CONNECTION for o in failures)
    payload["reason"] = REASON_CONNECTION if connection_lost else REASON_JOBS_FAILED
    if error is not None:
        payload["reason"] = error_reason
        payload["message"] = f"{what}: {error} ({counts})"
    elif len(failures) > rule.max_failures:
        payload["message"] = (
            f"{what}: {len(failures)} failed, more than the {rule.max_failures} allowed "
            f"({counts}): {shown}"
        )
    else:
        payload["message"] = f"{what}: too few jobs can still match ({counts})" + (
            f": {shown}" if shown else ""
        )
    return payload


def job_entry(jobid: int, outcome: JobOutcome | None) -> dict[str, Any]:
    """One job's part of a wait on many jobs, for the trigger event and XCom."""
    if outcome is None:
        return {"jobid": jobid, "outcome": "pending"}
    entry: dict[str, Any] = {"jobid": jobid, "outcome": outcome.reason or "matched"}
    if outcome.event is not None:
        entry["event"] = outcome.event_dict()
    if outcome.reason is not None:
        entry["message"] = outcome.message
    return entry


class InfoLog(Protocol):
    """What :func:`wait_on_job` logs to: a trigger's ``log``, or a ``logging.Logger``."""

    def info(self, event: Any, /, *args: Any) -> Any: ...


@dataclass(frozen=True)
class JobOutcome:
    """How the wait on one job ended.

    :ivar reason: None when the event happened, else why not (a ``REASON_*``).
    :ivar event: the matching event, or the fatal exception.
    :ivar message: what happened, naming the job, for logs and errors.
    :ivar errno: the errno of a failed watch (``ENODATA`` when the eventlog ended).
    """

    reason: str | None
    event: JobEvent | None
    message: str
    errno: int | None = None

    def event_dict(self) -> dict[str, Any] | None:
        return None if self.event is None else self.event.to_dict()


async def wait_on_job(
    spec: EventWaitSpec,
    jobid: int,
    eventlog: str,
    *,
    uri: str | None,
    waitcreate: bool,
    reconnect: Reconnect,
    log: InfoLog,
    seen: Callable[[JobEvent], None] | None = None,
) -> JobOutcome:
    """Watch one job's eventlog on the shared connection until ``spec`` has a verdict.

    Leaving (a verdict, or the caller cancelled) cancels the stream on the broker.
    ``seen`` is called with every event read, in order.
    """
    job = format_jobid(jobid)
    events = watch(jobid, eventlog, uri=uri, waitcreate=waitcreate, reconnect=reconnect)
    wait = spec.start()
    try:
        async with aclosing(events) as stream:
            async for event in stream:
                if seen is not None:
                    seen(event)
                verdict = wait.feed(event)
                if verdict is not None:
                    return outcome_of(spec, jobid, eventlog, WaitResult(verdict, event))
                if event.name == "exception":
                    # Not the end of the wait: non-fatal, or raise_on_exception is off.
                    log.info(
                        "job %s: %s exception type=%s severity=%s: %s",
                        job, "fatal" if event.is_fatal_exception else "non-fatal",
                        event.context.get("type"), event.context.get("severity"),
                        event.context.get("note"),
                    )  # fmt: skip
    except FluxWatchError as err:
        return JobOutcome(_reason_for(err), None, str(err.strerror), err.errno)
    return outcome_of(spec, jobid, eventlog, WaitResult("eventlog_ended", None))


def outcome_of(spec: EventWaitSpec, jobid: int, eventlog: str, result: WaitResult) -> JobOutcome:
    """The outcome, and its message, of a job whose wait has a verdict."""
    job = format_jobid(jobid)
    if result.verdict == "matched":
        return JobOutcome(None, result.event, f"job {job}: {spec.describe()} happened")
    if result.verdict == "job_exception":
        assert result.event is not None
        ctx = result.event.context
        return JobOutcome(
            REASON_JOB_EXCEPTION,
            result.event,
            f"job {job}: fatal exception type={ctx.get('type')} before "
            f"{spec.describe()}: {ctx.get('note') or '(no note)'}",
        )
    return JobOutcome(
        REASON_EVENTLOG_ENDED,
        None,
        f"job {job}: eventlog ended before {spec.describe()} (eventlog {eventlog!r})",
        errno.ENODATA,
    )


async def _ask_supervisor(trigger: BaseTrigger, what: str, build: Callable[[Any], Any]) -> Any:
    """Send the request ``build(ti)`` about the trigger's task instance to the
    triggerer's supervisor; None when there is no answer."""
    ti = trigger.task_instance
    if ti is None:
        return None
    try:
        from airflow.sdk.execution_time import task_runner

        request = build(ti)
        return await asyncio.wait_for(
            task_runner.SUPERVISOR_COMMS.asend(request), SUPERVISOR_TIMEOUT_SECONDS
        )
    except Exception as err:  # no supervisor (tests), or an API change: say we cannot tell
        trigger.log.warning("cannot read the %s of task %s: %r", what, ti.task_id, err)
        return None


def _state_request(ti: Any) -> Any:
    from airflow.sdk.execution_time.comms import GetTaskStates

    return GetTaskStates(
        dag_id=ti.dag_id, task_ids=[ti.task_id], run_ids=[ti.run_id], map_index=ti.map_index
    )


def _xcom_request(key: str) -> Callable[[Any], Any]:
    def build(ti: Any) -> Any:
        from airflow.sdk.execution_time.comms import GetXCom

        return GetXCom(
            key=key, dag_id=ti.dag_id, run_id=ti.run_id, task_id=ti.task_id,
            map_index=ti.map_index,
        )  # fmt: skip

    return build


async def _get_task_xcom(trigger: BaseTrigger, key: str) -> Any:
    """The value of the XCom ``key`` of the trigger's task instance, or None."""
    response = await _ask_supervisor(trigger, f"XCom {key}", _xcom_request(key))
    value = getattr(response, "value", None)
    if isinstance(value, str):  # as the XCom backend stored it
        with suppress(ValueError):
            return json.loads(value)
    return value


async def _set_task_xcom(trigger: BaseTrigger, key: str, value: Any) -> None:
    """Set the XCom ``key`` of the trigger's task instance (best effort)."""

    def build(ti: Any) -> Any:
        from airflow.sdk.execution_time.comms import SetXCom

        return SetXCom(
            key=key, value=value, dag_id=ti.dag_id, run_id=ti.run_id, task_id=ti.task_id,
            map_index=ti.map_index,
        )  # fmt: skip

    await _ask_supervisor(trigger, f"XCom {key}", build)


async def _task_state(trigger: BaseTrigger) -> str | None:
    """The live state of the trigger's task instance."""
    response = await _ask_supervisor(trigger, "state", _state_request)
    ti = trigger.task_instance
    if ti is None or response is None:
        return UNKNOWN_STATE
    try:
        state = response.task_states[ti.run_id][ti.task_id]
    except (AttributeError, KeyError, TypeError) as err:
        trigger.log.warning("cannot read the state of the task from %r: %r", response, err)
        return UNKNOWN_STATE
    return None if state is None else str(state)


async def _task_jobids(trigger: BaseTrigger) -> list[int] | None:
    """The job IDs in the XCom ``jobid`` of the trigger's task instance (one ID, or
    the list a job array pushes), if any."""
    value = await _get_task_xcom(trigger, "jobid")
    if value is None:
        return None
    try:
        return [parse_jobid(value)] if isinstance(value, (int, str)) else parse_jobids(value)
    except (TypeError, ValueError):
        trigger.log.warning("the task's XCom jobid is not a job ID or a list of them: %r", value)
        return None


def _reason_for(err: FluxWatchError) -> str:
    errnum = err.errno
    if isinstance(err, (FluxConnectionError, FluxConnectionLost)) or errnum in CONNECTION_ERRNOS:
        return REASON_CONNECTION
    if errnum == errno.ENOENT:
        return REASON_NOT_FOUND
    if errnum == errno.EPERM:
        return REASON_PERMISSION
    return REASON_ERROR
