"""``FluxJobEventSensor`` and ``FluxJobsEventSensor``: gate a task on an event of a
Flux job, or of many."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from airflow_provider_flux.config import default_deferrable, limits
from airflow_provider_flux.exceptions import (
    FluxConnectionFailedError,
    FluxEventNeverHappenedError,
    FluxInvalidWaitError,
    FluxJobExceptionError,
    FluxJobNotFoundError,
)
from airflow_provider_flux.hooks.flux import FluxHook
from airflow_provider_flux.job.jobid import format_jobid, parse_jobid
from airflow_provider_flux.job.jobid_list import parse_jobids
from airflow_provider_flux.job.output import DEFAULT_OUTPUT_LIMIT
from airflow_provider_flux.triggers.flux import (
    FluxJobEventTrigger,
    FluxJobsEventTrigger,
    is_template,
)
from airflow_provider_flux.version_compat import (
    TRIGGER_RENDERS_TEMPLATES,
    BaseSensorOperator,
    Context,
    PokeReturnValue,
    StartTriggerArgs,
    XComArg,
    timezone,
)
from airflow_provider_flux.wait.arguments import WaitArguments
from airflow_provider_flux.wait.ensemble import (
    WAIT_FOR_ALL,
    EnsembleRule,
    ensemble_payload,
    ensemble_result,
)
from airflow_provider_flux.wait.failures import raise_for_failure
from airflow_provider_flux.wait.outcome import (
    REASON_EVENTLOG_ENDED,
    REASON_JOB_EXCEPTION,
    REASON_NOT_FOUND,
    REASON_PERMISSION,
    STATUS_START_IN_WORKER,
    JobOutcome,
    job_event_result,
    outcome_of,
)
from airflow_provider_flux.wait.spec import EventWaitSpec


class FluxEventSensorBase(BaseSensorOperator):
    """What the job event sensors share: the event to wait for, on which eventlog, and
    the rules for deferring. Bad values fail the task at once, without retry.

    :param event: the event to wait for. It and ``eventlog``, ``match_context``,
        ``raise_on_exception``, ``count`` and ``waitcreate`` are the wait, as
        :class:`~airflow_provider_flux.wait.WaitArguments` describes them (``event``,
        ``eventlog`` and ``match_context`` are templated; ``waitcreate`` applies in
        deferrable mode).
    :param flux_conn_id: the ``flux`` Airflow connection.
    :param flux_uri: the instance's URI instead of the connection's (templated), such
        as ``jobid:ƒA`` for the nested instance of batch job ƒA: see
        :class:`~airflow_provider_flux.hooks.flux.FluxHook`.
    :param deferrable: defer to the triggerer (default True; see
        :func:`~airflow_provider_flux.config.default_deferrable`).
    """

    ui_color = "#e8f4fc"

    def __init__(
        self,
        *,
        event: str,
        eventlog: str = "eventlog",
        flux_conn_id: str = FluxHook.default_conn_name,
        flux_uri: str | None = None,
        match_context: Mapping[str, Any] | None = None,
        raise_on_exception: bool = True,
        waitcreate: bool = False,
        count: int = 1,
        deferrable: bool | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.event = event
        self.eventlog = eventlog
        self.flux_conn_id = flux_conn_id
        self.flux_uri = flux_uri
        self.match_context = dict(match_context or {})
        self.raise_on_exception = raise_on_exception
        self.waitcreate = waitcreate
        self.count = count
        self.deferrable = default_deferrable() if deferrable is None else deferrable

    def _wait_arguments(self, eventlog: str | None = None) -> WaitArguments:
        """The wait as given (with ``eventlog`` resolved, when given)."""
        return WaitArguments(
            self.event, eventlog or self.eventlog, self.match_context, self.raise_on_exception,
            self.count, self.waitcreate,
        )  # fmt: skip

    def _resolved_wait(self) -> tuple[EventWaitSpec, str]:
        """The wait and its eventlog path, once the templated fields are rendered; bad
        ones fail without retry."""
        try:
            return self._wait_arguments().resolve()
        except ValueError as err:
            raise FluxInvalidWaitError(f"{self.task_id}: {err}") from err

    def _trigger_kwargs(self, eventlog: str) -> dict[str, Any]:
        """What every trigger of a sensor is given: the wait and the instance."""
        return {
            **self._wait_arguments(eventlog).to_kwargs(),
            "flux_conn_id": self.flux_conn_id,
            "flux_uri": self.flux_uri,
        }

    def hook(self) -> FluxHook:
        """The hook to the instance the sensor watches."""
        return FluxHook(self.flux_conn_id, self.flux_uri)

    def _time_left(self, context: Context) -> timedelta:
        """What remains of the sensor ``timeout`` since this try started."""
        started = getattr(context.get("ti"), "start_date", None)
        elapsed = (timezone.utcnow() - started).total_seconds() if started else 0.0
        return timedelta(seconds=max(0.0, self.timeout - elapsed))

    def _checked(self, event: dict[str, Any] | None) -> dict[str, Any]:
        """The trigger event of a successful wait; a failed one raises why."""
        if not event:
            raise FluxConnectionFailedError(f"{self.task_id}: the trigger returned no event")
        if event.get("status") != "success":
            raise_for_failure(event)
        self.log.info("%s", event.get("message"))
        return event


class FluxJobEventSensor(FluxEventSensorBase):
    """Waits for an event of a Flux job; fails on a fatal job exception.

    Deferrable by default: the wait runs in the triggerer (:class:`FluxJobEventTrigger`)
    and holds no worker slot. Otherwise each poke reads the eventlog as it stands.
    Semantics follow ``flux job wait-event``: the first event named ``event`` whose
    context contains ``match_context`` succeeds, and the task returns it (XCom:
    ``name``, ``timestamp``, ``context``, plus ``jobid`` and ``job``); a fatal job
    exception before it fails the task without retry (``soft_fail``: skips it), with
    the job ID, the exception type and its note in the message.

    How many times a deferred wait takes a worker: by default once, to start and
    defer; a successful wait ends in the triggerer (``end_from_trigger``). With
    ``start_from_trigger`` too, none: the task starts in the triggerer, which renders
    its templated fields there on Airflow 3.3 and newer. Whatever fails (a fatal
    exception, a job that is not found, a bad argument) resumes in a worker, which
    fails the task as a worker-run wait does (no retry, ``soft_fail``, callbacks).

    :param jobid: the job ID, any Flux encoding (templated: e.g. from an upstream XCom).
    :param start_from_trigger: start in the triggerer, without a worker (default
        False). Falls back to starting in a worker, saying why in the task log, for a
        mapped task and a ``jobid`` that is an ``XComArg`` (Airflow resolves both only
        in a worker), a template that calls ``xcom_pull`` without ``map_indexes``
        (Airflow 3.3.2's triggerer cannot answer it), and, before Airflow 3.3, for
        templated fields (the triggerer does not render them).
    :param end_from_trigger: end a successful wait in the triggerer, without a
        worker (default True).
    :param stream_output: while deferred, log the job's stdout and stderr lines in the
        task log as the job writes them (default False; not in poke mode).
    :param output_limit: bytes of output to log with ``stream_output``.

    The other arguments are :class:`FluxEventSensorBase`'s.
    """

    template_fields: Sequence[str] = ("jobid", "event", "eventlog", "match_context", "flux_uri")
    # What a task started in the triggerer gets when Airflow has not built it (a mapped
    # task): no job ID, which the trigger answers by sending it to a worker to start.
    start_trigger_args = StartTriggerArgs(
        trigger_cls=f"{FluxJobEventTrigger.__module__}.{FluxJobEventTrigger.__qualname__}",
        trigger_kwargs={"jobid": None, "event": ""},
        next_method="execute_complete",
        next_kwargs=None,
        timeout=None,
    )
    start_from_trigger = False

    def __init__(
        self,
        *,
        jobid: int | str,
        start_from_trigger: bool = False,
        end_from_trigger: bool = True,
        stream_output: bool = False,
        output_limit: int = DEFAULT_OUTPUT_LIMIT,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.jobid = jobid
        self.end_from_trigger = end_from_trigger
        self.stream_output = stream_output
        self.output_limit = output_limit
        # Why a wait asked to start in the triggerer starts in a worker (task log).
        self.start_in_worker_reason = self._why_not_from_trigger() if start_from_trigger else None
        self.start_from_trigger = start_from_trigger and self.start_in_worker_reason is None
        if self.start_from_trigger:
            self.start_trigger_args = dataclasses.replace(
                self.start_trigger_args,
                trigger_kwargs=self._job_trigger_kwargs(self.jobid, self.eventlog),
                timeout=timedelta(seconds=self.timeout),
            )

    def _why_not_from_trigger(self) -> str | None:
        """Why the triggerer cannot start this wait, if it cannot."""
        fields = [getattr(self, field) for field in self.template_fields]
        if not self.deferrable:
            return "the sensor is not deferrable"
        if any(isinstance(value, XComArg) for value in fields):
            return "an upstream task's output (XComArg) is resolved only in a worker"
        if any(is_template(value) for value in fields):
            if not TRIGGER_RENDERS_TEMPLATES:
                return "the triggerer renders templated fields only from Airflow 3.3"
            if any(_pulls_all_map_indexes(value) for value in fields):
                # The triggerer of 3.3 does not serve that request: the trigger would hang.
                return (
                    "a template calls xcom_pull without map_indexes, which the triggerer "
                    "cannot answer; pass map_indexes=-1 to start in the triggerer"
                )
            return None
        try:
            FluxJobEventTrigger(**self._job_trigger_kwargs(self.jobid, self.eventlog))
        except (TypeError, ValueError) as err:
            return f"its arguments are not a valid wait ({err}); the worker fails it"
        return None

    def _job_trigger_kwargs(self, jobid: Any, eventlog: str) -> dict[str, Any]:
        return {
            **self._trigger_kwargs(eventlog),
            "jobid": jobid,
            "end_from_trigger": self.end_from_trigger,
            "xcom_push": self.do_xcom_push,
            "stream_output": self.stream_output,
            "output_limit": self.output_limit,
        }

    def _validated_jobid(self) -> int:
        try:
            return parse_jobid(self.jobid)
        except (TypeError, ValueError) as err:
            raise FluxJobNotFoundError(f"{self.task_id}: bad jobid: {err}") from err

    def execute(self, context: Context) -> Any:
        if self.start_in_worker_reason:
            self.log.info("started in a worker, not the triggerer: %s", self.start_in_worker_reason)
        jobid = self._validated_jobid()
        # Bad input fails here, before deferring.
        spec, eventlog = self._resolved_wait()
        if not self.deferrable:
            if self.stream_output:
                self.log.warning("stream_output: no live output in poke mode (not deferrable)")
            return super().execute(context)
        self.log.info("deferring until %s of Flux job %s", spec.describe(), format_jobid(jobid))
        self.defer(
            trigger=FluxJobEventTrigger(**self._job_trigger_kwargs(jobid, eventlog)),
            method_name="execute_complete",
            timeout=self._time_left(context),
        )

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> Any:
        """Resume after the trigger fired: return the event, or fail with why."""
        if event and event.get("status") == STATUS_START_IN_WORKER:
            self.log.info("%s", event.get("message"))
            return self.execute(context)
        return job_event_result(self._checked(event))

    def poke(self, context: Context) -> bool | PokeReturnValue:
        jobid = self._validated_jobid()
        spec, eventlog = self._resolved_wait()
        outcome = _poke_jobs(self.hook(), spec, [jobid], eventlog).get(jobid)
        if outcome is None:
            return False
        if outcome.reason is None:
            self.log.info("%s", outcome.message)
            payload = {"event": outcome.event_dict(), "jobid": jobid, "job": format_jobid(jobid)}
            return PokeReturnValue(is_done=True, xcom_value=job_event_result(payload))
        if outcome.reason == REASON_JOB_EXCEPTION:
            raise FluxJobExceptionError(outcome.message, jobid, outcome.event_dict() or {})
        if outcome.reason == REASON_EVENTLOG_ENDED:
            raise FluxEventNeverHappenedError(outcome.message)
        raise FluxJobNotFoundError(outcome.message)


def _pulls_all_map_indexes(value: Any) -> bool:
    """Whether a template pulls an XCom of every map index (``xcom_pull`` with no
    ``map_indexes``)."""
    if isinstance(value, Mapping):
        return any(_pulls_all_map_indexes(item) for item in value.values())
    return isinstance(value, str) and "xcom_pull(" in value and "map_indexes" not in value


def _poke_jobs(
    hook: FluxHook, spec: EventWaitSpec, jobids: list[int], eventlog: str
) -> dict[int, JobOutcome]:
    """The outcomes of the jobs whose eventlogs, as they stand, decide the wait (read
    on one handle); the others are left out, to keep waiting.

    :raises FluxConnectionFailedError: the instance could not be read (a retry may help).
    """
    outcomes: dict[int, JobOutcome] = {}
    for jobid, read in zip(jobids, hook.read_eventlogs(jobids, eventlog), strict=True):
        if isinstance(read, FileNotFoundError):
            outcomes[jobid] = JobOutcome(REASON_NOT_FOUND, None, str(read))
        elif isinstance(read, PermissionError):
            outcomes[jobid] = JobOutcome(REASON_PERMISSION, None, str(read))
        elif isinstance(read, OSError):
            raise FluxConnectionFailedError(str(read)) from read
        elif (result := spec.judge_eventlog(*read)) is not None:
            outcomes[jobid] = outcome_of(spec, jobid, eventlog, result)
    return outcomes


class FluxJobsEventSensor(FluxEventSensorBase):
    """Waits for an event of many Flux jobs, as one task: all of them, any one, or at
    least N (``wait_for``), with ``max_failures`` jobs allowed to fail.

    Each job is judged as :class:`FluxJobEventSensor` judges one; a job *fails* when
    that wait would fail (a fatal exception before the event, an eventlog that ends
    without it, a job that cannot be read). The wait ends as soon as its outcome is
    decided. Deferrable by default: one :class:`FluxJobsEventTrigger` on one shared
    connection, whatever the number of jobs; otherwise each poke reads every eventlog.

    The task returns (XCom) ``matched``, ``failed``, ``pending`` (counts) and ``jobs``:
    for each job, in order, ``jobid``, ``job`` (F58), ``outcome`` (``matched``, why it
    failed: ``job_exception``, ``eventlog_ended``, ``not_found``, ..., or ``pending``),
    ``event`` (the matching event or the fatal exception) and ``message``. Too many
    failures fail the task without retry (:class:`FluxJobsFailedError`, naming the
    jobs, their exception types and notes).

    :param jobids: the jobs (templated): a list of IDs in any encoding, or text such
        as an upstream task's XCom rendered into a template: a JSON list, or IDs
        separated by commas or white space.
    :param wait_for: ``"all"`` (default), ``"any"``, or a number N of jobs.
    :param max_failures: how many jobs may fail before the task fails (default 0).

    The other arguments are :class:`FluxEventSensorBase`'s.
    """

    template_fields: Sequence[str] = ("jobids", "event", "eventlog", "match_context", "flux_uri")

    def __init__(
        self,
        *,
        jobids: Sequence[int | str] | str,
        wait_for: str | int = WAIT_FOR_ALL,
        max_failures: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.jobids = jobids
        self.wait_for = wait_for
        self.max_failures = max_failures

    def _validated(self) -> tuple[list[int], EnsembleRule]:
        try:
            jobids = parse_jobids(self.jobids, limits().max_jobs)
            return jobids, EnsembleRule(self.wait_for, self.max_failures, len(jobids))
        except ValueError as err:
            raise FluxInvalidWaitError(f"{self.task_id}: {err}") from err

    def execute(self, context: Context) -> Any:
        # Bad input fails here, before deferring.
        (jobids, rule), (spec, eventlog) = self._validated(), self._resolved_wait()
        if not self.deferrable:
            return super().execute(context)
        self.log.info("deferring until %s of %s", spec.describe(), rule.describe())
        self.defer(
            trigger=FluxJobsEventTrigger(
                jobids,
                wait_for=self.wait_for,
                max_failures=self.max_failures,
                **self._trigger_kwargs(eventlog),
            ),
            method_name="execute_complete",
            timeout=self._time_left(context),
        )

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> Any:
        """Resume after the trigger fired: return each job's outcome, or fail with why."""
        return ensemble_result(self._checked(event))

    def poke(self, context: Context) -> bool | PokeReturnValue:
        (jobids, rule), (spec, eventlog) = self._validated(), self._resolved_wait()
        outcomes = _poke_jobs(self.hook(), spec, jobids, eventlog)
        matched = sum(1 for outcome in outcomes.values() if outcome.reason is None)
        decision = rule.decide(matched, len(outcomes) - matched)
        if decision is None:
            return False
        payload = ensemble_payload(spec, rule, eventlog, jobids, outcomes, decision)
        return PokeReturnValue(is_done=True, xcom_value=ensemble_result(self._checked(payload)))
