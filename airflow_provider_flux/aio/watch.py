"""``watch()``: an async iterator over a job eventlog, on the shared connection."""

from __future__ import annotations

import asyncio
import errno
import logging
from collections.abc import AsyncGenerator
from dataclasses import dataclass

from airflow_provider_flux.aio.connection import EMPTY, acquire, release
from airflow_provider_flux.aio.errors import (
    FluxConnectionError,
    FluxConnectionLost,
    FluxWatchError,
    describe_instance,
)
from airflow_provider_flux.job.event import JobEvent
from airflow_provider_flux.job.jobid import format_jobid, parse_jobid

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Reconnect:
    """How a watch re-establishes itself after losing the broker.

    :param attempts: reconnections in a row before giving up (0: never).
    :param initial_delay: seconds before the first one; doubles each time.
    :param max_delay: the longest wait between two.
    """

    attempts: int = 5
    initial_delay: float = 0.5
    max_delay: float = 30.0

    def delay(self, attempt: int) -> float:
        return float(min(self.max_delay, self.initial_delay * 2 ** (attempt - 1)))


NO_RECONNECT = Reconnect(attempts=0)


async def watch(
    jobid: int | str,
    eventlog: str = "eventlog",
    *,
    uri: str | None = None,
    waitcreate: bool = False,
    reconnect: Reconnect = NO_RECONNECT,
) -> AsyncGenerator[JobEvent, None]:
    """Yield the events of a job eventlog, from the first, as Flux appends them.

    Ends when the eventlog ends (the job is inactive). Leaving the loop early or
    cancelling the reading task cancels the stream on the broker; use
    ``contextlib.aclosing`` to do it at once rather than when the iterator is
    collected.

    :param jobid: the job, in any encoding Flux accepts.
    :param eventlog: ``eventlog`` or a guest eventlog such as ``guest.exec.eventlog``.
    :param uri: the instance (``None``: ``FLUX_URI``, else the system instance).
    :param waitcreate: wait for an eventlog that does not exist yet.
    :param reconnect: after a lost connection, watch again and skip what was delivered
        (eventlogs are append-only and a new watch replays from the first event).
    :raises FluxWatchError: or a subclass, naming the job, eventlog and instance.
    """
    job = parse_jobid(jobid)
    # What a new stream replays and must skip: ``delivered`` events, the last of
    # them unchanged (one generator, no inner one: thousands of watches live at once).
    delivered = 0
    last: JobEvent | None = None
    attempt = 0
    while True:
        connection = stream = None
        try:
            connection = await acquire(uri)
            stream = connection.start_stream(job, eventlog, waitcreate)
            seen = 0
            while True:
                item = stream.next_item()
                if item is EMPTY:
                    await stream.arrival()
                    continue
                if item is None:
                    return
                if isinstance(item, FluxWatchError):
                    raise item
                seen += 1
                if seen <= delivered:
                    if seen == delivered and item != last:
                        raise FluxWatchError(
                            errno.EPROTO,
                            f"eventlog {eventlog!r} of job {format_jobid(job)} on "
                            f"{describe_instance(uri)} changed while reconnecting",
                            jobid=job, eventlog=eventlog, uri=uri,
                        )  # fmt: skip
                    continue
                delivered = seen
                last = item if reconnect.attempts else None
                attempt = 0
                yield item
        except (FluxConnectionLost, FluxConnectionError) as err:
            attempt += 1
            if attempt > reconnect.attempts:
                raise
            delay = reconnect.delay(attempt)
            log.warning(
                "%s; watching job %s again in %.1fs (attempt %d of %d)",
                err.strerror, format_jobid(job), delay, attempt, reconnect.attempts,
            )  # fmt: skip
        finally:
            if stream is not None:
                stream.cancel()
            if connection is not None:
                release(connection)
        await asyncio.sleep(delay)


async def cancel_job(
    jobid: int | str, reason: str | None = None, *, uri: str | None = None
) -> None:
    """Cancel a job (a fatal ``cancel`` exception with ``reason`` as its note), on the
    shared connection, as ``flux cancel --message=REASON`` does."""
    job = parse_jobid(jobid)
    connection = await acquire(uri)
    try:
        future = connection.bindings.job.cancel_async(connection.handle, job, reason)
        await connection.request(future)
    finally:
        release(connection)


async def submit_job(jobspec: str, *, uri: str | None = None, urgency: int = 16) -> int:
    """Submit a jobspec (its JSON text) on the shared connection, as ``flux submit``
    does; its job ID.

    :raises OSError: Flux refused it.
    """
    connection = await acquire(uri)
    try:
        future = connection.bindings.job.submit_async(connection.handle, jobspec, urgency=urgency)
        await connection.request(future)
        return int(future.get_id())
    finally:
        release(connection)
