"""One Flux handle per (event loop, instance URI), driven by asyncio through its poll fd.

flux-core hands external event loops ``h.pollfd()``: a descriptor that becomes
readable when the handle has work. It is edge-triggered, so each wake-up runs the
reactor until it has nothing left to do (see :meth:`FluxConnection._drain`).
Every callback then runs in the loop's thread, which is the only thread that ever
touches the handle.
"""

from __future__ import annotations

import asyncio
import enum
import errno
import logging
import time
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from airflow_provider_flux.aio.errors import (
    FluxConnectionError,
    FluxConnectionLost,
    FluxWatchError,
    describe_instance,
    watch_error,
)
from airflow_provider_flux.aio.event_watch import event_watches
from airflow_provider_flux.flux_bindings import (
    FluxBindings,
    FluxUriUnresolved,
    effective_uri,
    load_bindings,
)
from airflow_provider_flux.job.event import JobEvent

log = logging.getLogger(__name__)

# How long one drain may run the reactor before it yields to the loop, so that a
# burst of events never holds the loop (a triggerer's other triggers) for long ...
DRAIN_BUDGET_SECONDS = 0.001
# ... and how many callbacks it may make: each wakes a reader, and the loop runs
# every reader woken by one drain in its next iteration, at some 20 µs each.
DRAIN_CALLBACKS = 64

# How long a connection with no watches stays open for the next one.
DEFAULT_IDLE_TIMEOUT = 10.0


T = TypeVar("T")


class Empty(enum.Enum):
    """What :meth:`BrokerStream.next_item` returns when no item has arrived."""

    EMPTY = enum.auto()


EMPTY = Empty.EMPTY


class BrokerStream(ABC, Generic[T]):
    """Responses the broker serves to one request of a connection, in a queue that
    :meth:`get` reads: items of type ``T``, then exactly one of ``None`` (the broker
    ended the stream) or a :class:`FluxWatchError`. A list read from ``_head`` and
    one waiter instead of an ``asyncio.Queue`` (an ``Event`` and two deques) or a
    deque (a 64-item block): thousands of these live at once, mostly empty."""

    __slots__ = ("_cancelled", "_head", "_items", "_waiter", "connection", "open")

    def __init__(self, connection: FluxConnection) -> None:
        self.connection = connection
        self.open = True
        self._cancelled = False
        self._items: list[T | FluxWatchError | None] = []
        self._head = 0
        self._waiter: asyncio.Future[None] | None = None

    def _put(self, item: T | FluxWatchError | None) -> None:
        self._items.append(item)
        if self._waiter is not None:
            if not self._waiter.done():
                self._waiter.set_result(None)
            self._waiter = None

    def next_item(self) -> T | FluxWatchError | Empty | None:
        """The next item if one has arrived, else :data:`EMPTY` (then await :meth:`arrival`)."""
        if self._head == len(self._items):
            return EMPTY
        item = self._items[self._head]
        self._head += 1
        if self._head == len(self._items):
            self._items.clear()
            self._head = 0
        return item

    def arrival(self) -> asyncio.Future[None]:
        """A future done when the next item arrives (a plain future, not a coroutine:
        thousands of readers wait at once)."""
        if self._waiter is None or self._waiter.done():  # done: its reader was cancelled
            self._waiter = self.connection.loop.create_future()
        return self._waiter

    async def get(self) -> T | FluxWatchError | None:
        """The next item, or the end of the stream."""
        while (item := self.next_item()) is EMPTY:
            await self.arrival()
        return item

    @abstractmethod
    def _error(self, errnum: int, detail: str | None) -> FluxWatchError:
        """The typed error for this stream, naming what it watched."""

    def _end(self, outcome: FluxWatchError | None) -> None:
        """The stream is over on the broker."""
        self.connection._forget(self)
        if self.open:
            self.open = False
            self._put(outcome)

    def _over_on_broker(self) -> None:
        """The broker ended the stream: nothing is left to cancel."""

    def fail(self, error: FluxWatchError) -> None:
        """End the stream with ``error`` (the connection is gone)."""
        self._over_on_broker()
        self._end(error)


S = TypeVar("S", bound=BrokerStream[Any])


class EventStream(BrokerStream[JobEvent]):
    """One ``flux_job_event_watch`` stream; :meth:`get` returns the events it delivered."""

    __slots__ = ("_future", "eventlog", "jobid")

    def __init__(self, connection: FluxConnection, jobid: int, eventlog: str, waitcreate: bool):
        super().__init__(connection)
        self.jobid = jobid
        self.eventlog = eventlog
        self._future: Any = connection.event_watches.start(jobid, eventlog, waitcreate, self)

    def on_response(self) -> None:
        # Runs inside the reactor: must not raise, or flux-core stops the reactor.
        self.connection.callbacks += 1
        try:
            event = self.connection.event_watches.get(self._future)
        except OSError as err:
            self._end(self._error(err.errno or errno.EPROTO, err.strerror))
            return
        except Exception as err:  # a malformed response must not break the other watches
            self._end(self._error(errno.EPROTO, f"bad eventlog response: {err!r}"))
            return
        if event is None:
            self._end(None)
        elif not self._cancelled:
            self._put(event)

    def _error(self, errnum: int, detail: str | None) -> FluxWatchError:
        uri = self.connection.uri
        return watch_error(errnum, detail, jobid=self.jobid, eventlog=self.eventlog, uri=uri)

    def _end(self, outcome: FluxWatchError | None) -> None:
        self._over_on_broker()
        super()._end(outcome)

    def _over_on_broker(self) -> None:
        # Nothing more comes for the future (an error response, ENODATA, or a lost
        # connection ends a stream on the broker): free it, sending nothing.
        if self._future is not None:
            self.connection.event_watches.destroy(self._future)
            self._future = None

    def cancel(self) -> None:
        """Stop the stream on the broker; it confirms with ENODATA, which ends it here."""
        if not self.open:
            return
        self.open = False
        self._cancelled = True
        try:
            self.connection.event_watches.cancel(self._future)
        except OSError as err:
            # The connection is gone, and the broker drops a lost client's watches.
            log.debug("cancel of watch on job %s failed: %s", self.jobid, err)
            self._over_on_broker()
            self.connection._forget(self)


class FluxConnection:
    """A Flux handle owned by one event loop and shared by all its watches.

    Get one with :func:`acquire`, never directly.
    """

    idle_timeout: float = DEFAULT_IDLE_TIMEOUT

    def __init__(
        self, loop: asyncio.AbstractEventLoop, uri: str | None, bindings: FluxBindings, handle: Any
    ) -> None:
        self.loop = loop
        self.uri = uri
        self.bindings = bindings
        bindings.use_in_this_thread(handle)
        self.handle = handle
        self.closed = False
        self.refs = 0
        # Reactor callbacks made so far; see _drain.
        self.callbacks = 0
        # Streams the broker still serves: open ones, and cancelled ones whose ENODATA
        # has not arrived (their futures must live until then).
        self._streams: set[BrokerStream[Any]] = set()
        self._idle_timer: asyncio.TimerHandle | None = None
        self._drain_scheduled = False
        self.event_watches = event_watches(bindings, handle)
        self._reactor = handle.get_reactor()
        self._received = bindings.received_messages(handle)
        self._pollevents = bindings.poll_events(handle)
        self._pollin = bindings.constant("POLLIN")
        self._pollerr = bindings.constant("POLLERR")
        # While a drain runs the reactor: the idle watcher keeps each iteration from
        # blocking, and the check watcher, called once per iteration, stops the run
        # when it is quiet (see _drain).
        self._no_blocking = handle.idle_watcher_create()
        self._quiet_check = handle.check_watcher_create(self._after_iteration)
        self._deadline = 0.0
        self._callback_limit = 0
        self._quiet_iterations = 0
        self._seen_callbacks = 0
        self._seen_received = 0
        self._fd = handle.pollfd()
        loop.add_reader(self._fd, self._drain)

    @property
    def stream_count(self) -> int:
        """Streams this connection has open on the broker (including cancelled ones in flight)."""
        return len(self._streams)

    def start_stream(self, jobid: int, eventlog: str, waitcreate: bool = False) -> EventStream:
        """Start watching ``eventlog`` of ``jobid``; events arrive in the stream's queue."""
        try:
            return self.start(lambda: EventStream(self, jobid, eventlog, waitcreate))
        except FluxWatchError:
            raise
        except OSError as err:
            raise watch_error(
                err.errno or errno.EPROTO,
                err.strerror,
                jobid=jobid,
                eventlog=eventlog,
                uri=self.uri,
            ) from err

    def start(self, stream: Callable[[], S]) -> S:
        """Send the request that ``stream()`` makes on this connection, and track it
        until the broker ends it (an ``OSError`` from sending propagates)."""
        if self.closed:
            raise FluxConnectionLost(
                errno.ECONNRESET, f"the connection to {describe_instance(self.uri)} is closed"
            )
        started = stream()
        self._streams.add(started)
        # Sending may have pulled responses into the handle without waking the fd.
        self._schedule_drain()
        return started

    def request(self, future: Any) -> asyncio.Future[Any]:
        """Await a flux future (an RPC the caller sent on :attr:`handle`): its ``get()``."""
        result: asyncio.Future[Any] = self.loop.create_future()

        def done(flux_future: Any) -> None:
            self.callbacks += 1
            if result.done():
                return
            try:
                result.set_result(flux_future.get())
            except Exception as err:  # handed to the awaiting task, never to the reactor
                result.set_exception(err)

        future.then(done)
        self._schedule_drain()
        return result

    def _forget(self, stream: BrokerStream[Any]) -> None:
        self._streams.discard(stream)

    def _schedule_drain(self) -> None:
        if not self._drain_scheduled and not self.closed:
            self._drain_scheduled = True
            self.loop.call_soon(self._scheduled_drain)

    def _scheduled_drain(self) -> None:
        # Only this drain clears the flag: one the fd starts meanwhile must not, or
        # each would schedule one more and a burst would pile them up in one
        # iteration of the loop.
        self._drain_scheduled = False
        self._drain()

    def _drain(self) -> None:
        """Run the reactor until it has nothing left to do right now.

        The poll fd and ``FLUX_POLLIN`` only tell about messages not yet received. An
        iteration of the reactor that receives a message fulfils its future, but calls
        it back only in the *next* iteration, and a streaming future that a callback
        resets while its next response is already in is also called back in the next
        one (flux-core 0.88.0); neither shows on the fd, whose edge is spent by then.
        So an iteration is quiet only if it received no message, made no callback and
        left no message waiting. Each run of the reactor goes on in flux-core's own
        loop, one message per iteration, until its check watcher sees two quiet
        iterations in a row (two: a future chained inside the bindings is fulfilled by
        a callback not counted here). The drain runs the reactor until two runs in a
        row are quiet by the same rule, or until its budget is spent (then it goes on
        from the loop, after the readers it woke).
        """
        if self.closed:
            return
        quiet_runs = 0
        self._deadline = time.perf_counter() + DRAIN_BUDGET_SECONDS
        self._callback_limit = self.callbacks + DRAIN_CALLBACKS
        received = self._received()
        while True:
            callbacks, received_before = self.callbacks, received
            self._seen_callbacks, self._seen_received = callbacks, received
            self._quiet_iterations = 0
            self._no_blocking.start()
            self._quiet_check.start()
            try:
                with self.handle.in_reactor():
                    rc = self.handle.flux_reactor_run(self._reactor, 0)
                events = self._pollevents()
            except OSError as err:
                self._lose(err.errno or errno.ECONNRESET, err.strerror)
                return
            finally:
                if not self.closed:
                    self._no_blocking.stop()
                    self._quiet_check.stop()
            if rc < 0 or events & self._pollerr:
                self._lose(errno.ECONNRESET, "the broker closed the connection")
                return
            received = self._received()
            quiet = (
                not events & self._pollin
                and self.callbacks == callbacks
                and received == received_before
            )
            quiet_runs = quiet_runs + 1 if quiet else 0
            if quiet_runs == 2:
                return
            if self._over_budget():
                break
        self._schedule_drain()

    def _after_iteration(self, *_: Any) -> None:
        """A check watcher's callback (once per reactor iteration): stop the run when
        two iterations in a row were quiet, the connection failed, or time is up."""
        if self.callbacks != self._seen_callbacks:
            # Not quiet, and in a burst the common case: no need to ask the handle.
            self._seen_callbacks = self.callbacks
            self._quiet_iterations = 0
        else:
            received, events = self._received(), self._pollevents()
            quiet = not events & self._pollin and received == self._seen_received
            self._seen_received = received
            self._quiet_iterations = self._quiet_iterations + 1 if quiet else 0
            if events & self._pollerr:
                self.handle.reactor_stop(self._reactor)
                return
        if self._quiet_iterations == 2 or self._over_budget():
            self.handle.reactor_stop(self._reactor)

    def _over_budget(self) -> bool:
        return self.callbacks >= self._callback_limit or time.perf_counter() > self._deadline

    def _lose(self, errnum: int, detail: str | None) -> None:
        """The broker is gone: fail every watch, and let the next one reconnect."""
        log.warning("lost the connection to %s: %s", describe_instance(self.uri), detail)
        streams = list(self._streams)
        self.close()
        for stream in streams:
            if stream.open:
                stream.fail(stream._error(errnum, detail))
            else:
                stream._over_on_broker()

    def close(self) -> None:
        """Stop watching the fd and drop the handle (flux-core closes it when collected)."""
        if self.closed:
            return
        self.closed = True
        self.loop.remove_reader(self._fd)
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        _registry_discard(self)
        # Futures and watchers go before the handle they were made on.
        for stream in self._streams:
            stream._over_on_broker()
        self._streams.clear()
        for watcher in (self._no_blocking, self._quiet_check):
            watcher.stop()
            watcher.destroy()
        self.handle = None

    def _retain(self) -> None:
        self.refs += 1
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None

    def _release(self) -> None:
        self.refs -= 1
        if self.refs == 0 and not self.closed:
            self._idle_timer = self.loop.call_later(self.idle_timeout, self._close_if_idle)

    def _close_if_idle(self) -> None:
        self._idle_timer = None
        if self.refs == 0 and not self._streams:
            self.close()
        elif self.refs == 0:
            # Cancelled streams still wait for the broker's ENODATA.
            self._idle_timer = self.loop.call_later(self.idle_timeout, self._close_if_idle)


# -- one connection per (loop, URI) -------------------------------------------------

_Key = str | None
_registry: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[_Key, asyncio.Future[FluxConnection]]
] = weakref.WeakKeyDictionary()


def _opened(slot: asyncio.Future[FluxConnection] | None) -> FluxConnection | None:
    """The connection a slot opened, if it did."""
    if slot is None or not slot.done() or slot.cancelled() or slot.exception() is not None:
        return None
    return slot.result()


def _registry_discard(connection: FluxConnection) -> None:
    slots = _registry.get(connection.loop, {})
    slot = slots.get(connection.uri)
    if _opened(slot) is connection:
        del slots[connection.uri]


async def _open(loop: asyncio.AbstractEventLoop, uri: _Key) -> FluxConnection:
    try:
        bindings = load_bindings(uri)
        # Opening can block (ssh:// starts a remote shell, jobid: asks Flux): off the
        # loop. Each open resolves anew: a reconnect finds a nested instance anew.
        handle = await loop.run_in_executor(None, bindings.open, uri)
    except OSError as err:
        unresolved = isinstance(err, FluxUriUnresolved)  # its message names the URI
        where = "" if unresolved else f"cannot connect to {describe_instance(uri)}: "
        message = f"{where}{err.strerror or err}"
        raise FluxConnectionError(err.errno or errno.ECONNREFUSED, message, uri=uri) from err
    return FluxConnection(loop, uri, bindings, handle)


async def acquire(uri: str | None = None) -> FluxConnection:
    """The shared connection to ``uri`` on the running loop, opening it if needed.

    Pair every call with :func:`release`.
    """
    loop = asyncio.get_running_loop()
    key = effective_uri(uri)
    slots = _registry.setdefault(loop, {})
    slot = slots.get(key)
    if slot is None or (slot.done() and (slot.cancelled() or slot.exception() is not None)):
        slot = slots[key] = loop.create_task(_open(loop, key))
    try:
        # Shielded: one waiter being cancelled must not abort the others' open.
        connection = await asyncio.shield(slot)
    except FluxWatchError:
        if slots.get(key) is slot:
            del slots[key]
        raise
    if connection.closed:
        return await acquire(uri)
    connection._retain()
    return connection


def release(connection: FluxConnection) -> None:
    """Give back a connection from :func:`acquire`; it closes after its idle timeout."""
    connection._release()


def connection_stats(
    loop: asyncio.AbstractEventLoop | None = None,
) -> dict[str | None, dict[str, int]]:
    """Open connections on ``loop`` (default: the running one): users and streams per URI."""
    loop = loop or asyncio.get_running_loop()
    stats: dict[str | None, dict[str, int]] = {}
    for key, slot in _registry.get(loop, {}).items():
        connection = _opened(slot)
        if connection is not None:
            stats[key] = {"users": connection.refs, "streams": connection.stream_count}
    return stats
