"""A DAG whose task reads Flux connections through FluxHook, as DAG code does."""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG, get_current_context, task

from airflow_provider_flux.hooks.flux import FluxHook

with DAG("flux_read_connections", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):

    @task
    def read_uris() -> dict[str, str | None]:
        conn_ids = get_current_context()["dag_run"].conf["conn_ids"]
        return {conn_id: FluxHook(conn_id).get_uri() for conn_id in conn_ids}

    read_uris()
