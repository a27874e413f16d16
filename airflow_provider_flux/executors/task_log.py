"""A running task's log, read from its Flux job's output for the api-server.

Airflow's worker entry point logs the whole workload, token included, to its
stdout before the task starts; that line is shown with its token masked.
"""

from __future__ import annotations

import re

from airflow_provider_flux.hooks.flux import FluxHook
from airflow_provider_flux.job.jobid import format_jobid, parse_jobid

# A JSON Web Token: three base64url parts, the first a JSON object ("eyJ").
TOKEN = re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
MASK = "***"
# The most of a job's output one read shows.
LOG_LIMIT = 4 << 20


def masked(line: str) -> str:
    """``line`` with any token in it masked."""
    return TOKEN.sub(MASK, line)


def job_task_log(hook: FluxHook, external_executor_id: str | None) -> tuple[list[str], list[str]]:
    """The messages and log lines of the job ``external_executor_id`` names, as the
    executor's ``get_task_log`` returns them; nothing when it names no job."""
    if not external_executor_id:
        return [], []
    try:
        jobid = parse_jobid(external_executor_id)
    except ValueError:
        return [], []
    where = f"Flux job {format_jobid(jobid)} on {hook.describe()}"
    try:
        text, complete = hook.read_output_so_far(jobid, LOG_LIMIT)
    except OSError as err:
        return [f"{where}: its output cannot be read: {err}"], []
    source = f"{where}: its output so far" + ("" if complete else " (cut)")
    return [source], [masked(line) for line in text.splitlines()]
