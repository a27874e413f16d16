"""@task.flux end to end with dag.test(), on the simulator (the function runs for
real, as a local process) and on real Flux."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from airflow_provider_flux.function_job.call import FunctionCall, runner_command
from airflow_provider_flux.hooks.flux import FluxHook
from airflow_provider_flux.jobspec import jobspec_from_command
from airflow_provider_flux.testing.dag_test import DagTestResult, run_dag, use_flux_connection
from airflow_provider_flux.testing.deployment import wait_until
from tests.flux_instances import FluxTestInstance

DAGS = Path(__file__).parent / "dags" / "flux_task_dags.py"


@pytest.fixture
def instance(flux_instance: FluxTestInstance, airflow_db: str) -> FluxTestInstance:
    use_flux_connection(flux_instance.uri)
    return flux_instance


def run(dag_id: str, capfd: pytest.CaptureFixture[str]) -> tuple[DagTestResult, str]:
    result = run_dag(DAGS, dag_id)
    out, err = capfd.readouterr()
    return result, out + err


def test_arguments_upstream_xcom_and_multiple_outputs(
    instance: FluxTestInstance, capfd: pytest.CaptureFixture[str]
) -> None:
    result, printed = run("flux_task_calls", capfd)
    assert result.task_states == dict.fromkeys(
        ("measurements", "describe", "scaled", "check"), "success"
    )
    # A dict with multiple_outputs: its keys feed the next calls; an import inside.
    assert result.xcoms["describe"] == {"mean": 3.0, "total": 12.0}
    # Positional and keyword arguments: (12 + 2) * 10.
    assert result.xcoms["scaled"] == 140.0
    assert result.xcoms["check"] == "mean=3 result=140"
    # print() in the job, in the task log while it ran; the result lines never are.
    assert "stdout: describing 4 values" in printed
    assert "airflow-flux:" not in printed


def test_ten_mapped_calls_reduced_downstream(
    instance: FluxTestInstance, capfd: pytest.CaptureFixture[str]
) -> None:
    result, printed = run("flux_task_mapped", capfd)
    assert result.task_states == {"square": "success", "total": "success"}
    assert result.xcoms["total"] == sum(x * x for x in range(10))
    assert printed.count("square() returned") == 10


def test_an_exception_fails_the_task_with_its_traceback_and_is_retried(
    instance: FluxTestInstance, capfd: pytest.CaptureFixture[str]
) -> None:
    result, printed = run("flux_task_raises", capfd)
    assert result.task_states == {"broken": "failed"}
    assert result.tries["broken"] == 2  # retries=1: the function's error is retried
    assert printed.count("stdout: about to divide") == 2
    assert "stderr: Traceback (most recent call last):" in printed
    assert "stderr:     return 1 / divisor" in printed
    assert "broken() raised ZeroDivisionError: division by zero (task 0 of Flux job" in printed


def test_a_call_runs_on_the_instance_its_flux_uri_names(
    flux_instance: FluxTestInstance, airflow_db: str
) -> None:
    result = run_dag(DAGS, "flux_task_by_uri", run_conf={"uri": flux_instance.uri})
    assert result.task_states == {"where": "success"}
    # Flux gives each task its instance's URI: the function ran in the one named.
    assert result.xcoms["where"] == flux_instance.uri


def test_two_tasks_return_task_0s_value(
    instance: FluxTestInstance, capfd: pytest.CaptureFixture[str]
) -> None:
    result, printed = run("flux_task_two_tasks", capfd)
    assert result.task_states == {"ranks": "success"}
    assert result.xcoms["ranks"] == {"rank": 0, "size": 2}
    assert "stdout[0]: task 0 of 2" in printed
    assert "stdout[1]: task 1 of 2" in printed


def test_a_return_value_past_the_limit_fails_the_task(
    instance: FluxTestInstance, capfd: pytest.CaptureFixture[str]
) -> None:
    result, printed = run("flux_task_too_large", capfd)
    assert result.task_states == {"large": "failed"}
    assert result.tries["large"] == 1
    assert "the return value is 5018 bytes serialized; max_return_bytes is 1000" in printed
    assert "large" not in result.xcoms


def test_a_missing_python_says_so(
    instance: FluxTestInstance, capfd: pytest.CaptureFixture[str]
) -> None:
    result, printed = run("flux_task_missing_python", capfd)
    assert result.task_states == {"nothing": "failed"}
    assert "its Python, /nonexistent/bin/python3, could not be started" in printed
    assert "No such file or directory" in printed


def test_a_python_without_the_serializer_says_so(
    instance: FluxTestInstance, capfd: pytest.CaptureFixture[str]
) -> None:
    from tests.e2e.dags.flux_task_dags import BARE_PYTHON

    probe = subprocess.run([BARE_PYTHON, "-c", "import dill"], capture_output=True, env={})
    if probe.returncode == 0:
        pytest.skip(f"{BARE_PYTHON} has dill")
    result, printed = run("flux_task_python_without_dill", capfd)
    assert result.task_states == {"plain": "failed"}
    assert "cannot import dill: No module named 'dill'" in printed
    assert "stderr: Traceback" not in printed  # a message, not the job's traceback


def test_an_unserializable_argument_is_refused_before_submitting(
    instance: FluxTestInstance, capfd: pytest.CaptureFixture[str]
) -> None:
    result, printed = run("flux_task_unserializable", capfd)
    assert result.task_states == {"apply": "failed"}
    assert result.tries["apply"] == 1
    assert "the arguments cannot be serialized with pickle" in printed
    assert "nothing was submitted" in printed
    assert "submitted Flux job" not in printed


def test_another_serializer_carries_what_pickle_cannot(
    instance: FluxTestInstance, capfd: pytest.CaptureFixture[str]
) -> None:
    result, _ = run("flux_task_dill", capfd)
    assert result.task_states == {"apply_dill": "success"}
    assert result.xcoms["apply_dill"] == 42


def test_waiting_in_the_worker_with_a_templated_argument(
    instance: FluxTestInstance, capfd: pytest.CaptureFixture[str]
) -> None:
    result, printed = run("flux_task_in_worker", capfd)
    assert result.task_states == {"greet": "success"}
    assert result.xcoms["greet"] == "hello flux_task_in_worker"
    assert "stdout: greeting flux_task_in_worker" in printed


def test_a_retry_after_the_job_succeeded_returns_its_value_from_the_job(
    instance: FluxTestInstance,
) -> None:
    from airflow.sdk import DAG, task

    with DAG("durable_value", schedule=None):

        @task.flux
        def double(x: int) -> int:
            return x * 2

        operator = double(21).operator
    # The job an earlier try submitted (what ResumableJobMixin hands a retry).
    call = FunctionCall(operator.get_python_source(), "double", "pickle")
    jobspec = jobspec_from_command(
        runner_command(sys.executable), attributes={"system.files": call.files([21], {})}
    )
    hook = FluxHook()
    jobid = hook.submit(jobspec)
    wait_until(lambda: hook.read_eventlog(jobid)[1] or None, 60, "the job to end", interval=0.1)
    assert operator.get_job_result(jobid, {}) == 42
