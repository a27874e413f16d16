"""A parameter sweep with ``@task.flux``: each call of ``simulate`` is a Flux job with
its own resources, mapped over the temperatures; ``summarize`` reduces their return
values in Airflow.

The function's source and its arguments travel to the compute node in the job's
jobspec, and its return value back in the job's output: no filesystem is shared
between the worker and the nodes. It imports what it uses inside, since its source
is all that is shipped. It runs under the worker's own Python path (``python=``
names another); on the simulated instance it runs for real, as a local process.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG, task

with DAG(
    dag_id="example_flux_task_sweep",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["example", "flux"],
):
    # [START howto_task_flux]
    @task.flux(num_tasks=1, cores_per_task=1, duration="10m")
    def simulate(temperature: float) -> dict[str, float]:
        import math

        energy = 1.5 * 8.617e-5 * temperature  # mean kinetic energy, eV
        print(f"T={temperature}K: E={energy:.4f} eV")
        return {"temperature": temperature, "energy": energy, "rate": math.exp(-0.1 / energy)}

    @task
    def summarize(results: list[dict[str, float]]) -> str:
        fastest = max(results, key=lambda result: result["rate"])
        return f"{len(results)} runs; fastest at {fastest['temperature']:g}K"

    summarize(simulate.expand(temperature=[250.0, 300.0, 350.0, 400.0, 450.0]))
    # [END howto_task_flux]
