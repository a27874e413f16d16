"""Live job output in a real Airflow deployment: how soon a line the job writes shows
in the task log, and what following a big output costs the triggerer's memory.

PostgreSQL, then Airflow's scheduler, dag-processor, triggerer and api-server as
processes, against a real Flux instance (the simulator when ``flux`` is not on PATH,
said in the results). Three ``FluxSubmitJobOperator`` tasks, deferred:

- **live**: a job writes a line a second for 30 s. The task log is read through
  Airflow's REST API every 0.25 s; each line's latency runs from the job writing it
  (its ``guest.output`` event's timestamp) to the first read that shows it. Lines
  written once the trigger runs (its first log line is in the task log) are
  *followed*; those written before (the job starts while the task defers) are
  *caught up* when the trigger starts. The floor, in the same run: the same lines
  seen by a plain eventlog watch of ``guest.output`` in this process (Flux's job
  shell hands output over in 0.5 s batches).
- **big**: a job writes 50 MB in 100-byte lines, ``output_limit`` 1 MB. The trigger
  runner's peak memory (``VmHWM``, reset through ``/proc/PID/clear_refs`` before the
  run) over its memory before the run: the target is under twice ``output_limit``.
- **quiet** (the floor): a 20 s job whose output the trigger does not follow, run
  before (to warm the triggerer up, not counted) and after the big one.

Run: ``scripts/benchmark-output``. Results: ``benchmarks/output_results.json``, and
a table to paste into ``docs/benchmarks.md``.
"""

from __future__ import annotations

import json
import re
import shutil
import statistics
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from airflow_provider_flux.flux_bindings import load_bindings
from airflow_provider_flux.hooks.flux import FluxHook
from airflow_provider_flux.testing import LocalFluxInstance, SimulatedFlux
from airflow_provider_flux.testing.dag_test import use_flux_connection
from airflow_provider_flux.testing.deployment import AirflowDeployment, PostgresServer
from benchmarks.deployment_benchmark import percentile, trigger_runner_pid
from benchmarks.output_dags.output_benchmark_dags import CONN_ID
from benchmarks.watch_benchmark import machine

DAGS = Path(__file__).parent / "output_dags"
RESULTS = Path(__file__).parent / "output_results.json"
LINE = re.compile(r"stdout: (line \d+)\b")


def memory_kb(pid: int, field: str) -> int:
    for row in Path(f"/proc/{pid}/status").read_text().splitlines():
        if row.startswith(f"{field}:"):
            return int(row.split()[1])
    raise RuntimeError(f"no {field} for process {pid}")


def run_job(airflow: AirflowDeployment, dag_id: str) -> tuple[str, int]:
    """Trigger ``dag_id``; its run ID and job ID, once the task is deferred."""
    run_id = airflow.trigger(dag_id)
    airflow.wait_for_deferred(dag_id, run_id, {("run", -1)}, timeout=300)
    return run_id, int(airflow.xcom(dag_id, run_id, "run", key="jobid"))


def watch_directly(uri: str, jobid: int, seen: dict[str, float]) -> None:
    """The floor: when a plain bindings watch of ``guest.output`` sees each line."""
    bindings = load_bindings(uri)
    handle = bindings.open(uri)
    future = bindings.event_watch_async(handle, jobid, "guest.output", waitcreate=True)
    while (event := future.get_event()) is not None:
        for line in str(event.context.get("data", "")).splitlines():
            seen.setdefault(line, time.time())


def written_at(jobid: int) -> dict[str, float]:
    """When the job wrote each line: its ``guest.output`` event's timestamp."""
    events, _ = FluxHook(CONN_ID).read_eventlog(jobid, "guest.output")
    return {
        line: event.timestamp
        for event in events
        if event.name == "data"
        for line in str(event.context.get("data", "")).splitlines()
    }


def measure_live(airflow: AirflowDeployment, uri: str) -> dict[str, Any]:
    dag_id = "bench_live_output"
    run_id, jobid = run_job(airflow, dag_id)
    direct: dict[str, float] = {}
    watcher = threading.Thread(target=watch_directly, args=(uri, jobid, direct), daemon=True)
    watcher.start()
    in_log: dict[str, float] = {}
    trigger_running = float("inf")
    while airflow.task_states(dag_id, run_id)[("run", -1)] == "deferred":
        log = airflow.task_log(dag_id, run_id, "run", 1)
        now = time.time()
        if "waiting for event='clean'" in log:
            trigger_running = min(trigger_running, now)
        for line in LINE.findall(log):
            in_log.setdefault(line, now)
        time.sleep(0.25)
    if airflow.wait_for_run(dag_id, run_id) != "success":
        raise RuntimeError(f"{dag_id}: the run failed")
    watcher.join(timeout=30)
    written = written_at(jobid)
    lags = {line: in_log[line] - written[line] for line in in_log}
    followed = [lag for line, lag in lags.items() if written[line] > trigger_running]
    caught_up = [lag for line, lag in lags.items() if written[line] <= trigger_running]
    floor = [direct[line] - written[line] for line in direct]
    return {
        "lines_written": len(written), "lines_seen_while_deferred": len(in_log),
        "followed_lines": len(followed),
        "followed_p50_s": round(statistics.median(followed), 2),
        "followed_p95_s": round(percentile(followed, 0.95), 2),
        "followed_max_s": round(max(followed), 2),
        "caught_up_lines": len(caught_up),
        "caught_up_max_s": round(max(caught_up, default=0.0), 2),
        "floor_p50_s": round(statistics.median(floor), 2),
        "floor_max_s": round(max(floor), 2),
    }  # fmt: skip


def measure_memory(airflow: AirflowDeployment, dag_id: str) -> dict[str, Any]:
    pid = trigger_runner_pid(airflow)
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # the peak starts again from now
    before = memory_kb(pid, "VmRSS")
    started = time.monotonic()
    run_id, _ = run_job(airflow, dag_id)
    if airflow.wait_for_run(dag_id, run_id, timeout=1800) != "success":
        raise RuntimeError(f"{dag_id}: the run failed")
    log = airflow.task_log(dag_id, run_id, "run", 1)
    cut = re.search(r"(\d+) bytes not shown", log)
    return {
        "dag": dag_id, "seconds": round(time.monotonic() - started, 1),
        "rss_before_kb": before, "peak_growth_kb": memory_kb(pid, "VmHWM") - before,
        "bytes_cut": int(cut.group(1)) if cut else 0,
    }  # fmt: skip


def main() -> None:
    with ExitStack() as stack:
        if shutil.which("flux"):
            flux: LocalFluxInstance | None = stack.enter_context(LocalFluxInstance())
            uri, instance = flux.uri, f"real Flux {flux.version()}"  # type: ignore[union-attr]
        else:
            sim = stack.enter_context(SimulatedFlux())
            uri, instance = sim.uri, "simulated Flux (flux is not on PATH)"
        use_flux_connection(uri, CONN_ID)
        database = stack.enter_context(PostgresServer())
        airflow = stack.enter_context(
            AirflowDeployment(
                DAGS, database.url, home=tempfile.mkdtemp(prefix="airflow-bench-"),
                connections={CONN_ID: {"conn_type": "flux", "host": uri}},
            )
        )  # fmt: skip
        for dag_id in ("bench_live_output", "bench_big_output", "bench_quiet"):
            airflow.wait_for_dag(dag_id, timeout=300)
        print(f"# {machine()}; {instance}; Airflow {airflow.airflow('version').strip()}")
        measure_memory(airflow, "bench_quiet")  # warms the triggerer up
        results = {
            "machine": machine(), "instance": instance,
            "live": measure_live(airflow, uri),
            "memory": [measure_memory(airflow, dag) for dag in ("bench_big_output", "bench_quiet")],
            "output_limit_kb": 1_000_000 // 1024,
        }  # fmt: skip
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
