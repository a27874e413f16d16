from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator
from typing import NoReturn

import pytest

from airflow_provider_flux.testing.dag_test import configure_airflow_home, migrate_database

# Airflow reads its configuration on first import: give the session a private
# home (SQLite database, DAG folder) before anything imports it; removed at exit.
_AIRFLOW_HOME_DIR = tempfile.TemporaryDirectory(prefix="airflow-provider-flux-tests-")
AIRFLOW_HOME = _AIRFLOW_HOME_DIR.name
configure_airflow_home(AIRFLOW_HOME)

from airflow_provider_flux.testing import SimulatedFlux  # noqa: E402
from tests.flux_instances import FLUX, NO_FLUX_REASON, RealInstance, SimInstance  # noqa: E402

# Set by .ci/run when it built Flux: then a missing flux fails the tests it would skip.
REQUIRE_FLUX_VARIABLE = "AIRFLOW_PROVIDER_FLUX_REQUIRE_FLUX"

# Every event loop the tests create runs in asyncio debug mode, which logs each
# callback slower than 0.1 s; _fail_on_slow_callbacks turns those into failures.
os.environ["PYTHONASYNCIODEBUG"] = "1"


def pytest_report_header() -> str:
    return f"real Flux: {FLUX}" if FLUX else f"real Flux: no ({NO_FLUX_REASON})"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say how many tests real Flux ran, and how many were skipped for lack of it."""
    skipped = [
        report
        for report in terminalreporter.stats.get("skipped", [])
        if NO_FLUX_REASON in str(report.longrepr)
    ]
    where = f"real Flux {FLUX}" if FLUX else "no real Flux"
    terminalreporter.write_line(
        f"{where}: {len(skipped)} tests skipped for lack of Flux",
        yellow=bool(skipped),
        green=not skipped,
    )


@pytest.fixture(scope="session")
def airflow_db() -> str:
    """The session's Airflow metadata database, migrated once."""
    migrate_database()
    return AIRFLOW_HOME


def skip_without_flux() -> NoReturn:
    """Skip the test for lack of Flux, or fail it when CI built Flux for the run."""
    if os.environ.get(REQUIRE_FLUX_VARIABLE):
        pytest.fail(f"{REQUIRE_FLUX_VARIABLE} is set, but {NO_FLUX_REASON}")
    pytest.skip(NO_FLUX_REASON)


@pytest.fixture(scope="session")
def sim() -> Iterator[SimulatedFlux]:
    """A simulated instance shared by the session (jobs replay 20x faster than recorded)."""
    with SimulatedFlux(speed=20) as instance:
        yield instance


@pytest.fixture(scope="session")
def real_flux() -> Iterator[RealInstance]:
    if FLUX is None:
        skip_without_flux()
    instance = RealInstance()
    yield instance
    instance.stop()


@pytest.fixture(params=["simulated", "real"])
def flux_instance(request: pytest.FixtureRequest, sim: SimulatedFlux) -> object:
    """Contract tests run once per kind of instance."""
    if request.param == "simulated":
        return SimInstance(sim)
    return request.getfixturevalue("real_flux")


class _SlowCallbacks(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("Executing") and "took" in message:
            self.messages.append(message)


@pytest.fixture(autouse=True)
def _fail_on_slow_callbacks(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail an async test whose event loop was blocked (Airflow's own loops, such as
    the in-process API server of dag.test(), are not ours to judge)."""
    if request.node.get_closest_marker("asyncio") is None:
        yield
        return
    handler = _SlowCallbacks()
    logger = logging.getLogger("asyncio")
    logger.addHandler(handler)
    yield
    logger.removeHandler(handler)
    assert not handler.messages, f"the event loop was blocked: {handler.messages}"
