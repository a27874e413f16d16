"""What the job triggers share: the wait's arguments (taken and serialized once),
cancelling the jobs when the task is stopped or reaches its deadline, and logging
without holding the triggerer's loop."""

from __future__ import annotations

import asyncio
import time
from abc import abstractmethod
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from airflow_provider_flux.aio.errors import ENDED_JOB_ERRNOS
from airflow_provider_flux.aio.watch import cancel_job
from airflow_provider_flux.hooks.flux import FluxHook
from airflow_provider_flux.job.jobid import format_jobid
from airflow_provider_flux.triggers import task_instance
from airflow_provider_flux.triggers.task_instance import UNKNOWN_STATE
from airflow_provider_flux.version_compat import TRIGGER_ON_KILL_SUPPORTED, BaseTrigger
from airflow_provider_flux.wait.arguments import WaitArguments
from airflow_provider_flux.wait.spec import EventWaitSpec

# After cancelling a job at its deadline, how long to wait for it to end (its
# output is complete then).
CANCEL_GRACE_SECONDS = 60.0

# How long ``on_kill`` may take to read the task's state and cancel the jobs: less
# than the triggerer gives it (``[triggerer] on_kill_timeout``, 30 s by default).
ON_KILL_SECONDS = 25.0


class FluxWaitTrigger(BaseTrigger):
    """A wait for an event of Flux jobs, in the triggerer: the arguments every job
    trigger takes, and cancel-on-kill for the jobs a task submitted.

    When a user kills, clears or marks the deferred task, Airflow 3.3 calls
    ``on_kill``; before 3.3 the triggerer calls only ``cleanup()``, whatever ended the
    trigger, so a trigger stopped before it fired makes the same decision there. The
    jobs are cancelled with ``cancel_reason`` unless the task is still deferred on
    them (the trigger is moving to another triggerer, apache/airflow#73454, or a
    triggerer is stopping) or its state cannot be read. A cleared task's new try that
    is deferred on other jobs (its own XCom ``jobid``) does not save them.

    It also keeps the ``deadline`` (a task's ``execution_timeout``, which Airflow does
    not enforce on deferred tasks in a way that reaches Flux): see :meth:`_watch_until`.

    :param event: the event to wait for. It and ``eventlog``, ``match_context``,
        ``raise_on_exception``, ``count`` and ``waitcreate`` are the wait, as
        :class:`~airflow_provider_flux.wait.WaitArguments` describes them.
    :param flux_conn_id: the ``flux`` Airflow connection of the instance.
    :param flux_uri: the instance's URI instead of the connection's (see
        :class:`~airflow_provider_flux.hooks.flux.FluxHook`).
    :param reconnect_attempts: reconnections in a row after a lost connection.
    :param cancel_on_kill: cancel the jobs, with ``cancel_reason``, when the task is
        killed, cleared or marked while deferred. Not when the trigger merely moves to
        another triggerer: the task is then still deferred, and its XCom ``jobid``,
        when it has one, still names these jobs (a cleared task's new try defers on
        the jobs it submitted). When the task's state cannot be read the jobs are
        left alone.
    :param cancel_reason: the note of that cancel exception.
    :param deadline: a wall-clock time (seconds since the epoch) at which the jobs
        still running are cancelled and the wait fails as timed out (Airflow calls no
        ``on_kill`` then).
    """

    spec: EventWaitSpec

    def __init__(
        self,
        *,
        event: str,
        eventlog: str = "eventlog",
        match_context: Mapping[str, Any] | None = None,
        raise_on_exception: bool = True,
        count: int = 1,
        waitcreate: bool = False,
        flux_conn_id: str = FluxHook.default_conn_name,
        flux_uri: str | None = None,
        reconnect_attempts: int = 5,
        cancel_on_kill: bool = False,
        cancel_reason: str | None = None,
        deadline: float | None = None,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # BaseTrigger is unannotated
        # Until _resolve_wait() (at once, unless a field is a template rendered later
        # in the triggerer), these are the values as given.
        self.event = event
        self.eventlog = eventlog
        self.match_context: Any = match_context or {}
        self.raise_on_exception = raise_on_exception
        self.count = count
        self.waitcreate = waitcreate
        self.flux_conn_id = flux_conn_id
        self.flux_uri = flux_uri
        self.reconnect_attempts = reconnect_attempts
        self.cancel_on_kill = cancel_on_kill
        self.cancel_reason = cancel_reason
        self.deadline = deadline
        self._fired = False

    def _resolve_wait(self) -> None:
        """Check the wait's fields and turn them into the eventlog path and the
        :class:`EventWaitSpec` the wait uses.

        :raises ValueError: the fields do not make a valid wait.
        """
        self.spec, self.eventlog = self.wait_arguments().resolve()
        self.match_context = dict(self.match_context)

    def wait_arguments(self) -> WaitArguments:
        """The wait, as given (or as resolved)."""
        return WaitArguments(
            self.event, self.eventlog, self.match_context, self.raise_on_exception, self.count,
            self.waitcreate,
        )  # fmt: skip

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                **self._own_kwargs(),
                **self.wait_arguments().to_kwargs(),
                "flux_conn_id": self.flux_conn_id,
                # Only when given: a row stored by an earlier release, which has none,
                # is written back unchanged.
                **({"flux_uri": self.flux_uri} if self.flux_uri is not None else {}),
                "reconnect_attempts": self.reconnect_attempts,
                "cancel_on_kill": self.cancel_on_kill,
                "cancel_reason": self.cancel_reason,
                "deadline": self.deadline,
            },
        )

    @abstractmethod
    def _own_kwargs(self) -> dict[str, Any]:
        """What a subclass adds to :meth:`serialize`: its job(s) and own arguments."""

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
        jobs = describe_jobs(jobids)
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
            state = f"cleared (its new try waits on {describe_jobs(waiting_on)})"
        reason = self.cancel_reason or "the Airflow task was killed"
        self.log.info("task is %s: cancelling %s (%s)", state, jobs, reason)
        uri = await self.instance_uri()
        await cancel_jobs(jobids, reason, uri)

    def hook(self) -> FluxHook:
        """The hook to the instance the jobs run on."""
        return FluxHook(self.flux_conn_id, self.flux_uri)

    async def instance_uri(self) -> str | None:
        """The instance's URI (read from the connection, unless ``flux_uri`` names it)."""
        return await self.hook().aget_uri()

    def instance_unknown(self, err: Exception) -> str:
        """Why :meth:`instance_uri` raised ``err``, for the failed wait's message."""
        if self.flux_uri is None:
            return f"cannot read Flux connection {self.flux_conn_id!r}: {err}"
        return f"flux_uri: {err}"

    def _watch_until(
        self,
        watch: Callable[[], Awaitable[dict[str, Any]]],
        running: Callable[[], list[int]],
        uri: str | None,
    ) -> Awaitable[dict[str, Any] | list[int]]:
        """The payload ``watch()`` comes to or, when the deadline comes first, the jobs
        it cancelled: those still ``running()``; ``watch()`` is then given
        ``CANCEL_GRACE_SECONDS`` more to see them end (their output is complete then).
        With no deadline, ``watch()`` itself: no coroutine of this method's stays
        alive in each waiting trigger."""
        if self.deadline is None:
            return watch()
        return self._watch_past_deadline(self.deadline, watch, running, uri)

    async def _watch_past_deadline(
        self,
        deadline: float,
        watch: Callable[[], Awaitable[dict[str, Any]]],
        running: Callable[[], list[int]],
        uri: str | None,
    ) -> dict[str, Any] | list[int]:
        try:
            return await asyncio.wait_for(watch(), deadline - time.time())
        except asyncio.TimeoutError:
            pass
        jobids = running()
        reason = self.timeout_reason()
        self.log.warning("deadline reached, cancelling %s: %s", describe_jobs(jobids), reason)
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
        return await task_instance.task_state(self)

    async def task_jobids(self) -> list[int] | None:
        """The jobs the task's live try submitted: its XCom ``jobid`` (pushed by
        ``FluxSubmitJobOperator``; Airflow clears it when a new try starts), or None."""
        return await task_instance.task_jobids(self)


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


def describe_jobs(jobids: Sequence[int]) -> str:
    """``job ƒA`` or ``3 jobs (ƒA ...)``, for log lines."""
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
