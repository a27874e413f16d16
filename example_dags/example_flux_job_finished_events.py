"""Post-process each simulation that finishes on a Flux instance, whoever submitted it.

No task of this DAG submits the simulations: people and other tools do, with
``flux submit --job-name=sim-...`` or ``flux batch``. An ``AssetWatcher`` follows
the instance's job events in the triggerer (``FluxInstanceEventTrigger``): each
job named ``sim-*`` that finishes with exit code 0 becomes an asset event, which
schedules this DAG. The event's ``extra["payload"]`` carries the job ID, its name,
queue and owner, and the ``finish`` event.

Airflow may fold several asset events into one DAG run (jobs that finish close
together), so the run maps over every triggering event: one ``post_process`` Flux
job per finished simulation, each given its simulation's ID.

The instance owner's watcher reads the job-manager journal; a guest's polls
job-list every ``poll_interval`` seconds. A triggerer restart loses nothing: the
watcher goes on from the position it saved in the asset's state store.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk import DAG, Asset, AssetWatcher, task

from airflow_provider_flux.operators.flux import FluxSubmitJobOperator
from airflow_provider_flux.triggers.instance import FluxInstanceEventTrigger

# [START howto_event_driven]
finished_simulations = Asset(
    "flux_finished_simulations",
    watchers=[
        AssetWatcher(
            name="flux_sim_jobs_finished",
            # Only the user's own jobs: on a shared instance any user can name a job sim-*.
            trigger=FluxInstanceEventTrigger(
                flux_conn_id="flux_default",
                events="finish",
                job_name="sim-*",
                exit_codes=0,
                userid=None,  # the default: the connection's own user; "any" for everyone's
            ),
        )
    ],
)

with DAG(
    dag_id="example_flux_job_finished_events",
    schedule=[finished_simulations],
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["example", "flux"],
):

    @task
    def finished_jobs(**context: Any) -> list[dict[str, str]]:
        """One environment per simulation that finished since the last run."""
        events = context["triggering_asset_events"][finished_simulations]
        path = "/usr/local/bin:/usr/bin:/bin"
        return [{"PATH": path, "SIMULATION_JOB": event.extra["payload"]["job"]} for event in events]

    FluxSubmitJobOperator.partial(
        task_id="post_process",
        command=["sh", "-c", "echo post-processing the output of job $SIMULATION_JOB"],
        job_name="post-process",
    ).expand(environment=finished_jobs())
# [END howto_event_driven]
