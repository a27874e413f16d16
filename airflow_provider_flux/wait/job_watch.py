"""A wait on one job, watched on the engine's shared connection."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import aclosing
from typing import Any, Protocol

from airflow_provider_flux.aio.errors import FluxWatchError
from airflow_provider_flux.aio.watch import Reconnect, watch
from airflow_provider_flux.job.event import JobEvent
from airflow_provider_flux.job.jobid import format_jobid
from airflow_provider_flux.wait.outcome import JobOutcome, failed_watch_outcome, outcome_of
from airflow_provider_flux.wait.spec import EventWaitSpec, WaitResult


class Log(Protocol):
    """What waits log to: a trigger's or a task's ``log``, or a ``logging.Logger``."""

    def info(self, event: Any, /, *args: Any) -> Any: ...

    def warning(self, event: Any, /, *args: Any) -> Any: ...

    def error(self, event: Any, /, *args: Any) -> Any: ...


async def wait_on_job(
    spec: EventWaitSpec,
    jobid: int,
    eventlog: str,
    *,
    uri: str | None,
    waitcreate: bool,
    reconnect: Reconnect,
    log: Log,
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
        return failed_watch_outcome(err)
    return outcome_of(spec, jobid, eventlog, WaitResult("eventlog_ended", None))
