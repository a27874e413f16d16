"""DAGs of @task.flux functions. On the simulated instance they run for real too, as
local processes (a job that carries its files is run, not replayed)."""

from __future__ import annotations

import os
import sys
from datetime import datetime, timedelta

from airflow.sdk import DAG, task

START = datetime(2026, 1, 1)
# The job's Python without this virtualenv: a Python that lacks dill.
BARE_PYTHON = os.path.realpath(sys.executable)

with DAG("flux_task_calls", schedule=None, start_date=START, catchup=False):

    @task
    def measurements() -> list[float]:
        return [1.0, 2.0, 3.0, 6.0]

    @task.flux(multiple_outputs=True, cores_per_task=1, duration=120)
    def describe(values: list[float]) -> dict[str, float]:
        import statistics  # imported in the job, on the compute node

        print(f"describing {len(values)} values")
        return {"mean": statistics.mean(values), "total": sum(values)}

    @task.flux
    def scaled(total: float, offset: float, *, scale: float = 1.0) -> float:
        return (total + offset) * scale

    @task
    def check(mean: float, result: float) -> str:
        return f"mean={mean:g} result={result:g}"

    stats = describe(measurements())
    check(stats["mean"], scaled(stats["total"], 2.0, scale=10.0))

with DAG("flux_task_mapped", schedule=None, start_date=START, catchup=False):
    # Waiting in the worker: dag.test() of Airflow 3.1 and 3.2 runs deferred tasks'
    # triggers one at a time, seconds each (the other DAGs here cover deferral).
    @task.flux(deferrable=False)
    def square(x: int) -> int:
        return x * x

    @task
    def total(squares: list[int]) -> int:
        return sum(squares)

    total(square.expand(x=list(range(10))))

with DAG("flux_task_raises", schedule=None, start_date=START, catchup=False):

    @task.flux(retries=1, retry_delay=timedelta(seconds=0))
    def broken(divisor: int) -> float:
        print("about to divide")
        return 1 / divisor

    broken(0)

# The instance named per task; the connection it names instead does not exist.
with DAG("flux_task_by_uri", schedule=None, start_date=START, catchup=False):

    @task.flux(flux_conn_id="flux_nowhere", flux_uri="{{ dag_run.conf['uri'] }}")
    def where() -> str:
        import os

        return os.environ.get("FLUX_URI", "")

    where()

with DAG("flux_task_two_tasks", schedule=None, start_date=START, catchup=False):

    @task.flux(num_tasks=2)
    def ranks() -> dict[str, int] | None:
        import os  # the job runs the function's source alone: it imports what it uses

        rank, size = int(os.environ["FLUX_TASK_RANK"]), int(os.environ["FLUX_JOB_SIZE"])
        print(f"task {rank} of {size}")
        if rank != 0:
            return None  # an MPI-style function: the value is rank 0's
        return {"rank": rank, "size": size}

    ranks()

with DAG("flux_task_too_large", schedule=None, start_date=START, catchup=False):

    @task.flux(max_return_bytes=1000)
    def large() -> str:
        return "x" * 5000

    large()

with DAG("flux_task_missing_python", schedule=None, start_date=START, catchup=False):

    @task.flux(python="/nonexistent/bin/python3")
    def nothing() -> None:
        return None

    nothing()

with DAG("flux_task_unserializable", schedule=None, start_date=START, catchup=False):

    @task.flux
    def apply(function: object, value: int) -> int:
        return function(value)  # type: ignore[operator]

    apply(lambda v: v + 1, 41)  # pickle cannot serialize a lambda

with DAG("flux_task_dill", schedule=None, start_date=START, catchup=False):

    @task.flux(serializer="dill")
    def apply_dill(function: object, value: int) -> int:
        return function(value)  # type: ignore[operator]

    apply_dill(lambda v: v + 1, 41)

with DAG("flux_task_python_without_dill", schedule=None, start_date=START, catchup=False):

    @task.flux(serializer="dill", python=BARE_PYTHON)
    def plain() -> int:
        return 1

    plain()

with DAG("flux_task_in_worker", schedule=None, start_date=START, catchup=False):

    @task.flux(deferrable=False)
    def greet(name: str) -> str:
        print(f"greeting {name}")
        return f"hello {name}"

    greet("{{ dag.dag_id }}")
