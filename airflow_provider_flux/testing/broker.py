"""The simulated Flux broker: jobs, their eventlogs, and eventlog watchers.

It serves the RPCs the provider sends to a real broker, with the same semantics
(see ``src/modules/job-info/watch.c`` and ``guest_watch.c`` in flux-core):

- ``job-info.eventlog-watch`` replays an eventlog from its first event, then streams
  new ones; the main eventlog ends (ENODATA) after ``clean``, a guest eventlog
  waits for the job to start and ends once the job is inactive. Unknown job or
  path: ENOENT (a path is waited for with the WAITCREATE flag).
- ``job-info.eventlog-watch-cancel`` ends the named stream with ENODATA.
- ``job-info.lookup``, ``job-info.stats-get``, ``job-manager.submit`` and
  ``job-manager.raise`` (what ``flux cancel`` sends).
- A client that disconnects loses its watchers, as on a real broker.

``sim.*`` topics script it from tests: submit a scenario and hold it before an
event, release it, post an event now, drop every connection.
"""

from __future__ import annotations

import errno
import heapq
import itertools
import json
import os
import selectors
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_flux.testing import protocol
from airflow_provider_flux.testing.protocol import Message
from airflow_provider_flux.testing.scenarios import DEFAULT_SCENARIO, load_scenario

WAITCREATE = 1
MAIN_EVENTLOG = "eventlog"
GUEST_PREFIX = "guest."


class RequestError(Exception):
    """Turns into an error response to the request being served."""

    def __init__(self, errnum: int, errstr: str | None = None) -> None:
        super().__init__(errnum, errstr)
        self.errnum = errnum
        self.errstr = errstr


def validate_jobspec(text: str) -> dict[str, Any]:
    """The checks job-ingest makes, with the answers flux-core 0.88.0 gives."""
    try:
        jobspec = json.loads(text)
    except ValueError as err:
        raise RequestError(errno.EINVAL, f"jobspec: invalid JSON: {err}") from err
    if not isinstance(jobspec, dict):
        raise RequestError(errno.EINVAL, "jobspec: invalid JSON: '[' or '{' expected")
    for key in ("resources", "tasks", "attributes", "version"):
        if key not in jobspec:
            raise RequestError(errno.EPERM, f"Missing key ({key})")
    if jobspec["version"] != 1:
        raise RequestError(errno.EPERM, "version must be 1")
    for task in jobspec["tasks"]:
        if not task.get("command"):
            raise RequestError(errno.EPERM, "command array cannot have length of zero")
    duration = jobspec["attributes"].get("system", {}).get("duration", 0)
    if not isinstance(duration, (int, float)) or duration < 0:
        raise RequestError(errno.EPERM, "duration must be a non-negative number")
    return dict(jobspec)


@dataclass(eq=False)
class Client:
    sock: socket.socket
    decoder: protocol.LineDecoder = field(default_factory=protocol.LineDecoder)
    outbox: bytearray = field(default_factory=bytearray)


@dataclass(eq=False)
class Watcher:
    client: Client
    matchtag: int
    job: Job
    path: str
    flags: int
    sent: int = 0
    streaming: bool = False


@dataclass(eq=False)
class Job:
    id: int
    private: bool = False
    eventlogs: dict[str, list[str]] = field(default_factory=dict)
    held: list[tuple[float, str, str, dict[str, Any]]] = field(default_factory=list)
    timers: list[list[Any]] = field(default_factory=list)
    watchers: list[Watcher] = field(default_factory=list)

    def has_event(self, name: str) -> bool:
        return any(f'"name":"{name}"' in line for line in self.eventlogs.get(MAIN_EVENTLOG, []))

    @property
    def started(self) -> bool:
        return self.has_event("start")

    @property
    def inactive(self) -> bool:
        return self.has_event("clean")


class SimulatedBroker:
    """A single-threaded broker listening on a Unix socket.

    :param socket_path: where to listen.
    :param speed: how much faster than recorded the scenarios run (1.0: real time).
    """

    def __init__(self, socket_path: str, speed: float = 1.0) -> None:
        self.socket_path = socket_path
        self.speed = speed
        self.jobs: dict[int, Job] = {}
        self._started = time.monotonic()
        self._last_millis = 0
        self._seq = 0
        self._selector = selectors.DefaultSelector()
        self._timers: list[list[Any]] = []
        self._timer_seq = itertools.count()
        self._clients: dict[socket.socket, Client] = {}
        self._listener: socket.socket | None = None
        self._handlers: dict[str, Callable[[Client, Message], Any]] = {
            "job-info.eventlog-watch": self._eventlog_watch,
            "job-info.eventlog-watch-cancel": self._eventlog_watch_cancel,
            "job-info.lookup": self._lookup,
            "job-info.stats-get": self._stats,
            "job-manager.submit": self._submit,
            "job-manager.raise": self._raise,
            "job-manager.urgency": self._urgency,
            "attr.get": self._attr_get,
            "sim.submit": self._submit,
            "sim.release": self._release,
            "sim.post": self._post,
            "sim.drop": self._drop,
        }

    # -- serving -------------------------------------------------------------

    def listen(self) -> None:
        """Bind the socket; clients can connect once this returns."""
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(self.socket_path)
        listener.listen(1024)
        listener.setblocking(False)
        self._selector.register(listener, selectors.EVENT_READ)
        self._listener = listener

    def serve_forever(self) -> None:
        """Serve until the process is stopped."""
        if self._listener is None:
            self.listen()
        while True:
            self._run_once()

    def _run_once(self) -> None:
        timeout = None
        if self._timers:
            timeout = max(0.0, self._timers[0][0] - time.monotonic())
        for key, mask in self._selector.select(timeout):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            if sock is self._listener:
                self._accept()
                continue
            client = self._clients.get(sock)
            if client is None:
                continue
            if mask & selectors.EVENT_READ:
                self._read(client)
            if mask & selectors.EVENT_WRITE and client.sock in self._clients:
                self._flush(client)
        now = time.monotonic()
        while self._timers and self._timers[0][0] <= now:
            _, _, action = heapq.heappop(self._timers)
            if action is not None:
                action()

    def _accept(self) -> None:
        assert self._listener is not None
        try:
            sock, _ = self._listener.accept()
        except BlockingIOError:
            return
        sock.setblocking(False)
        self._clients[sock] = Client(sock)
        self._selector.register(sock, selectors.EVENT_READ)

    def _read(self, client: Client) -> None:
        try:
            data = client.sock.recv(1 << 16)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._disconnect(client)
            return
        for message in client.decoder.feed(data):
            self._dispatch(client, message)

    def _dispatch(self, client: Client, message: Message) -> None:
        matchtag = int(message.get("matchtag", 0))
        handler = self._handlers.get(message.get("topic", ""))
        try:
            if handler is None:
                raise RequestError(errno.ENOSYS, f"unknown service method {message.get('topic')}")
            result = handler(client, message)
        except RequestError as err:
            if matchtag:
                self._send(client, protocol.error_response(matchtag, err.errnum, err.errstr))
            return
        if result is not None and matchtag:
            self._send(client, protocol.response(matchtag, result))

    def _send(self, client: Client, message: Message) -> None:
        if client.sock not in self._clients:
            return
        pending = bool(client.outbox)
        client.outbox += protocol.encode(message)
        if not pending:
            self._flush(client)

    def _flush(self, client: Client) -> None:
        try:
            sent = client.sock.send(client.outbox)
        except BlockingIOError:
            sent = 0
        except OSError:
            self._disconnect(client)
            return
        del client.outbox[:sent]
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if client.outbox else 0)
        self._selector.modify(client.sock, events)

    def _disconnect(self, client: Client) -> None:
        if self._clients.pop(client.sock, None) is None:
            return
        self._selector.unregister(client.sock)
        client.sock.close()
        for job in self.jobs.values():
            job.watchers = [w for w in job.watchers if w.client is not client]

    def _call_later(self, delay: float, action: Callable[[], None]) -> list[Any]:
        timer = [time.monotonic() + delay, next(self._timer_seq), action]
        heapq.heappush(self._timers, timer)
        return timer

    # -- jobs ----------------------------------------------------------------

    def _job(self, payload: dict[str, Any], errstr: str | None = None) -> Job:
        job = self.jobs.get(int(payload.get("id", -1)))
        if job is None:
            raise RequestError(errno.ENOENT, errstr)
        return job

    def _submit(self, client: Client, message: Message) -> dict[str, Any]:
        payload = message.get("payload") or {}
        jobspec = validate_jobspec(payload["J"]) if "J" in payload else {}
        system = jobspec.get("attributes", {}).get("system", {})
        options = {**system.get("simulator", {}), **payload}
        name = options.get("scenario", DEFAULT_SCENARIO)
        # A job array's jobs (FLUX_JOB_CC) may each play their own scenario.
        index = str(system.get("environment", {}).get("FLUX_JOB_CC"))
        name = dict(options.get("scenarios") or {}).get(index, name)
        try:
            scenario = load_scenario(name)
        except ValueError as err:
            raise RequestError(errno.EINVAL, str(err)) from err
        jobid = self._new_jobid()
        job = Job(jobid, private=bool(options.get("private", False)))
        self.jobs[jobid] = job
        hold_before = options.get("hold_before")
        if options.get("urgency") == 0:
            hold_before = hold_before or "alloc"  # urgency 0 is a hold, as in flux
        for event in scenario.schedule():
            item = (event.offset / self.speed, event.eventlog, event.name, event.context)
            if hold_before and (job.held or event.name == hold_before):
                job.held.append(item)
            else:
                self._schedule(job, *item)
        return {"id": jobid}

    def _new_jobid(self) -> int:
        # A FLUID (RFC 19): 40 bits of milliseconds since the instance started,
        # 14 bits of generator ID (0 on rank 0), 10 bits of sequence.
        millis = int((time.monotonic() - self._started) * 1000) + 1
        if millis != self._last_millis:
            self._last_millis, self._seq = millis, 0
        self._seq += 1
        if self._seq >= 1 << 10:
            self._last_millis, self._seq = millis + 1, 0
        return (self._last_millis << 24) | self._seq

    def _schedule(
        self, job: Job, delay: float, path: str, name: str, context: dict[str, Any]
    ) -> None:
        def fire() -> None:
            job.timers.remove(timer)
            self._append(job, path, name, context)

        timer = self._call_later(delay, fire)
        job.timers.append(timer)

    def _release(self, client: Client, message: Message) -> dict[str, Any]:
        job = self._job(message.get("payload") or {})
        if job.held:
            base = job.held[0][0]
            for delay, path, name, context in job.held:
                self._schedule(job, delay - base, path, name, context)
            job.held.clear()
        return {}

    def _urgency(self, client: Client, message: Message) -> dict[str, Any]:
        """A held job (urgency 0) runs once its urgency is raised."""
        if int((message.get("payload") or {}).get("urgency", 0)) > 0:
            return self._release(client, message)
        self._job(message.get("payload") or {})
        return {}

    def _post(self, client: Client, message: Message) -> dict[str, Any]:
        payload = message.get("payload") or {}
        job = self._job(payload)
        self._append(
            job, payload.get("path", MAIN_EVENTLOG), payload["name"], payload.get("context", {})
        )
        return {}

    def _raise(self, client: Client, message: Message) -> dict[str, Any]:
        payload = message.get("payload") or {}
        job = self._job(payload)
        if job.inactive:
            raise RequestError(errno.EINVAL, "job is inactive")
        severity = int(payload.get("severity", 0))
        context = {
            "type": payload.get("type", "cancel"),
            "severity": severity,
            "note": payload.get("note") or "",
            "userid": os.getuid(),
        }
        self._append(job, MAIN_EVENTLOG, "exception", context)
        if severity == 0:
            self._end_job(job, 15)
        return {}

    def _end_job(self, job: Job, status: int) -> None:
        """A fatal exception stops the job the way the job manager does."""
        for timer in job.timers:
            timer[2] = None
        job.timers.clear()
        job.held.clear()
        if job.started:
            self._append(job, MAIN_EVENTLOG, "finish", {"status": status})
            self._append(job, MAIN_EVENTLOG, "release", {"ranks": "all", "final": True})
            self._append(job, MAIN_EVENTLOG, "free", {})
        self._append(job, MAIN_EVENTLOG, "clean", {})

    def _append(self, job: Job, path: str, name: str, context: dict[str, Any]) -> None:
        event: dict[str, Any] = {"timestamp": time.time(), "name": name}
        if context:
            event["context"] = context
        job.eventlogs.setdefault(path, []).append(protocol.encode(event).decode().rstrip("\n"))
        for watcher in list(job.watchers):
            self._pump(watcher)

    # -- eventlog watches ------------------------------------------------------

    def _eventlog_watch(self, client: Client, message: Message) -> None:
        payload = message.get("payload") or {}
        job = self._job(payload)
        if job.private:
            raise RequestError(errno.EPERM)
        path = payload.get("path", MAIN_EVENTLOG)
        flags = int(payload.get("flags", 0))
        guest = path.startswith(GUEST_PREFIX)
        if not guest and path not in job.eventlogs and not flags & WAITCREATE:
            raise RequestError(errno.ENOENT)
        watcher = Watcher(client, int(message["matchtag"]), job, path, flags)
        job.watchers.append(watcher)
        self._pump(watcher)

    def _pump(self, watcher: Watcher) -> None:
        """Send a watcher what it has not seen; end it when its eventlog is complete."""
        job, path = watcher.job, watcher.path
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
            self._send(
                watcher.client, protocol.response(watcher.matchtag, {"event": lines[watcher.sent]})
            )
            watcher.sent += 1
        if job.inactive:
            self._finish(watcher, errno.ENODATA)

    def _finish(self, watcher: Watcher, errnum: int) -> None:
        if watcher in watcher.job.watchers:
            watcher.job.watchers.remove(watcher)
        self._send(watcher.client, protocol.error_response(watcher.matchtag, errnum))

    def _eventlog_watch_cancel(self, client: Client, message: Message) -> None:
        matchtag = int((message.get("payload") or {}).get("matchtag", -1))
        for job in self.jobs.values():
            for watcher in list(job.watchers):
                if watcher.client is client and watcher.matchtag == matchtag:
                    self._finish(watcher, errno.ENODATA)
        return None

    def _watcher_count(self, guest: bool) -> int:
        return sum(
            1
            for job in self.jobs.values()
            for w in job.watchers
            if w.path.startswith(GUEST_PREFIX) == guest
        )

    def _stats(self, client: Client, message: Message) -> dict[str, Any]:
        return {
            "watchers": self._watcher_count(guest=False),
            "guest_watchers": self._watcher_count(guest=True),
            "clients": len(self._clients),
            "jobs": len(self.jobs),
        }

    def _lookup(self, client: Client, message: Message) -> dict[str, Any]:
        payload = message.get("payload") or {}
        job = self._job(payload, "invalid job id")
        if job.private:
            raise RequestError(errno.EPERM)
        result: dict[str, Any] = {"id": job.id}
        for key in payload.get("keys", []):
            # Guest eventlogs reach the main namespace when the job releases.
            copied = not key.startswith(GUEST_PREFIX) or job.has_event("release")
            if key not in job.eventlogs or not copied:
                raise RequestError(errno.ENOENT, f"{key}: key not found")
            result[key] = "".join(line + "\n" for line in job.eventlogs[key])
        return result

    def _attr_get(self, client: Client, message: Message) -> dict[str, Any]:
        name = (message.get("payload") or {}).get("name")
        attrs = {"size": "1", "rank": "0", "broker.pid": str(os.getpid()), "version": "simulated"}
        if name not in attrs:
            raise RequestError(errno.ENOENT)
        return {"value": attrs[name], "flags": 0}

    def _drop(self, client: Client, message: Message) -> None:
        """Drop every connection, as a broker that goes away does."""
        for other in list(self._clients.values()):
            self._disconnect(other)
        return None
