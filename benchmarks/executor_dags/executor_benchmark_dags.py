"""DAGs of the executor benchmark (benchmarks/executor_benchmark.py): ``count`` trivial
mapped tasks (the run's conf), run by LocalExecutor or by FluxExecutor."""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import dag, task


def trivial_tasks(executor: str) -> None:
    @dag(dag_id=f"bench_executor_{executor}", schedule=None, start_date=datetime(2026, 1, 1),
         catchup=False, max_active_tasks=10_000)  # fmt: skip
    def tasks() -> None:
        @task(executor="LocalExecutor")
        def indices(params=None) -> list[int]:  # type: ignore[no-untyped-def]
            return list(range(int(params["count"])))

        @task(executor="LocalExecutor" if executor == "local" else "flux")
        def trivial(index: int) -> int:
            return index

        trivial.expand(index=indices())

    tasks()


trivial_tasks("local")
trivial_tasks("flux")
