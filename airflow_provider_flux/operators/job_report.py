"""How the operator's jobs ended, told in the task log and in the task's error: each
job judged once from its eventlog, and the output of all of them within one budget."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from airflow_provider_flux.aio.output_reader import read_outputs
from airflow_provider_flux.exceptions import (
    FluxJobExceptionError,
    FluxJobFailedError,
    FluxJobsFailedError,
)
from airflow_provider_flux.hooks.flux import FluxHook
from airflow_provider_flux.job.ending import JobEnding, describe_wait_status
from airflow_provider_flux.job.jobid import format_jobid
from airflow_provider_flux.job.output import OutputProgress
from airflow_provider_flux.wait.job_watch import Log

# A failed array's outcome table lists every job up to this many, else the failed ones.
TABLE_ROWS = 200
# Failed jobs of an array named in the task's error, at most.
FAILURES_NAMED = 10


def raise_if_job_failed(jobid: int, ending: JobEnding) -> None:
    """Fail the task, without retry, when the job failed.

    :raises FluxJobExceptionError: it had a fatal exception (type and note said).
    :raises FluxJobFailedError: it exited non-zero, or a signal killed it.
    """
    job = format_jobid(jobid)
    if ending.fatal is not None:
        raise FluxJobExceptionError(
            f"Flux job {job}: {ending.failure()}", jobid, ending.fatal.to_dict()
        )
    if ending.status:
        code, number, words = describe_wait_status(ending.status)
        raise FluxJobFailedError(f"Flux job {job} {words}", jobid, code, number)


def read_endings(hook: FluxHook, jobids: Sequence[int]) -> dict[int, JobEnding]:
    """How each of the jobs (over) ended, their eventlogs read on one handle.

    :raises OSError: an eventlog could not be read (as ``FluxHook.read_eventlog``).
    """
    endings: dict[int, JobEnding] = {}
    for jobid, read in zip(jobids, hook.read_eventlogs(jobids), strict=True):
        if isinstance(read, OSError):
            raise read
        endings[jobid] = JobEnding.from_events(read[0])
    return endings


def report_array(
    hook: FluxHook, endings: Mapping[int, JobEnding], index_of: Mapping[int, int], limit: int,
    log: Log,
) -> None:  # fmt: skip
    """Log the output of a clean array's jobs (``limit`` bytes in all), then judge
    each as one job is judged.

    :raises FluxJobsFailedError: a job of the array failed.
    """
    log_outputs(hook, list(endings), index_of, limit, log)
    raise_if_array_failed(endings, index_of, log)
    log.info("all %d Flux jobs of the array completed successfully", len(endings))


def raise_if_array_failed(
    endings: Mapping[int, JobEnding], index_of: Mapping[int, int], log: Log
) -> None:
    """Fail the task, without retry, when a job of the array failed, after logging a
    table of how every job ended (the failed ones only, past ``TABLE_ROWS``).

    :raises FluxJobsFailedError: naming the failed jobs, their indices and how.
    """
    outcomes: list[dict[str, Any]] = []
    for jobid, ending in endings.items():
        why = ending.failure()
        outcomes.append({
            "jobid": jobid, "index": index_of.get(jobid),
            "outcome": "succeeded" if why is None else why,
        })  # fmt: skip
    failures = [entry for entry in outcomes if entry["outcome"] != "succeeded"]
    if not failures:
        return
    rows = outcomes if len(outcomes) <= TABLE_ROWS else failures
    table = "\n".join(
        f"  {entry['index'] if entry['index'] is not None else '':>6}  "
        f"{format_jobid(entry['jobid']):<14}  {entry['outcome']}"
        for entry in rows
    )
    log.error(
        "%d of %d Flux jobs of the array failed:\n  %6s  %-14s  %s\n%s",
        len(failures), len(outcomes), "index", "job", "outcome", table,
    )  # fmt: skip
    named = "; ".join(
        f"job {format_jobid(e['jobid'])} (index {e['index']}) {e['outcome']}"
        for e in failures[:FAILURES_NAMED]
    )
    more = f"; and {len(failures) - FAILURES_NAMED} more" if len(failures) > FAILURES_NAMED else ""
    raise FluxJobsFailedError(
        f"{len(failures)} of {len(outcomes)} Flux jobs of the array failed: {named}{more}",
        outcomes,
    )


def log_outputs(
    hook: FluxHook,
    jobids: Sequence[int],
    index_of: Mapping[int, int],
    limit: int,
    log: Log,
) -> None:
    """Log the output of jobs that are over, ``limit`` bytes in all (``index_of``:
    each job's index in its array, for jobs of an array). Reading stops where the
    budget does: what a job wrote past it, and the jobs after it, are not read."""
    outputs = asyncio.run(read_outputs(jobids, hook.get_uri(), limit))
    for output in outputs:
        job = format_jobid(output.jobid)
        if output.error is not None:
            log.warning("could not read the output of job %s: %s", job, output.error)
        elif output.text:
            index = f" (index {index_of[output.jobid]})" if output.jobid in index_of else ""
            log.info("output of Flux job %s%s:\n%s", job, index, output.text)
    unread = len(jobids) - len(outputs)
    if unread or any(output.cut for output in outputs):
        in_all = " in all" if index_of else ""
        jobs = f"; the output of {unread} more jobs was not read" if unread else ""
        log.warning(
            "job output cut at output_limit=%d bytes%s: the rest was not read%s",
            limit, in_all, jobs,
        )  # fmt: skip


def log_streamed_output(jobid: int, output: OutputProgress, log: Log) -> None:
    """Say how much of the job's output was logged as the job wrote it."""
    cut = f"; {output.cut} bytes cut at output_limit" if output.cut else ""
    log.info("output of Flux job %s: %d bytes logged above as the job wrote them%s",
             format_jobid(jobid), output.shown, cut)  # fmt: skip
