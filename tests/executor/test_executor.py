"""FluxExecutor in a real deployment on real Flux: each try of a task instance is one
Flux job, and the scheduler learns from Flux what the task could not report."""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy

from airflow_provider_flux.executors.workload_job import NAME_PREFIX
from airflow_provider_flux.job.jobid import format_jobid, parse_jobid
from tests.executor.conftest import ExecutorDeployment


def executor_jobs(deployment: ExecutorDeployment, dag_id: str, run_id: str) -> list[dict[str, Any]]:
    """The jobs FluxExecutor submitted for a run, oldest first."""
    out = deployment.flux.run("jobs", "-a", "--json").stdout
    suffix = f"@{dag_id}/{run_id}"
    jobs = [
        job for job in json.loads(out)["jobs"]
        if job["name"].startswith(NAME_PREFIX) and job["name"].endswith(suffix)
    ]  # fmt: skip
    return sorted(jobs, key=lambda job: job["t_submit"])


def sql(deployment: ExecutorDeployment, statement: str, **params: Any) -> list[Any]:
    """Run SQL on the deployment's metadata database; the rows it returns."""
    engine = sqlalchemy.create_engine(deployment.database.url)
    try:
        with engine.begin() as connection:
            result = connection.execute(sqlalchemy.text(statement), params)
            return list(result) if result.returns_rows else []
    finally:
        engine.dispose()


def external_executor_id(
    deployment: ExecutorDeployment, dag_id: str, run_id: str, task_id: str
) -> str | None:
    rows = sql(
        deployment,
        "SELECT external_executor_id FROM task_instance"
        " WHERE dag_id = :dag_id AND run_id = :run_id AND task_id = :task_id",
        dag_id=dag_id, run_id=run_id, task_id=task_id,
    )  # fmt: skip
    return rows[0][0] if rows else None


def jobspec(deployment: ExecutorDeployment, jobid: int) -> str:
    return deployment.flux.run("job", "info", str(jobid), "jobspec").stdout


def test_mixed_dag_with_xcom(executor_deployment: ExecutorDeployment) -> None:
    airflow = executor_deployment.airflow
    dag_id = "flux_executor_mixed"
    run_id = airflow.trigger(dag_id)
    assert airflow.wait_for_run(dag_id, run_id) == "success"
    tis = {ti["task_id"]: ti for ti in airflow.task_instances(dag_id, run_id)}
    assert tis["on_flux"]["executor"] == "flux"
    assert tis["produce"]["executor"] == "LocalExecutor"
    result = airflow.xcom(dag_id, run_id, "on_flux")
    jobs = executor_jobs(executor_deployment, dag_id, run_id)
    assert [job["name"] for job in jobs] == [f"{NAME_PREFIX}on_flux.try1@{dag_id}/{run_id}"]
    assert parse_jobid(result["jobid"]) == jobs[0]["id"]
    # Neither the job's environment nor its signed jobspec has a secret of the deployment.
    secrets = [airflow.env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"],
               airflow.env["AIRFLOW__API_AUTH__JWT_SECRET"]]  # fmt: skip
    assert not [secret for secret in secrets if secret in json.dumps(result["env"])]
    spec = jobspec(executor_deployment, jobs[0]["id"])
    assert not [secret for secret in secrets if secret in spec]
    assert "execute_workload" in spec
    recorded = external_executor_id(executor_deployment, dag_id, run_id, "on_flux")
    assert recorded == format_jobid(jobs[0]["id"])
