"""Run the example DAGs end to end with ``dag.test()``: against a real one-broker Flux
instance when ``flux`` is on PATH, otherwise against the simulated one.

Airflow's own log (a few hundred lines) goes to a file; the terminal gets the DAG
runs, their tasks and outcomes.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import TextIO

from airflow_provider_flux.testing import LocalFluxInstance, SimulatedFlux
from airflow_provider_flux.testing.dag_test import (
    DagTestResult,
    configure_airflow_home,
    migrate_database,
    output_to,
    run_dag,
    use_flux_connection,
)

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "example_dags"
LOG = ROOT / ".run-example" / "airflow.log"
# The main job first: submit a job, gate tasks on its start and clean.
DAG_IDS = (
    "example_flux_job_events", "example_flux_submit_job", "example_flux_parameter_sweep",
    "example_flux_task_sweep",
)  # fmt: skip


def show(result: DagTestResult, dag_id: str, say: TextIO) -> None:
    say.write(f"DAG run {dag_id}: {result.state.upper()}\n")
    for task_id in sorted(result.task_states):
        state = result.task_states[task_id] or "none"
        value = result.xcoms.get(task_id)
        shown = "" if value is None else f"  -> {value!r}"
        if len(shown) > 110:
            shown = shown[:107] + "..."
        say.write(f"  {task_id:<22} {state:<16}{shown}\n")


def main() -> int:
    LOG.parent.mkdir(exist_ok=True)
    print(f"==> Airflow's own log: {LOG}", flush=True)
    with ExitStack() as stack:
        home = stack.enter_context(tempfile.TemporaryDirectory(prefix="airflow-flux-example-"))
        say = stack.enter_context(output_to(LOG))
        configure_airflow_home(home)
        say.write(f"==> Airflow home {home} (SQLite); migrating the database\n")
        migrate_database()
        if shutil.which("flux"):
            instance = stack.enter_context(LocalFluxInstance())
            say.write(
                "==> flux is on PATH: running against a REAL Flux instance (flux start -s1, "
                f"flux-core {instance.version()}) at {instance.uri}\n"
            )
            uri = instance.uri
        else:
            sim = stack.enter_context(SimulatedFlux())
            say.write(f"==> flux is not on PATH: running against the SIMULATED Flux instance "
                      f"at {sim.uri}\n")  # fmt: skip
            uri = sim.uri
        use_flux_connection(uri)
        failed = []
        for dag_id in DAG_IDS:
            say.write(f"==> running {dag_id} with dag.test()\n")
            result = run_dag(EXAMPLES / f"{dag_id}.py", dag_id)
            show(result, dag_id, say)
            if result.state != "success":
                failed.append(dag_id)
        if failed:
            say.write(f"==> failed: {', '.join(failed)}; the reason is in {LOG}\n")
        else:
            say.write(f"==> all {len(DAG_IDS)} example DAG runs succeeded\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
