"""@task.flux's parts: the call the job carries, the runner that makes it, the result
read back from the output (and hidden from the task log), the decorator's refusals,
and the simulator's jobs that run for real."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_flux.aio.output_reader import read_marked_lines
from airflow_provider_flux.decorators.flux import flux_task
from airflow_provider_flux.function_job import runner
from airflow_provider_flux.function_job.call import (
    MAX_RETURN_BYTES,
    RUNNER_FILE,
    FunctionCall,
    UnserializableError,
    load_value,
)
from airflow_provider_flux.function_job.result import parse_result
from airflow_provider_flux.get_provider_info import get_provider_info
from airflow_provider_flux.job.event import JobEvent
from airflow_provider_flux.job.output import RESULT_MARK, OutputLines, format_output
from airflow_provider_flux.jobspec import jobspec_from_command
from airflow_provider_flux.testing import SimulatedFlux
from airflow_provider_flux.testing.bindings import Flux, job
from airflow_provider_flux.testing.deployment import wait_until

SOURCE = "def f(a, b=1):\n    print('in f')\n    return {'sum': a + b}\n"


def data(text: str, rank: str = "0", stream: str = "stdout") -> JobEvent:
    return JobEvent("data", 0.0, {"stream": stream, "rank": rank, "data": text})


def value_lines(payload: bytes, rank: str = "0") -> list[tuple[str, str]]:
    text = base64.b64encode(payload).decode()
    end = f"{len(payload)} {hashlib.sha256(payload).hexdigest()}"
    return [(rank, f"{RESULT_MARK}value {text}"), (rank, f"{RESULT_MARK}end {end}")]


# -- the task log never shows the result ----------------------------------------------


def test_result_lines_are_not_logged_live_and_text_before_the_mark_is() -> None:
    lines = OutputLines(limit=10_000)
    shown = lines.feed(data(f"hello\n{RESULT_MARK}value QUJD\npartial {RESULT_MARK}end 3 x\n"))
    assert shown == ["stdout: hello", "stdout: partial "]
    assert lines.shown == len("hello\npartial \n")


def test_result_lines_are_not_in_the_output_read_at_the_end() -> None:
    text, _ = format_output([data(f"hello\n{RESULT_MARK}value QUJD\nbye\n")], 10_000)
    assert text == "--- stdout ---\nhello\nbye\n"


# -- the result -------------------------------------------------------------------------


def test_a_whole_value_is_read_from_rank_0_only() -> None:
    result = parse_result(value_lines(b"one", "1") + value_lines(b"zero"))
    assert result.value == b"zero"
    assert (result.raised, result.error, result.cut) == (None, None, False)


@pytest.mark.parametrize(
    "lines",
    [
        value_lines(b"abcdef")[:1],  # no end: the output was cut short
        [value_lines(b"abcdef")[0], value_lines(b"abcdeg")[1]],  # a digest that differs
    ],
)
def test_a_value_not_whole_is_cut(lines: list[tuple[str, str]]) -> None:
    result = parse_result(lines)
    assert result.value is None
    assert result.cut


def test_raised_and_error_are_read() -> None:
    raised = {"type": "ValueError", "message": "bad", "rank": 1}
    result = parse_result([
        ("1", f"{RESULT_MARK}raised {json.dumps(raised)}"),
        ("0", f"{RESULT_MARK}error {json.dumps({'kind': 'serializer', 'message': 'no'})}"),
        ("0", "not a result line"),
    ])  # fmt: skip
    assert result.raised == raised
    assert result.error == {"kind": "serializer", "message": "no"}


# -- the call and the runner, as a job shell would run it ------------------------------


@pytest.fixture
def job_tmpdir(tmp_path: Path) -> Path:
    return tmp_path


def run_call(
    tmpdir: Path, files: dict[str, Any], rank: int = 0
) -> subprocess.CompletedProcess[str]:
    for name, ref in files.items():
        content = ref["data"]
        (tmpdir / name).write_text(content if isinstance(content, str) else json.dumps(content))
    env = {"FLUX_JOB_TMPDIR": str(tmpdir), "FLUX_TASK_RANK": str(rank), "FLUX_JOB_SIZE": "2"}
    return subprocess.run(
        [sys.executable, str(tmpdir / RUNNER_FILE)], env=env, capture_output=True, text=True
    )


def result_of(done: subprocess.CompletedProcess[str], rank: str = "0") -> Any:
    # Not splitlines(): it splits at the mark's record separator too.
    return parse_result((rank, line) for line in done.stdout.split("\n"))


def test_the_runner_calls_the_function_with_its_arguments(job_tmpdir: Path) -> None:
    call = FunctionCall(SOURCE, "f", "pickle")
    done = run_call(job_tmpdir, call.files([2], {"b": 5}))
    assert done.returncode == 0
    assert done.stdout.startswith("in f\n")
    assert load_value("pickle", result_of(done).value) == {"sum": 7}


def test_the_runner_on_another_rank_returns_nothing(job_tmpdir: Path) -> None:
    done = run_call(job_tmpdir, FunctionCall(SOURCE, "f", "pickle").files([2], {}), rank=1)
    assert done.returncode == 0
    assert result_of(done, "1").value is None
    assert RESULT_MARK not in done.stdout


def test_the_runner_reports_what_the_function_raised(job_tmpdir: Path) -> None:
    source = "def f():\n    raise KeyError('missing')\n"
    done = run_call(job_tmpdir, FunctionCall(source, "f", "pickle").files([], {}))
    assert done.returncode == runner.EXIT_RAISED
    assert "Traceback (most recent call last)" in done.stderr
    assert 'airflow_flux_function.py", line 2, in f' in done.stderr
    assert RUNNER_FILE not in done.stderr  # the runner's own frame is left out
    assert result_of(done).raised == {"type": "KeyError", "message": "'missing'", "rank": 0}


def test_the_runner_refuses_a_value_past_max_return_bytes(job_tmpdir: Path) -> None:
    source = "def f():\n    return b'x' * 2000\n"
    done = run_call(job_tmpdir, FunctionCall(source, "f", "pickle", 1000).files([], {}))
    assert done.returncode == runner.EXIT_ERROR
    error = result_of(done).error
    assert error["kind"] == "too-large"
    assert "max_return_bytes is 1000" in error["message"]


@pytest.fixture
def dag_module() -> Iterator[types.ModuleType]:
    """A module the worker imported (as Airflow 3.1 keeps a DAG file's) and the node
    cannot import: a function of it, and the global the function reads."""
    module = types.ModuleType("a_dag_file_the_node_cannot_import")
    exec("OFFSET = 1\ndef add(v):\n    return v + OFFSET\n", module.__dict__)
    sys.modules[module.__name__] = module
    yield module
    del sys.modules[module.__name__]


@pytest.mark.parametrize("serializer", ["dill", "cloudpickle"])
def test_what_the_dag_file_defines_travels_by_value(
    job_tmpdir: Path, dag_module: types.ModuleType, serializer: str
) -> None:
    call = FunctionCall("def f(g, x):\n    return g(x)\n", "f", serializer,
                        module=dag_module.__name__)  # fmt: skip
    files = call.files([dag_module.add, 41], {})
    assert sys.modules[dag_module.__name__] is dag_module  # back once serialized
    done = run_call(job_tmpdir, files)
    assert done.returncode == 0, done.stdout
    assert load_value(serializer, result_of(done).value) == 42


def test_arguments_the_serializer_cannot_take_are_refused(dag_module: types.ModuleType) -> None:
    with pytest.raises(UnserializableError, match="cannot be serialized with pickle"):
        FunctionCall(SOURCE, "f", "pickle").files([lambda: 1], {})
    # pickle can only refer to a function by its module, which the node cannot import.
    call = FunctionCall(SOURCE, "f", "pickle", module=dag_module.__name__)
    with pytest.raises(UnserializableError, match="cannot be serialized with pickle"):
        call.files([dag_module.add], {})


# -- the decorator's refusals, when the DAG is parsed ------------------------------------


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"command": "true"}, "does not take command"),
        ({"array": 3}, "does not take array"),
        ({"serializer": "json"}, "serializer must be one of pickle, cloudpickle, dill"),
        ({"max_return_bytes": 0}, "max_return_bytes must be an integer from 1"),
        ({"max_return_bytes": MAX_RETURN_BYTES + 1}, "max_return_bytes must be an integer"),
    ],
)
def test_the_decorator_refuses_what_a_call_cannot_use(options: dict[str, Any], error: str) -> None:
    from airflow.sdk import DAG

    def f() -> int:
        return 1

    with DAG("refusals", schedule=None), pytest.raises((TypeError, ValueError), match=error):
        flux_task(**options)(f)()


def test_task_flux_is_registered_and_python_is_templated() -> None:
    from airflow.sdk import DAG, task

    (decorator,) = get_provider_info()["task-decorators"]
    assert decorator == {
        "name": "flux",
        "class-name": "airflow_provider_flux.decorators.flux.flux_task",
    }
    with DAG("registered", schedule=None):

        @task.flux(python="{{ var.value.site_python }}", num_tasks=2)
        def f(x: int) -> int:
            return x

        operator = f(1).operator
    assert "python" in operator.template_fields
    assert "op_args" in operator.template_fields
    assert operator.num_tasks == 2
    assert operator.python == "{{ var.value.site_python }}"


# -- the simulator runs such jobs for real ----------------------------------------------


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatedFlux]:
    with SimulatedFlux() as instance:
        yield instance


def submit(sim: SimulatedFlux, command: list[str], **options: Any) -> int:
    jobspec = jobspec_from_command(command, attributes={"system.simulator.scenario": "run"},
                                   **options)  # fmt: skip
    return job.submit(Flux(sim.uri), json.dumps(jobspec))


def events(sim: SimulatedFlux, jobid: int, eventlog: str = "eventlog") -> list[Any]:
    return list(job.event_watch(Flux(sim.uri), jobid, eventlog))


def test_a_simulated_job_runs_its_command_with_flux_s_variables(sim: SimulatedFlux) -> None:
    command = ["sh", "-c", 'echo "$FLUX_TASK_RANK/$FLUX_JOB_SIZE"; printf "\\377"; exit 3']
    jobid = submit(sim, command, num_tasks=2, environment={"PATH": os.environ["PATH"]})
    names = [event.name for event in events(sim, jobid)]
    assert names[-5:] == ["start", "finish", "release", "free", "clean"]
    (finish,) = [e for e in events(sim, jobid) if e.name == "finish"]
    assert finish.context["status"] == 3 << 8
    output = [e.context for e in events(sim, jobid, "guest.output") if "data" in e.context]
    assert sorted(c["data"] for c in output if c.get("encoding") != "base64") == ["0/2\n", "1/2\n"]
    assert {c["data"] for c in output if c.get("encoding") == "base64"} == {"/w=="}


def submit_sleeper(sim: SimulatedFlux, pidfile: Path) -> int:
    """A job whose task writes its process ID to ``pidfile``, then sleeps."""
    return submit(sim, ["sh", "-c", f"echo $$ > {pidfile}; exec sleep 600"])


def started_task(pidfile: Path) -> int:
    """The process ID the task wrote once it started."""

    def written() -> str | None:
        return (pidfile.read_text().strip() or None) if pidfile.exists() else None

    return int(wait_until(written, 10, "the task to start", interval=0.05))


def wait_until_gone(pid: int, what: str) -> None:
    """Until process ``pid`` has ended (a zombie has)."""

    def gone() -> bool | None:
        return True if not Path(f"/proc/{pid}").exists() or "zombie" in _state(pid) else None

    wait_until(gone, 10, what, interval=0.05)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split("\n")[0]
    except (OSError, IndexError):
        return "zombie"


def test_a_simulated_job_cancelled_has_its_tasks_killed(sim: SimulatedFlux, tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    jobid = submit_sleeper(sim, pidfile)
    pid = started_task(pidfile)
    job.cancel(Flux(sim.uri), jobid, "stop")
    assert [e.name for e in events(sim, jobid)][-1] == "clean"
    wait_until_gone(pid, f"task {pid} to end after the cancel")


def test_a_simulated_job_past_its_duration_times_out(sim: SimulatedFlux) -> None:
    jobid = submit(sim, ["sleep", "600"], duration=0.5, environment={"PATH": os.environ["PATH"]})
    (exception,) = [e for e in events(sim, jobid) if e.name == "exception"]
    assert exception.context["type"] == "timeout"


def test_a_simulated_command_that_does_not_exist_gets_the_exec_exception(
    sim: SimulatedFlux,
) -> None:
    jobid = submit(sim, ["/nonexistent/program"])
    (exception,) = [e for e in events(sim, jobid) if e.name == "exception"]
    assert exception.context["type"] == "exec"
    assert "/nonexistent/program: No such file or directory" in exception.context["note"]


def test_marked_lines_are_read_past_megabytes_of_other_output(sim: SimulatedFlux) -> None:
    # 3 MB and the mark in one line, and a last line with a mark and no newline.
    script = f"head -c 3000000 /dev/zero; printf 'tail{RESULT_MARK}end 1 2\\n{RESULT_MARK}x'"
    jobid = submit(sim, ["sh", "-c", script], environment={"PATH": os.environ["PATH"]})
    events(sim, jobid)  # until clean
    found, cut = asyncio.run(read_marked_lines(jobid, sim.uri, RESULT_MARK, 1000))
    assert (found, cut) == ([("0", f"{RESULT_MARK}end 1 2"), ("0", f"{RESULT_MARK}x")], False)
    found, cut = asyncio.run(read_marked_lines(jobid, sim.uri, RESULT_MARK, 5))
    assert cut


def test_a_stopped_simulator_kills_the_tasks_it_runs(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    with SimulatedFlux() as instance:
        submit_sleeper(instance, pidfile)
        pid = started_task(pidfile)
    wait_until_gone(pid, f"task {pid} to end with its broker")
