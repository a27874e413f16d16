"""``FluxJobEventSensor``: gate a task on an event of a Flux job."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from airflow_provider_flux.deferral import default_deferrable, raise_for_failure
from airflow_provider_flux.event_wait import EventWaitSpec, resolve_eventlog
from airflow_provider_flux.exceptions import (
    FluxConnectionFailedError,
    FluxEventNeverHappenedError,
    FluxInvalidWaitError,
    FluxJobExceptionError,
    FluxJobNotFoundError,
)
from airflow_provider_flux.hooks.flux import FluxHook
from airflow_provider_flux.jobid import format_jobid, parse_jobid
from airflow_provider_flux.triggers.flux import FluxJobEventTrigger
from airflow_provider_flux.version_compat import (
    BaseSensorOperator,
    Context,
    PokeReturnValue,
    timezone,
)


class FluxJobEventSensor(BaseSensorOperator):
    """Waits for an event of a Flux job; fails on a fatal job exception.

    Deferrable by default: the wait runs in the triggerer (:class:`FluxJobEventTrigger`)
    and holds no worker slot. Otherwise each poke reads the eventlog as it stands.
    Semantics follow ``flux job wait-event``: the first event named ``event`` whose
    context contains ``match_context`` succeeds, and the task returns it (XCom:
    ``name``, ``timestamp``, ``context``, plus ``jobid`` and ``job``); a fatal job
    exception before it fails the task without retry (``soft_fail``: skips it), with
    the job ID, the exception type and its note in the message.

    :param jobid: the job ID, any Flux encoding (templated: e.g. from an upstream XCom).
    :param event: the event to wait for (templated): ``alloc``, ``start``, ``finish``,
        ``clean``, ``exception``; in ``guest.exec.eventlog``: ``shell.start``, ``complete``.
    :param eventlog: ``eventlog`` (default), a guest eventlog path, or a short name as
        ``flux job wait-event -p`` takes: ``exec``, ``output``, ``input`` (templated).
    :param flux_conn_id: the ``flux`` Airflow connection.
    :param match_context: key/values the event's context must contain (templated).
    :param raise_on_exception: fail on a fatal job exception before the event.
    :param count: wait for the ``count``-th matching event (``flux job wait-event --count``).
    :param waitcreate: wait for a guest eventlog that does not exist yet (deferrable mode).
    :param deferrable: defer to the triggerer (default True; see :func:`default_deferrable`).
    """

    template_fields: Sequence[str] = ("jobid", "event", "eventlog", "match_context")
    ui_color = "#e8f4fc"

    def __init__(
        self,
        *,
        jobid: int | str,
        event: str,
        eventlog: str = "eventlog",
        flux_conn_id: str = FluxHook.default_conn_name,
        match_context: Mapping[str, Any] | None = None,
        raise_on_exception: bool = True,
        waitcreate: bool = False,
        count: int = 1,
        deferrable: bool | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.jobid = jobid
        self.event = event
        self.eventlog = eventlog
        self.flux_conn_id = flux_conn_id
        self.match_context = dict(match_context or {})
        self.raise_on_exception = raise_on_exception
        self.waitcreate = waitcreate
        self.count = count
        self.deferrable = default_deferrable() if deferrable is None else deferrable

    def _spec(self) -> EventWaitSpec:
        """The wait, once the templated fields are rendered; bad ones fail without retry."""
        try:
            return EventWaitSpec(
                self.event, self.match_context, self.raise_on_exception, self.count
            )
        except ValueError as err:
            raise FluxInvalidWaitError(f"{self.task_id}: {err}") from err

    def _eventlog(self) -> str:
        try:
            return resolve_eventlog(self.eventlog)
        except ValueError as err:
            raise FluxInvalidWaitError(f"{self.task_id}: {err}") from err

    def _validated_jobid(self) -> int:
        try:
            return parse_jobid(self.jobid)
        except (TypeError, ValueError) as err:
            raise FluxJobNotFoundError(f"{self.task_id}: bad jobid: {err}") from err

    def execute(self, context: Context) -> Any:
        jobid = self._validated_jobid()
        # Bad input fails here, before deferring.
        spec, eventlog = self._spec(), self._eventlog()
        if not self.deferrable:
            return super().execute(context)
        self.log.info("deferring until %s of Flux job %s", spec.describe(), format_jobid(jobid))
        self.defer(
            trigger=FluxJobEventTrigger(
                jobid=jobid,
                event=self.event,
                eventlog=eventlog,
                flux_conn_id=self.flux_conn_id,
                match_context=self.match_context,
                raise_on_exception=self.raise_on_exception,
                waitcreate=self.waitcreate,
                count=self.count,
            ),
            method_name="execute_complete",
            timeout=self._time_left(context),
        )

    def _time_left(self, context: Context) -> timedelta:
        """What remains of the sensor ``timeout`` since this try started."""
        started = getattr(context.get("ti"), "start_date", None)
        elapsed = (timezone.utcnow() - started).total_seconds() if started else 0.0
        return timedelta(seconds=max(0.0, self.timeout - elapsed))

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> Any:
        """Resume after the trigger fired: return the event, or fail with why."""
        if not event:
            raise FluxConnectionFailedError(f"{self.task_id}: the trigger returned no event")
        if event.get("status") != "success":
            raise_for_failure(event)
        self.log.info("%s", event.get("message"))
        return {**event["event"], "jobid": event["jobid"], "job": event["job"]}

    def poke(self, context: Context) -> bool | PokeReturnValue:
        jobid = self._validated_jobid()
        spec, eventlog = self._spec(), self._eventlog()
        hook = FluxHook(self.flux_conn_id)
        try:
            events, complete = hook.read_eventlog(jobid, eventlog)
        except FileNotFoundError as err:
            raise FluxJobNotFoundError(str(err)) from err
        except PermissionError as err:
            raise FluxJobNotFoundError(str(err)) from err
        except OSError as err:
            raise FluxConnectionFailedError(str(err)) from err
        result = spec.judge_eventlog(events, complete)
        if result is None:
            return False
        job = format_jobid(jobid)
        if result.verdict == "matched":
            assert result.event is not None
            self.log.info("job %s: %s happened", job, spec.describe())
            value = {**result.event.to_dict(), "jobid": jobid, "job": job}
            return PokeReturnValue(is_done=True, xcom_value=value)
        if result.verdict == "job_exception":
            assert result.event is not None
            ctx = result.event.context
            raise FluxJobExceptionError(
                f"job {job}: fatal exception type={ctx.get('type')} before "
                f"{spec.describe()}: {ctx.get('note') or '(no note)'}",
                jobid,
                result.event.to_dict(),
            )
        raise FluxEventNeverHappenedError(
            f"job {job}: eventlog ended before {spec.describe()} (eventlog {eventlog!r})"
        )
