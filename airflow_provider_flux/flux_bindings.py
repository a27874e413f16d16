"""Finds the Flux Python bindings for an instance URI.

``sim://`` URIs name a simulated Flux instance (:mod:`airflow_provider_flux.testing`),
everything else goes to flux-core's own bindings.  The rest of the provider only
touches Flux through :class:`FluxBindings`, so both are driven by the same code.
"""

from __future__ import annotations

import errno
import functools
import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from airflow_provider_flux.flux_uri import needs_resolving, normalize_flux_uri
from airflow_provider_flux.job.limits import shorten

SIM_SCHEME = "sim://"

FLUX_IMPORT_HELP = (
    "The Flux Python bindings (the `flux` package) cannot be imported. "
    "Install them with `pip install 'airflow-provider-flux[flux]'` (flux-python builds "
    "against an installed flux-core), or point Python at the bindings that ship with "
    "flux-core: `export PYTHONPATH=$(flux config builtin python_path):$PYTHONPATH` "
    "(they also need `cffi`, `pyyaml` and `ply` installed). To test DAGs with no Flux "
    "cluster, use a simulated instance: a `sim://` URI, see airflow_provider_flux.testing."
)

# flux-core's enum value; the bindings export it as a constant when built with it.
_WAITCREATE_DEFAULT = 1


class FluxBindingsUnavailable(ImportError):
    """The Flux Python bindings are not installed or not on ``sys.path``."""


class FluxUriUnresolved(ConnectionError):
    """flux-core's resolver could not turn a URI (``jobid:``, ``pid:``, ...) into an
    address: the job is not running, the process has no instance, or what it found
    is refused. A ``ConnectionError``: a watch tries again, and resolves again, as
    after a lost connection; the message names the URI."""


@dataclass(frozen=True)
class FluxBindings:
    """The parts of the flux Python bindings that the provider uses.

    :param origin: where they come from: ``"flux-core"`` or ``"simulated"``.
    :param flux: the top-level module, with ``Flux`` (the handle class).
    :param job: the ``flux.job`` module.
    :param constants: the ``flux.constants`` module.
    """

    origin: str
    flux: ModuleType
    job: ModuleType
    constants: ModuleType

    @property
    def simulated(self) -> bool:
        """True for a simulated instance."""
        return self.origin == "simulated"

    def open(self, uri: str | None) -> Any:
        """Open a handle, resolving ``uri`` first (:meth:`resolve`); blocking (``ssh://``
        connects a remote shell, resolving asks Flux), so call it off-loop."""
        return self.flux.Flux(self.resolve(uri))

    def use_in_this_thread(self, handle: Any) -> None:
        """Make ``handle`` usable in the calling thread: flux-core's ``Flux`` keeps its
        reactor depth per thread, and sets it up only in the thread that imported
        the bindings and the one that opened the handle (one opened in a pool
        thread and used on an event loop's thread would fail in ``in_reactor``)."""
        tls = getattr(type(handle), "tls", None)
        if tls is not None and "reactor_depth" not in tls.__dict__:
            tls.reactor_depth = 0
            tls.exception = None

    def resolve(self, uri: str | None) -> str | None:
        """The address ``uri`` names now: a ``jobid:``, ``pid:``, ``slurm:`` or ``lsf:``
        URI resolved by flux-core's own resolver (``flux.uri``) as ``flux uri`` resolves
        it (a ``jobid:`` path from the instance ``FLUX_URI`` names, else the system
        instance), any other URI as it is. Blocking. A nested instance's address is
        valid only while its job runs: resolve again for each new handle.

        :raises FluxUriUnresolved: it cannot be resolved, or the address it resolves
            to is refused as a connection's would be; the message names ``uri``.
        """
        if not needs_resolving(uri):
            return uri
        try:
            found = str(_resolver(self.flux.__name__).resolve(uri))
        except (ValueError, NotImplementedError, OSError) as err:
            errnum = err.errno if isinstance(err, OSError) and err.errno else errno.ENXIO
            raise FluxUriUnresolved(errnum, f"cannot resolve the Flux URI {uri!r}: {err}") from err
        try:
            address = normalize_flux_uri(found)
        except ValueError as err:
            raise FluxUriUnresolved(
                errno.EINVAL, f"the Flux URI {uri!r} resolved to an address that is refused: {err}"
            ) from None
        if address is None or address.split(":", 1)[0] not in ("local", "ssh"):
            raise FluxUriUnresolved(
                errno.EINVAL,
                f"the Flux URI {uri!r} resolved to {shorten(found)!r}, not a local:// or "
                "ssh:// address",
            )
        return address

    def constant(self, name: str, default: int | None = None) -> int:
        """Read ``FLUX_<name>`` from the bindings' constants."""
        value = getattr(self.constants, f"FLUX_{name}", default)
        if value is None:
            raise AttributeError(f"the Flux bindings do not define FLUX_{name}")
        return int(value)

    @property
    def waitcreate_flag(self) -> int:
        """``FLUX_JOB_EVENT_WATCH_WAITCREATE``: watch an eventlog not created yet."""
        return self.constant("JOB_EVENT_WATCH_WAITCREATE", _WAITCREATE_DEFAULT)

    def received_messages(self, handle: Any) -> Callable[[], int]:
        """A function that says how many messages ``handle`` has received so far
        (``flux_get_msgcounters``: requests, responses, events and control)."""
        if self.simulated:
            return handle.received_messages  # type: ignore[no-any-return]
        ffi, lib = self.c_api()
        counters = ffi.new("flux_msgcounters_t *")
        get_counters, pointer = lib.flux_get_msgcounters, handle.handle

        def received() -> int:
            get_counters(pointer, counters)
            c = counters[0]
            return int(c.request_rx + c.response_rx + c.event_rx + c.control_rx)

        return received

    def poll_events(self, handle: Any) -> Callable[[], int]:
        """A function that returns ``handle``'s poll events (``flux_pollevents``)."""
        if self.simulated:
            return handle.pollevents  # type: ignore[no-any-return]
        _, lib = self.c_api()
        return functools.partial(lib.flux_pollevents, handle.handle)

    def c_api(self) -> tuple[Any, Any]:
        """The cffi ``ffi`` and ``lib`` of flux-core's bindings: its C API, called
        directly (the bindings' wrappers check every call, at several µs each)."""
        inner = importlib.import_module(f"{self.flux.__name__}.core.inner")
        return inner.ffi, inner.lib

    def rpc_matchtag(self, future: Any) -> int:
        """The matchtag of an RPC future: what a ``*-cancel`` request names."""
        if self.simulated:
            return int(future.matchtag)
        return int(future.pimpl.get_matchtag())

    def event_watch_async(
        self, handle: Any, jobid: int, eventlog: str = "eventlog", *, waitcreate: bool = False
    ) -> Any:
        """Start ``flux_job_event_watch``; returns a ``JobEventWatchFuture``.

        ``flux.job.event_watch_async`` has no ``flags`` argument, so a watch that waits
        for a guest eventlog to be created goes through the raw wrapper, as the binding
        itself does.
        """
        if not waitcreate:
            return self.job.event_watch_async(handle, jobid, eventlog)
        flags = self.waitcreate_flag
        if self.simulated:  # the simulated bindings take the flags
            return self.job.event_watch_async(handle, jobid, eventlog, flags)
        raw = importlib.import_module(f"{self.job.__name__}._wrapper")._RAW
        return self.job.JobEventWatchFuture(raw.event_watch(handle, int(jobid), eventlog, flags))


@functools.cache
def _resolver(package: str) -> Any:
    """flux-core's ``FluxURIResolver`` (its plugins are imported once per process)."""
    return importlib.import_module(f"{package}.uri").FluxURIResolver()


def is_simulated_uri(uri: str | None) -> bool:
    """True when ``uri`` names a simulated Flux instance."""
    return bool(uri) and str(uri).startswith(SIM_SCHEME)


def own_userid() -> int:
    """The user a handle opened by this process acts as: ``FLUX_HANDLE_USERID`` when
    set (an instance owner acting as another user, as flux-core's own tests do), else
    this process's. Over ``ssh://`` the remote side's user may differ: name it then."""
    acting_as = os.environ.get("FLUX_HANDLE_USERID")
    return int(acting_as, 0) if acting_as else os.getuid()


def effective_uri(uri: str | None) -> str | None:
    """The URI a handle opened with ``uri`` connects to: ``FLUX_URI`` when empty."""
    return uri or os.environ.get("FLUX_URI") or None


def load_bindings(uri: str | None) -> FluxBindings:
    """Return the bindings that can open ``uri`` (``None``: the default instance)."""
    if is_simulated_uri(effective_uri(uri)):
        from airflow_provider_flux.testing import bindings as sim

        return FluxBindings("simulated", sim, sim.job, sim.constants)
    return load_flux_core_bindings()


def load_flux_core_bindings() -> FluxBindings:
    """Import flux-core's bindings, with an error that says how to get them."""
    try:
        flux = importlib.import_module("flux")
        job = importlib.import_module("flux.job")
        constants = importlib.import_module("flux.constants")
    except ImportError as err:
        raise FluxBindingsUnavailable(f"{FLUX_IMPORT_HELP} (import error: {err})") from err
    if not hasattr(flux, "Flux"):
        # A different PyPI package is also called `flux`.
        raise FluxBindingsUnavailable(
            f"the `flux` module at {getattr(flux, '__file__', '?')} is not flux-core's "
            f"bindings. {FLUX_IMPORT_HELP}"
        )
    return FluxBindings("flux-core", flux, job, constants)
