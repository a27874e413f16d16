"""The real deployment the tests in this folder share: PostgreSQL, Airflow's scheduler,
dag-processor, triggerer and api-server as processes, a simulated Flux instance
(connection ``flux_sim``) and, when flux-core is installed, a real one that keeps
its jobs across a restart (``flux_real``)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from airflow_provider_flux.testing import LocalFluxInstance, SimulatedFlux
from airflow_provider_flux.testing.dag_test import use_flux_connection
from airflow_provider_flux.testing.deployment import (
    AirflowDeployment,
    PostgresServer,
    find_postgres_bin,
)
from tests.conftest import skip_without_flux
from tests.flux_instances import FLUX, FluxTestInstance, RealInstance, SimInstance

DAGS = Path(__file__).parent / "dags"
# Set by .ci/run: then a machine without PostgreSQL fails these tests instead of skipping.
REQUIRE_POSTGRES_VARIABLE = "AIRFLOW_PROVIDER_FLUX_REQUIRE_POSTGRES"
NO_POSTGRES_REASON = "PostgreSQL is not installed (initdb not found): apt-get install postgresql"


@dataclass
class Deployment:
    airflow: AirflowDeployment
    sim: SimulatedFlux
    real: RealInstance | None


@pytest.fixture(scope="session")
def deployment() -> Iterator[Deployment]:
    if find_postgres_bin() is None:
        if os.environ.get(REQUIRE_POSTGRES_VARIABLE):
            pytest.fail(f"{REQUIRE_POSTGRES_VARIABLE} is set, but {NO_POSTGRES_REASON}")
        pytest.skip(NO_POSTGRES_REASON)
    real = None
    statedir = tempfile.mkdtemp(prefix="flux-state-")
    if FLUX is not None:
        real = RealInstance(LocalFluxInstance(statedir=statedir).start())
    try:
        # [START howto_deployment]
        with SimulatedFlux(speed=20) as sim, PostgresServer() as database:
            uris = {"flux_sim": sim.uri, **({"flux_real": real.uri} if real else {})}
            for conn_id, uri in uris.items():
                use_flux_connection(uri, conn_id)  # for the tests' own FluxHook
            connections = {
                conn_id: {"conn_type": "flux", "host": uri} for conn_id, uri in uris.items()
            }
            with AirflowDeployment(DAGS, database.url, connections=connections) as airflow:
                yield Deployment(airflow, sim, real)
        # [END howto_deployment]
    finally:
        if real is not None:
            real.stop()
        shutil.rmtree(statedir, ignore_errors=True)


@pytest.fixture(params=["sim", "real"])
def kind(request: pytest.FixtureRequest, deployment: Deployment) -> str:
    """Each test runs against the simulated instance and the real one."""
    if request.param == "real" and deployment.real is None:
        skip_without_flux()
    return str(request.param)


@pytest.fixture
def flux(kind: str, deployment: Deployment) -> FluxTestInstance:
    if kind == "sim":
        return SimInstance(deployment.sim)
    assert deployment.real is not None
    return deployment.real
