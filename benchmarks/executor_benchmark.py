"""FluxExecutor against LocalExecutor in one real deployment: task throughput, and
the latency from queued to running.

PostgreSQL, then Airflow's scheduler, dag-processor, triggerer and api-server as
processes, with ``[core] executor = LocalExecutor,flux:...FluxExecutor`` and the same
parallelism for both (``--parallelism``, default 8), against a real Flux instance on
this machine (the simulator, said in the results, when ``flux`` is not on PATH: it
runs the workloads as local processes). Flux runs a job per core it has, so the
instance has enough brokers (``flux start --test-size``, each with this machine's
cores; ``--brokers`` to choose) for as many tasks at once as LocalExecutor runs:
both then share the same CPUs with the same concurrency. For N = 100 and
1,000 (``--sizes``), a run maps N trivial tasks (each returns its index) on one
executor, then on the other. From the task instances (Airflow's own timestamps):

- **throughput**: N over the time from the first task queued to the last one ended;
- **queued to running**: each task's ``start_date`` minus its ``queued_dttm``
  (p50, p95): under LocalExecutor a slot's worker process starts it; under
  FluxExecutor a Flux job is submitted, scheduled, started, and runs Airflow's
  worker entry point, which imports Airflow before it starts the task.

Run: ``scripts/benchmark-executor`` (``--sizes``, ``--parallelism``, ``--brokers``). Results:
``benchmarks/executor_results.json``, and a table to paste into ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from airflow_provider_flux.testing import LocalFluxInstance, SimulatedFlux
from airflow_provider_flux.testing.deployment import AirflowDeployment, PostgresServer
from benchmarks.deployment_benchmark import parse_time, percentile
from benchmarks.watch_benchmark import machine

DAGS = Path(__file__).parent / "executor_dags"
RESULTS = Path(__file__).parent / "executor_results.json"
CONN_ID = "flux_bench"
EXECUTORS = {"local": "LocalExecutor", "flux": "FluxExecutor"}


@dataclass
class Result:
    executor: str
    tasks: int
    seconds: float
    tasks_per_s: float
    queued_to_running_p50_s: float
    queued_to_running_p95_s: float


def measure(airflow: AirflowDeployment, executor: str, count: int) -> Result:
    dag_id = f"bench_executor_{executor}"
    run_id = airflow.trigger(dag_id, {"count": count})
    state = airflow.wait_for_run(dag_id, run_id, timeout=7200)
    tis = [ti for ti in airflow.task_instances(dag_id, run_id) if ti["task_id"] == "trivial"]
    if state != "success" or len(tis) != count:
        raise RuntimeError(f"{dag_id}: run {state}, {len(tis)} of {count} tasks")
    queued = [parse_time(ti["queued_when"]) for ti in tis]
    started = [parse_time(ti["start_date"]) for ti in tis]
    ended = [parse_time(ti["end_date"]) for ti in tis]
    seconds = max(ended) - min(queued)
    latency = [start - queue for start, queue in zip(started, queued, strict=True)]
    return Result(
        EXECUTORS[executor], count, round(seconds, 1), round(count / seconds, 2),
        round(percentile(latency, 0.5), 2), round(percentile(latency, 0.95), 2),
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--parallelism", type=int, default=8)
    parser.add_argument("--brokers", type=int, help="default: enough for --parallelism cores")
    args = parser.parse_args()
    cpus = os.cpu_count() or 1
    brokers = args.brokers or math.ceil(args.parallelism / cpus)
    results: list[dict[str, Any]] = []
    with ExitStack() as stack:
        if shutil.which("flux"):
            instance = stack.enter_context(LocalFluxInstance(size=brokers))
            uri = instance.uri
            kind = f"real Flux (flux start --test-size={brokers}: {brokers * cpus} cores)"
        else:
            uri, kind = stack.enter_context(SimulatedFlux()).uri, "the simulator"
        database = stack.enter_context(PostgresServer())
        env = {
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor,flux:"
            "airflow_provider_flux.executors.flux.FluxExecutor",
            "AIRFLOW__FLUX_EXECUTOR__FLUX_CONN_ID": CONN_ID,
            "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": "10000",
            "AIRFLOW__CORE__MAX_MAP_LENGTH": "10000",
        }
        airflow = stack.enter_context(AirflowDeployment(
            DAGS, database.url, parallelism=args.parallelism, env=env,
            connections={CONN_ID: {"conn_type": "flux", "host": uri}},
        ))  # fmt: skip
        for count in args.sizes:
            for executor in EXECUTORS:
                result = measure(airflow, executor, count)
                print(json.dumps(asdict(result)), flush=True)
                results.append(asdict(result))
    report = {"machine": machine(), "flux": kind, "parallelism": args.parallelism,
              "results": results}  # fmt: skip
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\n{report['machine']}; {kind}; parallelism {args.parallelism}\n")
    print("| executor | tasks | seconds | tasks/s | queued→running p50 | p95 |")
    print("|---|---:|---:|---:|---:|---:|")
    for row in results:
        cells = [
            row["executor"],
            row["tasks"],
            row["seconds"],
            row["tasks_per_s"],
            f"{row['queued_to_running_p50_s']} s",
            f"{row['queued_to_running_p95_s']} s",
        ]
        print("| " + " | ".join(str(cell) for cell in cells) + " |")


if __name__ == "__main__":
    main()
