"""Waiting for the operator's jobs in the worker (``deferrable=False``): one job
watched, its output logged as it comes; an array's eventlogs read in turn."""

from __future__ import annotations

import time
from collections.abc import Sequence

from airflow_provider_flux.aio.output_follower import OutputFollower
from airflow_provider_flux.aio.watch import Reconnect
from airflow_provider_flux.exceptions import FluxConnectionFailedError
from airflow_provider_flux.hooks.flux import FluxHook
from airflow_provider_flux.job.ending import JobEnding
from airflow_provider_flux.job.event import JobEvent
from airflow_provider_flux.job.output import OutputProgress
from airflow_provider_flux.wait.job_watch import Log, wait_on_job
from airflow_provider_flux.wait.spec import EventWaitSpec

UNTIL_CLEAN = EventWaitSpec("clean", raise_on_exception=False)


async def watch_until_clean(
    jobid: int, uri: str | None, output_limit: int | None, log: Log
) -> tuple[list[JobEvent], OutputProgress | None]:
    """The job's events once it is clean and, with an ``output_limit``, how much of
    its output was logged as the job wrote it (None: not followed).

    :raises FluxConnectionFailedError: the job could not be watched to its end.
    """

    async def emit(text: str) -> None:
        log.info("%s", text)

    follower = None
    if output_limit is not None:
        follower = OutputFollower(jobid, uri, output_limit, emit)
    events: list[JobEvent] = []

    def seen(event: JobEvent) -> None:
        events.append(event)
        if follower is not None:
            follower.seen(event)

    try:
        outcome = await wait_on_job(
            UNTIL_CLEAN, jobid, "eventlog", uri=uri, waitcreate=False, reconnect=Reconnect(),
            log=log, seen=seen,
        )  # fmt: skip
        output = await follower.close() if follower is not None else None
    finally:
        if follower is not None:
            await follower.cancel()
    if outcome.reason is not None:
        raise FluxConnectionFailedError(f"waiting for the job: {outcome.message}")
    return events, output


def poll_until_clean(
    hook: FluxHook, jobids: Sequence[int], poll_interval: float
) -> dict[int, JobEnding]:
    """Read the jobs' eventlogs (on one handle) every ``poll_interval`` seconds until
    all are clean; how each ended.

    :raises OSError: an eventlog could not be read (as ``FluxHook.read_eventlog``).
    """
    clean: dict[int, JobEnding] = {}
    pending = list(jobids)
    while pending:
        for jobid, read in zip(pending, hook.read_eventlogs(pending), strict=True):
            if isinstance(read, OSError):
                raise read
            if UNTIL_CLEAN.judge_eventlog(*read) is not None:
                clean[jobid] = JobEnding.from_events(read[0])
        pending = [jobid for jobid in pending if jobid not in clean]
        if pending:
            time.sleep(poll_interval)
    return {jobid: clean[jobid] for jobid in jobids}
