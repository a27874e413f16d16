"""A task's log as FluxExecutor adds to it: a running task's log read from its Flux
job's output for the api-server, and lines written while its job waits in Flux's
queue.

Airflow's worker entry point logs the whole workload, token included, to its
stdout before the task starts; that line is shown with its token masked.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path

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


def append_to_task_log(base_log_folder: str, log_path: str, message: str) -> None:
    """Add a line to a try's log file (``log_path`` under ``base_log_folder``), as the
    task's own lines are written, where the UI reads a queued task's log; the task
    appends to the same file when it starts.

    :raises OSError: the file cannot be written (a scheduler without the log folder).
    """
    path = Path(base_log_folder, log_path)
    line = {
        "timestamp": datetime.now(timezone.utc).isoformat(), "level": "info",
        "event": message, "logger": "airflow_provider_flux.executors",
    }  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as log_file:
        log_file.write(json.dumps(line) + "\n")
