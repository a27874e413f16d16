"""FluxJobEventSensor end to end: real Airflow (dag.test() on SQLite), the trigger run
inline, against the simulated instance and, when flux is on PATH, a real one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_flux.testing.dag_test import DagTestResult, run_dag, use_flux_connection
from tests.flux_instances import FluxTestInstance, RealInstance

DAGS = Path(__file__).parent / "dags" / "flux_sensor_dags.py"


@pytest.fixture
def instance(flux_instance: FluxTestInstance, airflow_db: str) -> FluxTestInstance:
    use_flux_connection(flux_instance.uri)
    return flux_instance


def printed(capfd: pytest.CaptureFixture[str]) -> str:
    """What the run printed: dag.test() writes the task logs to the terminal."""
    out, err = capfd.readouterr()
    return out + err


def run(dag_id: str, **conf: Any) -> DagTestResult:
    return run_dag(DAGS, dag_id, run_conf=conf)


def test_success_pushes_the_event_to_xcom(instance: FluxTestInstance) -> None:
    jobid = instance.completed_job()
    result = run("flux_wait", jobid=jobid, event="start")
    assert result.state == "success"
    assert result.task_states == {"wait": "success", "downstream": "success"}
    pushed = result.xcoms["wait"]
    assert pushed["name"] == "start"
    assert pushed["jobid"] == jobid
    assert pushed["job"].startswith("ƒ")
    assert isinstance(pushed["timestamp"], float)
    assert result.xcoms["downstream"] == "after start"


@pytest.mark.parametrize("dag_id", ["flux_wait_by_uri", "flux_wait_by_uri_poke"])
def test_a_sensor_watches_the_instance_its_flux_uri_names(
    flux_instance: FluxTestInstance, airflow_db: str, dag_id: str
) -> None:
    jobid = flux_instance.completed_job()
    result = run(dag_id, jobid=jobid, event="finish", uri=flux_instance.uri)
    assert result.task_states == {"wait": "success", "downstream": "success"}
    assert result.xcoms["wait"]["jobid"] == jobid


@pytest.mark.parametrize("dag_id", ["flux_wait_by_uri", "flux_wait_by_uri_poke"])
def test_a_flux_uri_that_renders_empty_fails_rather_than_use_another_instance(
    flux_instance: FluxTestInstance,
    airflow_db: str,
    dag_id: str,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The connection exists and reaches the job's instance: only the empty flux_uri
    # stands between the sensor and a wait on whatever that connection names.
    connection = {"conn_type": "flux", "host": flux_instance.uri}
    monkeypatch.setenv("AIRFLOW_CONN_FLUX_NOWHERE", json.dumps(connection))
    jobid = flux_instance.completed_job()
    result = run(dag_id, jobid=jobid, event="finish", uri="")
    assert result.task_states["wait"] == "failed"
    assert "flux_uri is empty" in printed(capfd)


def test_job_id_in_any_encoding(instance: FluxTestInstance) -> None:
    from airflow_provider_flux.job.jobid import format_jobid

    jobid = instance.completed_job()
    result = run("flux_wait", jobid=format_jobid(jobid, "words"), event="clean")
    assert result.task_states["wait"] == "success"
    assert result.xcoms["wait"]["jobid"] == jobid


def test_cancelled_job_fails_with_the_cancel_note(
    instance: FluxTestInstance, capfd: pytest.CaptureFixture[str]
) -> None:
    jobid = instance.running_job()
    instance.cancel(jobid, "operator pulled the plug")
    result = run("flux_wait", jobid=jobid, event="clean")
    assert result.task_states == {"wait": "failed", "downstream": "upstream_failed"}
    text = printed(capfd)
    assert "fatal exception type=cancel" in text
    assert "operator pulled the plug" in text


def test_fatal_exception_is_not_retried(instance: FluxTestInstance) -> None:
    jobid = instance.running_job()
    instance.cancel(jobid, "no retry please")
    result = run("flux_wait", jobid=jobid, event="finish")
    assert result.task_states["wait"] == "failed"
    assert result.tries["wait"] == 1, "the sensor has retries=1 but must not retry"


def test_nonfatal_exception_does_not_fail_the_wait(instance: FluxTestInstance) -> None:
    jobid = instance.running_job()
    instance.raise_exception(jobid, "test", 1, "just a warning")
    instance.finish(jobid)
    result = run("flux_wait", jobid=jobid, event="clean")
    assert result.task_states == {"wait": "success", "downstream": "success"}


def test_raise_on_exception_false_waits_through_a_cancel(instance: FluxTestInstance) -> None:
    jobid = instance.running_job()
    instance.cancel(jobid, "ignored")
    result = run("flux_wait_no_raise", jobid=jobid, event="clean")
    assert result.task_states["wait"] == "success"


def test_event_that_never_comes_fails(
    instance: FluxTestInstance, capfd: pytest.CaptureFixture[str]
) -> None:
    jobid = instance.completed_job()
    result = run("flux_wait", jobid=jobid, event="never-happens")
    assert result.task_states["wait"] == "failed"
    assert "eventlog ended before event='never-happens'" in printed(capfd)


def test_unknown_job_fails_with_a_clear_message(
    instance: FluxTestInstance, capfd: pytest.CaptureFixture[str]
) -> None:
    result = run("flux_wait", jobid=123456789, event="start")
    assert result.task_states["wait"] == "failed"
    assert "does not exist" in printed(capfd)


def test_bad_job_id_fails_before_deferring(
    instance: FluxTestInstance, capfd: pytest.CaptureFixture[str]
) -> None:
    result = run("flux_wait", jobid="not-a-job", event="start")
    assert result.task_states["wait"] == "failed"
    text = printed(capfd)
    assert "not-a-job is not a valid Flux jobid" in text
    assert "deferring" not in text


def test_soft_fail_skips_on_a_fatal_exception(instance: FluxTestInstance) -> None:
    jobid = instance.running_job()
    instance.cancel(jobid, "skip me")
    result = run("flux_wait_soft_fail", jobid=jobid, event="clean")
    assert result.task_states == {"wait": "skipped", "downstream": "skipped"}


def test_guest_eventlog_event(instance: FluxTestInstance) -> None:
    jobid = instance.completed_job()
    result = run("flux_wait", jobid=jobid, event="shell.start", eventlog="guest.exec.eventlog")
    assert result.task_states["wait"] == "success"
    assert result.xcoms["wait"]["name"] == "shell.start"


def test_poke_mode_success(instance: FluxTestInstance) -> None:
    jobid = instance.completed_job()
    result = run("flux_wait_poke", jobid=jobid, event="finish")
    assert result.task_states["wait"] == "success"
    assert result.xcoms["wait"]["context"] == {"status": 0}


def test_poke_mode_fatal_exception(
    instance: FluxTestInstance, capfd: pytest.CaptureFixture[str]
) -> None:
    jobid = instance.running_job()
    instance.cancel(jobid, "poked and cancelled")
    result = run("flux_wait_poke", jobid=jobid, event="clean")
    assert result.task_states["wait"] == "failed"
    assert "poked and cancelled" in printed(capfd)


def test_poke_mode_sensor_timeout(
    instance: FluxTestInstance, capfd: pytest.CaptureFixture[str]
) -> None:
    jobid = instance.pending_job()
    result = run("flux_wait_poke_timeout", jobid=jobid, event="start")
    assert result.task_states["wait"] == "failed"
    assert "Sensor has timed out" in printed(capfd)
    instance.cancel(jobid, "")


def test_templated_job_id_from_an_upstream_task(instance: FluxTestInstance) -> None:
    result = run_dag(DAGS, "flux_wait_upstream_jobid")
    assert result.task_states == {"submit": "success", "wait": "success"}
    assert result.xcoms["wait"]["jobid"] == result.xcoms["submit"]


def wait_event_cli(instance: FluxTestInstance, *args: str) -> tuple[int, str]:
    """``flux job wait-event ARGS`` on a real instance: its exit code and stderr."""
    assert isinstance(instance, RealInstance)
    done = instance.instance.run("job", "wait-event", "-t", "60", *args, check=False)
    return done.returncode, done.stderr.strip()


@pytest.mark.parametrize("dag_id", ["flux_wait", "flux_wait_poke"])
def test_exec_is_the_short_name_of_the_guest_exec_eventlog(
    instance: FluxTestInstance, dag_id: str
) -> None:
    jobid = instance.completed_job()
    result = run(dag_id, jobid=jobid, event="shell.start", eventlog="exec")
    assert result.task_states["wait"] == "success"
    assert result.xcoms["wait"]["name"] == "shell.start"
    if instance.kind == "real":
        assert wait_event_cli(instance, "-p", "exec", str(jobid), "shell.start")[0] == 0


@pytest.mark.parametrize("dag_id", ["flux_wait_second", "flux_wait_second_poke"])
def test_count_2_of_an_event_that_happens_once_ends_as_wait_event_count_2(
    instance: FluxTestInstance, dag_id: str, capfd: pytest.CaptureFixture[str]
) -> None:
    jobid = instance.completed_job()
    result = run(dag_id, jobid=jobid, event="start")
    assert result.task_states == {"wait": "failed", "downstream": "upstream_failed"}
    assert result.tries["wait"] == 1  # the eventlog has ended: no retry
    assert "eventlog ended before event='start' (occurrence 2)" in printed(capfd)
    if instance.kind == "real":
        code, stderr = wait_event_cli(instance, "--count=2", str(jobid), "start")
        assert code != 0
        assert "event 'start' never received" in stderr


def test_count_2_of_an_event_that_happens_twice_is_the_second(instance: FluxTestInstance) -> None:
    jobid = instance.completed_job()
    events = run("flux_wait_second", jobid=jobid, event="data", eventlog="output")
    assert events.task_states["wait"] == "success"
    first = run("flux_wait", jobid=jobid, event="data", eventlog="output")
    assert events.xcoms["wait"]["timestamp"] > first.xcoms["wait"]["timestamp"]


def test_an_eventlog_that_is_a_job_key_fails_at_once(
    instance: FluxTestInstance, capfd: pytest.CaptureFixture[str]
) -> None:
    jobid = instance.running_job()
    result = run("flux_wait", jobid=jobid, event="start", eventlog="R")
    instance.finish(jobid)
    assert result.task_states == {"wait": "failed", "downstream": "upstream_failed"}
    assert result.tries["wait"] == 1
    assert "eventlog 'R' is not an eventlog of a job" in printed(capfd)


@pytest.mark.parametrize("dag_id", ["flux_wait_many", "flux_wait_many_poke"])
def test_many_jobs_return_each_job_s_outcome(instance: FluxTestInstance, dag_id: str) -> None:
    jobids = [instance.completed_job() for _ in range(3)]
    result = run(dag_id, jobids=jobids, event="finish")
    assert result.task_states == {"wait": "success"}
    pushed = result.xcoms["wait"]
    assert (pushed["matched"], pushed["failed"], pushed["pending"]) == (3, 0, 0)
    assert [entry["jobid"] for entry in pushed["jobs"]] == jobids
    assert {entry["outcome"] for entry in pushed["jobs"]} == {"matched"}
    assert all(entry["event"]["name"] == "finish" for entry in pushed["jobs"])
    assert all(entry["job"].startswith("ƒ") for entry in pushed["jobs"])


@pytest.mark.parametrize("dag_id", ["flux_wait_many", "flux_wait_many_poke"])
def test_many_jobs_fail_without_retry_on_a_cancelled_one(
    instance: FluxTestInstance, dag_id: str, capfd: pytest.CaptureFixture[str]
) -> None:
    jobids = [instance.completed_job(), instance.running_job()]
    instance.cancel(jobids[1], "sample 2 diverged")
    result = run(dag_id, jobids=jobids, event="clean")
    assert result.task_states == {"wait": "failed"}
    assert result.tries["wait"] == 1
    out = printed(capfd)
    assert "FluxJobsFailedError" in out
    assert "type=cancel" in out
    assert "sample 2 diverged" in out


def test_many_jobs_with_one_failure_allowed_list_it(instance: FluxTestInstance) -> None:
    jobids = [instance.completed_job(), instance.running_job()]
    instance.cancel(jobids[1], "sample 2 diverged")
    result = run("flux_wait_many_tolerant", jobids=jobids, event="clean")
    assert result.task_states == {"wait": "success"}
    jobs = result.xcoms["wait"]["jobs"]
    assert [entry["outcome"] for entry in jobs] == ["matched", "job_exception"]
    assert jobs[1]["event"]["context"]["note"] == "sample 2 diverged"


def test_many_jobs_as_f58_text_from_the_run_conf(instance: FluxTestInstance) -> None:
    from airflow_provider_flux.job.jobid import format_jobid

    jobids = [instance.completed_job() for _ in range(2)]
    result = run("flux_wait_many", jobids=[format_jobid(j) for j in jobids], event="clean")
    assert [entry["jobid"] for entry in result.xcoms["wait"]["jobs"]] == jobids


def test_many_jobs_from_an_upstream_xcom(instance: FluxTestInstance) -> None:
    result = run("flux_wait_many_upstream")
    assert result.task_states == {"submit_sweep": "success", "wait": "success"}
    submitted = result.xcoms["submit_sweep"]
    assert [entry["jobid"] for entry in result.xcoms["wait"]["jobs"]] == submitted


def test_many_jobs_refuse_a_bad_list_at_once(
    instance: FluxTestInstance, capfd: pytest.CaptureFixture[str]
) -> None:
    result = run("flux_wait_many", jobids=[1, "not-a-job"], event="clean")
    assert result.task_states == {"wait": "failed"}
    assert result.tries["wait"] == 1
    assert "jobids[1]" in printed(capfd)
