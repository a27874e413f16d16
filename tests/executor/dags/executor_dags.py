"""DAGs whose tasks run under FluxExecutor (``executor="flux"``) beside LocalExecutor."""

from __future__ import annotations

import os
import time
from datetime import datetime, timedelta

from airflow.sdk import dag, task

from airflow_provider_flux.sensors.flux import FluxJobEventSensor

ARGS = {"retries": 0}


@dag(schedule=None, start_date=datetime(2024, 1, 1), catchup=False, default_args=ARGS)
def flux_executor_mixed() -> None:
    # [START howto_flux_executor]
    @task(executor="LocalExecutor")
    def produce() -> int:
        return 41

    @task(executor="flux", executor_config={"flux": {"cores": 1, "duration": "10m"}})
    def on_flux(value: int) -> dict[str, object]:
        # Runs inside a Flux job on a compute node.
        return {"value": value + 1, "jobid": os.environ["FLUX_JOB_ID"], "env": dict(os.environ)}

    # [END howto_flux_executor]

    @task(executor="LocalExecutor")
    def consume(result: dict[str, object]) -> None:
        assert result["value"] == 42, result

    consume(on_flux(produce()))


@dag(schedule=None, start_date=datetime(2024, 1, 1), catchup=False)
def flux_executor_retry() -> None:
    @task(executor="flux", retries=1, retry_delay=timedelta(seconds=0))
    def fails_once(ti=None) -> int:  # type: ignore[no-untyped-def]
        if ti.try_number == 1:
            raise RuntimeError("the first try fails")
        return ti.try_number

    fails_once()


@dag(schedule=None, start_date=datetime(2024, 1, 1), catchup=False)
def flux_executor_bad_python() -> None:
    @task(
        executor="flux", executor_config={"flux": {"python": "/nonexistent/python3"}},
        retries=1, retry_delay=timedelta(seconds=0),
    )  # fmt: skip
    def never_runs() -> None:
        raise AssertionError("ran without its Python")

    never_runs()


@dag(schedule=None, start_date=datetime(2024, 1, 1), catchup=False, default_args=ARGS)
def flux_executor_waits() -> None:
    """A task that runs until its flag file appears (the test's conf names it)."""

    @task(executor="flux")
    def wait_for_flag(params=None) -> str:  # type: ignore[no-untyped-def]
        print("waiting for", params["flag"], flush=True)
        while not os.path.exists(params["flag"]):
            time.sleep(0.2)
        return "done"

    wait_for_flag()


@dag(schedule=None, start_date=datetime(2024, 1, 1), catchup=False, default_args=ARGS)
def flux_executor_many() -> None:
    """``count`` trivial mapped tasks (the test's conf)."""

    @task(executor="LocalExecutor")
    def indices(params=None) -> list[int]:  # type: ignore[no-untyped-def]
        return list(range(int(params["count"])))

    @task(executor="flux")
    def trivial(index: int) -> int:
        time.sleep(1)
        return index

    trivial.expand(index=indices())


@dag(schedule=None, start_date=datetime(2024, 1, 1), catchup=False, default_args=ARGS)
def flux_executor_sensors() -> None:
    """Deferrable sensors, one per job ID of the test's conf, run by FluxExecutor."""

    @task(executor="LocalExecutor")
    def jobids(params=None) -> list[str]:  # type: ignore[no-untyped-def]
        return [str(jobid) for jobid in params["jobids"]]

    FluxJobEventSensor.partial(
        task_id="sensor", flux_conn_id="flux_real", event="clean", deferrable=True,
        executor="flux", poke_interval=1, end_from_trigger=False,
    ).expand(jobid=jobids())  # fmt: skip


flux_executor_mixed()
flux_executor_retry()
flux_executor_bad_python()
flux_executor_waits()
flux_executor_many()
flux_executor_sensors()
