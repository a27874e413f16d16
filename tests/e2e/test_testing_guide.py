"""The testing guide's code (docs/guides/testing.md includes it from here): a DAG
run with ``dag.test()`` against a simulated instance, no cluster needed."""

from __future__ import annotations

from pathlib import Path

EXAMPLES = Path(__file__).parents[2] / "example_dags"


def test_a_dag_runs_against_a_simulated_instance(airflow_db: str) -> None:
    # [START howto_simulated_instance]
    from airflow_provider_flux.testing import SimulatedFlux
    from airflow_provider_flux.testing.dag_test import run_dag, use_flux_connection

    with SimulatedFlux() as flux_instance:  # a broker in a child process
        use_flux_connection(flux_instance.uri)  # the flux_default connection points at it
        result = run_dag(EXAMPLES / "example_flux_submit_job.py", "example_flux_submit_job")
        assert result.state == "success"
        assert result.task_states["simulate"] == "success"
        jobid = flux_instance.submit("cancel-running")  # a job that plays a recording
    # [END howto_simulated_instance]
    assert jobid > 0
