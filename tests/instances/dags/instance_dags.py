"""DAGs that reach Flux beyond one broker: jobs across the nodes of a multi-node
instance, and work inside a batch job's nested instance named by ``jobid:``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk import DAG, task

from airflow_provider_flux.hooks.flux import FluxHook
from airflow_provider_flux.jobspec import jobspec_from_command
from airflow_provider_flux.operators.flux import FluxSubmitJobOperator
from airflow_provider_flux.sensors.flux import FluxJobEventSensor, FluxJobsEventSensor

START = datetime(2026, 1, 1)
ENVIRONMENT = {"PATH": "{{ dag_run.conf['path'] }}"}

with DAG("flux_across_nodes", schedule=None, start_date=START, catchup=False):
    spread = FluxSubmitJobOperator(
        task_id="spread",
        command=["sh", "-c", "echo task $FLUX_TASK_RANK on broker $(flux getattr rank)"],
        num_nodes=2,
        num_tasks=2,
        environment=ENVIRONMENT,
    )

    @task
    def submit_one_per_node() -> list[int]:
        """Four jobs that each want a whole node: one on each broker."""
        jobspec = jobspec_from_command(
            ["sleep", "0.5"], num_nodes=1, exclusive=True, environment={"PATH": "/usr/bin:/bin"}
        )
        return FluxHook().submit_many([jobspec] * 4)

    jobs = submit_one_per_node()
    every_node = FluxJobsEventSensor(
        task_id="every_node", jobids=jobs, event="finish", match_context={"status": 0},
        poke_interval=0.2, timeout=120,
    )  # fmt: skip
    spread >> jobs


def nested_dag(dag_id: str, **wait: Any) -> None:
    """A batch job whose nested instance runs a job that a sensor watches, both named
    by ``jobid:{{ the batch job }}?local`` from its XCom; then the batch job ends."""
    with DAG(dag_id, schedule=None, start_date=START, catchup=False):
        # [START howto_nested_instance]
        batch = FluxSubmitJobOperator(
            task_id="batch",
            script="#!/bin/sh\nsleep 300\n",
            environment=ENVIRONMENT,
            wait_for_completion=False,
        )
        # The nested instance answers once the batch job posts its URI (a memo).
        started = FluxJobEventSensor(
            task_id="started", jobid=batch.output, event="memo", poke_interval=0.2, timeout=120
        )
        nested = "jobid:{{ ti.xcom_pull(task_ids='batch') }}?local"
        inner = FluxSubmitJobOperator(
            task_id="inner",
            command=["sh", "-c", "echo inside, at level $(flux getattr instance-level)"],
            environment=ENVIRONMENT,
            flux_uri=nested,
        )
        watched = FluxJobEventSensor(
            task_id="watched",
            jobid=inner.output,
            event="finish",
            flux_uri=nested,
            **wait,
        )

        @task(trigger_rule="all_done")
        def end_batch(jobid: int) -> None:
            FluxHook().cancel(jobid, "the DAG is done with it")

        started >> inner >> watched >> end_batch(batch.output)
        # [END howto_nested_instance]


nested_dag("flux_nested")
nested_dag("flux_nested_poke", deferrable=False, poke_interval=0.2, timeout=60)
