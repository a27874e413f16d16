"""``Flux`` handles and futures of the simulated instance.

They behave like flux-core's where the provider relies on it: one socket per
handle, a ``pollfd()`` that becomes readable when responses wait, reactor runs
whose iterations dispatch one message each (with check and idle watchers to stop
a run when it is quiet and to keep it from waiting), streaming futures
whose ``then`` callback runs once per response, and blocking ``get()`` outside
callbacks. A handle belongs to one thread, as in flux-core.

A handle opened while ``FLUX_HANDLE_USERID`` or ``FLUX_HANDLE_ROLEMASK`` is set sends
those credentials with every request, as libflux's local connector does (a broker
takes them from its owner only, for tests of access control: flux-core's
``t/t2232-job-info-security.t`` acts as a guest with ``FLUX_HANDLE_USERID=9999
FLUX_HANDLE_ROLEMASK=0x2``).
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import select
import socket
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from airflow_provider_flux.testing import protocol
from airflow_provider_flux.testing.bindings.constants import (
    FLUX_POLLERR,
    FLUX_POLLIN,
    FLUX_REACTOR_NOWAIT,
    FLUX_ROLE_NONE,
    FLUX_RPC_NORESPONSE,
    FLUX_RPC_STREAMING,
    FLUX_USERID_UNKNOWN,
)

SCHEME = "sim://"


def _strtoul(text: str, base: int) -> int:
    """The number C's ``strtoul`` reads at the start of ``text`` (0 when none): libflux
    reads the credential variables with it (the role mask with base 0, so ``0x2``)."""
    text = text.strip().lower()
    if base == 0:
        if text.startswith("0x"):
            base, text = 16, text[2:]
        else:
            base = 8 if text.startswith("0") else 10
    digits = "0123456789abcdef"[:base]
    value = 0
    for char in text:
        if char not in digits:
            break
        value = value * base + digits.index(char)
    return value


def testing_credentials() -> dict[str, int] | None:
    """The credentials ``FLUX_HANDLE_USERID`` / ``FLUX_HANDLE_ROLEMASK`` ask for, or None.

    As in libflux, one alone leaves the other unset (``FLUX_USERID_UNKNOWN``,
    ``FLUX_ROLE_NONE``), which the broker fills in from the connection: the owner's.
    """
    userid = os.environ.get("FLUX_HANDLE_USERID")
    rolemask = os.environ.get("FLUX_HANDLE_ROLEMASK")
    if userid is None and rolemask is None:
        return None
    return {
        "userid": FLUX_USERID_UNKNOWN if userid is None else _strtoul(userid, 10),
        "rolemask": FLUX_ROLE_NONE if rolemask is None else _strtoul(rolemask, 0),
    }


class Future:
    """A response (or a stream of responses) to one request.

    As in flux-core, the ``then`` callback runs when the future becomes ready; a
    streaming future becomes ready again after ``reset()`` when more responses wait.
    An error response stays in place: it ends the stream.
    """

    def __init__(self, handle: Flux, matchtag: int, streaming: bool = False) -> None:
        self._handle = handle
        self.matchtag = matchtag
        self.streaming = streaming
        self._responses: deque[protocol.Message] = deque()
        self._then: tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]] | None = None
        self._scheduled = False
        self.stopped = False

    @property
    def terminal(self) -> bool:
        """True once the last response this future will get has arrived."""
        if not self._responses:
            return False
        return not self.streaming or "errnum" in self._responses[-1]

    def _deliver(self, message: protocol.Message) -> None:
        self._responses.append(message)
        if len(self._responses) == 1:
            self._schedule()

    def _schedule(self) -> None:
        if self._then is not None and not self._scheduled:
            self._scheduled = True
            self._handle._ready.append(self)

    def _run_callback(self) -> None:
        self._scheduled = False
        if self._then is None or self.stopped or not self._responses:
            return
        callback, args, kwargs = self._then
        callback(self, *args, **kwargs)

    def then(self, callback: Callable[..., Any], *args: Any, **kwargs: Any) -> Future:
        """Call ``callback(future, *args)`` from the reactor when a response is ready."""
        if self._then is not None:
            raise OSError(errno.EEXIST, "then callback already exists for this future")
        self._then = (callback, args, kwargs)
        if self._responses:
            self._schedule()
        return self

    def stop(self) -> None:
        """Stop calling the callback."""
        self.stopped = True

    def is_ready(self) -> bool:
        return bool(self._responses)

    def wait_for(self, timeout: float = -1.0) -> Future:
        """Block until a response arrives (not from inside the reactor); ETIMEDOUT
        after ``timeout`` seconds (negative: never), as flux-core's."""
        deadline = None if timeout < 0 else time.monotonic() + timeout
        while not self._responses:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise OSError(errno.ETIMEDOUT, os.strerror(errno.ETIMEDOUT))
            self._handle._receive_one(block=True, timeout=left)
        return self

    def _current(self) -> protocol.Message:
        self.wait_for()
        message = self._responses[0]
        errnum = message.get("errnum")
        if errnum:
            raise OSError(errnum, message.get("errstr") or os.strerror(errnum))
        return message

    def reset(self) -> None:
        """Move to the next response of a stream."""
        if self._responses and "errnum" not in self._responses[0]:
            self._responses.popleft()
        if self._responses:
            self._schedule()

    def get(self) -> Any:
        """The payload of the (current) response; raises ``OSError`` for an error."""
        return self._current().get("payload")


class Watcher:
    """A check or idle watcher of the reactor, as flux-core's bindings make them."""

    def __init__(
        self, handle: Flux, kind: str, callback: Callable[..., Any] | None, args: Any
    ) -> None:
        self.kind = kind
        self.callback = callback
        self.args = args
        self.started = False
        self._handle: Flux | None = handle
        handle._watchers.append(self)

    def start(self) -> Watcher:
        self.started = True
        return self

    def stop(self) -> Watcher:
        self.started = False
        return self

    def destroy(self) -> None:
        if self._handle is not None:
            self._handle._watchers.remove(self)
            self._handle = None


class Flux:
    """A handle on a simulated instance: ``Flux("sim:///path/to/socket")``."""

    def __init__(self, url: str | None = None, flags: int = 0) -> None:
        url = url or os.environ.get("FLUX_URI") or ""
        if not url.startswith(SCHEME):
            raise OSError(errno.EINVAL, f"Unable to connect to Flux: {url!r} is not a sim:// URI")
        self.url = url
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._sock.connect(url[len(SCHEME) :])
        except OSError as err:
            self._sock.close()
            raise OSError(err.errno, f"Unable to connect to Flux: {url}: {err.strerror}") from None
        self._sock.setblocking(False)
        self._decoder = protocol.LineDecoder()
        # Messages read off the socket, not yet received by the handle (flux-core's
        # connector buffer and requeue deque): they show as FLUX_POLLIN.
        self._inbox: deque[protocol.Message] = deque()
        self._received = 0
        self._matchtags = itertools.count(1)
        self._futures: dict[int, Future] = {}
        # Futures fulfilled by an earlier reactor run, their callbacks due in the next.
        self._ready: deque[Future] = deque()
        self._lost: OSError | None = None
        self._stop_requested = False
        self._watchers: list[Watcher] = []
        self._cred = testing_credentials()

    def __del__(self) -> None:
        sock = getattr(self, "_sock", None)
        if sock is not None:
            sock.close()

    # -- requests ---------------------------------------------------------------

    def rpc(self, topic: str, payload: Any = None, nodeid: int = 0, flags: int = 0) -> Future:
        """Send a request; returns the future of its response.

        ``FLUX_RPC_STREAMING``: the future gets responses until an error one (such as
        ENODATA) ends the stream, ``reset()`` moving to the next. ``FLUX_RPC_NORESPONSE``:
        sent with matchtag 0; as flux-core's, the future is ready at once and its
        ``get()`` raises EINVAL (it has no response to decode).
        """
        if flags & ~(FLUX_RPC_NORESPONSE | FLUX_RPC_STREAMING):
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        if flags & FLUX_RPC_NORESPONSE:
            self._notify(topic, payload)
            future = Future(self, 0)
            future._deliver(protocol.error_response(0, errno.EINVAL))
            return future
        return self._request(topic, payload, streaming=bool(flags & FLUX_RPC_STREAMING))

    def _request(self, topic: str, payload: Any, *, streaming: bool) -> Future:
        matchtag = next(self._matchtags)
        future = Future(self, matchtag, streaming)
        self._futures[matchtag] = future
        flags = FLUX_RPC_STREAMING if streaming else 0
        self._send({"topic": topic, "matchtag": matchtag, "flags": flags, "payload": payload})
        return future

    def _notify(self, topic: str, payload: Any) -> None:
        """A request that gets no response (``FLUX_RPC_NORESPONSE``)."""
        self._send(
            {"topic": topic, "matchtag": 0, "flags": FLUX_RPC_NORESPONSE, "payload": payload}
        )

    def _send(self, message: protocol.Message) -> None:
        if self._lost is not None:
            raise OSError(self._lost.errno, self._lost.strerror)
        if self._cred is not None:
            message = {**message, "cred": self._cred}
        data = protocol.encode(message)
        while data:
            try:
                data = data[self._sock.send(data) :]
            except BlockingIOError:
                _wait_for(self._sock, select.POLLOUT, None)
            except OSError as err:
                self._connection_lost(err)
                raise OSError(err.errno, err.strerror) from None

    def attr_get(self, name: str) -> str:
        """Read a broker attribute (blocking)."""
        return str(self.rpc("attr.get", {"name": name}).get()["value"])

    # -- the reactor -----------------------------------------------------------

    def pollfd(self) -> int:
        """A file descriptor that is readable when responses wait."""
        return self._sock.fileno()

    def pollevents(self) -> int:
        """``FLUX_POLLIN`` while messages wait to be received; ``FLUX_POLLERR`` when lost.

        As in flux-core, a future fulfilled but not yet called back does not count.
        """
        if self._lost is not None:
            return FLUX_POLLERR
        if self._inbox:
            return FLUX_POLLIN
        return FLUX_POLLIN if _wait_for(self._sock, select.POLLIN, 0) else 0

    def received_messages(self) -> int:
        """Messages this handle has received so far (flux-core: ``flux_get_msgcounters``)."""
        return self._received

    @contextlib.contextmanager
    def in_reactor(self) -> Iterator[None]:
        """Mark this thread as running the reactor (flux-core skips its SIGINT dance then)."""
        yield

    def get_reactor(self) -> Flux:
        return self

    def flux_reactor_run(self, reactor: Any, flags: int) -> int:
        """Run the reactor; with ``FLUX_REACTOR_NOWAIT``, one iteration.

        Each iteration is timed as flux-core's: it calls back the futures fulfilled
        by earlier iterations, receives at most one message, whose future is called
        back on the next iteration, then calls the started check watchers. Without
        ``NOWAIT`` it iterates until :meth:`reactor_stop` or until nothing could call
        back, waiting for messages unless an idle watcher is started.
        """
        self._stop_requested = False
        while True:
            worked = self._iterate()
            for check in [w for w in self._watchers if w.kind == "check" and w.started]:
                assert check.callback is not None
                check.callback(self, check, 0, check.args)
            if flags & FLUX_REACTOR_NOWAIT or self._stop_requested or self._lost is not None:
                break
            spinning = any(w.kind == "idle" and w.started for w in self._watchers)
            if not spinning and not self._has_callbacks_to_make():
                break
            if not worked and not spinning:
                self._read(block=True)
        return -1 if self._lost is not None else len(self._futures)

    def reactor_run(self, reactor: Any = None, flags: int = 0) -> int:
        return self.flux_reactor_run(reactor, flags)

    def reactor_stop(self, reactor: Any = None) -> None:
        """Make a reactor run return after the current iteration."""
        self._stop_requested = True

    def check_watcher_create(self, callback: Callable[..., Any], args: Any = None) -> Watcher:
        """A watcher whose ``callback(handle, watcher, revents, args)`` runs after
        every iteration while it is started."""
        return Watcher(self, "check", callback, args)

    def idle_watcher_create(self) -> Watcher:
        """A watcher that keeps the reactor's iterations from waiting while started."""
        return Watcher(self, "idle", None, None)

    def _has_callbacks_to_make(self) -> bool:
        """A callback is due, or a future with one still waits for responses."""
        return bool(self._ready) or any(
            f._then is not None and not f.stopped for f in self._futures.values()
        )

    def _iterate(self) -> bool:
        """One reactor iteration; False when it had nothing to do."""
        due, self._ready = self._ready, deque()
        for future in due:
            future._run_callback()
        received = self._lost is None and self._receive_one(block=False)
        return bool(due) or received

    def _receive_one(self, *, block: bool, timeout: float | None = None) -> bool:
        """Receive one message and fulfil its future; False when none came."""
        if not self._inbox:
            self._read(block=block, timeout=timeout)
        if not self._inbox:
            return False
        message = self._inbox.popleft()
        self._received += 1
        future = self._futures.get(int(message.get("matchtag", 0)))
        if future is not None:
            future._deliver(message)
            if future.terminal:
                del self._futures[future.matchtag]
        return True

    def _read(self, *, block: bool, timeout: float | None = None) -> None:
        """Move what the socket has into the inbox."""
        if self._lost is not None:
            raise OSError(self._lost.errno, self._lost.strerror)
        if block and not _wait_for(self._sock, select.POLLIN, timeout):
            raise OSError(errno.ETIMEDOUT, os.strerror(errno.ETIMEDOUT))
        while True:
            try:
                data = self._sock.recv(1 << 16)
            except BlockingIOError:
                return
            except OSError as err:
                self._connection_lost(err)
                return
            if not data:
                self._connection_lost(OSError(errno.ECONNRESET, os.strerror(errno.ECONNRESET)))
                return
            self._inbox.extend(self._decoder.feed(data))
            if len(data) < (1 << 16):
                return

    def _connection_lost(self, err: OSError) -> None:
        """Fail every outstanding future, as flux-core does when a connector loses the broker."""
        if self._lost is not None:
            return
        errnum = err.errno or errno.ECONNRESET
        self._lost = OSError(errnum, err.strerror or "connection lost")
        futures, self._futures = list(self._futures.values()), {}
        for future in futures:
            future._deliver(protocol.error_response(future.matchtag, errnum, self._lost.strerror))


def _wait_for(sock: socket.socket, events: int, timeout: float | None) -> bool:
    """Wait until ``sock`` has ``events`` (poll(2): select() fails above fd 1023)."""
    poller = select.poll()
    poller.register(sock, events)
    return bool(poller.poll(None if timeout is None else timeout * 1000))
