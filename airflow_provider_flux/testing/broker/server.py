"""The simulated broker's core: a single-threaded server on a Unix socket that
routes each request to the service that serves its topic, keeps the jobs, and
posts their events."""

from __future__ import annotations

import errno
import heapq
import itertools
import math
import os
import selectors
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_flux.testing import protocol
from airflow_provider_flux.testing.broker.controls import TestControls
from airflow_provider_flux.testing.broker.job_info import JobInfoService
from airflow_provider_flux.testing.broker.job_list import JobListService
from airflow_provider_flux.testing.broker.job_manager import JobManagerService
from airflow_provider_flux.testing.broker.jobs import (
    MAIN_EVENTLOG,
    ROLE_OWNER,
    USERID_UNKNOWN,
    Cred,
    Job,
    RequestError,
)
from airflow_provider_flux.testing.protocol import Message

OWNER_ONLY = "Request requires owner credentials"  # libflux's msg_handler.c
# Services a guest may not call (their handlers are registered with no role flags).
OWNER_TOPICS = frozenset(
    {"job-manager.events-journal", "job-manager.events-journal-cancel",
     "job-manager.stats-get", "job-info.stats-get"}
)  # fmt: skip

Handler = Callable[["Client", Message], Any]


@dataclass(eq=False)
class Client:
    """A connection to the broker."""

    sock: socket.socket
    decoder: protocol.LineDecoder = field(default_factory=protocol.LineDecoder)
    outbox: bytearray = field(default_factory=bytearray)


class SimulatedBroker:
    """A single-threaded broker listening on a Unix socket.

    :param socket_path: where to listen.
    :param speed: how much faster than recorded the scenarios run (1.0: real time).
    """

    def __init__(self, socket_path: str, speed: float = 1.0) -> None:
        self.socket_path = socket_path
        self.speed = speed
        self.jobs: dict[int, Job] = {}
        self.userid = os.getuid()
        self.clients: dict[socket.socket, Client] = {}
        self._selector = selectors.DefaultSelector()
        self._timers: list[list[Any]] = []
        self._timer_seq = itertools.count()
        self._listener: socket.socket | None = None
        self._last_stamp = 0.0
        self.job_info = JobInfoService(self)
        self.job_manager = JobManagerService(self)
        self.job_list = JobListService(self)
        self.controls = TestControls(self)
        self._handlers: dict[str, Handler] = {
            **self.job_info.handlers(),
            **self.job_manager.handlers(),
            **self.job_list.handlers(),
            **self.controls.handlers(),
            "attr.get": self._attr_get,
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

    def serve_forever(self, stop_fd: int | None = None) -> None:
        """Serve until the process is stopped, or until ``stop_fd`` (a pipe a signal
        handler writes to: ``signal.set_wakeup_fd``) becomes readable; then return
        between two steps, never in the middle of one."""
        if self._listener is None:
            self.listen()
        stopped: list[bool] = []
        if stop_fd is not None:
            self.watch_pipe(stop_fd, lambda: stopped.append(True))
        while not stopped:
            self._run_once()

    def stop_tasks(self) -> None:
        """Kill the tasks of every job running here for real (the broker stops)."""
        for job in self.jobs.values():
            if job.local is not None and not job.local.over:
                job.local.kill()

    def _run_once(self) -> None:
        timeout = None
        if self._timers:
            timeout = max(0.0, self._timers[0][0] - time.monotonic())
        for key, mask in self._selector.select(timeout):
            if key.data is not None:  # a pipe of a job's task (watch_pipe)
                key.data()
                continue
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            if sock is self._listener:
                self._accept()
                continue
            client = self.clients.get(sock)
            if client is None:
                continue
            if mask & selectors.EVENT_READ:
                self._read(client)
            if mask & selectors.EVENT_WRITE and client.sock in self.clients:
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
        self.clients[sock] = Client(sock)
        self._selector.register(sock, selectors.EVENT_READ)

    def _read(self, client: Client) -> None:
        try:
            data = client.sock.recv(1 << 16)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.disconnect(client)
            return
        for message in client.decoder.feed(data):
            self._dispatch(client, message)

    def _dispatch(self, client: Client, message: Message) -> None:
        matchtag = int(message.get("matchtag", 0))
        topic = message.get("topic", "")
        handler = self._handlers.get(topic)
        try:
            if handler is None:
                raise RequestError(errno.ENOSYS, f"unknown service method {topic}")
            if topic in OWNER_TOPICS and not self.cred(message).owner:
                raise RequestError(errno.EPERM, OWNER_ONLY)
            result = handler(client, message)
        except RequestError as err:
            if matchtag:
                self.send(client, protocol.error_response(matchtag, err.errnum, err.errstr))
            return
        if result is not None and matchtag:
            self.send(client, protocol.response(matchtag, result))

    def send(self, client: Client, message: Message) -> None:
        """Queue ``message`` to ``client`` (dropped once the client is gone)."""
        if client.sock not in self.clients:
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
            self.disconnect(client)
            return
        del client.outbox[:sent]
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if client.outbox else 0)
        self._selector.modify(client.sock, events)

    def disconnect(self, client: Client) -> None:
        """Close a client's connection: it loses its watchers and journals, as on a
        real broker."""
        if self.clients.pop(client.sock, None) is None:
            return
        self._selector.unregister(client.sock)
        client.sock.close()
        self.job_info.forget(client)
        self.job_manager.forget(client)

    def watch_pipe(self, fd: int, on_readable: Callable[[], None] | None) -> None:
        """Call ``on_readable`` whenever ``fd`` can be read; None stops watching it."""
        if on_readable is None:
            self._selector.unregister(fd)
        else:
            self._selector.register(fd, selectors.EVENT_READ, on_readable)

    def call_later(self, delay: float, action: Callable[[], None]) -> list[Any]:
        """Call ``action`` after ``delay`` seconds; the timer's third item, set to
        None, disarms it."""
        timer = [time.monotonic() + delay, next(self._timer_seq), action]
        heapq.heappush(self._timers, timer)
        return timer

    def job_later(self, job: Job, delay: float, action: Callable[[], None]) -> None:
        """Call ``action`` after ``delay`` seconds, unless the job ends first."""

        def fire() -> None:
            job.timers.remove(timer)
            action()

        timer = self.call_later(delay, fire)
        job.timers.append(timer)

    # -- jobs and who may see them --------------------------------------------

    def job(self, payload: dict[str, Any], errstr: str | None = None) -> Job:
        """The job a request names (``id``); ENOENT when there is none."""
        job = self.jobs.get(int(payload.get("id", -1)))
        if job is None:
            raise RequestError(errno.ENOENT, errstr)
        return job

    def cred(self, message: Message) -> Cred:
        """The request's credentials: the owner's where the handle set none (or left
        a part unset), as the broker fills in an owner's connection's messages."""
        cred = message.get("cred") or {}
        userid = int(cred.get("userid", USERID_UNKNOWN))
        rolemask = int(cred.get("rolemask", 0))
        return Cred(self.userid if userid == USERID_UNKNOWN else userid, rolemask or ROLE_OWNER)

    def owns(self, job: Job, message: Message) -> bool:
        """job-manager's rule (``flux_msg_cred_authorize``): the owner role, or the
        job's own user."""
        cred = self.cred(message)
        return cred.owner or cred.userid == job.userid

    def allowed(self, job: Job, message: Message) -> bool:
        """job-info's rule: the same, except that a ``private`` job (another user's
        job, as a user who is not the owner sees it) is refused to the owner too."""
        cred = self.cred(message)
        return not job.private if cred.owner else cred.userid == job.userid

    def _stamp(self) -> float:
        """Now, as an event's timestamp: unique and increasing across all jobs, as the
        journal's consumers expect (``flux.job.JournalConsumer`` resumes after one).
        Two events of one turn of the loop could read the same clock, or it could
        step back."""
        stamp = time.time()
        if stamp <= self._last_stamp:
            stamp = math.nextafter(self._last_stamp, math.inf)
        self._last_stamp = stamp
        return stamp

    def append(self, job: Job, path: str, name: str, context: dict[str, Any]) -> None:
        """Post an event to one of the job's eventlogs: its watchers get it, and so
        do the journals when it is a main eventlog event."""
        if path == MAIN_EVENTLOG and name == "alloc" and context.get("annotations"):
            # The scheduler's annotations reach the journal just before alloc, never
            # the eventlog (job-manager posts them with EVENT_NO_COMMIT).
            annotations = {"annotations": context["annotations"]}
            self.job_manager.journal_post(job, {"timestamp": self._stamp(), "name": "annotations",
                                                "context": annotations})  # fmt: skip
        event: dict[str, Any] = {"timestamp": self._stamp(), "name": name}
        if context:
            event["context"] = context
        job.eventlogs.setdefault(path, []).append(protocol.encode(event).decode().rstrip("\n"))
        for watcher in list(job.watchers):
            self.job_info.pump(watcher)
        if path == MAIN_EVENTLOG:
            self.job_manager.journal_post(job, event)

    def _attr_get(self, client: Client, message: Message) -> dict[str, Any]:
        name = (message.get("payload") or {}).get("name")
        attrs = {"size": "1", "rank": "0", "broker.pid": str(os.getpid()), "version": "simulated"}
        if name not in attrs:
            raise RequestError(errno.ENOENT)
        return {"value": attrs[name], "flags": 0}
