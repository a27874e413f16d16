"""The simulated Flux broker: jobs, their eventlogs, and eventlog watchers.

It serves the RPCs the provider sends to a real broker, with the same semantics
(see ``src/modules/job-info/watch.c`` and ``guest_watch.c`` in flux-core):

- ``job-info.eventlog-watch`` replays an eventlog from its first event, then streams
  new ones; the main eventlog ends (ENODATA) after ``clean``, a guest eventlog
  waits for the job to start and ends once the job is inactive. Unknown job or
  path: ENOENT (a path is waited for with the WAITCREATE flag).
- ``job-info.eventlog-watch-cancel`` ends the named stream with ENODATA.
- ``job-info.lookup`` (eventlogs, and ``jobspec`` as job-ingest stored it),
  ``job-info.stats-get``, ``job-manager.submit`` and ``job-manager.raise`` (what
  ``flux cancel`` sends).
- ``job-list.list``, answered in one response, for what the provider asks of it:
  constraints on ``userid``, ``name``, ``queue``, ``states`` and ``results`` (masks)
  joined by ``and``, ``or`` and ``not``; the attrs in :data:`LIST_ATTRS`.
- ``job-manager.events-journal`` (see :meth:`SimulatedBroker._journal`), its
  ``-cancel``, and ``job-manager.stats-get`` (the journal's listener count).
- A client that disconnects loses its watchers and journals, as on a real broker.

Requests carry the credentials of a handle opened with ``FLUX_HANDLE_USERID`` /
``FLUX_HANDLE_ROLEMASK`` (a ``cred`` object); one without them comes from the
instance owner. A guest (no owner role) is refused what flux-core 0.88.0 refuses
it: owner-only services, and other users' jobs (see :meth:`SimulatedBroker._allowed`).

A job's ``attributes.system.simulator`` options shape it: ``scenario`` (the
recording it replays), ``hold_before``, ``private`` and ``output`` (lines its tasks
write while it runs; see :class:`OutputOption`).

``sim.*`` topics script it from tests: submit a scenario and hold it before an
event, release it, post an event now, drop every connection.
"""

from __future__ import annotations

import errno
import functools
import heapq
import itertools
import json
import math
import os
import selectors
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_flux.jobspec import job_name
from airflow_provider_flux.testing import protocol
from airflow_provider_flux.testing.protocol import Message
from airflow_provider_flux.testing.scenarios import DEFAULT_SCENARIO, load_scenario

WAITCREATE = 1
RPC_STREAMING = 2  # FLUX_RPC_STREAMING: the request's flags
MAIN_EVENTLOG = "eventlog"
GUEST_PREFIX = "guest."
OUTPUT_EVENTLOG = "guest.output"
USERID_UNKNOWN = 0xFFFFFFFF  # FLUX_USERID_UNKNOWN
# Generated output with no interval is written this much per turn of the broker's
# loop, which then serves its clients.
OUTPUT_BURST_BYTES = 1 << 18
OUTPUT_BURST_EVENTS = 256

# flux_job_state_t and flux_job_result_t (src/common/libjob/job.h).
STATE_NEW, STATE_DEPEND, STATE_PRIORITY, STATE_SCHED = 1, 2, 4, 8
STATE_RUN, STATE_CLEANUP, STATE_INACTIVE = 16, 32, 64
RESULT_COMPLETED, RESULT_FAILED, RESULT_CANCELED, RESULT_TIMEOUT = 1, 2, 4, 8
# The main eventlog events that move a job on (the recordings only go forward).
EVENT_STATES = {
    "validate": STATE_DEPEND, "depend": STATE_PRIORITY, "priority": STATE_SCHED,
    "alloc": STATE_RUN, "finish": STATE_CLEANUP, "clean": STATE_INACTIVE,
}  # fmt: skip
# Events after which job-list moves a job in SCHED back to PRIORITY (RFC 21).
REVERT_EVENTS = ("urgency", "flux-restart", "jobspec-update")
# What job-list gives of a job here ("all": these).
LIST_ATTRS = (
    "userid", "name", "queue", "t_submit", "t_run", "t_cleanup", "t_inactive", "state",
    "waitstatus", "exception_occurred", "exception_type", "exception_severity",
    "exception_note", "result", "success",
)  # fmt: skip
ROLE_OWNER = 1  # FLUX_ROLE_OWNER
OWNER_ONLY = "Request requires owner credentials"  # libflux's msg_handler.c
# Services a guest may not call (their handlers are registered with no role flags).
OWNER_TOPICS = frozenset(
    {"job-manager.events-journal", "job-manager.events-journal-cancel",
     "job-manager.stats-get", "job-info.stats-get"}
)  # fmt: skip
JOBID_ANY = -1  # FLUX_JOBID_ANY as job-manager packs it into the journal sentinel


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


def redacted_jobspec(jobspec: dict[str, Any]) -> dict[str, Any]:
    """The jobspec without ``attributes.system.environment``: job-ingest's ``jobspec``
    key and job-manager's ``jobspec_redacted`` (the environment stays in ``J``)."""
    system = jobspec["attributes"].get("system")
    if isinstance(system, dict) and "environment" in system:
        system = {key: value for key, value in system.items() if key != "environment"}
        jobspec = {**jobspec, "attributes": {**jobspec["attributes"], "system": system}}
    return jobspec


def jobspec_text(jobspec: dict[str, Any]) -> str:
    """The ``jobspec`` key as job-ingest writes it: compact JSON, redacted."""
    return json.dumps(redacted_jobspec(jobspec), separators=(",", ":"), ensure_ascii=False)


def scenario_jobspec(scenario: str) -> dict[str, Any]:
    """What the journal gives as the jobspec of a ``sim.submit`` job, which has none:
    ``flux submit SCENARIO``'s, named after its scenario (``attributes.system.job.name``)."""
    return {
        "resources": [{"type": "slot", "count": 1, "label": "task",
                       "with": [{"type": "core", "count": 1}]}],
        "tasks": [{"command": [scenario], "slot": "task", "count": {"per_slot": 1}}],
        "attributes": {"system": {"duration": 0, "job": {"name": scenario}}},
        "version": 1,
    }  # fmt: skip


def job_info(job: Job) -> dict[str, Any]:
    """What job-list knows of a job, read from its main eventlog as job-list reads the
    journal (``src/modules/job-list/job_state.c``, ``job_util.c``): ``LIST_ATTRS``, with
    ``id`` and ``priority``, which order the listing.

    A state's time is that of its first entry (a fatal exception, or ``finish``,
    enters CLEANUP); ``waitstatus`` comes with ``finish``; ``success``, ``result``
    and ``exception_*`` (the most severe exception, the first of equal severity) only
    once the job is inactive.
    """
    info: dict[str, Any] = {"id": job.id, "name": job.name, "state": STATE_NEW, "priority": 0}
    queue = (job.jobspec or {}).get("attributes", {}).get("system", {}).get("queue")
    if isinstance(queue, str):
        info["queue"] = queue
    entered = 0  # job-list's states_events_mask
    worst: dict[str, Any] | None = None  # the context of the most severe exception
    success = False
    for line in job.eventlogs.get(MAIN_EVENTLOG, []):
        event = json.loads(line)
        name, context, stamp = event["name"], event.get("context", {}), event["timestamp"]
        state = EVENT_STATES.get(name)
        if name == "submit":
            info["t_submit"], info["userid"] = stamp, context.get("userid")
        elif name == "priority":
            info["priority"] = context.get("priority", 0)
        elif name == "finish":
            info["waitstatus"] = context.get("status")
            # Successful: exit status 0 and no fatal exception so far.
            success = context.get("status") == 0 and not (worst and worst["severity"] == 0)
        elif name == "exception":
            severity = int(context.get("severity", 0))
            if worst is None or severity < worst["severity"]:
                worst = {**context, "severity": severity}
            state = STATE_CLEANUP if severity == 0 else None
        elif name in REVERT_EVENTS and info["state"] == STATE_SCHED:
            info["state"] = STATE_PRIORITY
        # PRIORITY and SCHED may be entered again; the other states only once.
        if state is None or (entered & state and state not in (STATE_PRIORITY, STATE_SCHED)):
            continue
        entered |= state
        info["state"] = state
        key = {STATE_RUN: "t_run", STATE_CLEANUP: "t_cleanup", STATE_INACTIVE: "t_inactive"}
        if state in key:
            info[key[state]] = stamp
    if info["state"] == STATE_INACTIVE:
        info["success"] = success
        info["exception_occurred"] = worst is not None
        if worst is not None:
            info["exception_type"] = worst.get("type")
            info["exception_severity"] = worst["severity"]
            info["exception_note"] = worst.get("note")
        ended = {"cancel": RESULT_CANCELED, "timeout": RESULT_TIMEOUT}
        failed = ended.get((worst or {}).get("type", ""), RESULT_FAILED)
        info["result"] = RESULT_COMPLETED if success else failed
    return info


def listing_order(info: dict[str, Any]) -> tuple[int, float, int]:
    """job-list's order: pending jobs (highest priority, then first submitted,
    first), running ones (last started first), then inactive ones (last ended first)."""
    if info["state"] < STATE_RUN:
        return (0, -info["priority"], info["id"])
    if info["state"] < STATE_INACTIVE:
        return (1, -info.get("t_run", 0.0), -info["id"])
    return (2, -info["t_inactive"], -info["id"])


Match = Callable[[dict[str, Any]], bool]


def compile_constraint(constraint: Any) -> Match:
    """An RFC 31 constraint with the operators simulated; ``ValueError`` says what
    is wrong with it."""
    if not constraint:
        return lambda info: True
    if not isinstance(constraint, dict) or len(constraint) != 1:
        raise ValueError("constraint must be an object with one operator")
    ((op, values),) = constraint.items()
    if not isinstance(values, list):
        raise ValueError(f"operator {op} values not an array")
    if op in ("and", "or", "not"):
        parts = [compile_constraint(value) for value in values]
        if op == "and":
            return lambda info: all(part(info) for part in parts)
        if op == "or":  # an empty "or" is true (RFC 31)
            return lambda info: not parts or any(part(info) for part in parts)
        return lambda info: not all(part(info) for part in parts)
    kind = str if op in ("name", "queue") else int
    if op not in ("userid", "name", "queue", "states", "results"):
        raise ValueError(f"unknown constraint operator: {op}")
    if any(not isinstance(v, kind) or isinstance(v, bool) for v in values):
        raise ValueError(f"{op} value must be {'a string' if kind is str else 'an integer'}")
    if op == "userid":
        return lambda info: USERID_UNKNOWN in values or info.get("userid") in values
    if op == "name":
        return lambda info: info["name"] in values
    if op == "queue":  # a job with no queue matches none
        return lambda info: info.get("queue") in values
    mask = functools.reduce(int.__or__, values, 0)
    key = "state" if op == "states" else "result"
    return lambda info: bool(info.get(key, 0) & mask)


@dataclass(frozen=True)
class OutputOption:
    """``attributes.system.simulator.output``: what the job's tasks write once they run.

    Line ``i`` (from 1) is ``f"line {i}"``, padded with ``x`` to ``line_bytes`` bytes
    with its newline. Data events come ``interval`` seconds apart (of recorded time:
    the broker's speed divides it), one line each, or with ``chunk_bytes`` as many
    whole lines as fit in that many bytes (a longer line is split). With
    ``redirect`` (``flux submit --output=FILE``), ``guest.output`` gets a
    ``redirect`` event per stream instead, and no data, not even end of file.
    """

    lines: int
    interval: float = 0.0
    line_bytes: int | None = None
    stream: str = "stdout"
    chunk_bytes: int | None = None
    redirect: str | None = None

    @classmethod
    def parse(cls, value: Any) -> OutputOption:
        """Read the option from a jobspec; EINVAL says what is wrong with it."""
        try:
            option = cls(**value)
        except TypeError as err:  # not a mapping, or keys missing or unknown
            raise RequestError(errno.EINVAL, f"simulator.output: {err}") from None

        def at_least(found: Any, minimum: int, kind: Any = int) -> bool:
            return isinstance(found, kind) and not isinstance(found, bool) and found >= minimum

        shortest = len(f"line {option.lines}\n")  # the last line, unpadded
        for key, rule, ok in (
            ("lines", "an integer >= 0", at_least(option.lines, 0)),
            ("interval", "a number of seconds >= 0", at_least(option.interval, 0, (int, float))),
            ("line_bytes", f"an integer >= {shortest}", at_least(option.line_bytes, shortest)),
            ("stream", "'stdout' or 'stderr'", option.stream in ("stdout", "stderr")),
            ("chunk_bytes", "an integer >= 1", at_least(option.chunk_bytes, 1)),
            ("redirect", "a path", isinstance(option.redirect, str) and option.redirect != ""),
        ):
            found = getattr(option, key)
            if not ok and (found is not None or key in ("lines", "interval", "stream")):
                raise RequestError(
                    errno.EINVAL, f"simulator.output: {key} must be {rule}, not {found!r}"
                )
        return option

    def chunks(self) -> Iterator[str]:
        """The text of each data event, made as it is written (never held whole)."""
        pending = ""
        for number in range(1, self.lines + 1):
            line = f"line {number}"
            if self.line_bytes is not None:
                line = line.ljust(self.line_bytes - 1, "x")
            line += "\n"
            if self.chunk_bytes is None:
                yield line
                continue
            if pending and len(pending) + len(line) > self.chunk_bytes:
                yield pending
                pending = ""
            while len(line) > self.chunk_bytes:
                yield line[: self.chunk_bytes]
                line = line[self.chunk_bytes :]
            pending += line
        if pending:
            yield pending


@dataclass(frozen=True)
class Step:
    """An event a job posts ``at`` seconds into its schedule; with ``output``, the
    start of its generated output, which the steps after it wait for."""

    at: float
    path: str
    name: str
    context: dict[str, Any]
    output: OutputOption | None = None


def with_output(steps: list[Step], option: OutputOption) -> list[Step]:
    """A schedule whose tasks write ``option``'s output in place of the recorded one,
    once they have started and the ``guest.output`` header is written; every event
    recorded after that waits for its end. Tasks that never ran write none."""
    header = next((s for s in steps if s.path == OUTPUT_EVENTLOG and s.name == "header"), None)
    started = next((s for s in steps if s.name == "shell.start"), None)
    if header is None or started is None:
        return steps
    kept = [s for s in steps if not (s.path == OUTPUT_EVENTLOG and s.name == "data")]
    if option.redirect is not None:
        ntasks = int(header.context.get("count", {}).get("stdout", 1))
        ranks = "0" if ntasks == 1 else f"[0-{ntasks - 1}]"
        index = kept.index(header) + 1
        kept[index:index] = [
            Step(header.at, OUTPUT_EVENTLOG, "redirect",
                 {"stream": stream, "rank": ranks, "path": option.redirect})
            for stream in ("stdout", "stderr")
        ]  # fmt: skip
        return kept
    anchor = max(header.at, started.at)
    index = next((i for i, s in enumerate(kept) if s.at > anchor), len(kept))
    kept.insert(index, Step(anchor, OUTPUT_EVENTLOG, "data", {}, option))
    return kept


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
class JournalListener:
    """A ``job-manager.events-journal`` stream: events named in ``allow`` (when given)
    and not in ``deny``."""

    client: Client
    matchtag: int
    allow: dict[str, Any] | None
    deny: dict[str, Any] | None

    def wants(self, name: str) -> bool:
        """journal.c's ``allow_deny_check``."""
        return (self.allow is None or name in self.allow) and not (
            self.deny is not None and name in self.deny
        )


@dataclass(frozen=True)
class Cred:
    """The credentials a request carries (``flux_msg_cred``)."""

    userid: int
    rolemask: int

    @property
    def owner(self) -> bool:
        return bool(self.rolemask & ROLE_OWNER)


@dataclass(eq=False)
class Job:
    id: int
    jobspec: dict[str, Any] | None  # None: a job of sim.submit
    name: str | None
    private: bool = False
    userid: int = 0  # the submitter's
    eventlogs: dict[str, list[str]] = field(default_factory=dict)
    hold_before: str | None = None
    held: list[Step] = field(default_factory=list)
    timers: list[list[Any]] = field(default_factory=list)
    watchers: list[Watcher] = field(default_factory=list)
    output: Iterator[str] | None = None  # the generated output being written

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
        self.userid = os.getuid()
        self._started = time.monotonic()
        self._last_millis = 0
        self._seq = 0
        self._selector = selectors.DefaultSelector()
        self._timers: list[list[Any]] = []
        self._timer_seq = itertools.count()
        self._clients: dict[socket.socket, Client] = {}
        self._listener: socket.socket | None = None
        self._journals: list[JournalListener] = []
        self._journal_events = 0  # events through the journal (job-manager's count)
        self._last_stamp = 0.0
        self._handlers: dict[str, Callable[[Client, Message], Any]] = {
            "job-info.eventlog-watch": self._eventlog_watch,
            "job-info.eventlog-watch-cancel": self._eventlog_watch_cancel,
            "job-info.lookup": self._lookup,
            "job-info.stats-get": self._stats,
            "job-manager.submit": self._submit,
            "job-manager.raise": self._raise,
            "job-manager.urgency": self._urgency,
            "job-manager.events-journal": self._journal,
            "job-manager.events-journal-cancel": self._journal_cancel,
            "job-manager.stats-get": self._job_manager_stats,
            "job-list.list": self._job_list,
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
        topic = message.get("topic", "")
        handler = self._handlers.get(topic)
        try:
            if handler is None:
                raise RequestError(errno.ENOSYS, f"unknown service method {topic}")
            if topic in OWNER_TOPICS and not self._cred(message).owner:
                raise RequestError(errno.EPERM, OWNER_ONLY)
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
        self._journals = [j for j in self._journals if j.client is not client]

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

    def _cred(self, message: Message) -> Cred:
        """The request's credentials: the owner's where the handle set none (or left
        a part unset), as the broker fills in an owner's connection's messages."""
        cred = message.get("cred") or {}
        userid = int(cred.get("userid", USERID_UNKNOWN))
        rolemask = int(cred.get("rolemask", 0))
        return Cred(self.userid if userid == USERID_UNKNOWN else userid, rolemask or ROLE_OWNER)

    def _owns(self, job: Job, message: Message) -> bool:
        """job-manager's rule (``flux_msg_cred_authorize``): the owner role, or the
        job's own user."""
        cred = self._cred(message)
        return cred.owner or cred.userid == job.userid

    def _allowed(self, job: Job, message: Message) -> bool:
        """job-info's rule: the same, except that a ``private`` job (another user's
        job, as a user who is not the owner sees it) is refused to the owner too."""
        cred = self._cred(message)
        return not job.private if cred.owner else cred.userid == job.userid

    def _submit(self, client: Client, message: Message) -> dict[str, Any]:
        payload = message.get("payload") or {}
        if message.get("topic") == "job-manager.submit":
            # job-ingest checks the signature first; with no flux-security, J is signed
            # "none" by the submitting process (the owner's), which only the owner may.
            cred = self._cred(message)
            if cred.userid != self.userid:
                raise RequestError(errno.EPERM, f"signer={self.userid} != requestor={cred.userid}")
            if not cred.owner:
                raise RequestError(errno.EPERM, "only instance owner can use sign-type=none")
        jobspec = validate_jobspec(payload["J"]) if "J" in payload else None
        system = (jobspec or {}).get("attributes", {}).get("system", {})
        options = {**system.get("simulator", {}), **payload}
        name = options.get("scenario", DEFAULT_SCENARIO)
        # A job array's jobs (FLUX_JOB_CC) may each play their own scenario.
        index = str(system.get("environment", {}).get("FLUX_JOB_CC"))
        name = dict(options.get("scenarios") or {}).get(index, name)
        try:
            scenario = load_scenario(name)
        except ValueError as err:
            raise RequestError(errno.EINVAL, str(err)) from err
        output = None if options.get("output") is None else OutputOption.parse(options["output"])
        jobid = self._new_jobid()
        private = bool(options.get("private", False))
        userid = self.userid + 1 if private else self.userid  # another user's job
        job = Job(jobid, jobspec, job_name(jobspec) if jobspec else name, private, userid)
        self.jobs[jobid] = job
        job.hold_before = options.get("hold_before")
        if options.get("urgency") == 0:
            job.hold_before = job.hold_before or "alloc"  # urgency 0 is a hold, as in flux
        steps = []
        for event in scenario.schedule():
            context = event.context
            if event.eventlog == MAIN_EVENTLOG and event.name == "submit":
                context = {**context, "userid": userid}  # the submitter's, not the recording's
            steps.append(Step(event.offset / self.speed, event.eventlog, event.name, context))
        self._play(job, with_output(steps, output) if output else steps, 0.0)
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

    def _play(self, job: Job, steps: list[Step], now: float) -> None:
        """Schedule ``steps`` (``now``: the time in the schedule that is the present) up
        to the event the job is held before, or up to generated output, which plays
        the steps after it once it is written."""
        for index, step in enumerate(steps):
            if step.name == job.hold_before:
                job.hold_before = None
                job.held = steps[index:]
                return
            if step.output is not None:
                start = functools.partial(self._write_output, job, step, steps[index + 1 :])
                self._job_later(job, step.at - now, start)
                return
            post = functools.partial(self._append, job, step.path, step.name, step.context)
            self._job_later(job, step.at - now, post)

    def _job_later(self, job: Job, delay: float, action: Callable[[], None]) -> None:
        """Call ``action`` after ``delay`` seconds, unless the job ends first."""

        def fire() -> None:
            job.timers.remove(timer)
            action()

        timer = self._call_later(delay, fire)
        job.timers.append(timer)

    def _release(self, client: Client, message: Message) -> dict[str, Any]:
        job = self._job(message.get("payload") or {})
        if job.held:
            steps, job.held = job.held, []
            self._play(job, steps, steps[0].at)
        return {}

    def _urgency(self, client: Client, message: Message) -> dict[str, Any]:
        """A held job (urgency 0) runs once its urgency is raised."""
        payload = message.get("payload") or {}
        job = self._job(payload)
        urgency = int(payload.get("urgency", 0))
        if not self._owns(job, message):
            raise RequestError(errno.EPERM, "guests can only reprioritize their own jobs")
        if urgency > 16 and not self._cred(message).owner:
            raise RequestError(errno.EPERM, "guests can only adjust urgency <= default")
        if urgency > 0:
            return self._release(client, message)
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
            raise RequestError(errno.ENOENT, "job is inactive")  # as job-manager/raise.c
        if not self._owns(job, message):
            raise RequestError(errno.EPERM, "guests can only raise exceptions on their own jobs")
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
        if job.output is not None:
            self._close_output(job)  # the tasks are killed: their streams close
        if job.started:
            self._append(job, MAIN_EVENTLOG, "finish", {"status": status})
            self._append(job, MAIN_EVENTLOG, "release", {"ranks": "all", "final": True})
            self._append(job, MAIN_EVENTLOG, "free", {})
        self._append(job, MAIN_EVENTLOG, "clean", {})

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

    def _append(self, job: Job, path: str, name: str, context: dict[str, Any]) -> None:
        if path == MAIN_EVENTLOG and name == "alloc" and context.get("annotations"):
            # The scheduler's annotations reach the journal just before alloc, never
            # the eventlog (job-manager posts them with EVENT_NO_COMMIT).
            annotations = {"annotations": context["annotations"]}
            self._journal_post(job, {"timestamp": self._stamp(), "name": "annotations",
                                     "context": annotations})  # fmt: skip
        event: dict[str, Any] = {"timestamp": self._stamp(), "name": name}
        if context:
            event["context"] = context
        job.eventlogs.setdefault(path, []).append(protocol.encode(event).decode().rstrip("\n"))
        for watcher in list(job.watchers):
            self._pump(watcher)
        if path == MAIN_EVENTLOG:
            self._journal_post(job, event)

    # -- generated output -------------------------------------------------------

    def _write_output(self, job: Job, step: Step, rest: list[Step]) -> None:
        """Write the job's generated output, one event every interval (several when
        the interval is 0, then let other work in), then play ``rest``."""
        assert step.output is not None
        stream = step.output.stream
        interval = step.output.interval / self.speed
        texts = job.output = step.output.chunks()
        began = time.monotonic()

        def tick(written: int) -> None:
            burst = 0
            for text in texts:
                context = {"stream": stream, "rank": "0", "data": text}
                self._append(job, OUTPUT_EVENTLOG, "data", context)
                written += 1
                burst += len(text)
                if interval or burst >= OUTPUT_BURST_BYTES or written % OUTPUT_BURST_EVENTS == 0:
                    delay = max(0.0, began + written * interval - time.monotonic())
                    self._job_later(job, delay, functools.partial(tick, written))
                    return
            self._close_output(job)
            self._play(job, rest, step.at)

        tick(0)

    def _close_output(self, job: Job) -> None:
        """End of file on every stream of every task."""
        job.output = None
        header = next(
            (line for line in job.eventlogs.get(OUTPUT_EVENTLOG, []) if '"name":"header"' in line),
            None,
        )
        ntasks = json.loads(header)["context"]["count"]["stdout"] if header else 1
        for stream in ("stderr", "stdout"):
            for rank in range(ntasks):
                context = {"stream": stream, "rank": str(rank), "eof": True}
                self._append(job, OUTPUT_EVENTLOG, "data", context)

    # -- eventlog watches ------------------------------------------------------

    def _eventlog_watch(self, client: Client, message: Message) -> None:
        payload = message.get("payload") or {}
        job = self._job(payload)
        if not self._allowed(job, message):
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

    # -- the job-manager journal -----------------------------------------------

    def _journal(self, client: Client, message: Message) -> None:
        """``job-manager.events-journal`` (``src/modules/job-manager/journal.c``):
        ``{"full"?: bool, "allow"?: {name: 1}, "deny"?: {name: 1}}``, owner only, streaming.

        The backlog comes first, one response per job: ``{"id", "events": [its main
        eventlog entries so far, as objects, filtered], "jobspec": <object>}``, with
        ``full`` the inactive jobs then the active ones, without only the active ones;
        a job whose entries are all filtered out still gets one (with ``"events": []``).
        Then the sentinel ``{"id": -1, "events": []}`` (with or without ``full``), then
        one response per new main eventlog event of any job, ``"jobspec"`` with ``submit``.

        Measured on flux-core 0.88.0: ``jobspec`` is a JSON object, the redacted
        jobspec (no ``attributes.system.environment``); real responses also carry
        ``R`` (the backlog's, and with ``alloc``), which the simulator leaves out.
        Jobs come in the job-manager's hash order there, in submission order here.
        """
        payload = message.get("payload") or {}
        if not isinstance(payload, dict) or not isinstance(payload.get("full", False), bool):
            raise RequestError(errno.EPROTO)
        allow, deny = payload.get("allow"), payload.get("deny")
        if not int(message.get("flags", 0)) & RPC_STREAMING:
            raise RequestError(errno.EPROTO, "job-manager.events requires streaming RPC flag")
        for key, rules in (("allow", allow), ("deny", deny)):
            if rules is not None and not isinstance(rules, dict):
                raise RequestError(errno.EPROTO, f"job-manager.events {key} should be an object")
        listener = JournalListener(client, int(message["matchtag"]), allow, deny)
        jobs = list(self.jobs.values())
        backlog = [j for j in jobs if j.inactive] if payload.get("full") else []
        for job in backlog + [j for j in jobs if not j.inactive]:
            lines = job.eventlogs.get(MAIN_EVENTLOG)
            if not lines:  # not submitted yet: the job-manager does not know it
                continue
            events = [e for e in map(json.loads, lines) if listener.wants(e["name"])]
            answer = {"id": job.id, "events": events, "jobspec": self._journal_jobspec(job)}
            self._send(client, protocol.response(listener.matchtag, answer))
        sentinel = {"id": JOBID_ANY, "events": []}
        self._send(client, protocol.response(listener.matchtag, sentinel))
        self._journals.append(listener)

    def _journal_jobspec(self, job: Job) -> dict[str, Any]:
        if job.jobspec is None:
            return scenario_jobspec(job.name or DEFAULT_SCENARIO)
        return redacted_jobspec(job.jobspec)

    def _journal_post(self, job: Job, event: dict[str, Any]) -> None:
        """Stream a new main eventlog event to the journals that want it."""
        self._journal_events += 1
        answer: dict[str, Any] = {"id": job.id, "events": [event]}
        if event["name"] == "submit":
            answer["jobspec"] = self._journal_jobspec(job)
        for listener in self._journals:
            if listener.wants(event["name"]):
                self._send(listener.client, protocol.response(listener.matchtag, answer))

    def _journal_cancel(self, client: Client, message: Message) -> None:
        """End the client's journal of that matchtag with ENODATA; never answered."""
        matchtag = (message.get("payload") or {}).get("matchtag")
        for listener in self._journals:
            if listener.client is client and listener.matchtag == matchtag:
                self._journals.remove(listener)
                self._send(client, protocol.error_response(listener.matchtag, errno.ENODATA))
                break
        return None

    def _job_manager_stats(self, client: Client, message: Message) -> dict[str, Any]:
        """The part of ``flux module stats job-manager`` simulated."""
        active = sum(1 for job in self.jobs.values() if not job.inactive)
        return {
            "journal": {"listeners": len(self._journals), "events": self._journal_events},
            "active_jobs": active,
            "inactive_jobs": len(self.jobs) - active,
            "max_jobid": max(self.jobs, default=0),
        }

    # -- statistics ------------------------------------------------------------

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
        if not self._allowed(job, message):
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

    def _job_list(self, client: Client, message: Message) -> dict[str, Any]:
        payload = message.get("payload") or {}
        max_entries, attrs = payload.get("max_entries"), payload.get("attrs")
        since = payload.get("since", 0.0)
        if not (isinstance(max_entries, int) and max_entries >= 0 and isinstance(attrs, list)):
            raise RequestError(errno.EPROTO, "invalid payload: max_entries and attrs required")
        if not isinstance(since, (int, float)) or since < 0:
            raise RequestError(errno.EPROTO, "invalid payload: since must be a number >= 0")
        for attr in attrs:
            if attr != "all" and attr not in LIST_ATTRS:
                raise RequestError(errno.EINVAL, f"{attr} is not a valid attribute")
        try:
            match = compile_constraint(payload.get("constraint"))
        except ValueError as err:
            text = f"invalid payload: constraint object invalid: {err}"
            raise RequestError(errno.EPROTO, text) from err
        infos = [job_info(job) for job in self.jobs.values()]
        # A job still NEW is not listed yet; since: inactive jobs ended after then.
        infos = [
            i for i in infos if i["state"] != STATE_NEW and i.get("t_inactive", since + 1) > since
        ]
        infos = sorted(filter(match, infos), key=listing_order)[: max_entries or None]
        wanted = LIST_ATTRS if "all" in attrs else attrs
        entries = [{k: i[k] for k in ("id", *wanted) if i.get(k) is not None} for i in infos]
        return {"jobs": entries}

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
