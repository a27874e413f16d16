"""FluxSubmitJobOperator end to end with dag.test(), on the simulator and real Flux."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from airflow_provider_flux.testing.dag_test import DagTestResult, run_dag, use_flux_connection
from tests.flux_instances import FluxTestInstance

DAGS = Path(__file__).parent / "dags" / "flux_submit_dags.py"
PRINTS = "sh -c 'echo hello; echo oops >&2'"


@pytest.fixture
def instance(flux_instance: FluxTestInstance, airflow_db: str) -> FluxTestInstance:
    use_flux_connection(flux_instance.uri)
    return flux_instance


def run(dag_id: str, capfd: pytest.CaptureFixture[str], **conf: Any) -> tuple[DagTestResult, str]:
    result = run_dag(DAGS, dag_id, run_conf=conf)
    out, err = capfd.readouterr()
    return result, out + err


def test_success_returns_the_job_id_and_logs_the_output(
    instance: FluxTestInstance, capfd: pytest.CaptureFixture[str]
) -> None:
    result, printed = run("flux_submit", capfd, command=PRINTS, scenario="success")
    assert result.task_states == {"run": "success", "after": "success"}
    jobid = result.xcoms["run"]
    assert isinstance(jobid, int)
    assert result.xcoms["after"] == f"job {jobid} done"
    # Logged by the trigger as the job wrote them, and not again at the end.
    assert printed.count("stdout: hello") == 1
    assert printed.count("stderr: oops") == 1
    assert "--- stdout ---" not in printed
    assert "completed successfully" in printed


def test_waiting_in_the_worker(
    instance: FluxTestInstance, capfd: pytest.CaptureFixture[str]
) -> None:
    result, printed = run("flux_submit_in_worker", capfd, command=PRINTS, scenario="success")
    assert result.task_states == {"run": "success", "after": "success"}
    assert "hello" in printed


def test_nonzero_exit_fails_with_the_exit_code(
    instance: FluxTestInstance, capfd: pytest.CaptureFixture[str]
) -> None:
    command = "sh -c 'echo partial; exit 3'"
    result, printed = run("flux_submit", capfd, command=command, scenario="exit-nonzero")
    assert result.task_states == {"run": "failed", "after": "upstream_failed"}
    assert result.tries["run"] == 1
    assert "exited with code 3" in printed


def test_nonzero_exit_in_the_worker(
    instance: FluxTestInstance, capfd: pytest.CaptureFixture[str]
) -> None:
    command = "sh -c 'exit 3'"
    result, printed = run("flux_submit_in_worker", capfd, command=command, scenario="exit-nonzero")
    assert result.task_states["run"] == "failed"
    assert "exited with code 3" in printed


def test_time_limit_exceeded_fails_with_the_timeout_exception(
    instance: FluxTestInstance, capfd: pytest.CaptureFixture[str]
) -> None:
    result, printed = run("flux_submit", capfd, command="sleep 30", duration="1s",
                          scenario="timeout")  # fmt: skip
    assert result.task_states["run"] == "failed"
    assert "fatal exception type=timeout: resource allocation expired" in printed


def test_command_not_found_fails_with_the_exec_exception(
    instance: FluxTestInstance, capfd: pytest.CaptureFixture[str]
) -> None:
    result, printed = run("flux_submit", capfd, command="/nonexistent/program",
                          scenario="exec-not-found")  # fmt: skip
    assert result.task_states["run"] == "failed"
    assert "fatal exception type=exec" in printed
    assert "/nonexistent/program" in printed


def test_rejected_jobspec_fails_at_submit_with_the_instance_message(
    instance: FluxTestInstance, capfd: pytest.CaptureFixture[str]
) -> None:
    result, printed = run("flux_submit_rejected", capfd)
    assert result.task_states == {"run": "failed"}
    assert "rejected the job: Missing key (resources)" in printed


def test_output_over_the_limit_is_cut_and_says_so(
    instance: FluxTestInstance, capfd: pytest.CaptureFixture[str]
) -> None:
    result, printed = run("flux_submit_small_log", capfd, command=PRINTS, scenario="success")
    assert result.task_states["run"] == "success"
    assert "output_limit=8 bytes reached" in printed
    assert "bytes not shown (output_limit=8 bytes; 8 shown)" in printed


def test_output_copied_at_the_end_when_not_streamed(
    instance: FluxTestInstance, capfd: pytest.CaptureFixture[str]
) -> None:
    result, printed = run("flux_submit_output_at_end", capfd, command=PRINTS, scenario="success")
    assert result.task_states["run"] == "success"
    # The stream that wrote first comes first (Flux does not order stdout and stderr).
    assert "--- stderr ---\noops\n" in printed or "--- stdout ---\nhello\n" in printed
    assert "job output cut at output_limit=24 bytes: the rest was not read" in printed
    assert "stderr: oops" not in printed


def test_output_sent_to_a_file_is_logged_as_where_it_went(
    instance: FluxTestInstance, capfd: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "job.out"
    result, printed = run("flux_submit_to_file", capfd, path=str(path))
    assert result.task_states["run"] == "success"
    assert f"stdout: redirected to {path}" in printed
    assert "stdout: to the file" not in printed


def test_execution_timeout_cancels_the_deferred_job(
    instance: FluxTestInstance, capfd: pytest.CaptureFixture[str]
) -> None:
    result, printed = run("flux_submit_timeout", capfd)
    assert result.task_states == {"run": "failed"}
    assert "the task timed out; the job was cancelled" in printed
    names, note = cancel_note(instance, _pushed_jobid(printed))
    assert names[-1] == "clean"
    assert note.startswith("Airflow stopped task flux_submit_timeout.run (run manual__")


def _pushed_jobid(printed: str) -> int:
    import re

    match = re.search(r"submitted Flux job \S+ \((\d+)\)", printed)
    assert match, "the operator logs the job it submitted"
    return int(match.group(1))


def cancel_note(instance: FluxTestInstance, jobid: int) -> tuple[list[str], str]:
    """The job's event names, and the note of its cancel exception."""
    from airflow_provider_flux.flux_bindings import load_bindings

    bindings = load_bindings(instance.uri)
    handle = bindings.open(instance.uri)
    events = list(bindings.job.event_watch(handle, jobid))
    note = next(e.context["note"] for e in events if e.name == "exception")
    return [e.name for e in events], note


@pytest.mark.parametrize("dag_id", ["flux_submit_array", "flux_submit_array_in_worker"])
def test_an_array_of_20_fails_naming_job_7_and_its_exit_code(
    instance: FluxTestInstance, capfd: pytest.CaptureFixture[str], dag_id: str
) -> None:
    result, printed = run(dag_id, capfd)
    assert result.task_states == {"run": "failed", "count": "upstream_failed"}
    assert result.tries["run"] == 1
    assert "1 of 20 Flux jobs of the array failed" in printed
    assert "(index 7) exited with code 3" in printed
    # The outcome table, every job in it, and every job's output in the log.
    assert "index  job" in printed
    assert printed.count("  succeeded") == 19
    if instance.kind == "real":
        for index in range(20):
            assert f"sample {index}\n" in printed
