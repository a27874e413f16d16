"""Finding the jobs of task instances a scheduler before this one queued.

A job is adopted only when its jobspec names the very try of the task instance (its
ID and try number) in this deployment: an ``external_executor_id`` can be stale (a
reset task instance keeps it on Airflow 3.1), and a job name can be copied. A job
the scheduler submitted but did not live to record is found by its name.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from airflow_provider_flux.aio.journal import list_jobs, lookup_jobs
from airflow_provider_flux.executors.workload_job import (
    job_name,
    names_task_instance,
    task_instance_id,
)
from airflow_provider_flux.job.event import JobEvent, parse_eventlog
from airflow_provider_flux.job.jobid import parse_jobid


@dataclass(frozen=True)
class FoundJob:
    """The job of a task instance's try, and its eventlog so far."""

    jobid: int
    events: tuple[JobEvent, ...]


@dataclass(frozen=True)
class Orphan:
    """What adoption needs of a task instance (read in the scheduler's thread)."""

    ti_id: str
    try_number: int
    external_executor_id: str | None
    dag_id: str
    task_id: str
    run_id: str
    map_index: int

    @classmethod
    def of(cls, ti: Any) -> Orphan:
        return cls(
            str(ti.id), int(ti.try_number), ti.external_executor_id, ti.dag_id, ti.task_id,
            ti.run_id, -1 if ti.map_index is None else int(ti.map_index),
        )  # fmt: skip


async def find_jobs(
    orphans: Sequence[Orphan], uri: str | None, userid: int | None
) -> dict[str, FoundJob]:
    """The jobs of ``orphans``' tries, by task instance ID: those whose recorded job ID
    or whose name points at a job of ``userid``'s that names the same try."""
    candidates = {jobid for orphan in orphans if (jobid := _jobid(orphan.external_executor_id))}
    constraint: dict[str, Any] = {"name": sorted({job_name(orphan) for orphan in orphans})}
    if userid is not None:
        constraint = {"and": [constraint, {"userid": [userid]}]}
    if orphans:
        named = await list_jobs({"max_entries": 0, "attrs": [], "constraint": constraint}, uri)
        candidates.update(int(entry["id"]) for entry in named)
    details = await lookup_jobs(sorted(candidates), ["jobspec", "eventlog"], uri)
    by_ti = {orphan.ti_id: orphan for orphan in orphans}
    found: dict[str, FoundJob] = {}
    for jobid, detail in details.items():
        jobspec = _jobspec(detail)
        orphan = by_ti.get(str(task_instance_id(jobspec)))
        if orphan is not None and names_task_instance(jobspec, orphan.ti_id, orphan.try_number):
            events = tuple(parse_eventlog(str(detail.get("eventlog") or "")))
            found[orphan.ti_id] = FoundJob(jobid, events)
    return found


def _jobid(external_executor_id: str | None) -> int | None:
    try:
        return parse_jobid(external_executor_id) if external_executor_id else None
    except ValueError:
        return None


def _jobspec(detail: Mapping[str, Any]) -> Mapping[str, Any]:
    value = detail.get("jobspec")
    parsed = json.loads(value) if isinstance(value, str) else value
    return parsed if isinstance(parsed, Mapping) else {}
