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

from airflow_provider_flux.hooks.flux import FluxHook
from airflow_provider_flux.jobspec import jobspec_from_command
from airflow_provider_flux.sensors.flux import FluxJobEventSensor

with DAG(
    dag_id="example_flux_job_events",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["example", "flux"],
):

    @task
    def submit_simulation() -> int:
        jobspec = jobspec_from_command(
            ["sh", "-c", "echo simulating; sleep 1; echo done"],
            name="simulation",
            duration="10m",
            environment={"PATH": "/usr/local/bin:/usr/bin:/bin"},
        )
        return FluxHook().submit(jobspec)

    jobid = submit_simulation()

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
