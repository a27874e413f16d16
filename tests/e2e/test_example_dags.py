"""Every example DAG imports cleanly and runs end to end (simulated and real Flux)."""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_provider_flux.testing.dag_test import (
    DagTestResult,
    dag_bag_class,
    run_dag,
    use_flux_connection,
)
from tests.flux_instances import FluxTestInstance

EXAMPLES = sorted((Path(__file__).parents[2] / "example_dags").glob("*.py"))


def run_example(flux_instance: FluxTestInstance, dag_id: str) -> DagTestResult:
    """Run the example DAG ``dag_id`` (its file's name) on ``flux_instance``."""
    use_flux_connection(flux_instance.uri)
    return run_dag(next(p for p in EXAMPLES if p.stem == dag_id), dag_id)


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_dag_imports_without_errors(path: Path, airflow_db: str) -> None:
    bag = dag_bag_class()(dag_folder=str(path))
    assert bag.import_errors == {}
    assert bag.dags, f"{path.name} defines no DAG"


def test_example_dag_runs_end_to_end(flux_instance: FluxTestInstance, airflow_db: str) -> None:
    result = run_example(flux_instance, "example_flux_job_events")
    assert result.state == "success", result.task_states
    assert result.xcoms["wait_for_start"]["name"] == "start"
    assert result.xcoms["wait_for_clean"]["name"] == "clean"


def test_submit_example_runs_both_jobs_then_reports(
    flux_instance: FluxTestInstance, airflow_db: str
) -> None:
    result = run_example(flux_instance, "example_flux_submit_job")
    assert result.state == "success", result.task_states
    simulation, post = result.xcoms["simulate"], result.xcoms["post_process"]
    assert isinstance(simulation, int)
    assert isinstance(post, int)
    assert simulation != post
    assert result.xcoms["report"] == (
        f"simulation job {simulation} and post-processing job {post} succeeded"
    )


def test_parameter_sweep_example_waits_on_the_array_as_one_task(
    flux_instance: FluxTestInstance, airflow_db: str
) -> None:
    result = run_example(flux_instance, "example_flux_parameter_sweep")
    assert result.state == "success", result.task_states
    jobids = result.xcoms["sweep"]
    assert isinstance(jobids, list)
    assert len(jobids) == 8
    outcome = result.xcoms["sweep_done"]
    assert [job["jobid"] for job in outcome["jobs"]] == jobids
    assert outcome["matched"] >= 6
    assert result.xcoms["analyze"].startswith(f"{outcome['matched']} of 8 samples finished")


def test_task_flux_sweep_example_reduces_the_mapped_calls(
    flux_instance: FluxTestInstance, airflow_db: str
) -> None:
    result = run_example(flux_instance, "example_flux_task_sweep")
    assert result.task_states == {"simulate": "success", "summarize": "success"}
    assert result.xcoms["summarize"] == "5 runs; fastest at 450K"
