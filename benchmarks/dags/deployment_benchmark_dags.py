"""DAGs of the deployment benchmark (benchmarks/deployment_benchmark.py): N sensors,
each waiting on its own job (the run conf's ``jobids``) or, as the floor, on a time
(the run conf's ``release_at``). ``worker`` sensors start and end in a worker, as
before this provider could skip it; ``end`` sensors start in a worker and end in
the triggerer (FluxJobEventSensor's default); ``trigger`` sensors start and end in
the triggerer."""

from __future__ import annotations

import os
from datetime import datetime

from airflow.providers.standard.sensors.date_time import DateTimeSensorAsync
from airflow.sdk import DAG

from airflow_provider_flux.sensors.flux import FluxJobEventSensor

# The benchmark sets the sizes it runs: a 1,000-task DAG is slow to parse.
SIZES = [int(size) for size in os.environ.get("FLUX_BENCH_SIZES", "100").split(",")]
# Where each sensor starts and ends: (start_from_trigger, end_from_trigger).
MODES = {"worker": (False, False), "end": (False, True), "trigger": (True, True)}

for size in SIZES:
    for mode, (start_here, end_here) in MODES.items():
        with DAG(f"bench_flux_{size}_{mode}", schedule=None, start_date=datetime(2026, 1, 1)):
            for index in range(size):
                FluxJobEventSensor(
                    task_id=f"wait_{index}",
                    jobid=f"{{{{ dag_run.conf['jobids'][{index}] }}}}",
                    event="clean",
                    flux_conn_id="flux_bench",
                    start_from_trigger=start_here,
                    end_from_trigger=end_here,
                )
        with DAG(f"bench_datetime_{size}_{mode}", schedule=None, start_date=datetime(2026, 1, 1)):
            for index in range(size):
                DateTimeSensorAsync(
                    task_id=f"wait_{index}",
                    target_time="{{ dag_run.conf['release_at'] }}",
                    start_from_trigger=start_here,
                    end_from_trigger=end_here,
                )
