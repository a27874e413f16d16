"""``FluxJobEventTrigger`` and ``FluxJobsEventTrigger``: wait in the triggerer for an
event of a Flux job, or of many.

Their class paths are stored in Airflow's trigger table: a task deferred by an
earlier release is rebuilt from them, with the arguments that release serialized.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from airflow_provider_flux.aio.output_follower import OutputFollower
from airflow_provider_flux.aio.watch import Reconnect
from airflow_provider_flux.config import limits
from airflow_provider_flux.job.event import JobEvent
from airflow_provider_flux.job.jobid import format_jobid, parse_jobid
from airflow_provider_flux.job.jobid_list import pack_jobids, parse_jobids
from airflow_provider_flux.job.output import DEFAULT_OUTPUT_LIMIT, OutputProgress
from airflow_provider_flux.triggers.base import FluxWaitTrigger, log_off_loop
from airflow_provider_flux.triggers.task_instance import get_task_xcom, set_task_xcom
from airflow_provider_flux.version_compat import TaskSuccessEvent, TriggerEvent
from airflow_provider_flux.wait.ensemble import WAIT_FOR_ALL, EnsembleRule, ensemble_payload
from airflow_provider_flux.wait.job_watch import wait_on_job
from airflow_provider_flux.wait.outcome import (
    REASON_CONNECTION,
    REASON_ERROR,
    REASON_INVALID,
    REASON_TIMED_OUT,
    STATUS_START_IN_WORKER,
    JobOutcome,
    job_event_result,
)

# The XCom a trigger that streams a job's output saves its progress in, so that a
# trigger re-created after a triggerer restart does not show the output again.
OUTPUT_PROGRESS_XCOM_KEY = "flux_output"

# Above this many jobs, a trigger's serialized form packs their IDs (jobid_list.pack_jobids).
PACK_JOBIDS_ABOVE = 16


class FluxJobEventTrigger(FluxWaitTrigger):
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
    :param include_events: names of events to carry, every occurrence before the end
        of the wait, in the payload's ``events`` list (e.g. ``finish``, ``exception``).
    :param end_from_trigger: end the task here when the wait succeeds
        (``TaskSuccessEvent``, with :func:`~airflow_provider_flux.wait.job_event_result`
        as its XCom ``return_value`` when ``xcom_push``), so it never returns to a
        worker. A failed wait still resumes the task in a worker, where it fails
        without retry or, with ``soft_fail``, skips.
    :param xcom_push: with ``end_from_trigger``, push the result as the task's XCom.
    :param stream_output: while waiting, log the job's stdout and stderr lines as the
        job writes them (they show in the deferred task's log), ``output_limit`` bytes
        at most; the payload's ``output`` then says how much was shown and cut. The
        progress is saved in the task's XCom ``flux_output``, so a trigger re-created
        after a triggerer restart goes on where it was (the last seconds may show
        twice, and the log says so).
    :param output_limit: bytes of output to log with ``stream_output``.

    The other arguments (the wait, the connection, cancel-on-kill and the deadline)
    are :class:`~airflow_provider_flux.triggers.base.FluxWaitTrigger`'s.

    A task that starts in the triggerer (``start_from_trigger``) may give ``jobid``,
    ``event``, ``eventlog`` and ``match_context`` as Jinja templates, which Airflow
    renders here; they are checked when the trigger runs, and a bad one fails the wait
    (``reason`` ``invalid``). With no ``jobid`` at all (a mapped task, whose arguments
    Airflow expands only in a worker) the trigger sends the task to a worker to start
    there (``status`` ``start_in_worker``).
    """

    def __init__(
        self,
        jobid: int | str | None,
        *,
        include_events: Sequence[str] = (),
        end_from_trigger: bool = False,
        xcom_push: bool = True,
        stream_output: bool = False,
        output_limit: int = DEFAULT_OUTPUT_LIMIT,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.jobid: Any = jobid
        self.include_events = list(include_events)
        self.end_from_trigger = end_from_trigger
        self.xcom_push = xcom_push
        self.stream_output = stream_output
        self.output_limit = output_limit
        if jobid is not None and not any(
            is_template(value) for value in (jobid, self.event, self.eventlog, self.match_context)
        ):
            self._resolve()

    def _resolve(self) -> None:
        """Check the wait's fields and turn them into the job ID, eventlog path and
        spec the wait uses.

        :raises ValueError: the fields do not make a valid wait.
        """
        self.jobid = parse_jobid(self.jobid)
        self._resolve_wait()

    def _own_kwargs(self) -> dict[str, Any]:
        return {
            "jobid": self.jobid,
            "include_events": self.include_events,
            "end_from_trigger": self.end_from_trigger,
            "xcom_push": self.xcom_push,
            "stream_output": self.stream_output,
            "output_limit": self.output_limit,
        }

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
            uri = await self.instance_uri()
        except Exception as err:
            return self._payload("error", self.instance_unknown(err), reason=REASON_CONNECTION)
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
            await set_task_xcom(self, OUTPUT_PROGRESS_XCOM_KEY, progress.to_dict())

        saved = await get_task_xcom(self, OUTPUT_PROGRESS_XCOM_KEY)
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


def is_template(value: Any) -> bool:
    """Whether a field is (or holds) a Jinja template that Airflow has yet to render."""
    if isinstance(value, str):
        return any(mark in value for mark in ("{{", "{%", "{#"))
    if isinstance(value, Mapping):
        return any(is_template(item) for item in value.values())
    return False


class FluxJobsEventTrigger(FluxWaitTrigger):
    """Fires once when a wait on many jobs is decided, on one shared connection.

    Each job is waited on as :class:`FluxJobEventTrigger` waits on one (the same
    wait arguments); a job *fails* when its wait does (a fatal exception, an eventlog
    that ends without the event, a job that cannot be read). The wait is over as
    soon as ``wait_for`` is decided (:class:`~airflow_provider_flux.wait.EnsembleRule`),
    and the watches still open are then cancelled on the broker.

    The event payload has ``status``, ``message``, ``matched``, ``failed``, ``pending``
    (counts), ``reason`` on errors (``connection`` if a job's watch lost the instance,
    else ``jobs_failed``), and ``jobs``: one entry per job, in the order given, with
    ``jobid``, ``outcome`` (``matched``, why it failed, or ``pending``: undecided when
    the wait ended), ``event`` (the match or the fatal exception) and ``message``.

    :param jobids: the jobs, in any encoding Flux accepts (a list, or text:
        a JSON list, or IDs separated by commas or white space).
    :param wait_for: ``"all"``, ``"any"``, or a number N: at least N jobs.
    :param max_failures: how many jobs may fail before the wait fails.

    The other arguments (the wait, the connection, cancel-on-kill and the deadline)
    are :class:`~airflow_provider_flux.triggers.base.FluxWaitTrigger`'s.
    """

    def __init__(
        self,
        jobids: Sequence[int | str] | str,
        *,
        wait_for: str | int = WAIT_FOR_ALL,
        max_failures: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.jobids = parse_jobids(jobids, limits().max_jobs)
        self._resolve_wait()
        self.wait_for = wait_for
        self.max_failures = max_failures
        self.rule = EnsembleRule(wait_for, max_failures, len(self.jobids))

    def _own_kwargs(self) -> dict[str, Any]:
        jobids: list[int] | str = self.jobids
        if len(self.jobids) > PACK_JOBIDS_ABOVE:
            jobids = pack_jobids(self.jobids)  # one trigger row, even at 10,000 jobs
        return {"jobids": jobids, "wait_for": self.wait_for, "max_failures": self.max_failures}

    def _jobs_to_cancel(self) -> list[int]:
        return self.jobids

    async def run(self) -> AsyncIterator[TriggerEvent]:
        payload = await self._wait()
        level = "info" if payload["status"] == "success" else "error"
        await log_off_loop(self, level, "%s", payload["message"])
        self._fired = True
        yield TriggerEvent(payload)

    async def _wait(self) -> dict[str, Any]:
        try:
            uri = await self.instance_uri()
        except Exception as err:
            return self._payload("failure", {}, self.instance_unknown(err))
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
