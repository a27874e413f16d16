"""DAGs of the output benchmark (benchmarks/output_benchmark.py): a job that writes a
line a second, a job that writes 50 MB, and one that writes nothing (the floor)."""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG

from airflow_provider_flux.operators.flux import FluxSubmitJobOperator

CONN_ID = "flux_bench"
PATH = {"PATH": "/usr/bin:/bin"}
# The simulated instance (when flux is not on PATH) runs in real time.
JOBS = {
    "bench_live_output": {
        "command": "sh -c 'for i in $(seq 1 30); do echo line $i; sleep 1; done'",
        "attributes": {"system.simulator.output": {"lines": 30, "interval": 1.0}},
    },
    "bench_big_output": {
        "command": "sh -c 'yes {{ 99 * \"x\" }} | head -c 50000000'",
        "output_limit": 1_000_000,
        "attributes": {"system.simulator.output": {"lines": 500_000, "line_bytes": 100}},
    },
    # The floor: a 20 s job whose output the trigger does not follow.
    "bench_quiet": {
        "command": "sh -c 'for i in $(seq 1 20); do echo line $i; sleep 1; done'",
        "stream_output": False,
        "attributes": {"system.simulator.output": {"lines": 20, "interval": 1.0}},
    },
}

for dag_id, options in JOBS.items():
    with DAG(dag_id, schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
        FluxSubmitJobOperator(task_id="run", environment=PATH, flux_conn_id=CONN_ID, **options)
