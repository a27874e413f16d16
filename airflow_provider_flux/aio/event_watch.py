"""Job eventlog watch futures (``flux_job_event_watch``) on a connection's handle.

With flux-core's bindings the engine calls the C API through the cffi library the
bindings load: one C callback per connection, and per response one
``flux_job_event_watch_get`` and one ``flux_future_reset``. The bindings' own
``JobEventWatchFuture`` costs several times more per event (a wrapper check on
every C call, a ``Flux`` object built per callback, an ``EventLogEvent``) and a
Python object per watch. The simulator's bindings have no C library, so their
watches go through their Python futures; both serve the same :class:`EventWatches`.
"""

from __future__ import annotations

import errno
import os
from abc import ABC, abstractmethod
from typing import Any, Protocol

from airflow_provider_flux.flux_bindings import FluxBindings
from airflow_provider_flux.job.event import JobEvent


class ResponseReceiver(Protocol):
    """What a watch future calls back, from the reactor, each time a response is ready."""

    def on_response(self) -> None: ...


class EventWatches(ABC):
    """Starts eventlog watches on one handle, and reads their responses."""

    @abstractmethod
    def start(self, jobid: int, eventlog: str, waitcreate: bool, receiver: ResponseReceiver) -> Any:
        """Send the watch request; returns its future (``OSError`` if it cannot be sent)."""

    @abstractmethod
    def get(self, future: Any) -> JobEvent | None:
        """The future's current event, moving it on to the next; ``None`` when the
        stream has ended (ENODATA). An error response raises ``OSError``."""

    @abstractmethod
    def cancel(self, future: Any) -> None:
        """Ask the broker to end the stream; it answers with ENODATA."""

    @abstractmethod
    def destroy(self, future: Any) -> None:
        """Free a future that gets no more responses (it sends nothing to the broker)."""


class CEventWatches(EventWatches):
    """flux-core's C API, through its bindings' cffi library."""

    def __init__(self, bindings: FluxBindings, handle: Any) -> None:
        self._ffi, self._lib = bindings.c_api()
        self._handle = handle.handle  # the flux_t * the Python handle wraps
        self._waitcreate = bindings.waitcreate_flag
        self._event = self._ffi.new("char *[1]")
        # Who each live future calls back (cffi pointers compare by address).
        self._receivers: dict[Any, ResponseReceiver] = {}
        self._continuation = self._ffi.callback("flux_continuation_f", self._on_response)

    def _on_response(self, future: Any, _arg: Any) -> None:
        # Called by the reactor; the receiver catches what its reading can raise.
        self._receivers[future].on_response()

    def _error(self, future: Any = None) -> OSError:
        """The error the last C call set (errno), with ``future``'s message if any."""
        errnum = self._ffi.errno or errno.EPROTO
        detail = self._lib.flux_future_error_string(future) if future else None
        message = self._ffi.string(detail).decode() if detail else os.strerror(errnum)
        return OSError(errnum, message)

    def start(self, jobid: int, eventlog: str, waitcreate: bool, receiver: ResponseReceiver) -> Any:
        flags = self._waitcreate if waitcreate else 0
        future = self._lib.flux_job_event_watch(self._handle, jobid, eventlog.encode(), flags)
        if not future:
            raise self._error()
        if self._lib.flux_future_then(future, -1.0, self._continuation, self._ffi.NULL) < 0:
            error = self._error()
            self._lib.flux_future_destroy(future)
            raise error
        self._receivers[future] = receiver
        return future

    def get(self, future: Any) -> JobEvent | None:
        if self._lib.flux_job_event_watch_get(future, self._event) < 0:
            if self._ffi.errno == errno.ENODATA:
                return None
            raise self._error(future)
        event = JobEvent.from_json(self._ffi.string(self._event[0]).decode())
        self._lib.flux_future_reset(future)
        return event

    def cancel(self, future: Any) -> None:
        if self._lib.flux_job_event_watch_cancel(future) < 0:
            raise self._error()

    def destroy(self, future: Any) -> None:
        del self._receivers[future]
        self._lib.flux_future_destroy(future)


class BindingsEventWatches(EventWatches):
    """The bindings' ``JobEventWatchFuture`` (the simulator's)."""

    def __init__(self, bindings: FluxBindings, handle: Any) -> None:
        self._bindings = bindings
        self._handle = handle

    def start(self, jobid: int, eventlog: str, waitcreate: bool, receiver: ResponseReceiver) -> Any:
        future = self._bindings.event_watch_async(
            self._handle, jobid, eventlog, waitcreate=waitcreate
        )
        return future.then(lambda _future: receiver.on_response())

    def get(self, future: Any) -> JobEvent | None:
        event = future.get_event()
        return None if event is None else JobEvent.from_flux(event)

    def cancel(self, future: Any) -> None:
        future.cancel()

    def destroy(self, future: Any) -> None:
        # Its destructor would otherwise send a cancel for a stream that is over.
        future.needs_cancel = False


def event_watches(bindings: FluxBindings, handle: Any) -> EventWatches:
    """The event watches for ``handle``: the C API when the bindings are flux-core's."""
    if bindings.simulated:
        return BindingsEventWatches(bindings, handle)
    return CEventWatches(bindings, handle)
