"""Run the example DAGs end to end with ``dag.test()``: against a real one-broker Flux
instance when ``flux`` is on PATH, otherwise against the simulated one."""

from __future__ import annotations

import shutil
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

from airflow_provider_flux.testing import LocalFluxInstance, SimulatedFlux
from airflow_provider_flux.testing.dag_test import (
    configure_airflow_home,
    migrate_database,
    run_dag,
    use_flux_connection,
)

EXAMPLES = Path(__file__).resolve().parents[1] / "example_dags"
# The main job first: submit a job, gate tasks on its start and clean.
DAG_IDS = ("example_flux_job_events", "example_flux_submit_job")


def main() -> int:
    with ExitStack() as stack:
        home = stack.enter_context(tempfile.TemporaryDirectory(prefix="airflow-flux-example-"))
        configure_airflow_home(home)
        print(f"==> Airflow home {home} (SQLite); migrating the database", flush=True)
        migrate_database()
        if shutil.which("flux"):
            instance = stack.enter_context(LocalFluxInstance())
            print(
                "==> flux is on PATH: running against a REAL Flux instance (flux start -s1, "
                f"flux-core {instance.version()}) at {instance.uri}",
                flush=True,
            )
            uri = instance.uri
        else:
            sim = stack.enter_context(SimulatedFlux())
            print(f"==> flux is not on PATH: running against the SIMULATED Flux instance "
                  f"at {sim.uri}", flush=True)  # fmt: skip
            uri = sim.uri
        use_flux_connection(uri)
        failed = 0
        for dag_id in DAG_IDS:
            result = run_dag(EXAMPLES / f"{dag_id}.py", dag_id)
            print(f"==> DAG run {dag_id}: {result.state}")
            for task_id, state in sorted(result.task_states.items()):
                print(f"    {task_id:<20} {state:<10} {result.xcoms.get(task_id, '')}")
            failed += result.state != "success"
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
