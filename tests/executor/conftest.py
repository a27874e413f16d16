"""A real deployment whose scheduler runs FluxExecutor beside LocalExecutor, on a real
Flux instance: PostgreSQL, Airflow's components as processes, ``flux start -s1``."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from airflow_provider_flux.testing import LocalFluxInstance
from airflow_provider_flux.testing.dag_test import use_flux_connection
from airflow_provider_flux.testing.deployment import (
    AirflowDeployment,
    PostgresServer,
    find_postgres_bin,
)
from tests.conftest import skip_without_flux
from tests.deployment.conftest import NO_POSTGRES_REASON, REQUIRE_POSTGRES_VARIABLE
from tests.flux_instances import FLUX

DAGS = Path(__file__).parent / "dags"
EXECUTOR = "flux:airflow_provider_flux.executors.flux.FluxExecutor"
PARALLELISM = 8


@dataclass
class ExecutorDeployment:
    airflow: AirflowDeployment
    flux: LocalFluxInstance
    database: PostgresServer


@pytest.fixture(scope="session")
def executor_deployment() -> Iterator[ExecutorDeployment]:
    if FLUX is None:
        skip_without_flux()
    if find_postgres_bin() is None:
        if os.environ.get(REQUIRE_POSTGRES_VARIABLE):
            pytest.fail(f"{REQUIRE_POSTGRES_VARIABLE} is set, but {NO_POSTGRES_REASON}")
        pytest.skip(NO_POSTGRES_REASON)
    with LocalFluxInstance() as flux, PostgresServer() as database:
        use_flux_connection(flux.uri, "flux_real")  # for the tests' own FluxHook
        # [START howto_flux_executor_config]
        env = {
            "AIRFLOW__CORE__EXECUTOR": f"LocalExecutor,{EXECUTOR}",
            "AIRFLOW__FLUX_EXECUTOR__FLUX_CONN_ID": "flux_real",
            "AIRFLOW__FLUX_EXECUTOR__PARALLELISM": str(PARALLELISM),
            # [END howto_flux_executor_config]
            "AIRFLOW__FLUX_EXECUTOR__PENDING_CHECK_INTERVAL": "1",
            # A killed scheduler's tasks are looked at for adoption within seconds.
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_THRESHOLD": "8",
            "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": "3",
        }
        connections = {"flux_real": {"conn_type": "flux", "host": flux.uri}}
        with AirflowDeployment(DAGS, database.url, connections=connections, env=env) as airflow:
            yield ExecutorDeployment(airflow, flux, database)
