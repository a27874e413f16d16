"""A task instance's workload as a Flux job, and how to tell such a job later.

The job runs Airflow's own worker entry point, ``python -m
airflow.sdk.execution_time.execute_workload``. The workload (with its token) travels
as a file of the jobspec (RFC 37, as ``flux submit --add-file`` makes it), which the
job shell writes, readable by the job's user only, into ``$FLUX_JOB_TMPDIR``: never
on a command line, which ``ps`` shows to everyone on the node.

Each job carries its task instance in the jobspec attribute ``system.airflow_executor``
(the operator's identity, and the task instance's ID), so that a scheduler that died
between submitting a job and recording its ID finds it again.
"""

from __future__ import annotations

import json
import stat
from collections.abc import Mapping
from typing import Any

from airflow_provider_flux.jobspec import jobspec_from_command
from airflow_provider_flux.operators.durable import TaskIdentity, deployment_identity

WORKLOAD_FILE = "airflow_workload.json"
IDENTITY_ATTRIBUTE = "system.airflow_executor"
# Every job name starts with it: ``flux jobs`` tells the executor's jobs by it.
NAME_PREFIX = "airflow:"
ENTRY_POINT = "airflow.sdk.execution_time.execute_workload"
# What a task may ask of Flux (and the Python it runs with) in ``executor_config={"flux": {...}}``.
RESOURCE_OPTIONS = ("cores", "gpus", "exclusive", "duration", "queue", "python")
_FILE_MODE = 0o600 | stat.S_IFREG  # as flux.util.Fileref makes it


def workload_identity(ti: Any) -> TaskIdentity:
    """The identity of the task instance try a workload's ``ti`` describes."""
    map_index = -1 if ti.map_index is None else int(ti.map_index)
    return TaskIdentity(
        ti.dag_id, ti.task_id, ti.run_id, map_index, int(ti.try_number), deployment_identity()
    )


def job_name(ti: Any) -> str:
    """The name of the job that runs ``ti``'s try."""
    return NAME_PREFIX + workload_identity(ti).job_name()


def resource_options(executor_config: Mapping[str, Any] | None) -> dict[str, Any]:
    """A task's ``executor_config["flux"]``, checked.

    :raises ValueError: it is not a mapping, or names an option there is not.
    """
    options = (executor_config or {}).get("flux") or {}
    if not isinstance(options, Mapping):
        raise ValueError(f'executor_config["flux"] must be a dict, not {type(options).__name__}')
    unknown = sorted(set(options) - set(RESOURCE_OPTIONS))
    if unknown:
        raise ValueError(
            f'executor_config["flux"] has unknown options {unknown}: use {list(RESOURCE_OPTIONS)}'
        )
    return dict(options)


def workload_jobspec(
    workload: Any, *, python: str, environment: Mapping[str, str]
) -> dict[str, Any]:
    """The jobspec of the job that runs ``workload`` (an ``ExecuteTask``).

    :param python: the Python on the node (the task's ``python`` option overrides it).
    :param environment: the job's whole environment.
    :raises ValueError: the task's ``executor_config`` asks for something Flux has not.
    """
    ti = workload.ti
    options = resource_options(ti.executor_config)
    attribute = workload_identity(ti).attribute(None) | {"ti_id": str(ti.id)}
    jobspec = jobspec_from_command(
        [
            options.get("python", python),
            "-m",
            ENTRY_POINT,
            "--json-path",
            f"{{{{tmpdir}}}}/{WORKLOAD_FILE}",
        ],
        cores_per_task=options.get("cores", 1),
        gpus_per_task=options.get("gpus"),
        num_nodes=1 if options.get("exclusive") else None,
        exclusive=bool(options.get("exclusive")),
        duration=options.get("duration"),
        environment=environment,
        name=job_name(ti),
        queue=options.get("queue"),
        attributes={IDENTITY_ATTRIBUTE: attribute},
    )
    payload = json.loads(workload.model_dump_json())
    jobspec["attributes"]["system"]["files"] = {
        WORKLOAD_FILE: {"mode": _FILE_MODE, "data": payload},
    }
    return jobspec


def _identity_attribute(jobspec: Mapping[str, Any]) -> Mapping[str, Any]:
    system = (jobspec.get("attributes") or {}).get("system") or {}
    attribute = system.get("airflow_executor") if isinstance(system, Mapping) else None
    return attribute if isinstance(attribute, Mapping) else {}


def task_instance_id(jobspec: Mapping[str, Any]) -> str | None:
    """The ID of the task instance a job's jobspec says it runs, if it says."""
    ti_id = _identity_attribute(jobspec).get("ti_id")
    return str(ti_id) if ti_id else None


def names_task_instance(jobspec: Mapping[str, Any], ti_id: str, try_number: int) -> bool:
    """Whether a job's jobspec says it runs this try of this task instance, in this
    deployment."""
    attribute = _identity_attribute(jobspec)
    return (
        attribute.get("ti_id") == ti_id
        and attribute.get("try_number") == try_number
        and attribute.get("deployment") == deployment_identity()
    )
