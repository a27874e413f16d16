"""DAGs run by Flux job events (``FluxInstanceEventTrigger`` in an ``AssetWatcher``),
one for the simulated instance and, when the deployment has one, the real one. Each
run returns what reached it: the job and source of every triggering event."""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

from airflow.sdk import DAG, Asset, AssetWatcher, task

from airflow_provider_flux.triggers.instance import FluxInstanceEventTrigger

# Jobs named `evt-*` that exit 0 run these DAGs; the tests submit others that must not.
JOB_NAME = "evt-*"
POLL_INTERVAL = 1.0

KINDS = ["sim"] + (["real"] if os.environ.get("AIRFLOW_CONN_FLUX_REAL") else [])


def handled_events(asset: Asset) -> Any:
    @task
    def handled(**context: Any) -> list[dict[str, Any]]:
        # Airflow may fold several asset events into one run: handle each.
        return [
            {"jobid": event.extra["payload"]["jobid"], "source": event.extra["payload"]["source"]}
            for event in context["triggering_asset_events"][asset]
        ]

    return handled()


for kind in KINDS:
    finished = Asset(
        f"flux_{kind}_evt_jobs_finished",
        watchers=[
            AssetWatcher(
                name=f"flux_{kind}_evt_watcher",
                # The jobs of the user the tests submit as, whichever user the
                # triggerer acts as (the tests also run one as a guest).
                trigger=FluxInstanceEventTrigger(
                    flux_conn_id=f"flux_{kind}", events="finish", job_name=JOB_NAME,
                    exit_codes=0, poll_interval=POLL_INTERVAL, userid=os.getuid(),
                ),
            )
        ],
    )  # fmt: skip
    with DAG(f"on_flux_jobs_{kind}", schedule=[finished], start_date=datetime(2026, 1, 1)):
        handled_events(finished)
