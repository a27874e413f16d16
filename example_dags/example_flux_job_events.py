"""Submit a simulation to Flux, then gate downstream work on the job's events.

``wait_for_start`` and ``wait_for_clean`` defer to the triggerer, so no worker slot
is held while the job waits in the queue or runs. If Flux raises a fatal
exception on the job (cancelled, time limit, failed dependency...), the sensors
fail with the exception's type and note, without retrying.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk import DAG, task

from airflow_provider_flux.operators.flux import FluxSubmitJobOperator
from airflow_provider_flux.sensors.flux import FluxJobEventSensor

with DAG(
    dag_id="example_flux_job_events",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["example", "flux"],
):
    # [START howto_wait_for_events]
    # Submit only: the sensors below do the waiting, each gating its own branch.
    submit_simulation = FluxSubmitJobOperator(
        task_id="submit_simulation",
        command=["sh", "-c", "echo simulating; sleep 1; echo done"],
        job_name="simulation",
        duration="10m",
        environment={"PATH": "/usr/local/bin:/usr/bin:/bin"},
        wait_for_completion=False,
    )
    jobid = submit_simulation.output

    wait_for_start = FluxJobEventSensor(
        task_id="wait_for_start", jobid=jobid, event="start", timeout=3600
    )
    wait_for_clean = FluxJobEventSensor(
        task_id="wait_for_clean", jobid=jobid, event="clean", timeout=3600
    )

    @task
    def announce_start(start: dict[str, Any]) -> str:
        return f"job {start['job']} started at {start['timestamp']:.3f}"

    @task
    def collect_results(clean: dict[str, Any]) -> str:
        return f"job {clean['job']} is done; its resources are free"

    announce_start(wait_for_start.output)
    collect_results(wait_for_clean.output)
    wait_for_start >> wait_for_clean
    # [END howto_wait_for_events]
