"""Typed errors of the async engine; each names the job, the eventlog and the instance."""

from __future__ import annotations

import errno
import os

from airflow_provider_flux.job.jobid import format_jobid

# What flux-core's connectors report when the broker goes away, what a broker that
# is shutting down answers once it has unloaded the job-info service (ENOSYS), and
# what one that is starting answers before it is online (EAGAIN, "Upstream Flux
# broker is offline. Try again later.", broker/modhash.c): an instance restarted
# with a state directory comes back with its jobs.
CONNECTION_ERRNOS = frozenset(
    {
        errno.ECONNRESET,
        errno.EPIPE,
        errno.ENOTCONN,
        errno.ECONNREFUSED,
        errno.ESHUTDOWN,
        errno.ENOSYS,
        errno.EAGAIN,
    }
)

# What the job manager answers a cancel (an exception raised) of a job that has
# ended: ENOENT "job is inactive" (flux-core 0.88.0, job-manager/raise.c; also for
# a job it no longer knows), EINVAL in earlier versions.
ENDED_JOB_ERRNOS = frozenset({errno.ENOENT, errno.EINVAL})


def describe_instance(uri: str | None) -> str:
    return uri or "the default Flux instance"


class FluxWatchError(OSError):
    """A watch failed. ``errno`` is Flux's; ``jobid``, ``eventlog`` and ``uri`` say which."""

    def __init__(
        self,
        errnum: int,
        message: str,
        *,
        jobid: int | None = None,
        eventlog: str | None = None,
        uri: str | None = None,
    ) -> None:
        super().__init__(errnum, message)
        self.jobid = jobid
        self.eventlog = eventlog
        self.uri = uri

    def __str__(self) -> str:
        return f"[Errno {self.errno}] {self.strerror}"


class FluxEventlogNotFound(FluxWatchError):
    """ENOENT: no such job, or the job has no such eventlog."""


class FluxPermissionError(FluxWatchError):
    """EPERM: the job belongs to another user."""


class FluxConnectionLost(FluxWatchError):
    """The connection to the broker was lost; the watch can be re-established."""


class FluxConnectionError(FluxWatchError):
    """The instance could not be reached at all."""


def watch_error(
    errnum: int, detail: str | None, *, jobid: int, eventlog: str, uri: str | None
) -> FluxWatchError:
    """Build the typed error for a failed watch of ``eventlog`` of ``jobid``."""
    where = describe_instance(uri)
    job = format_jobid(jobid)
    detail = detail or os.strerror(errnum)
    cls: type[FluxWatchError]
    if errnum == errno.ENOENT:
        cls = FluxEventlogNotFound
        message = f"job {job} or its eventlog {eventlog!r} does not exist on {where}: {detail}"
    elif errnum == errno.EPERM:
        cls = FluxPermissionError
        message = f"not allowed to read eventlog {eventlog!r} of job {job} on {where}"
    elif errnum in CONNECTION_ERRNOS:
        cls = FluxConnectionLost
        message = f"lost the connection to {where} while watching job {job}: {detail}"
    else:
        cls = FluxWatchError
        message = f"watching eventlog {eventlog!r} of job {job} on {where} failed: {detail}"
    return cls(errnum, message, jobid=jobid, eventlog=eventlog, uri=uri)


def instance_error(errnum: int, detail: str | None, action: str, uri: str | None) -> FluxWatchError:
    """The typed error for a failed instance-wide request (``action``: what it did)."""
    where = describe_instance(uri)
    detail = detail or os.strerror(errnum)
    if errnum == errno.EPERM:
        return FluxPermissionError(errnum, f"not allowed to {action} on {where}: {detail}", uri=uri)
    if errnum in CONNECTION_ERRNOS:
        message = f"lost the connection to {where} while trying to {action}: {detail}"
        return FluxConnectionLost(errnum, message, uri=uri)
    return FluxWatchError(errnum, f"could not {action} on {where}: {detail}", uri=uri)
