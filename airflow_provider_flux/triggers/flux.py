"""``FluxJobEventTrigger``: waits in the triggerer for an event of a Flux job."""

from __future__ import annotations

import errno
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import aclosing
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_flux.aio import (
    FluxConnectionError,
    FluxConnectionLost,
    FluxWatchError,
    watch,
)
from airflow_provider_flux.aio.errors import CONNECTION_ERRNOS
from airflow_provider_flux.aio.watch import Reconnect
from airflow_provider_flux.event_wait import EventWaitSpec
from airflow_provider_flux.events import JobEvent
from airflow_provider_flux.hooks.flux import FluxHook
from airflow_provider_flux.jobid import format_jobid, parse_jobid

# Why a wait failed, as carried in the trigger event's ``reason``.
REASON_JOB_EXCEPTION = "job_exception"
REASON_EVENTLOG_ENDED = "eventlog_ended"
REASON_NOT_FOUND = "not_found"
REASON_PERMISSION = "permission"
REASON_CONNECTION = "connection"
REASON_ERROR = "error"


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
    :param eventlog: ``eventlog``, or a guest eventlog such as ``guest.exec.eventlog``.
    :param flux_conn_id: the ``flux`` Airflow connection of the instance.
    :param match_context: key/values the event's context must contain.
    :param raise_on_exception: fail on a fatal job exception before the event.
    :param waitcreate: wait for a guest eventlog that does not exist yet.
    :param reconnect_attempts: reconnections in a row after a lost connection.
    :param include_events: names of events to carry, every occurrence before the end
        of the wait, in the payload's ``events`` list (e.g. ``finish``, ``exception``).
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
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # BaseTrigger is unannotated
        self.jobid = parse_jobid(jobid)
        self.event = event
        self.eventlog = eventlog
        self.flux_conn_id = flux_conn_id
        self.match_context = dict(match_context or {})
        self.raise_on_exception = raise_on_exception
        self.waitcreate = waitcreate
        self.reconnect_attempts = reconnect_attempts
        self.include_events = list(include_events)
        self.spec = EventWaitSpec(event, self.match_context, raise_on_exception)

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
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        payload = await self._wait()
        log = self.log.info if payload["status"] == "success" else self.log.error
        log("%s", payload["message"])
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
        events = watch(
            self.jobid,
            self.eventlog,
            uri=uri,
            waitcreate=self.waitcreate,
            reconnect=Reconnect(attempts=self.reconnect_attempts),
        )
        try:
            async with aclosing(events) as stream:
                async for event in stream:
                    self.log.debug("job %s: %s %s", job, event.name, event.context)
                    if event.name in self.include_events:
                        self._included.append(event)
                    verdict = self.spec.judge(event)
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
                        self.log.info(
                            "job %s: non-fatal exception type=%s severity=%s: %s",
                            job, event.context.get("type"), event.context.get("severity"),
                            event.context.get("note"),
                        )  # fmt: skip
        except FluxWatchError as err:
            return self._payload(
                "error", str(err.strerror), reason=_reason_for(err), errno=err.errno
            )
        return self._payload(
            "error",
            f"job {job}: eventlog ended before event='{self.event}' (eventlog {self.eventlog!r})",
            reason=REASON_EVENTLOG_ENDED,
            errno=errno.ENODATA,
        )


def _reason_for(err: FluxWatchError) -> str:
    errnum = err.errno
    if isinstance(err, (FluxConnectionError, FluxConnectionLost)) or errnum in CONNECTION_ERRNOS:
        return REASON_CONNECTION
    if errnum == errno.ENOENT:
        return REASON_NOT_FOUND
    if errnum == errno.EPERM:
        return REASON_PERMISSION
    return REASON_ERROR
