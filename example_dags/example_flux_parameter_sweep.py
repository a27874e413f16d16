"""A parameter sweep: eight simulations as one Flux job array, one task waiting on
all of them, then an analysis of those that succeeded.

``sweep`` submits the array (each job gets its index in ``FLUX_JOB_CC`` and in
place of ``{cc}``) and returns the job IDs at once. ``sweep_done`` waits, in the
triggerer and as one task, until at least six jobs have finished with status 0;
up to two may fail (a fatal exception, a non-zero exit) before it gives up.
``analyze`` reads each job's outcome from its XCom.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk import DAG, task

from airflow_provider_flux.operators.flux import FluxSubmitJobOperator
from airflow_provider_flux.sensors.flux import FluxJobsEventSensor

with DAG(
    dag_id="example_flux_parameter_sweep",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["example", "flux"],
):
    # [START howto_job_array]
    sweep = FluxSubmitJobOperator(
        task_id="sweep",
        command="sh -c 'echo sample {cc}: temperature $((300 + 10 * FLUX_JOB_CC))K'",
        job_name="sample-{cc}",
        array=8,
        duration="10m",
        environment={"PATH": "/usr/local/bin:/usr/bin:/bin"},
        wait_for_completion=False,
    )
    # [END howto_job_array]

    # [START howto_wait_for_many]
    sweep_done = FluxJobsEventSensor(
        task_id="sweep_done",
        jobids=sweep.output,
        event="finish",
        match_context={"status": 0},
        wait_for=6,
        max_failures=2,
        timeout=3600,
    )
    # [END howto_wait_for_many]

    @task
    def analyze(result: dict[str, Any]) -> str:
        done = [job["job"] for job in result["jobs"] if job["outcome"] == "matched"]
        return f"{len(done)} of {len(result['jobs'])} samples finished: {', '.join(done)}"

    analyze(sweep_done.output)
