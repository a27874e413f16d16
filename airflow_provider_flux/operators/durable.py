"""Which task instance submitted a job, carried by the job itself.

Flux cannot submit a job and record its ID elsewhere in one step: a worker that dies
between the two leaves a job nobody knows of, and a retry would submit it again.
So every job the operator submits carries its task instance's identity, in the
jobspec attribute ``system.airflow`` and in its default name, and a retry asks
Flux (job-list, which any user may query for their jobs) for the jobs of earlier
tries before it submits.

A name and an attribute can be copied. So a retry adopts only a job of its own
user (another user's job planted with the same name is not its), submitted after
its DAG run began, that names the same deployment (two Airflows sharing one account
and instance make the same scheduled run IDs; see :func:`deployment_identity`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from airflow_provider_flux.config import SECTION
from airflow_provider_flux.exceptions import FluxConnectionFailedError
from airflow_provider_flux.flux_bindings import own_userid
from airflow_provider_flux.hooks.flux import FluxHook
from airflow_provider_flux.job.ending import JobEnding
from airflow_provider_flux.job.jobid import format_jobid, parse_jobid
from airflow_provider_flux.jobspec import parse_jobspec, substitute_index
from airflow_provider_flux.version_compat import Context, conf
from airflow_provider_flux.wait.job_watch import Log

# Where in the jobspec's attributes a job carries its task instance (dotted).
IDENTITY_ATTRIBUTE = "system.airflow"

# How far Flux's clock (a job's t_submit) may be behind Airflow's (a run's start).
CLOCK_SLACK_SECONDS = 60.0

# What job_status says of a job (or an array, taken as one).
JOB_ACTIVE = "active"
JOB_SUCCEEDED = "succeeded"


@dataclass(frozen=True)
class TaskIdentity:
    """A task instance's try, as a submitted job carries it.

    :param dag_id: the DAG.
    :param task_id: the task.
    :param run_id: the DAG run.
    :param map_index: the index of a mapped task instance (-1: not mapped).
    :param try_number: the try that submitted the job.
    :param deployment: the Airflow deployment (:func:`deployment_identity`).
    :param run_started: when the DAG run began (seconds since the epoch), if it has.
    """

    dag_id: str
    task_id: str
    run_id: str
    map_index: int
    try_number: int
    deployment: str = ""
    run_started: float | None = None

    @classmethod
    def from_context(cls, context: Context) -> TaskIdentity:
        ti = context["ti"]
        map_index = getattr(ti, "map_index", -1)
        started = getattr(context.get("dag_run"), "start_date", None)
        return cls(
            ti.dag_id, ti.task_id, ti.run_id, -1 if map_index is None else int(map_index),
            int(ti.try_number), deployment_identity(),
            None if started is None else started.timestamp(),
        )  # fmt: skip

    def attribute(self, index: int | None) -> dict[str, Any]:
        """The ``system.airflow`` attribute of a job this try submits (``index``: its
        place in a job array)."""
        value: dict[str, Any] = {
            "dag_id": self.dag_id, "task_id": self.task_id, "run_id": self.run_id,
            "map_index": self.map_index, "try_number": self.try_number,
            "deployment": self.deployment,
        }  # fmt: skip
        if index is not None:
            value["array_index"] = index
        return value

    def job_name(self, try_number: int | None = None) -> str:
        """The name of a job this task instance submits when the task gives none
        (``flux jobs`` shows its start: the task)."""
        mapped = f"[{self.map_index}]" if self.map_index >= 0 else ""
        tried = self.try_number if try_number is None else try_number
        return f"{self.task_id}{mapped}.try{tried}@{self.dag_id}/{self.run_id}"

    def is_earlier_try_of(self, attribute: Any) -> bool:
        """Whether a job's ``system.airflow`` attribute names an earlier try of this
        task instance, in this deployment (a job submitted before deployments were
        named, by release 0.2.0, names none)."""
        if not isinstance(attribute, Mapping):
            return False
        same = all(
            attribute.get(key) == getattr(self, key)
            for key in ("dag_id", "task_id", "run_id", "map_index")
        )
        deployment = attribute.get("deployment")
        try_number = attribute.get("try_number")
        return (
            same
            and deployment in (None, self.deployment)
            and isinstance(try_number, int)
            and try_number < self.try_number
        )


def deployment_identity() -> str:
    """What tells this Airflow deployment's jobs from another's on one instance:
    ``[flux] deployment_id`` when set, else a digest of the execution API's URL
    (``[core] execution_api_server_url``), which each deployment's workers reach
    its own API server by."""
    configured = conf.get(SECTION, "deployment_id", fallback="")
    if configured:
        return str(configured)
    url = conf.get("core", "execution_api_server_url", fallback="") or ""
    return "api-" + hashlib.sha256(str(url).encode()).hexdigest()[:16]


def given_job_names(
    jobspec: Mapping[str, Any] | str | None, job_name: str | None, indices: Sequence[int | None]
) -> set[str]:
    """The names a task gives its jobs (``job_name``, per array index, or the one in
    its ``jobspec``), if it gives any: an earlier try's jobs may have them."""
    if jobspec is not None:
        system = parse_jobspec(jobspec).get("attributes", {}).get("system", {})
        name = system.get("job", {}).get("name") if isinstance(system, Mapping) else None
        return {str(name)} if name else set()
    if job_name is None:
        return set()
    return {job_name if index is None else substitute_index(job_name, index) for index in indices}


def follows_a_clear(context: Context, retries: int) -> bool:
    """Whether this try follows a clear of the task (not a retry): clearing gives a
    task instance its retries anew (Airflow sets ``max_tries`` to the last try plus
    ``retries``), while each retry uses one up."""
    ti = context["ti"]
    return bool(ti.try_number > 1 and ti.max_tries - ti.try_number + 1 == retries)


def jobs_of_latest_earlier_try(
    hook: FluxHook, identity: TaskIdentity, names: Sequence[str]
) -> tuple[int, dict[int | None, int]] | None:
    """The jobs the latest earlier try of ``identity``'s task instance submitted: jobs
    of this process's Flux user, submitted once its DAG run had begun, whose identity
    names an earlier try in this deployment.

    ``names``: every name those jobs may have (their default names, or the names the
    task gives). Returns that try's number and its jobs by array index (None: a job
    that is not in an array), or None when no earlier try submitted any.
    """
    found_jobs = hook.find_jobs(names, attrs=["t_submit"], userid=own_userid())
    candidates = [
        int(job["id"])
        for job in found_jobs
        if identity.run_started is None
        or float(job.get("t_submit") or 0) >= identity.run_started - CLOCK_SLACK_SECONDS
    ]
    found: dict[int, dict[int | None, int]] = {}
    for jobid, jobspec in hook.read_jobspecs(candidates).items():
        attribute = _dotted(jobspec.get("attributes") or {}, IDENTITY_ATTRIBUTE)
        if identity.is_earlier_try_of(attribute):
            found.setdefault(attribute["try_number"], {})[attribute.get("array_index")] = jobid
    if not found:
        return None
    latest = max(found)
    return latest, found[latest]


def _dotted(attributes: Mapping[str, Any], key: str) -> Any:
    value: Any = attributes
    for part in key.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def job_status(hook: FluxHook, jobids: Sequence[int]) -> str:
    """``JOB_ACTIVE`` while any of the jobs is not clean, ``JOB_SUCCEEDED`` when all
    succeeded, else how they failed (``failed: ...``), or why they cannot be read
    (``unknown: ...``: a job gone from the instance, or not ours to read).

    :raises FluxConnectionFailedError: the instance cannot be reached (a retry of the
        task may; submitting again would not be safe).
    """
    failures: list[str] = []
    for jobid, read in zip(jobids, hook.read_eventlogs(jobids), strict=True):
        if isinstance(read, (FileNotFoundError, PermissionError)):
            return f"unknown: {read}"
        if isinstance(read, OSError):
            job = format_jobid(jobid)
            raise FluxConnectionFailedError(f"cannot read job {job}: {read}") from read
        events, complete = read
        if not complete:
            return JOB_ACTIVE
        why = JobEnding.from_events(events).failure()
        if why is not None:
            failures.append(f"job {format_jobid(jobid)} {why}")
    if failures:
        more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
        return f"failed: {failures[0]}{more}"
    return JOB_SUCCEEDED


class EarlierTries:
    """The jobs earlier tries of a task instance submitted, found on the instance by
    the identity each job carries (for a worker that died before it stored the job
    ID, or an Airflow without the task state store).

    :param hook: the instance.
    :param identity: this try.
    :param given_names: the names the task gives its jobs, if it gives any (the
        default names of earlier tries are looked for as well).
    :param log: where to say what was found and what is done with it.
    """

    def __init__(
        self,
        hook: FluxHook,
        identity: TaskIdentity,
        given_names: Collection[str],
        log: Log,
    ) -> None:
        self.hook = hook
        self.identity = identity
        self.given_names = given_names
        self.log = log

    def latest(self) -> tuple[int, dict[int | None, int]] | None:
        """The latest earlier try that submitted jobs, and its jobs by array index
        (see :func:`jobs_of_latest_earlier_try`).

        :raises FluxConnectionFailedError: the instance cannot be asked.
        """
        identity = self.identity
        if identity.try_number <= 1:
            return None
        names = {identity.job_name(number) for number in range(1, identity.try_number)}
        names.update(self.given_names)
        try:
            return jobs_of_latest_earlier_try(self.hook, identity, sorted(names))
        except OSError as err:
            raise FluxConnectionFailedError(
                f"cannot look for the jobs of earlier tries on {self.hook.describe()}: {err}"
            ) from err

    def reusable(self, indices: Sequence[int | None]) -> list[int] | None:
        """The jobs of the latest earlier try, in the order of ``indices``, when they
        run or succeeded; None when jobs are to be submitted (none found, or they
        failed; an incomplete array is cancelled)."""
        found = self.latest()
        if found is None:
            self.log.info("no earlier try of this task submitted a job: submitting")
            return None
        try_number, by_index = found
        jobids = [by_index[index] for index in indices if index in by_index]
        first = format_jobid(min(by_index.values()))
        described = f"{len(by_index)} job(s) of try {try_number} ({first} ...)"
        if len(jobids) != len(indices):
            # An array cut short by a dying worker: nobody waits on it.
            self.log.warning("%s: an incomplete array; cancelling it and submitting anew",
                             described)  # fmt: skip
            self.hook.cancel_many(list(by_index.values()), "replaced by a retry: incomplete array")
            return None
        status = job_status(self.hook, jobids)
        if status in (JOB_ACTIVE, JOB_SUCCEEDED):
            self.log.info("found %s, submitted before its ID could be stored: %s, not "
                          "submitting again", described, status)  # fmt: skip
            return jobids
        self.log.info("found %s: %s; submitting anew", described, status)
        return None


def jobids_of(external_id: Any) -> list[int]:
    """The job IDs of a task's external ID: one job's, or the list of an array's."""
    ids = external_id if isinstance(external_id, list) else [external_id]
    return [parse_jobid(jobid) for jobid in ids]
