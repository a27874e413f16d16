"""The simulated ``job-info`` service: eventlog watches, lookups, statistics.

As ``src/modules/job-info/watch.c`` and ``guest_watch.c`` of flux-core serve them:
``job-info.eventlog-watch`` replays an eventlog from its first event, then streams
new ones; the main eventlog ends (ENODATA) after ``clean``, a guest eventlog waits
for the job to start and ends once the job is inactive. Unknown job or path:
ENOENT (a path is waited for with the WAITCREATE flag).
``job-info.eventlog-watch-cancel`` ends the named stream with ENODATA.

A job submitted with ``attributes.system.simulator.lost_output_watch`` plays a
flux-core 0.88.0 fault: a ``guest.output`` watch sent just as a short job ends may
never be answered (seen about one time in two). Its first such watch gets nothing
until it is cancelled.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_provider_flux.testing import protocol
from airflow_provider_flux.testing.broker.jobs import (
    GUEST_PREFIX,
    MAIN_EVENTLOG,
    OUTPUT_EVENTLOG,
    Job,
    RequestError,
    jobspec_text,
)
from airflow_provider_flux.testing.protocol import Message

if TYPE_CHECKING:
    from airflow_provider_flux.testing.broker.server import Client, Handler, SimulatedBroker

WAITCREATE = 1  # FLUX_JOB_EVENT_WATCH_WAITCREATE
INITIAL_SENTINEL = 2  # FLUX_JOB_EVENT_WATCH_INITIAL_SENTINEL


@dataclass(eq=False)
class Watcher:
    """One ``job-info.eventlog-watch`` stream."""

    client: Client
    matchtag: int
    job: Job
    path: str
    flags: int
    sent: int = 0
    streaming: bool = False
    lost: bool = False  # never answered (flux-core 0.88.0, see JobInfoService)
    sentinel_sent: bool = False


class JobInfoService:
    """``job-info.*``: a job's eventlogs and jobspec, read or watched."""

    def __init__(self, broker: SimulatedBroker) -> None:
        self.broker = broker

    def handlers(self) -> dict[str, Handler]:
        return {
            "job-info.eventlog-watch": self._eventlog_watch,
            "job-info.eventlog-watch-cancel": self._eventlog_watch_cancel,
            "job-info.lookup": self._lookup,
            "job-info.stats-get": self._stats,
        }

    def forget(self, client: Client) -> None:
        """A client went away: its watches end with it."""
        for job in self.broker.jobs.values():
            job.watchers = [w for w in job.watchers if w.client is not client]

    def _eventlog_watch(self, client: Client, message: Message) -> None:
        payload = message.get("payload") or {}
        job = self.broker.job(payload)
        if not self.broker.allowed(job, message):
            raise RequestError(errno.EPERM)
        path = payload.get("path", MAIN_EVENTLOG)
        flags = int(payload.get("flags", 0))
        guest = path.startswith(GUEST_PREFIX)
        if not guest and path not in job.eventlogs and not flags & WAITCREATE:
            raise RequestError(errno.ENOENT)
        watcher = Watcher(client, int(message["matchtag"]), job, path, flags)
        if path == OUTPUT_EVENTLOG and job.lose_output_watch:
            job.lose_output_watch = False
            watcher.lost = True
        job.watchers.append(watcher)
        self.pump(watcher)

    def pump(self, watcher: Watcher) -> None:
        """Send a watcher what it has not seen; end it when its eventlog is complete."""
        job, path = watcher.job, watcher.path
        if watcher.lost:
            return
        if path.startswith(GUEST_PREFIX) and not watcher.streaming:
            # A guest eventlog is read once the job's guest namespace exists.
            # A job that never started has empty guest eventlogs; one that did has
            # only those its exec system and shell wrote.
            if not job.started and not job.inactive:
                return
            if job.started and path not in job.eventlogs and not watcher.flags & WAITCREATE:
                self._finish(watcher, errno.ENOENT)
                return
            watcher.streaming = True
        lines = job.eventlogs.get(path, [])
        while watcher.sent < len(lines):
            self.broker.send(
                watcher.client, protocol.response(watcher.matchtag, {"event": lines[watcher.sent]})
            )
            watcher.sent += 1
        if watcher.flags & INITIAL_SENTINEL and not watcher.sentinel_sent:
            # flux-core's job-info: an empty response once what was there is sent.
            watcher.sentinel_sent = True
            self.broker.send(watcher.client, protocol.response(watcher.matchtag, {}))
        if job.inactive:
            self._finish(watcher, errno.ENODATA)

    def _finish(self, watcher: Watcher, errnum: int) -> None:
        if watcher in watcher.job.watchers:
            watcher.job.watchers.remove(watcher)
        self.broker.send(watcher.client, protocol.error_response(watcher.matchtag, errnum))

    def _eventlog_watch_cancel(self, client: Client, message: Message) -> None:
        matchtag = int((message.get("payload") or {}).get("matchtag", -1))
        for job in self.broker.jobs.values():
            for watcher in list(job.watchers):
                if watcher.client is client and watcher.matchtag == matchtag:
                    self._finish(watcher, errno.ENODATA)
        return None

    def _lookup(self, client: Client, message: Message) -> dict[str, Any]:
        payload = message.get("payload") or {}
        job = self.broker.job(payload, "invalid job id")
        if not self.broker.allowed(job, message):
            raise RequestError(errno.EPERM, "access is restricted to job/instance owner")
        result: dict[str, Any] = {"id": job.id}
        for key in payload.get("keys", []):
            if key == "jobspec" and job.jobspec is not None:
                result[key] = jobspec_text(job.jobspec)
                continue
            # Guest eventlogs reach the main namespace when the job releases.
            copied = not key.startswith(GUEST_PREFIX) or job.has_event("release")
            if key not in job.eventlogs or not copied:
                raise RequestError(errno.ENOENT, f"{key}: key not found")
            result[key] = "".join(line + "\n" for line in job.eventlogs[key])
        return result

    def _watcher_count(self, guest: bool) -> int:
        return sum(
            1
            for job in self.broker.jobs.values()
            for w in job.watchers
            if w.path.startswith(GUEST_PREFIX) == guest
        )

    def _stats(self, client: Client, message: Message) -> dict[str, Any]:
        return {
            "watchers": self._watcher_count(guest=False),
            "guest_watchers": self._watcher_count(guest=True),
            "clients": len(self.broker.clients),
            "jobs": len(self.broker.jobs),
        }
