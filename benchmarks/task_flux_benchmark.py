"""What a ``@task.flux`` call costs over one Flux job, and over a local process.

The same small function (the sum of the squares of a 1,000-int list, returning an
int) is run as a one-task DAG with ``dag.test()``, five ways, interleaved call by
call (the order rotates every round; the first ``--warmup`` rounds are not counted)
so that machine noise hits all alike:

- **a. @task.flux**: ``deferrable=False``, the wait in the worker; the whole task:
  serialize the call, submit, wait for the job, read the return value back;
- **a'. @task.flux deferred**: as it comes (deferrable); ``dag.test()`` runs the
  trigger inline, then resumes the task;
- **b. FluxSubmitJobOperator**: a hand-written command running the same function
  (``python -c``, printing the result), ``deferrable=False``; nothing is read back,
  the task's value is the job ID: the baseline of one Flux job;
- **c. @task.external_python**: ``python=sys.executable``, a local process, no Flux
  (the standard provider's ``@task.virtualenv`` family); that Python has Airflow,
  which the operator's script imports;
- **c'. @task.external_python, bare**: the Python this virtualenv was made from,
  which has no Airflow (``expect_airflow=False``).

The boundary, the same for all: the task instance's ``start_date`` to ``end_date``
as the execution API records them (``dag.test()`` runs the task in this process:
the task runner's start, rendering, ``execute``, the return value's XCom push and
the final state). The wall time of each ``run_dag()`` (DAG parse, DAG run,
scheduling loop) is recorded too. Inside the boundary, timers on the provider's and
Airflow's methods (this process only; no file is changed) say where the time goes:
building the call, submitting, the wait, reading the return value, the external
Python's subprocesses; and each job's own eventlog says what Flux took (submit to
start, the job's run, finish to clean; in the job shell, init to start and its
task, from ``guest.exec.eventlog``). Two floors, run here with ``subprocess`` once a round
(no Airflow, no Flux): the hand-written ``python -c`` command, and ``@task.flux``'s
runner with the call's files in a directory.

Real Flux (``flux start -s1``, started for the run and stopped after) when ``flux``
is on PATH; else the simulator (which runs these jobs as local processes), said in
the results. Run: ``scripts/benchmark-task-flux`` (``--calls N``, ``--json PATH``).
"""

from __future__ import annotations

import argparse
import functools
import inspect
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
DAG_FILE = HERE / "dags" / "task_flux_dags.py"
RESULTS = HERE / "task_flux_results.json"
# label: (DAG ID, what it is)
WAYS = {
    "a": ("bench_task_flux", "@task.flux (deferrable=False)"),
    "a'": ("bench_task_flux_deferred", "@task.flux (deferred, trigger inline)"),
    "b": ("bench_flux_command", "FluxSubmitJobOperator, hand-written command"),
    "c": ("bench_external_python", "@task.external_python (local process)"),
    "c'": ("bench_external_python_bare", "@task.external_python, Python without Airflow"),
}
# The span table's rows, in this order.
SPAN_ORDER = [
    "execute", "function source", "serialize call", "build jobspec", "submit",
    "task state store", "wait in worker", "trigger (inline)", "output follower: close",
    "execute (resumed)", "read return value", "load return value", "xcom push",
    "python version check", "airflow version check", "pendulum check", "script process",
    "flux submit to start", "flux job run (start to finish)",
    "shell: init to start", "shell: the task (start to task-exit)",
    "flux finish to clean", "flux submit to clean",
]  # fmt: skip
# Run here with subprocess, no Airflow, no Flux: label: what it is.
FLOORS = {
    "floor b": "b's `python -c` command, run here",
    "floor a": "@task.flux's runner and files, run here",
}

# Spans timed inside the boundary, in this process (the outermost call of a name
# counts; nested calls of the same name do not).
_spans: dict[str, float] = {}
_depth: dict[str, int] = {}
_counts: dict[str, int] = {}
_jobids: list[int] = []
_jobspec_bytes: list[int] = []


@contextmanager
def span(name: str) -> Iterator[None]:
    _depth[name] = _depth.get(name, 0) + 1
    started = time.perf_counter()
    try:
        yield
    finally:
        _depth[name] -= 1
        if _depth[name] == 0:
            _spans[name] = _spans.get(name, 0.0) + time.perf_counter() - started


def timed(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    if inspect.iscoroutinefunction(function):

        @functools.wraps(function)
        async def waited(*args: Any, **kwargs: Any) -> Any:
            with span(name):
                return await function(*args, **kwargs)

        return waited

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with span(name):
            return function(*args, **kwargs)

    return wrapper


def install_timers() -> None:
    """Timers on the methods the five ways run (in this process; ``dag.test()`` runs
    tasks and inline triggers here)."""
    import airflow.providers.standard.operators.python as standard_python
    import airflow.sdk.definitions.dag as sdk_dag
    from airflow.providers.standard.operators.python import ExternalPythonOperator
    from airflow.sdk.bases.decorator import DecoratedOperator
    from airflow.sdk.execution_time.context import TaskStateStoreAccessor
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

    import airflow_provider_flux.decorators.flux as decorator
    import airflow_provider_flux.operators.flux as operator
    from airflow_provider_flux.aio.output_follower import OutputFollower
    from airflow_provider_flux.function_job.call import FunctionCall
    from airflow_provider_flux.hooks.flux import FluxHook

    decorated = decorator._FluxDecoratedOperator
    submit_operator = operator.FluxSubmitJobOperator
    patches: list[tuple[Any, str, str]] = [
        (DecoratedOperator, "execute", "execute"),
        (submit_operator, "execute", "execute"),
        (submit_operator, "execute_complete", "execute (resumed)"),
        (sdk_dag, "_run_inline_trigger", "trigger (inline)"),
        (decorated, "get_python_source", "function source"),
        (FunctionCall, "files", "serialize call"),
        (submit_operator, "_jobspec_or_fail", "build jobspec"),
        (FluxHook, "submit_many", "submit"),
        (operator, "watch_until_clean", "wait in worker"),
        (OutputFollower, "close", "output follower: close"),
        (decorated, "_read_result", "read return value"),
        (decorator, "load_value", "load return value"),
        (ExternalPythonOperator, "_get_airflow_version_from_target_env", "airflow version check"),
        (ExternalPythonOperator, "_is_pendulum_installed_in_target_env", "pendulum check"),
        (standard_python, "_execute_in_subprocess", "script process"),
        (RuntimeTaskInstance, "xcom_push", "xcom push"),
        (TaskStateStoreAccessor, "get", "task state store"),
        (TaskStateStoreAccessor, "set", "task state store"),
    ]
    for owner, attribute, name in patches:
        setattr(owner, attribute, timed(name, getattr(owner, attribute)))
    version_info = standard_python._PythonVersionInfo
    check = timed("python version check", version_info.__dict__["from_executable"].__func__)
    version_info.from_executable = classmethod(check)  # type: ignore[method-assign,assignment]

    submit_many = FluxHook.submit_many

    def recording_submit(self: Any, *args: Any, **kwargs: Any) -> Any:
        jobids = submit_many(self, *args, **kwargs)
        _jobids.extend(jobids)
        return jobids

    FluxHook.submit_many = recording_submit  # type: ignore[method-assign]
    read_output = OutputFollower._read

    async def counting_read(self: Any, *args: Any, **kwargs: Any) -> None:
        # flux-core 0.88.0: a guest.output watch sent as a short job ends may never
        # answer; the follower sends another after STALLED_WATCH_SECONDS.
        _counts["output watches"] = _counts.get("output watches", 0) + 1
        await read_output(self, *args, **kwargs)

    OutputFollower._read = counting_read  # type: ignore[method-assign]
    jobspec_or_fail = submit_operator._jobspec_or_fail

    def measuring_jobspec(self: Any, *args: Any, **kwargs: Any) -> Any:
        jobspec = jobspec_or_fail(self, *args, **kwargs)
        _jobspec_bytes.append(len(json.dumps(jobspec)))
        return jobspec

    submit_operator._jobspec_or_fail = measuring_jobspec  # type: ignore[method-assign]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def task_seconds(dag_id: str) -> float:
    """The latest run's task: end_date - start_date, as the execution API wrote them."""
    from airflow.models import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        ti = (
            session.query(TaskInstance)
            .filter(TaskInstance.dag_id == dag_id)
            .order_by(TaskInstance.start_date.desc())
            .first()
        )
        if ti is None or ti.start_date is None or ti.end_date is None:
            raise RuntimeError(f"{dag_id}: no finished task instance")
        return float((ti.end_date - ti.start_date).total_seconds())


def call(label: str, expected: int, log: Path) -> dict[str, Any]:
    """One call, the ``label`` way: its times, spans, and the job it submitted."""
    from airflow_provider_flux.testing.dag_test import run_dag

    dag_id = WAYS[label][0]
    _spans.clear()
    _counts.clear()
    del _jobids[:], _jobspec_bytes[:]
    started = time.perf_counter()
    result = run_dag(DAG_FILE, dag_id)
    wall = time.perf_counter() - started
    value = result.xcoms.get("sum_of_squares")
    ok = value == expected if label != "b" else isinstance(value, int)
    if result.state != "success" or not ok:
        raise RuntimeError(f"{dag_id}: {result.state}, value {value!r}; see {log}")
    return {
        "task_s": task_seconds(dag_id),
        "run_dag_s": wall,
        "spans_s": dict(_spans),
        "output_watches": _counts.get("output watches", 0),
        "jobid": _jobids[0] if _jobids else None,
        "jobspec_bytes": max(_jobspec_bytes, default=None),
    }


def floor_call(command: list[str], env: dict[str, str]) -> dict[str, Any]:
    started = time.perf_counter()
    subprocess.run(command, env=env, check=True, capture_output=True)
    return {"task_s": time.perf_counter() - started}


def runner_floor(directory: Path) -> tuple[list[str], dict[str, str]]:
    """``@task.flux``'s runner with the benchmark's call in its files, written to
    ``directory`` as the job shell writes them: its command and environment."""
    from airflow_provider_flux.function_job.call import FunctionCall, runner_command
    from benchmarks.dags.task_flux_dags import SOURCE, VALUES

    files = FunctionCall(SOURCE, "sum_of_squares", "pickle").files([VALUES], {})
    for name, file in files.items():
        data = file["data"]
        (directory / name).write_text(data if isinstance(data, str) else json.dumps(data))
    command = [arg.replace("{{tmpdir}}", str(directory)) for arg in runner_command(sys.executable)]
    return command, {"FLUX_JOB_TMPDIR": str(directory)}


def job_times(conn_id: str, jobids: list[int]) -> dict[int, dict[str, float]]:
    """What Flux took for each job, from its eventlogs: submit to start, the job's
    run (start to finish), finish to clean; in the job shell, init to start and the
    task."""
    from airflow_provider_flux.hooks.flux import FluxHook

    times: dict[int, dict[str, float]] = {}
    hook = FluxHook(conn_id)
    for start in range(0, len(jobids), 200):
        batch = jobids[start : start + 200]
        mains = hook.read_eventlogs(batch)
        shells = hook.read_eventlogs(batch, "guest.exec.eventlog")
        for jobid, main, shell in zip(batch, mains, shells, strict=True):
            if isinstance(main, OSError):
                continue
            at = {event.name: event.timestamp for event in main[0]}
            if not {"submit", "start", "finish", "clean"} <= at.keys():
                continue
            times[jobid] = {
                "flux submit to start": at["start"] - at["submit"],
                "flux job run (start to finish)": at["finish"] - at["start"],
                "flux finish to clean": at["clean"] - at["finish"],
                "flux submit to clean": at["clean"] - at["submit"],
            }
            shell_at = {} if isinstance(shell, OSError) else {e.name: e.timestamp for e in shell[0]}
            if {"shell.init", "shell.start", "shell.task-exit"} <= shell_at.keys():
                times[jobid]["shell: init to start"] = (
                    shell_at["shell.start"] - shell_at["shell.init"]
                )
                times[jobid]["shell: the task (start to task-exit)"] = (
                    shell_at["shell.task-exit"] - shell_at["shell.start"]
                )
    return times


def summarize(values: list[float]) -> dict[str, float]:
    return {
        "median_ms": round(statistics.median(values) * 1e3, 1),
        "p95_ms": round(percentile(values, 0.95) * 1e3, 1),
    }


def report(
    ways: dict[str, list[dict[str, Any]]], jobs: dict[int, dict[str, float]]
) -> dict[str, Any]:
    """Median and p95 per way; each span's median per way; the ratios of medians."""
    summary: dict[str, Any] = {}
    for label, calls in ways.items():
        entry: dict[str, Any] = {"calls": len(calls), **summarize([c["task_s"] for c in calls])}
        if label in WAYS:
            entry["run_dag"] = summarize([c["run_dag_s"] for c in calls])
            names = sorted({name for c in calls for name in c["spans_s"]})
            entry["spans_median_ms"] = {
                name: round(statistics.median(c["spans_s"].get(name, 0.0) for c in calls) * 1e3, 1)
                for name in names
            }
            flux = [jobs[c["jobid"]] for c in calls if c["jobid"] in jobs]
            if flux:
                entry["spans_median_ms"].update({
                    name: round(statistics.median(f[name] for f in flux) * 1e3, 1)
                    for name in flux[0]
                })  # fmt: skip
            entry["calls_with_output_watch_sent_again"] = sum(
                c["output_watches"] > 1 for c in calls
            )
            sizes = [c["jobspec_bytes"] for c in calls if c["jobspec_bytes"]]
            if sizes:
                entry["jobspec_bytes"] = max(sizes)
        summary[label] = entry
    ratios = {}
    for top in ("a", "a'"):
        for base in ("b", "c", "c'"):
            if top in summary and base in summary:
                ratios[f"{top}/{base}"] = round(
                    summary[top]["median_ms"] / summary[base]["median_ms"], 2
                )
    return {"ways": summary, "ratios_of_medians": ratios}


def columns(calls: list[dict[str, Any]], jobs: dict[int, dict[str, float]]) -> dict[str, Any]:
    """One way's calls, in call order, a list per measure (milliseconds; null: the
    span did not run in that call)."""

    def ms(value: float | None) -> float | None:
        return None if value is None else round(value * 1e3, 1)

    table: dict[str, Any] = {"task_ms": [ms(c["task_s"]) for c in calls]}
    if calls and "run_dag_s" in calls[0]:
        timed = [{**c["spans_s"], **jobs.get(c["jobid"], {})} for c in calls]
        names = sorted({name for spans in timed for name in spans})
        table.update({
            "run_dag_ms": [ms(c["run_dag_s"]) for c in calls],
            "output_watches": [c["output_watches"] for c in calls],
            "jobid": [c["jobid"] for c in calls],
            "spans_ms": {name: [ms(spans.get(name)) for spans in timed] for name in names},
        })  # fmt: skip
    return table


def dumps(results: dict[str, Any]) -> str:
    """``results`` as indented JSON, each list of numbers (or nulls) on one line."""
    text = json.dumps(results, indent=1)
    numbers = re.compile(r"\[([-\d.,\snul]*)\]")
    return numbers.sub(lambda m: "[" + " ".join(m.group(1).split()) + "]", text) + "\n"


def tables(summary: dict[str, Any], header: str) -> str:
    from airflow_provider_flux.aio.output_follower import STALLED_WATCH_SECONDS

    ways = summary["ways"]
    rows = [
        header,
        "",
        "| way | calls | median | p95 | run_dag() median |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, entry in ways.items():
        what = WAYS[label][1] if label in WAYS else FLOORS[label]
        run = f"{entry['run_dag']['median_ms']:,.0f} ms" if "run_dag" in entry else "-"
        rows.append(f"| {label}. {what} | {entry['calls']} | {entry['median_ms']:,.0f} ms | "
                    f"{entry['p95_ms']:,.0f} ms | {run} |")  # fmt: skip
    ratios = ", ".join(f"{k} = {v:.2f}x" for k, v in summary["ratios_of_medians"].items())
    rows += ["", f"Ratios of medians: {ratios}", ""]
    labels = [label for label in ways if label in WAYS]
    names: list[str] = []
    for label in labels:
        names += [n for n in ways[label]["spans_median_ms"] if n not in names]
    names.sort(key=lambda n: SPAN_ORDER.index(n) if n in SPAN_ORDER else len(SPAN_ORDER))
    rows.append("| span (median ms) | " + " | ".join(labels) + " |")
    rows.append("|---|" + "---:|" * len(labels))
    for name in names:
        cells = [ways[label]["spans_median_ms"].get(name) for label in labels]
        shown = ["-" if cell is None else f"{cell:,.1f}" for cell in cells]
        rows.append(f"| {name} | " + " | ".join(shown) + " |")
    for key, name in (("jobspec_bytes", "jobspec (bytes)"),
                      ("calls_with_output_watch_sent_again", "calls whose output watch was "
                       f"sent again (stalled {STALLED_WATCH_SECONDS:g} s)")):  # fmt: skip
        shown = [f"{ways[label][key]:,}" if key in ways[label] else "-" for label in labels]
        rows.append(f"| {name} | " + " | ".join(shown) + " |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=50, help="calls of each way (default 50)")
    parser.add_argument("--warmup", type=int, default=2, help="rounds not counted (default 2)")
    parser.add_argument("--ways", default=",".join(WAYS), help="of a,a',b,c,c' (default all)")
    parser.add_argument("--json", default=str(RESULTS), help=f"write the results here ({RESULTS})")
    parser.add_argument("--log", default=os.path.join(tempfile.gettempdir(),
                                                      "task_flux_benchmark.log"),
                        help="Airflow's own log goes here")  # fmt: skip
    args = parser.parse_args()
    labels = [label for label in args.ways.split(",") if label]
    unknown = [label for label in labels if label not in WAYS]
    if unknown:
        parser.error(f"unknown ways {unknown}; choose from {list(WAYS)}")

    from airflow_provider_flux.testing.dag_test import (
        configure_airflow_home,
        migrate_database,
        output_to,
    )

    simulated = shutil.which("flux") is None
    os.environ["FLUX_BENCH_SIMULATED"] = "1" if simulated else "0"
    log = Path(args.log)
    with ExitStack() as stack:
        home = stack.enter_context(tempfile.TemporaryDirectory(prefix="task-flux-benchmark-"))
        configure_airflow_home(home)
        say = stack.enter_context(output_to(log))
        say.write(f"==> Airflow's own log: {log}\n==> migrating the database in {home}\n")
        migrate_database()

        from airflow import __version__ as airflow_version

        from airflow_provider_flux.testing import LocalFluxInstance, SimulatedFlux
        from airflow_provider_flux.testing.dag_test import use_flux_connection
        from benchmarks.dags.task_flux_dags import COMMAND, CONN_ID, EXPECTED
        from benchmarks.watch_benchmark import machine

        if simulated:
            sim = stack.enter_context(SimulatedFlux())
            uri, kind = sim.uri, "the SIMULATED Flux instance (flux is not on PATH)"
        else:
            flux = stack.enter_context(LocalFluxInstance())
            uri, kind = flux.uri, f"real Flux {flux.version()} (flux start -s1)"
        say.write(f"==> {kind} at {uri}; apache-airflow {airflow_version}\n")
        use_flux_connection(uri, CONN_ID)
        install_timers()

        floors = {
            "floor b": (COMMAND, {}),
            "floor a": runner_floor(Path(stack.enter_context(tempfile.TemporaryDirectory()))),
        }
        ways: dict[str, list[dict[str, Any]]] = {label: [] for label in [*labels, *floors]}
        started = time.monotonic()
        for round_ in range(args.warmup + args.calls):
            shift = round_ % len(labels)
            for label in labels[shift:] + labels[:shift]:
                measured = call(label, EXPECTED, log)
                if round_ >= args.warmup:
                    ways[label].append(measured)
            for label, (command, env) in floors.items():
                floor = floor_call(command, env)
                if round_ >= args.warmup:
                    ways[label].append(floor)
            counted = round_ + 1 - args.warmup
            last = ", ".join(f"{label} {ways[label][-1]['task_s'] * 1e3:.0f} ms"
                             for label in ways if ways[label])  # fmt: skip
            say.write(f"round {round_ + 1}/{args.warmup + args.calls}"
                      f"{' (warm-up)' if counted <= 0 else ''}: {last}\n")  # fmt: skip
        seconds = time.monotonic() - started
        jobs = job_times(CONN_ID, [c["jobid"] for calls in ways.values() for c in calls
                                   if c.get("jobid") is not None])  # fmt: skip
        summary = report(ways, jobs)
        header = (f"# {machine()}; {kind}; apache-airflow {airflow_version}; {args.calls} calls "
                  f"a way, interleaved ({seconds:.0f} s)")  # fmt: skip
        say.write("\n" + tables(summary, header) + "\n")
        if args.json:
            Path(args.json).write_text(dumps({
                "machine": machine(), "instance": kind, "airflow": airflow_version,
                "calls": args.calls, "warmup_rounds": args.warmup, "seconds": round(seconds, 1),
                "boundary": "task instance start_date to end_date (execution API), dag.test()",
                **summary,
                "per_call": {label: columns(calls, jobs) for label, calls in ways.items()},
            }))  # fmt: skip
            say.write(f"==> results in {args.json}\n")


if __name__ == "__main__":
    main()
