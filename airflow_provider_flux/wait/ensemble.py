"""When a wait on many jobs is over, and what it tells: the rule, and the payload
that the trigger and the poking sensor build from each job's outcome."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from airflow_provider_flux.job.jobid import format_jobid
from airflow_provider_flux.job.jobid_list import pack_jobids, parse_jobids
from airflow_provider_flux.job.limits import shorten
from airflow_provider_flux.wait.outcome import (
    NOTE_LENGTH,
    REASON_CONNECTION,
    REASON_JOBS_FAILED,
    JobOutcome,
)
from airflow_provider_flux.wait.spec import EventWaitSpec

# Failed jobs named in a message, at most.
FAILURES_SHOWN = 10
# Up to this many jobs, a payload tells each job's outcome in ``jobs``. Past it,
# ``jobs`` details the failed jobs only (this many at most), ``jobids`` packs every
# job's ID in order and ``by_outcome`` packs them by outcome: a trigger event and an
# XCom stay small however many jobs a task waits on.
DETAILED_JOBS = 100

WAIT_FOR_ALL = "all"
WAIT_FOR_ANY = "any"
Decision = Literal["success", "failure"]


@dataclass(frozen=True)
class EnsembleRule:
    """When a wait on many jobs is over.

    :param wait_for: ``"all"`` (every job that has not failed), ``"any"`` (one job),
        or a number N (at least N jobs).
    :param max_failures: how many jobs may fail (a fatal exception, an eventlog that
        ends without the event, a job that cannot be read) before the wait fails.
    :param total: how many jobs the wait is on.
    """

    wait_for: str | int
    max_failures: int
    total: int

    def __post_init__(self) -> None:
        if self.wait_for not in (WAIT_FOR_ALL, WAIT_FOR_ANY) and (
            isinstance(self.wait_for, bool)
            or not isinstance(self.wait_for, int)
            or not 1 <= self.wait_for <= self.total
        ):
            raise ValueError(
                f"wait_for must be 'all', 'any', or a number of jobs from 1 to {self.total}, "
                f"not {self.wait_for!r}"
            )
        if (
            isinstance(self.max_failures, bool)
            or not isinstance(self.max_failures, int)
            or self.max_failures < 0
        ):
            raise ValueError(
                f"max_failures must be a whole number of at least 0, not {self.max_failures!r}"
            )

    @property
    def needed(self) -> int:
        """Matches that end the wait early (``all``: every job must be decided)."""
        if self.wait_for == WAIT_FOR_ALL:
            return self.total
        if self.wait_for == WAIT_FOR_ANY:
            return 1
        return int(self.wait_for)

    def decide(self, matched: int, failed: int) -> Decision | None:
        """The wait's outcome with ``matched`` and ``failed`` jobs decided, or None."""
        if failed > self.max_failures:
            return "failure"
        pending = self.total - matched - failed
        if self.wait_for == WAIT_FOR_ALL:
            return "success" if pending == 0 else None
        if matched >= self.needed:
            return "success"
        return "failure" if matched + pending < self.needed else None

    def describe(self) -> str:
        """``all 50 jobs`` / ``any of 50 jobs`` / ``at least 40 of 50 jobs``, for messages."""
        if self.wait_for == WAIT_FOR_ALL:
            what = f"all {self.total} jobs"
        elif self.wait_for == WAIT_FOR_ANY:
            what = f"any of {self.total} jobs"
        else:
            what = f"at least {self.wait_for} of {self.total} jobs"
        return what + (f" (at most {self.max_failures} may fail)" if self.max_failures else "")


def ensemble_payload(
    spec: EventWaitSpec,
    rule: EnsembleRule,
    eventlog: str,
    jobids: Sequence[int],
    outcomes: Mapping[int, JobOutcome],
    decision: str,
    error: str | None = None,
    error_reason: str = REASON_CONNECTION,
) -> dict[str, Any]:
    """The trigger event payload of a decided wait on many jobs (see
    ``FluxJobsEventTrigger``); the poking sensor builds the same. ``error`` (with
    ``error_reason``) ends the wait whatever the jobs did. Past ``DETAILED_JOBS``
    jobs, only the failed ones are detailed."""
    failures = [o for o in outcomes.values() if o.reason is not None]
    matched = len(outcomes) - len(failures)
    pending = len(jobids) - len(outcomes)
    what = f"{spec.describe()} of {rule.describe()}"
    counts = f"{matched} matched, {len(failures)} failed, {pending} pending"
    shown = "; ".join(o.message for o in failures[:FAILURES_SHOWN])
    if len(failures) > FAILURES_SHOWN:
        shown += f"; and {len(failures) - FAILURES_SHOWN} more"
    payload: dict[str, Any] = {
        "status": "success" if decision == "success" else "error",
        "eventlog": eventlog,
        "matched": matched,
        "failed": len(failures),
        "pending": pending,
        **_jobs_of(jobids, outcomes),
    }
    if decision == "success":
        payload["message"] = f"{what}: done ({counts})" + (f": {shown}" if shown else "")
        return payload
    connection_lost = any(o.reason == REASON_CONNECTION for o in failures)
    payload["reason"] = REASON_CONNECTION if connection_lost else REASON_JOBS_FAILED
    if error is not None:
        payload["reason"] = error_reason
        payload["message"] = f"{what}: {error} ({counts})"
    elif len(failures) > rule.max_failures:
        payload["message"] = (
            f"{what}: {len(failures)} failed, more than the {rule.max_failures} allowed "
            f"({counts}): {shown}"
        )
    else:
        payload["message"] = f"{what}: too few jobs can still match ({counts})" + (
            f": {shown}" if shown else ""
        )
    return payload


def _jobs_of(jobids: Sequence[int], outcomes: Mapping[int, JobOutcome]) -> dict[str, Any]:
    """The payload's ``jobs`` (and, past ``DETAILED_JOBS``, ``jobids`` and ``by_outcome``)."""
    if len(jobids) <= DETAILED_JOBS:
        return {"jobs": [job_entry(jobid, outcomes.get(jobid)) for jobid in jobids]}
    by_outcome: dict[str, list[int]] = {}
    failed: list[dict[str, Any]] = []
    for jobid in jobids:
        outcome = outcomes.get(jobid)
        name = "pending" if outcome is None else outcome.reason or "matched"
        by_outcome.setdefault(name, []).append(jobid)
        if outcome is not None and outcome.reason is not None and len(failed) < DETAILED_JOBS:
            failed.append(job_entry(jobid, outcome))
    return {
        "jobs": failed,
        "jobids": pack_jobids(jobids),
        "by_outcome": {name: pack_jobids(ids) for name, ids in by_outcome.items()},
    }


def payload_jobids(payload: Mapping[str, Any], max_jobs: int) -> list[int]:
    """Every job of a wait on many jobs, in order, from its payload."""
    if "jobids" in payload:
        return parse_jobids(payload["jobids"], max_jobs)
    return [int(entry["jobid"]) for entry in payload["jobs"]]


def job_entry(jobid: int, outcome: JobOutcome | None) -> dict[str, Any]:
    """One job's part of a wait on many jobs, for the trigger event and XCom."""
    if outcome is None:
        return {"jobid": jobid, "outcome": "pending"}
    entry: dict[str, Any] = {"jobid": jobid, "outcome": outcome.reason or "matched"}
    if outcome.event is not None:
        entry["event"] = outcome.event_dict()
    if outcome.reason is not None:
        entry["message"] = shorten(outcome.message, 2 * NOTE_LENGTH)
    return entry


def ensemble_result(payload: Mapping[str, Any]) -> dict[str, Any]:
    """What a successful wait on many jobs returns (the task's XCom): its counts and
    each job's outcome (past ``DETAILED_JOBS`` jobs, the failed ones', and every
    job's ID packed by outcome), with the job's F58 ID."""
    result = {
        "matched": payload["matched"],
        "failed": payload["failed"],
        "pending": payload["pending"],
        "jobs": [{**entry, "job": format_jobid(entry["jobid"])} for entry in payload["jobs"]],
    }
    for key in ("jobids", "by_outcome"):
        if key in payload:
            result[key] = payload[key]
    return result
