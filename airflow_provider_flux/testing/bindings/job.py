"""Stand-in for ``flux.job``: eventlog watches, lookups, job listings, submit and cancel.

Names, signatures and behaviour follow flux-core's ``flux/job/event.py``,
``kvslookup.py``, ``list.py``, ``submit.py`` and ``kill.py``.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from airflow_provider_flux.testing.bindings.handle import Flux, Future


class EventLogEvent(dict[str, Any]):
    """One eventlog entry (RFC 18): ``name``, ``timestamp``, ``context``."""

    def __init__(self, event: str | dict[str, Any]) -> None:
        super().__init__(json.loads(event) if isinstance(event, str) else event)
        self.setdefault("context", {})

    @property
    def name(self) -> str:
        return str(self["name"])

    @property
    def timestamp(self) -> float:
        return float(self["timestamp"])

    @property
    def context(self) -> dict[str, Any]:
        context: dict[str, Any] = self["context"]
        return context


class JobException(Exception):
    """An ``exception`` event of a job, raised by :func:`event_wait`."""

    def __init__(self, event: EventLogEvent) -> None:
        self.timestamp = event.timestamp
        self.type = event.context["type"]
        self.note = event.context["note"]
        self.severity = event.context["severity"]
        super().__init__()

    def __str__(self) -> str:
        return f"job.exception: type={self.type}: {self.note}"


class JobEventWatchFuture:
    """The future of ``event_watch_async``; ``get_event()`` returns ``None`` at the end."""

    def __init__(self, future: Future) -> None:
        self._future = future
        self.needs_cancel = True

    def __del__(self) -> None:
        if getattr(self, "needs_cancel", False):
            with contextlib.suppress(OSError):
                self.cancel()

    def then(self, callback: Any, *args: Any, **kwargs: Any) -> JobEventWatchFuture:
        self._future.then(lambda _f, *a, **kw: callback(self, *a, **kw), *args, **kwargs)
        return self

    def stop(self) -> None:
        self._future.stop()

    def is_ready(self) -> bool:
        return self._future.is_ready()

    def get_event(self, autoreset: bool = True) -> EventLogEvent | None:
        try:
            payload = self._future.get()
        except OSError as exc:
            if exc.errno == errno.ENODATA:
                self.needs_cancel = False
                return None
            raise
        if autoreset:
            self._future.reset()
        return EventLogEvent(payload["event"])

    def cancel(self, stop: bool = False) -> None:
        """Ask the broker to end the stream (it answers with ENODATA)."""
        self._future._handle._notify(
            "job-info.eventlog-watch-cancel", {"matchtag": self._future.matchtag}
        )
        self.needs_cancel = False
        if stop:
            self.stop()


def event_watch_async(
    flux_handle: Flux, jobid: int, eventlog: str = "eventlog", flags: int = 0
) -> JobEventWatchFuture:
    """Watch a job eventlog (``flags``: ``FLUX_JOB_EVENT_WATCH_WAITCREATE``)."""
    payload = {"id": int(jobid), "path": eventlog, "flags": flags}
    return JobEventWatchFuture(
        flux_handle._request("job-info.eventlog-watch", payload, streaming=True)
    )


def event_watch(
    flux_handle: Flux, jobid: int, eventlog: str = "eventlog"
) -> Iterator[EventLogEvent]:
    """Blocking generator over a job's events."""
    watcher = event_watch_async(flux_handle, jobid, eventlog)
    event = watcher.get_event()
    while event is not None:
        yield event
        event = watcher.get_event()


def event_wait(
    flux_handle: Flux,
    jobid: int,
    name: str,
    eventlog: str = "eventlog",
    raiseJobException: bool = True,
) -> EventLogEvent:
    """Block until event ``name``; ``JobException`` on a fatal exception first."""
    for event in event_watch(flux_handle, jobid, eventlog):
        if event.name == name:
            return event
        if raiseJobException and event.name == "exception" and event.context["severity"] == 0:
            raise JobException(event)
    raise OSError(errno.ENODATA, f"eventlog ended before event='{name}'")


def job_info_lookup(
    flux_handle: Flux, jobid: int, keys: list[str] | None = None, flags: int = 0
) -> Future:
    """Read job keys (``eventlog``, ``jobspec``: JSON text, ...) as they stand: one RPC."""
    payload = {"id": int(jobid), "keys": keys or ["jobspec"], "flags": flags}
    return flux_handle.rpc("job-info.lookup", payload)


class JobListRPC:
    """The future of :func:`job_list`."""

    def __init__(self, future: Future) -> None:
        self._future = future

    def get_jobs(self) -> list[dict[str, Any]]:
        """The jobs (blocking): dicts with ``id`` and the attrs asked for."""
        return list(self._future.get()["jobs"])


def job_list(
    flux_handle: Flux,
    max_entries: int = 1000,
    attrs: Sequence[str] = ("all",),
    userid: int = os.getuid(),
    states: int = 0,
    results: int = 0,
    since: float = 0.0,
    name: str | None = None,
    queue: str | Iterable[str] | None = None,
    constraint: dict[str, Any] | None = None,
) -> JobListRPC:
    """List jobs (``job-list.list``) as flux-core builds the request: the user's
    (``FLUX_USERID_UNKNOWN``: everyone's), ``states`` or ``results`` (masks), and
    ``constraint`` (RFC 31); ``queue``: a job's ``attributes.system.queue``."""
    terms: list[dict[str, Any]] = [] if constraint is None else [constraint]
    if userid != 0xFFFFFFFF:  # FLUX_USERID_UNKNOWN
        terms.append({"userid": [userid]})
    if name:
        terms.append({"name": [name]})
    if queue:
        terms.append({"queue": [queue] if isinstance(queue, str) else list(queue)})
    if states and results:
        terms.append({"or": [{"states": [states]}, {"results": [results]}]})
    elif states or results:
        terms.append({"states": [states]} if states else {"results": [results]})
    payload = {
        "max_entries": int(max_entries),
        "attrs": list(attrs),
        "since": since,
        "constraint": {"and": terms},
    }
    return JobListRPC(flux_handle.rpc("job-list.list", payload))


class SubmitFuture:
    """The future of :func:`submit_async`."""

    def __init__(self, future: Future) -> None:
        self._future = future

    def get_id(self) -> int:
        return int(self._future.get()["id"])

    def get(self) -> Any:
        return self._future.get()

    def then(self, callback: Any, *args: Any, **kwargs: Any) -> SubmitFuture:
        self._future.then(lambda _f, *a, **kw: callback(self, *a, **kw), *args, **kwargs)
        return self


def submit_async(
    flux_handle: Flux, jobspec: Any, urgency: int = 16, **_kwargs: Any
) -> SubmitFuture:
    """Submit a jobspec: its JSON text, a dict, or an object with ``dumps()``."""
    if hasattr(jobspec, "dumps"):
        jobspec = jobspec.dumps()
    if not isinstance(jobspec, (str, bytes)):
        jobspec = json.dumps(jobspec)
    payload = {"J": jobspec if isinstance(jobspec, str) else jobspec.decode(), "urgency": urgency}
    return SubmitFuture(flux_handle.rpc("job-manager.submit", payload))


def submit(flux_handle: Flux, jobspec: Any, urgency: int = 16, **kwargs: Any) -> int:
    """Submit and return the job ID (blocking)."""
    return submit_async(flux_handle, jobspec, urgency, **kwargs).get_id()


def job_raise_async(
    flux_handle: Flux, jobid: int, exc_type: str, severity: int = 0, note: str | None = None
) -> Future:
    """Raise a job exception."""
    payload = {"id": int(jobid), "type": exc_type, "severity": severity, "note": note or ""}
    return flux_handle.rpc("job-manager.raise", payload)


def cancel_async(flux_handle: Flux, jobid: int, reason: str | None = None) -> Future:
    """Cancel a job: a fatal ``cancel`` exception."""
    return job_raise_async(flux_handle, jobid, "cancel", 0, reason)


def cancel(flux_handle: Flux, jobid: int, reason: str | None = None) -> None:
    cancel_async(flux_handle, jobid, reason).get()
