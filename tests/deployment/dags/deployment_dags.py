"""DAGs the real-deployment tests run, one of each for the simulated instance
(connection ``flux_sim``) and the real one (``flux_real``). The run conf gives the
job IDs."""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG, task

from airflow_provider_flux.operators.flux import FluxSubmitJobOperator
from airflow_provider_flux.sensors.flux import FluxJobEventSensor

START = datetime(2026, 1, 1)
# What start-from-trigger tasks wait on: the run conf's first jobs, by position.
STARTED_IN_TRIGGERER = 2

for kind in ("sim", "real"):
    conn_id = f"flux_{kind}"

    # Sensors mapped over the run's jobs, as users wait on an ensemble they submitted.
    with DAG(f"mapped_sensors_{kind}", schedule=None, start_date=START, catchup=False):

        @task
        def jobids(**context: object) -> list[int]:
            return list(context["dag_run"].conf["jobids"])  # type: ignore[attr-defined]

        FluxJobEventSensor.partial(
            task_id="wait",
            event="clean",
            flux_conn_id=conn_id,
            retries=2,  # a job failure must use none
            retry_delay=timedelta(seconds=2),
        ).expand(jobid=jobids())

    # Sensors that start in the triggerer: the job ID from the run conf, from an
    # upstream XCom, and a mapped one (which Airflow cannot start there).
    with DAG(f"start_from_trigger_{kind}", schedule=None, start_date=START, catchup=False):

        @task
        def pick(**context: object) -> int:
            return int(context["dag_run"].conf["jobids"][-1])  # type: ignore[attr-defined]

        @task
        def mapped_jobids(**context: object) -> list[int]:
            return list(context["dag_run"].conf["jobids"][-1:])  # type: ignore[attr-defined]

        for index in range(STARTED_IN_TRIGGERER):
            FluxJobEventSensor(
                task_id=f"from_conf_{index}",
                jobid=f"{{{{ dag_run.conf['jobids'][{index}] }}}}",
                event="clean",
                flux_conn_id=conn_id,
                start_from_trigger=True,
            )
        pick() >> FluxJobEventSensor(
            task_id="from_xcom",
            jobid="{{ ti.xcom_pull(task_ids='pick', map_indexes=-1) }}",
            event="clean",
            flux_conn_id=conn_id,
            start_from_trigger=True,
        )
        FluxJobEventSensor.partial(
            task_id="mapped", event="clean", flux_conn_id=conn_id, start_from_trigger=True
        ).expand(jobid=mapped_jobids())

    # A job that runs until cancelled: the simulated one holds before `finish`.
    with DAG(f"long_job_{kind}", schedule=None, start_date=START, catchup=False):
        FluxSubmitJobOperator(
            task_id="run",
            command="sleep 600",
            environment={"PATH": "/usr/bin:/bin"},
            attributes={"system.simulator.hold_before": "finish"},
            flux_conn_id=conn_id,
        )
