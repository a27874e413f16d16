"""Instance-wide job information on the shared connection: the job-manager journal
(every event of every job, for the instance owner) and job-list (anyone).

The journal is a streaming RPC (``job-manager.events-journal``, flux-core's
``src/modules/job-manager/journal.c``): first one response per job with its events
so far (the backlog), then a sentinel ``{"id": -1, "events": []}``, then one
response per new event. :func:`journal` hands the responses over as they come;
what they mean is :mod:`airflow_provider_flux.instance_events`' business.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_flux.aio.connection import BrokerStream, FluxConnection, acquire, release
from airflow_provider_flux.aio.errors import FluxWatchError, instance_error
from airflow_provider_flux.job.event import JobEvent

log = logging.getLogger(__name__)

JOURNAL_TOPIC = "job-manager.events-journal"
JOB_LIST_TOPIC = "job-list.list"
# The sentinel's job ID (FLUX_JOBID_ANY as the journal sends it).
SENTINEL_ID = -1


@dataclass(frozen=True)
class JournalResponse:
    """One response of the journal: a job's events (several in the backlog, one live).

    :param jobid: the job, or :data:`SENTINEL_ID` for the end of the backlog.
    :param events: its events, oldest first.
    :param jobspec: the job's redacted jobspec, with its ``submit`` event (and in the
        backlog), else ``None``.
    """

    jobid: int
    events: tuple[JobEvent, ...] = ()
    jobspec: Mapping[str, Any] | None = field(default=None, compare=False)

    @property
    def is_sentinel(self) -> bool:
        """The backlog is over: what follows happens now."""
        return self.jobid == SENTINEL_ID


class ResponseStream(BrokerStream[JournalResponse]):
    """The journal's streaming RPC on the shared connection; :meth:`get` returns its
    responses."""

    __slots__ = ("_future", "_matchtag")

    def __init__(self, connection: FluxConnection, payload: Mapping[str, Any]) -> None:
        super().__init__(connection)
        bindings, handle = connection.bindings, connection.handle
        flags = bindings.constant("RPC_STREAMING")
        self._future = handle.rpc(JOURNAL_TOPIC, dict(payload), 0, flags)
        self._matchtag = bindings.rpc_matchtag(self._future)
        self._future.then(self._on_response)

    def _on_response(self, future: Any) -> None:
        # Runs inside the reactor: must not raise, or flux-core stops the reactor.
        self.connection.callbacks += 1
        try:
            response = future.get()
        except OSError as err:
            errnum = err.errno or errno.EPROTO
            self._end(None if errnum == errno.ENODATA else self._error(errnum, err.strerror))
            return
        except Exception as err:  # a malformed response must not break the other streams
            self._end(self._error(errno.EPROTO, f"bad journal response: {err!r}"))
            return
        future.reset()
        if self._cancelled:
            return
        try:
            item = _journal_response(response)
        except (KeyError, TypeError, ValueError) as err:
            self._end(self._error(errno.EPROTO, f"bad journal response: {err!r}"))
            return
        self._put(item)

    def _error(self, errnum: int, detail: str | None) -> FluxWatchError:
        return instance_error(errnum, detail, "read the job-manager journal", self.connection.uri)

    def cancel(self) -> None:
        """Stop the stream on the broker; it confirms with ENODATA, which ends it here."""
        if not self.open:
            return
        self.open = False
        self._cancelled = True
        bindings, handle = self.connection.bindings, self.connection.handle
        try:
            handle.rpc(
                f"{JOURNAL_TOPIC}-cancel",
                {"matchtag": self._matchtag},
                0,
                bindings.constant("RPC_NORESPONSE"),
            )
        except (OSError, AttributeError) as err:
            # The connection is gone (no handle), and the broker drops a lost client's streams.
            log.debug("cancel of the journal stream failed: %s", err)
            self.connection._forget(self)


def _journal_response(response: Mapping[str, Any]) -> JournalResponse:
    events = tuple(JobEvent.from_flux(entry) for entry in response["events"])
    return JournalResponse(int(response["id"]), events, response.get("jobspec"))


async def journal(uri: str | None = None, *, full: bool = True) -> AsyncGenerator[JournalResponse]:
    """Yield the job-manager journal's responses as the broker sends them.

    Runs until the broker ends the stream; leaving the loop (or cancelling the
    reading task) cancels it on the broker.

    :param uri: the instance (``None``: ``FLUX_URI``, else the system instance).
    :param full: begin with every job the instance still knows (else: active jobs).
    :raises FluxPermissionError: not the instance owner (only the owner may read it).
    :raises FluxWatchError: or another subclass, naming the instance.
    """
    connection = await acquire(uri)
    stream = None
    try:
        stream = connection.start(lambda: ResponseStream(connection, {"full": full}))
        while True:
            item = await stream.get()
            if item is None:
                ended = "the broker ended the stream"
                raise instance_error(errno.ENODATA, ended, "read the job-manager journal", uri)
            if isinstance(item, FluxWatchError):
                raise item
            yield item
    finally:
        if stream is not None:
            stream.cancel()
        release(connection)


async def list_jobs(payload: Mapping[str, Any], uri: str | None = None) -> list[dict[str, Any]]:
    """Ask job-list for jobs (a ``job-list.list`` request); their attributes, as listed.

    :param payload: the request: ``max_entries``, ``attrs``, ``since``, ``constraint``.
    :param uri: the instance.
    """
    connection = await acquire(uri)
    try:
        try:
            future = connection.handle.rpc(JOB_LIST_TOPIC, dict(payload))
            response = await connection.request(future)
        except OSError as err:
            raise instance_error(err.errno or errno.EPROTO, err.strerror, "list jobs", uri) from err
        return list(response["jobs"])
    finally:
        release(connection)


async def lookup_jobs(
    jobids: Sequence[int], keys: Sequence[str], uri: str | None = None
) -> dict[int, dict[str, Any]]:
    """``keys`` of each job (``job-info.lookup``: ``jobspec``, ``eventlog``...), every
    request in flight at once on the shared connection; a job that cannot be read (gone,
    another user's) is left out."""
    connection = await acquire(uri)
    try:
        lookup = connection.bindings.job.job_info_lookup
        pending = [
            (jobid, connection.request(lookup(connection.handle, jobid, keys=list(keys))))
            for jobid in jobids
        ]
        found: dict[int, dict[str, Any]] = {}
        for jobid, response in pending:
            try:
                found[jobid] = dict(await response)
            except OSError as err:
                log.debug("cannot read %s of job %d: %s", list(keys), jobid, err)
        return found
    finally:
        release(connection)


async def queue_status(uri: str | None = None, queue: str | None = None) -> dict[str, Any]:
    """The job-manager's word on a queue (``flux queue status``): ``enable``,
    ``start``, and ``stop_reason`` when scheduling is stopped."""
    connection = await acquire(uri)
    try:
        payload = {"name": queue} if queue else {}
        future = connection.handle.rpc("job-manager.queue-status", payload)
        return dict(await connection.request(future))
    finally:
        release(connection)
