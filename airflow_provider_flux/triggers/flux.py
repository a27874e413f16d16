"""``FluxJobEventTrigger``: waits in the triggerer for an event of a Flux job."""

from __future__ import annotations

import asyncio
import errno
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import aclosing
from typing import Any

from airflow_provider_flux.aio import (
    FluxConnectionError,
    FluxConnectionLost,
    FluxWatchError,
    cancel_job,
    watch,
)
from airflow_provider_flux.aio.errors import CONNECTION_ERRNOS
from airflow_provider_flux.aio.watch import Reconnect
from airflow_provider_flux.event_wait import EventWaitSpec, resolve_eventlog
from airflow_provider_flux.events import JobEvent
from airflow_provider_flux.hooks.flux import FluxHook
from airflow_provider_flux.jobid import format_jobid, parse_jobid
from airflow_provider_flux.version_compat import (
    TRIGGER_ON_KILL_SUPPORTED,
    BaseTrigger,
    TriggerEvent,
)

# Why a wait failed, as carried in the trigger event's ``reason``.
REASON_JOB_EXCEPTION = "job_exception"
REASON_EVENTLOG_ENDED = "eventlog_ended"
REASON_NOT_FOUND = "not_found"
REASON_PERMISSION = "permission"
REASON_CONNECTION = "connection"
REASON_ERROR = "error"
REASON_TIMED_OUT = "timed_out"

# After cancelling a job at its deadline, how long to wait for it to end (its
# output is complete then).
CANCEL_GRACE_SECONDS = 60.0

# A task state that could not be read (None is a state: that of a cleared task).
UNKNOWN_STATE = "<unknown>"

# How long a question to the triggerer's supervisor may take (it may be shutting down).
SUPERVISOR_TIMEOUT_SECONDS = 10.0


class FluxJobEventTrigger(BaseTrigger):
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
    """

    def __init__(
        self,
        jobid: int | str,
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
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # BaseTrigger is unannotated
        self.jobid = parse_jobid(jobid)
        self.event = event
        self.eventlog = resolve_eventlog(eventlog)
        self.flux_conn_id = flux_conn_id
        self.match_context = dict(match_context or {})
        self.raise_on_exception = raise_on_exception
        self.waitcreate = waitcreate
        self.reconnect_attempts = reconnect_attempts
        self.include_events = list(include_events)
        self.cancel_on_kill = cancel_on_kill
        self.cancel_reason = cancel_reason
        self.deadline = deadline
        self.count = count
        self.spec = EventWaitSpec(event, self.match_context, raise_on_exception, count)
        self._fired = False

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
            },
        )

    async def on_kill(self) -> None:
        """Cancel the job when a user killed, cleared or marked the deferred task."""
        await self._cancel_job_if_task_stopped()

    async def cleanup(self) -> None:
        """Before Airflow 3.3 the triggerer calls no ``on_kill``, only this, whatever
        ended the trigger: a trigger stopped before it fired asks the task's state
        and cancels the job as ``on_kill`` would."""
        if not TRIGGER_ON_KILL_SUPPORTED and not self._fired:
            await self._cancel_job_if_task_stopped()

    async def _cancel_job_if_task_stopped(self) -> None:
        if not self.cancel_on_kill:
            return
        job = format_jobid(self.jobid)
        state = await self.task_state()
        if state == UNKNOWN_STATE:
            self.log.info("job %s left running: the task's state cannot be read", job)
            return
        if state == "deferred":
            waiting_on = await self.task_jobid()
            if waiting_on is None or waiting_on == self.jobid:
                # Still deferred on this job: the trigger is moving to another
                # triggerer (apache/airflow#73454), or, before Airflow 3.3, this
                # triggerer is stopping; either way another one goes on watching.
                self.log.info("job %s left running: the task is still deferred on it", job)
                return
            # A new try of a cleared task waits on a job of its own.
            state = f"cleared (its new try waits on job {format_jobid(waiting_on)})"
        reason = self.cancel_reason or "the Airflow task was killed"
        self.log.info("task is %s: cancelling job %s (%s)", state, job, reason)
        uri = await FluxHook(self.flux_conn_id).aget_uri()
        await cancel_job(self.jobid, reason, uri=uri)

    async def task_state(self) -> str | None:
        """The task instance's live state (``UNKNOWN_STATE`` when it cannot be read)."""
        return await _task_state(self)

    async def task_jobid(self) -> int | None:
        """The job the task's live try submitted: its XCom ``jobid`` (pushed by
        ``FluxSubmitJobOperator``; Airflow clears it when a new try starts), or None."""
        return await _task_jobid(self)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        payload = await self._wait()
        log = self.log.info if payload["status"] == "success" else self.log.error
        log("%s", payload["message"])
        self._fired = True
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
        self.log.info("waiting for %s of job %s (%s)", self.spec.describe(), job, self.eventlog)
        if self.deadline is None:
            return await self._watch(uri, job)
        try:
            return await asyncio.wait_for(self._watch(uri, job), self.deadline - time.time())
        except asyncio.TimeoutError:
            pass
        reason = self.cancel_reason or "the Airflow task timed out"
        self.log.warning("job %s: deadline reached, cancelling it: %s", job, reason)
        try:
            await cancel_job(self.jobid, reason, uri=uri)
            await asyncio.wait_for(self._watch(uri, job), CANCEL_GRACE_SECONDS)
        except (asyncio.TimeoutError, OSError) as err:
            self.log.warning("job %s: after the cancel: %s", job, err)
        return self._payload(
            "error",
            f"job {job}: the task timed out; the job was cancelled ({reason})",
            reason=REASON_TIMED_OUT,
        )

    async def _watch(self, uri: str | None, job: str) -> dict[str, Any]:
        """Watch until the wait has an outcome; its trigger event payload."""
        self._included.clear()
        events = watch(
            self.jobid,
            self.eventlog,
            uri=uri,
            waitcreate=self.waitcreate,
            reconnect=Reconnect(attempts=self.reconnect_attempts),
        )
        wait = self.spec.start()
        try:
            async with aclosing(events) as stream:
                async for event in stream:
                    self.log.debug("job %s: %s %s", job, event.name, event.context)
                    if event.name in self.include_events:
                        self._included.append(event)
                    verdict = wait.feed(event)
                    if verdict == "matched":
                        return self._payload(
                            "success",
                            f"job {job}: {self.spec.describe()} happened",
                            event=event.to_dict(),
                        )
                    if verdict == "job_exception":
                        ctx = event.context
                        return self._payload(
                            "error",
                            f"job {job}: fatal exception type={ctx.get('type')} before "
                            f"{self.spec.describe()}: {ctx.get('note') or '(no note)'}",
                            reason=REASON_JOB_EXCEPTION,
                            event=event.to_dict(),
                        )
                    if event.name == "exception":
                        # Not the end of the wait: non-fatal, or raise_on_exception is off.
                        self.log.info(
                            "job %s: %s exception type=%s severity=%s: %s",
                            job, "fatal" if event.is_fatal_exception else "non-fatal",
                            event.context.get("type"), event.context.get("severity"),
                            event.context.get("note"),
                        )  # fmt: skip
        except FluxWatchError as err:
            return self._payload(
                "error", str(err.strerror), reason=_reason_for(err), errno=err.errno
            )
        return self._payload(
            "error",
            f"job {job}: eventlog ended before {self.spec.describe()} (eventlog {self.eventlog!r})",
            reason=REASON_EVENTLOG_ENDED,
            errno=errno.ENODATA,
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


def _jobid_request(ti: Any) -> Any:
    from airflow.sdk.execution_time.comms import GetXCom

    return GetXCom(
        key="jobid", dag_id=ti.dag_id, run_id=ti.run_id, task_id=ti.task_id,
        map_index=ti.map_index,
    )  # fmt: skip


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


async def _task_jobid(trigger: BaseTrigger) -> int | None:
    """The job ID in the XCom ``jobid`` of the trigger's task instance, if any."""
    response = await _ask_supervisor(trigger, "XCom jobid", _jobid_request)
    value = getattr(response, "value", None)
    if value is None:
        return None
    try:
        return parse_jobid(value)
    except (TypeError, ValueError):
        trigger.log.warning("the task's XCom jobid is not a job ID: %r", value)
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
