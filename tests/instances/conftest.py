"""Real Flux instances shaped as users run them: several brokers, nested instances."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_provider_flux.testing import LocalFluxInstance
from tests.conftest import skip_without_flux
from tests.flux_instances import FLUX


def real_instance(size: int = 1, statedir: str | None = None) -> LocalFluxInstance:
    """A real instance of ``size`` brokers to start (keeping its jobs across a restart
    in ``statedir``), or the test skips (fails in CI)."""
    if FLUX is None:
        skip_without_flux()
    return LocalFluxInstance(size=size, statedir=statedir)


@pytest.fixture(scope="module")
def four_brokers() -> Iterator[LocalFluxInstance]:
    """Four brokers on this machine, as on four nodes: ranks 0 to 3."""
    with real_instance(size=4) as instance:
        yield instance


@pytest.fixture(scope="module")
def parent() -> Iterator[LocalFluxInstance]:
    """A one-broker instance in which batch jobs start nested ones."""
    with real_instance() as instance:
        yield instance


@pytest.fixture
def job_path() -> str:
    """``PATH`` for jobs that run ``flux`` (the one the tests found)."""
    assert FLUX is not None
    return f"{Path(FLUX).parent}:/usr/bin:/bin"
