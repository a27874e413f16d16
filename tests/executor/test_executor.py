"""FluxExecutor in a real deployment on real Flux: each try of a task instance is one
Flux job, and the scheduler learns from Flux what the task could not report."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import sqlalchemy

from airflow_provider_flux.executors.workload_job import NAME_PREFIX
from airflow_provider_flux.hooks.flux import FluxHook
from airflow_provider_flux.job.jobid import format_jobid, parse_jobid
from airflow_provider_flux.testing.deployment import wait_until
from airflow_provider_flux.version_compat import AIRFLOW_V_3_2_PLUS, AIRFLOW_V_3_3_PLUS
from tests.executor.conftest import PARALLELISM, ExecutorDeployment

# Mapped deferrable sensors whose triggers fire together. CI runs the lowest Airflow's
# real deployment beside the rest of the suite on two cores, and each sensor costs
# two Airflow workers started in Flux jobs: fewer there (the race they guard against,
# a deferring try's late report against its resumed run, is the same per task).
SENSORS = 50 if AIRFLOW_V_3_2_PLUS else 10


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


def run_jobs(deployment: ExecutorDeployment, dag_id: str, run_id: str) -> list[str]:
    return [job["name"].split("@")[0].removeprefix(NAME_PREFIX)
            for job in executor_jobs(deployment, dag_id, run_id)]  # fmt: skip


def test_a_retry_is_a_new_job(executor_deployment: ExecutorDeployment) -> None:
    airflow = executor_deployment.airflow
    run_id = airflow.trigger("flux_executor_retry")
    assert airflow.wait_for_run("flux_executor_retry", run_id) == "success"
    assert run_jobs(executor_deployment, "flux_executor_retry", run_id) == [
        "fails_once.try1", "fails_once.try2",
    ]  # fmt: skip
    assert airflow.xcom("flux_executor_retry", run_id, "fails_once") == 2


def state_mismatches(deployment: ExecutorDeployment, dag_id: str) -> list[str]:
    """What the scheduler logged as executor reports that did not match a task's state."""
    rows = sql(deployment, "SELECT extra FROM log WHERE event = 'state mismatch' AND dag_id = :d",
               d=dag_id)  # fmt: skip
    return [str(row[0]) for row in rows]


def test_a_job_whose_python_does_not_exist_fails_its_task(
    executor_deployment: ExecutorDeployment,
) -> None:
    airflow = executor_deployment.airflow
    dag_id = "flux_executor_bad_python"
    run_id = airflow.trigger(dag_id)
    assert airflow.wait_for_run(dag_id, run_id, timeout=120) == "failed"
    # Its retry was honoured: a second job, which failed the same way.
    assert run_jobs(executor_deployment, dag_id, run_id) == ["never_runs.try1", "never_runs.try2"]
    reports = state_mismatches(executor_deployment, dag_id)
    assert len(reports) == 2
    for report in reports:
        assert "Flux job" in report
        assert "start failed: /nonexistent/python3" in report


def test_a_job_cancelled_while_pending_fails_its_task(
    executor_deployment: ExecutorDeployment, tmp_path: Path
) -> None:
    flux, airflow = executor_deployment.flux, executor_deployment.airflow
    dag_id = "flux_executor_waits"
    flux.run("queue", "stop", "--message=maintenance")  # jobs wait, with Flux's reason
    try:
        run_id = airflow.trigger(dag_id, {"flag": str(tmp_path / "flag")})
        (jobid,) = wait_until(
            lambda: [j["id"] for j in executor_jobs(executor_deployment, dag_id, run_id)] or None,
            60,
            "a job",
        )
        reason = (
            f"waits in Flux's queue as job {format_jobid(jobid)}:"
            " Flux's scheduling is stopped: maintenance"
        )
        wait_until(lambda: reason in airflow.component_log("scheduler") or None, 60, "the reason")
        # Where the user looks: the queued task's own log.
        assert f"The task {reason}" in airflow.task_log(dag_id, run_id, "wait_for_flag")
        flux.run("cancel", "--message=not today", format_jobid(jobid))
        assert airflow.wait_for_run(dag_id, run_id, timeout=60) == "failed"
    finally:
        flux.run("queue", "start")
    (report,) = [r for r in state_mismatches(executor_deployment, dag_id) if run_id in r]
    assert "ended before it started: fatal exception type=cancel: not today" in report
    assert run_jobs(executor_deployment, dag_id, run_id) == ["wait_for_flag.try1"]


def test_a_running_tasks_log_comes_from_its_job(
    executor_deployment: ExecutorDeployment, tmp_path: Path
) -> None:
    airflow = executor_deployment.airflow
    dag_id = "flux_executor_waits"
    flag = tmp_path / "flag"
    run_id = airflow.trigger(dag_id, {"flag": str(flag)})
    try:

        def running() -> bool | None:
            state = airflow.task_states(dag_id, run_id).get(("wait_for_flag", -1))
            return state == "running" or None

        wait_until(running, 120, "the task to run")
        (job,) = executor_jobs(executor_deployment, dag_id, run_id)

        def task_line() -> str | None:
            text = airflow.task_log(dag_id, run_id, "wait_for_flag")
            return text if f"waiting for {flag}" in text else None

        log = wait_until(task_line, 60, "the task's line")
        # The job's output, as FluxHook.read_output_so_far gives it, streams headed.
        assert "--- stdout ---" in log
        if AIRFLOW_V_3_3_PLUS:  # 3.1 leaves an executor's sources out of the header
            assert f"Flux job {format_jobid(job['id'])}" in log
            assert "its output so far" in log
        assert airflow.env["AIRFLOW__API_AUTH__JWT_SECRET"] not in log
    finally:
        flag.touch()
    assert airflow.wait_for_run(dag_id, run_id) == "success"


def test_outstanding_jobs_stay_within_parallelism(executor_deployment: ExecutorDeployment) -> None:
    airflow = executor_deployment.airflow
    dag_id = "flux_executor_many"
    run_id = airflow.trigger(dag_id, {"count": 10})
    assert airflow.wait_for_run(dag_id, run_id) == "success"

    def ended() -> list[dict[str, Any]] | None:
        # A task reports its success before its job is over.
        jobs = executor_jobs(executor_deployment, dag_id, run_id)
        return jobs if len(jobs) == 10 and all("t_inactive" in j for j in jobs) else None

    jobs = wait_until(ended, 60, "the ten jobs to end")
    edges = sorted([(j["t_submit"], 1) for j in jobs] + [(j["t_inactive"], -1) for j in jobs])
    outstanding = peak = 0
    for _, step in edges:
        outstanding += step
        peak = max(peak, outstanding)
    assert 1 < peak <= PARALLELISM


def test_mapped_deferrable_sensors_whose_triggers_fire_together(
    executor_deployment: ExecutorDeployment,
) -> None:
    flux, airflow = executor_deployment.flux, executor_deployment.airflow
    dag_id = "flux_executor_sensors"
    out = flux.run("submit", f"--cc=1-{SENSORS}", "--urgency=hold", "true").stdout.split()
    jobids = [parse_jobid(line) for line in out]
    run_id = airflow.trigger(dag_id, {"jobids": jobids})
    sensors = [("sensor", index) for index in range(SENSORS)]
    airflow.wait_for_deferred(dag_id, run_id, sensors, timeout=900)
    # Released together: every trigger fires at once.
    handle = FluxHook("flux_real").get_conn()
    releases = [handle.rpc("job-manager.urgency", {"id": jobid, "urgency": 16}) for jobid in jobids]
    for release in releases:
        release.get()
    assert airflow.wait_for_run(dag_id, run_id, timeout=900) == "success"
    assert state_mismatches(executor_deployment, dag_id) == []
    tries = {ti["map_index"]: ti["try_number"] for ti in airflow.task_instances(dag_id, run_id)
             if ti["task_id"] == "sensor"}  # fmt: skip
    assert tries == dict.fromkeys(range(SENSORS), 1)


def test_a_restarted_scheduler_adopts_the_jobs(
    executor_deployment: ExecutorDeployment, tmp_path: Path
) -> None:
    airflow = executor_deployment.airflow
    dag_id = "flux_executor_waits"
    runs = {name: airflow.trigger(dag_id, {"flag": str(tmp_path / "flag")}) for name in "AB"}

    def both_running() -> bool | None:
        states = [
            airflow.task_states(dag_id, run).get(("wait_for_flag", -1)) for run in runs.values()
        ]
        return states == ["running", "running"] or None

    flag = tmp_path / "flag"
    try:
        wait_until(both_running, 180, "both tasks to run")
        jobs = {name: executor_jobs(executor_deployment, dag_id, run)[0]["id"]
                for name, run in runs.items()}  # fmt: skip
        airflow.kill("scheduler")
        # B as if the scheduler had died between submitting its job and recording it.
        sql(executor_deployment, "UPDATE task_instance SET external_executor_id = NULL"
            " WHERE dag_id = :d AND run_id = :r", d=dag_id, r=runs["B"])  # fmt: skip
        airflow.start_component("scheduler")
        # The new scheduler found B's job by what the job carries, and recorded it.
        wait_until(
            lambda: external_executor_id(executor_deployment, dag_id, runs["B"], "wait_for_flag")
            == format_jobid(jobs["B"]) or None, 120, "B's job to be adopted",
        )  # fmt: skip
    finally:
        flag.touch()
    for name, run_id in runs.items():
        assert airflow.wait_for_run(dag_id, run_id) == "success"
        # One job each: adopted, not submitted again.
        assert [job["id"] for job in executor_jobs(executor_deployment, dag_id, run_id)] == [
            jobs[name]
        ]


def test_a_job_queued_past_the_timeout_is_revoked(
    executor_deployment: ExecutorDeployment, tmp_path: Path
) -> None:
    flux, airflow = executor_deployment.flux, executor_deployment.airflow
    dag_id = "flux_executor_waits"
    short_timeout = {
        "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "8",
        "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT_CHECK_INTERVAL": "2",
    }
    airflow.kill("scheduler", signal.SIGTERM)
    airflow.start_component("scheduler", env=short_timeout)
    flux.run("queue", "stop", "--message=held for the test")
    try:
        run_id = airflow.trigger(dag_id, {"flag": str(tmp_path / "flag")})

        def revoked() -> dict[str, Any] | None:
            jobs = executor_jobs(executor_deployment, dag_id, run_id)
            note = (jobs[0].get("exception") or {}).get("note", "") if jobs else ""
            return jobs[0] if "task_queued_timeout" in note else None

        first = wait_until(revoked, 120, "the job to be revoked")
        assert first["exception"]["type"] == "cancel"
        # Queued again, not failed: a new job waits in Flux.
        wait_until(lambda: len(executor_jobs(executor_deployment, dag_id, run_id)) > 1 or None,
                   60, "the task's next job")  # fmt: skip
    finally:
        flux.run("queue", "start")
        (tmp_path / "flag").touch()
    assert airflow.wait_for_run(dag_id, run_id) == "success"
    airflow.kill("scheduler", signal.SIGTERM)
    airflow.start_component("scheduler")
