"""Run a Flux job as an Airflow task, then work on its results.

``simulate`` submits the job and defers until Flux has cleaned it up: no worker
slot is held while it waits in the queue or runs. The job's output lands in the
task log. A non-zero exit status fails the task with the exit code; a fatal
exception (time limit, cancel...) fails it with the exception's type and note.
Killing, clearing or timing out the task cancels the job.

``post_process`` is a second Flux job, started once the first has succeeded; it
gets the first job's ID through a templated environment variable. ``report`` runs
in Airflow after both.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG, task

from airflow_provider_flux.operators.flux import FluxSubmitJobOperator

ENVIRONMENT = {"PATH": "/usr/local/bin:/usr/bin:/bin"}

with DAG(
    dag_id="example_flux_submit_job",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["example", "flux"],
):
    # [START howto_submit_job]
    simulate = FluxSubmitJobOperator(
        task_id="simulate",
        command="sh -c 'for step in 1 2 3; do echo step $step; sleep 0.2; done'",
        job_name="simulate",
        num_tasks=1,
        cores_per_task=1,
        duration="10m",
        environment=ENVIRONMENT,
        execution_timeout=timedelta(hours=1),
    )

    post_process = FluxSubmitJobOperator(
        task_id="post_process",
        command=["sh", "-c", "echo post-processing the output of job $SIMULATION_JOB"],
        job_name="post-process",
        environment={**ENVIRONMENT, "SIMULATION_JOB": "{{ ti.xcom_pull('simulate') }}"},
    )

    simulate >> post_process

    @task
    def report(simulation: int, post: int) -> str:
        return f"simulation job {simulation} and post-processing job {post} succeeded"

    report(simulate.output, post_process.output)
    # [END howto_submit_job]
