"""FluxExecutor's pieces that need no deployment: the job a workload becomes, the
environment it gets, what an ended or pending job says, the log's masking."""

from __future__ import annotations

import json
import stat
import uuid
from typing import Any

import pytest
from airflow.executors.workloads import ExecuteTask

from airflow_provider_flux.executors.follower import job_failure, why_pending
from airflow_provider_flux.executors.settings import EXECUTION_API_VARIABLE, ExecutorSettings
from airflow_provider_flux.executors.task_log import masked
from airflow_provider_flux.executors.workload_job import (
    IDENTITY_ATTRIBUTE,
    WORKLOAD_FILE,
    names_task_instance,
    task_instance_id,
    workload_jobspec,
)
from airflow_provider_flux.job.event import JobEvent

TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ0aSJ9.c2lnbmF0dXJl"


def workload(
    executor_config: dict[str, Any] | None = None, try_number: int = 1, run_id: str = "r"
) -> ExecuteTask:
    ti_model = ExecuteTask.model_fields["ti"].annotation
    assert ti_model is not None
    ti = ti_model.model_validate({
        "id": uuid.uuid4(), "dag_version_id": uuid.uuid4(), "task_id": "t", "dag_id": "d",
        "run_id": run_id, "try_number": try_number, "map_index": 2, "pool_slots": 1,
        "queue": "default", "priority_weight": 1, "executor_config": executor_config,
    })  # fmt: skip
    return ExecuteTask(
        token=TOKEN, ti=ti, dag_rel_path="d.py", bundle_info={"name": "dags-folder"},
        log_path="d/r/t/attempt=1.log",
    )  # fmt: skip


def test_the_workload_travels_as_a_private_file_never_on_the_command_line() -> None:
    job = workload_jobspec(workload(), python="/opt/py", environment={"A": "1"})
    command = job["tasks"][0]["command"]
    assert command == ["/opt/py", "-m", "airflow.sdk.execution_time.execute_workload",
                       "--json-path", f"{{{{tmpdir}}}}/{WORKLOAD_FILE}"]  # fmt: skip
    assert TOKEN not in json.dumps(command)
    shipped = job["attributes"]["system"]["files"][WORKLOAD_FILE]
    assert stat.S_IMODE(shipped["mode"]) == 0o600
    assert shipped["data"]["token"] == TOKEN
    assert ExecuteTask.model_validate(shipped["data"]).ti.task_id == "t"
    assert job["attributes"]["system"]["environment"] == {"A": "1"}
    assert job["attributes"]["system"]["job"]["name"] == "airflow:t[2].try1@d/r"


def test_the_job_names_its_task_instance_try() -> None:
    task = workload(try_number=3)
    job = workload_jobspec(task, python="python3", environment={})
    ti_id = str(task.ti.id)
    assert task_instance_id(job) == ti_id
    assert names_task_instance(job, ti_id, 3)
    assert not names_task_instance(job, ti_id, 2)
    assert not names_task_instance(job, str(uuid.uuid4()), 3)
    job["attributes"]["system"]["airflow_executor"]["deployment"] = "another"
    assert not names_task_instance(job, ti_id, 3)
    assert IDENTITY_ATTRIBUTE == "system.airflow_executor"


def test_executor_config_asks_flux_for_resources() -> None:
    config = {"flux": {"cores": 4, "gpus": 1, "duration": "1h", "queue": "batch",
                       "python": "/venv/bin/python"}}  # fmt: skip
    job = workload_jobspec(workload(config), python="python3", environment={})
    slot = job["resources"][0]
    assert {child["type"]: child["count"] for child in slot["with"]} == {"core": 4, "gpu": 1}
    assert job["attributes"]["system"]["duration"] == 3600
    assert job["attributes"]["system"]["queue"] == "batch"
    assert job["tasks"][0]["command"][0] == "/venv/bin/python"


@pytest.mark.parametrize(
    ("config", "message"),
    [({"flux": {"nodes": 2}}, "unknown options ['nodes']"),
     ({"flux": ["cores"]}, "must be a dict"),
     ({"flux": {"cores": 0}}, "cores_per_task must be an integer >= 1")],
)  # fmt: skip
def test_a_bad_executor_config_is_refused_with_the_reason(
    config: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        workload_jobspec(workload(config), python="python3", environment={})


def test_jobs_get_an_allow_list_and_never_a_secret() -> None:
    environ = {
        "PATH": "/bin", "LC_ALL": "C", "HOME": "/home/u", "UNLISTED": "x",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "postgresql://u:p@db/airflow",
        "AIRFLOW__API_AUTH__JWT_SECRET": "s", "AIRFLOW__CORE__FERNET_KEY": "k",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": "/logs", "AIRFLOW_CONN_DB": "postgresql://x",
        "AIRFLOW__LOGGING__REMOTE_TASK_HANDLER_KWARGS_SECRET": "s",
    }  # fmt: skip
    passed = ExecutorSettings().job_environment(environ, "http://api:8080/execution/", "flux")
    assert passed == {
        "PATH": "/bin", "LC_ALL": "C", "HOME": "/home/u",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": "/logs",
        EXECUTION_API_VARIABLE: "http://api:8080/execution/", "AIRFLOW__CORE__EXECUTOR": "flux",
    }  # fmt: skip
    everything = ExecutorSettings(environment=("*",)).job_environment(environ, "u", "e")
    assert not [name for name in everything if "DATABASE" in name or "SECRET" in name
                or "FERNET" in name or name.startswith("AIRFLOW_CONN_")]  # fmt: skip


def test_settings_come_from_the_flux_executor_section(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__FLUX_EXECUTOR__FLUX_CONN_ID", "hpc")
    monkeypatch.setenv("AIRFLOW__FLUX_EXECUTOR__ENVIRONMENT", "PATH, MY_*")
    monkeypatch.setenv("AIRFLOW__FLUX_EXECUTOR__PARALLELISM", "7")
    settings = ExecutorSettings.from_conf()
    assert (settings.flux_conn_id, settings.environment, settings.parallelism) == (
        "hpc", ("PATH", "MY_*"), 7,
    )  # fmt: skip


def event(name: str, **context: Any) -> JobEvent:
    return JobEvent(name, 1.0, context)


def test_what_an_ended_job_says_the_task_could_not() -> None:
    ran = [event("start"), event("finish", status=0), event("clean")]
    assert job_failure(1, ran) is None
    died = [event("start"), event("finish", status=9), event("clean")]
    assert job_failure(1, died) == "Flux job ƒ2 ended: was killed by signal 9 (SIGKILL)"
    cancelled = [event("exception", type="cancel", severity=0, note="no"), event("clean")]
    assert job_failure(1, cancelled) == (
        "Flux job ƒ2 ended before it started: fatal exception type=cancel: no"
    )


@pytest.mark.parametrize(
    ("entry", "stopped", "reason"),
    [({"annotations": {"sched": {"reason_pending": "insufficient resources"}}, "state": 8},
      None, "insufficient resources"),
     ({"urgency": 0, "state": 4}, None, "held (urgency 0)"),
     ({"state": 2}, None, "waits for its dependencies"),
     ({"state": 8}, "maint", "Flux's scheduling is stopped: maint"),
     ({"state": 8}, None, "waits for resources")],
)  # fmt: skip
def test_why_a_job_waits(entry: dict[str, Any], stopped: str | None, reason: str) -> None:
    assert why_pending(entry, stopped) == reason


def test_a_token_in_the_log_is_masked() -> None:
    line = f"Executing workload workload=ExecuteTask(token='{TOKEN}', ti=...)"
    assert masked(line) == "Executing workload workload=ExecuteTask(token='***', ti=...)"
