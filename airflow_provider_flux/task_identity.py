"""Which task instance submitted a job, carried by the job itself.

Flux cannot submit a job and record its ID elsewhere in one step: a worker that dies
between the two leaves a job nobody knows of, and a retry would submit it again.
So every job the operator submits carries its task instance's identity, in the
jobspec attribute ``system.airflow`` and in its default name, and a retry asks
Flux (job-list, which any user may query for their jobs) for the jobs of earlier
tries before it submits.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from airflow_provider_flux.hooks.flux import FluxHook
from airflow_provider_flux.version_compat import Context

# Where in the jobspec's attributes a job carries its task instance (dotted).
IDENTITY_ATTRIBUTE = "system.airflow"


@dataclass(frozen=True)
class TaskIdentity:
    """A task instance's try, as a submitted job carries it.

    :param dag_id: the DAG.
    :param task_id: the task.
    :param run_id: the DAG run.
    :param map_index: the index of a mapped task instance (-1: not mapped).
    :param try_number: the try that submitted the job.
    """

    dag_id: str
    task_id: str
    run_id: str
    map_index: int
    try_number: int

    @classmethod
    def from_context(cls, context: Context) -> TaskIdentity:
        ti = context["ti"]
        map_index = getattr(ti, "map_index", -1)
        return cls(
            ti.dag_id, ti.task_id, ti.run_id, -1 if map_index is None else int(map_index),
            int(ti.try_number),
        )  # fmt: skip

    def attribute(self, index: int | None) -> dict[str, Any]:
        """The ``system.airflow`` attribute of a job this try submits (``index``: its
        place in a job array)."""
        value: dict[str, Any] = {
            "dag_id": self.dag_id, "task_id": self.task_id, "run_id": self.run_id,
            "map_index": self.map_index, "try_number": self.try_number,
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
        task instance."""
        if not isinstance(attribute, Mapping):
            return False
        same = all(
            attribute.get(key) == getattr(self, key)
            for key in ("dag_id", "task_id", "run_id", "map_index")
        )
        try_number = attribute.get("try_number")
        return same and isinstance(try_number, int) and try_number < self.try_number


def follows_a_clear(context: Context, retries: int) -> bool:
    """Whether this try follows a clear of the task (not a retry): clearing gives a
    task instance its retries anew (Airflow sets ``max_tries`` to the last try plus
    ``retries``), while each retry uses one up."""
    ti = context["ti"]
    return bool(ti.try_number > 1 and ti.max_tries - ti.try_number + 1 == retries)


def jobs_of_latest_earlier_try(
    hook: FluxHook, identity: TaskIdentity, names: Sequence[str]
) -> tuple[int, dict[int | None, int]] | None:
    """The jobs the latest earlier try of ``identity``'s task instance submitted.

    ``names``: every name those jobs may have (their default names, or the names the
    task gives). Returns that try's number and its jobs by array index (None: a job
    that is not in an array), or None when no earlier try submitted any.
    """
    candidates = [int(job["id"]) for job in hook.find_jobs(names, attrs=["t_submit"])]
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
