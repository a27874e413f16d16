"""Every example DAG imports cleanly, and the README's example runs on the simulator."""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_provider_flux.testing.dag_test import run_dag, use_flux_connection
from tests.flux_instances import FluxTestInstance

EXAMPLES = sorted((Path(__file__).parents[2] / "example_dags").glob("*.py"))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_dag_imports_without_errors(path: Path, airflow_db: str) -> None:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(path))
    assert bag.import_errors == {}
    assert bag.dags, f"{path.name} defines no DAG"


def test_example_dag_runs_end_to_end(flux_instance: FluxTestInstance, airflow_db: str) -> None:
    use_flux_connection(flux_instance.uri)
    path = next(p for p in EXAMPLES if p.stem == "example_flux_job_events")
    result = run_dag(path, "example_flux_job_events")
    assert result.state == "success", result.task_states
    assert result.xcoms["wait_for_start"]["name"] == "start"
    assert result.xcoms["wait_for_clean"]["name"] == "clean"
