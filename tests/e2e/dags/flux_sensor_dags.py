"""DAGs the end-to-end tests run with dag.test(); job IDs come from the run conf or XCom."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG, task

from airflow_provider_flux.hooks.flux import FluxHook
from airflow_provider_flux.jobspec import jobspec_from_command
from airflow_provider_flux.sensors.flux import FluxJobEventSensor, FluxJobsEventSensor

START = datetime(2026, 1, 1)


def wait_dag(dag_id: str, **sensor_kwargs: Any) -> DAG:
    with DAG(dag_id, schedule=None, start_date=START, catchup=False) as dag:
        sensor = FluxJobEventSensor(
            task_id="wait",
            jobid="{{ dag_run.conf['jobid'] }}",
            event="{{ dag_run.conf['event'] }}",
            eventlog="{{ dag_run.conf.get('eventlog', 'eventlog') }}",
            retries=1,
            retry_delay=timedelta(seconds=1),
            **sensor_kwargs,
        )

        @task
        def downstream(event: dict[str, Any]) -> str:
            return f"after {event['name']}"

        downstream(sensor.output)
    return dag


wait_dag("flux_wait")
wait_dag("flux_wait_soft_fail", soft_fail=True)
wait_dag("flux_wait_no_raise", raise_on_exception=False)
wait_dag("flux_wait_poke", deferrable=False, poke_interval=0.2, timeout=60)
wait_dag("flux_wait_poke_timeout", deferrable=False, poke_interval=0.2, timeout=1)
wait_dag("flux_wait_second", count=2)
wait_dag("flux_wait_second_poke", count=2, deferrable=False, poke_interval=0.2, timeout=60)
# The instance named per task; the connection it names instead does not exist.
BY_URI = {"flux_conn_id": "flux_nowhere", "flux_uri": "{{ dag_run.conf['uri'] }}"}
wait_dag("flux_wait_by_uri", **BY_URI)
wait_dag("flux_wait_by_uri_poke", **BY_URI, deferrable=False, poke_interval=0.2, timeout=60)

with DAG("flux_wait_upstream_jobid", schedule=None, start_date=START, catchup=False):

    @task
    def submit() -> int:
        return FluxHook().submit(jobspec_from_command(["true"], name="upstream"))

    FluxJobEventSensor(
        task_id="wait",
        jobid="{{ ti.xcom_pull(task_ids='submit') }}",
        event="clean",
    ).set_upstream(submit())


def wait_many_dag(dag_id: str, **sensor_kwargs: Any) -> DAG:
    with DAG(dag_id, schedule=None, start_date=START, catchup=False) as dag:
        FluxJobsEventSensor(
            task_id="wait",
            jobids="{{ dag_run.conf['jobids'] }}",
            event="{{ dag_run.conf['event'] }}",
            retries=1,
            retry_delay=timedelta(seconds=1),
            **sensor_kwargs,
        )
    return dag


wait_many_dag("flux_wait_many")
wait_many_dag("flux_wait_many_tolerant", max_failures=1)
wait_many_dag("flux_wait_many_poke", deferrable=False, poke_interval=0.2, timeout=60)

with DAG("flux_wait_many_upstream", schedule=None, start_date=START, catchup=False):

    @task
    def submit_sweep() -> list[int]:
        hook = FluxHook()
        return [hook.submit(jobspec_from_command(["true"], name=f"sweep-{i}")) for i in range(3)]

    FluxJobsEventSensor(
        task_id="wait",
        jobids="{{ ti.xcom_pull(task_ids='submit_sweep') }}",
        event="clean",
    ).set_upstream(submit_sweep())
