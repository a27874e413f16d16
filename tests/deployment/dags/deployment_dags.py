"""DAGs the real-deployment tests run, one of each for the simulated instance
(connection ``flux_sim``) and the real one (``flux_real``). The run conf gives the
job IDs."""

from __future__ import annotations

import os
import signal
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG, task

from airflow_provider_flux.operators.flux import FluxSubmitJobOperator
from airflow_provider_flux.sensors.flux import FluxJobEventSensor

START = datetime(2026, 1, 1)
PATH = {"PATH": "/usr/bin:/bin"}
# The simulated instance of the deployment runs 20 times faster than real time.
SIM_SPEED = 20
# A job that runs until the file the run conf names as `flag` exists.
UNTIL_FLAG = "sh -c 'while [ ! -e {{ dag_run.conf[\"flag\"] }} ]; do sleep 0.2; done'"
HELD_UNTIL_RELEASED = {"system.simulator.hold_before": "finish"}
# 5 MB in 1,000 events 5 ms apart: a trigger that fires within a second of its
# deferral meets an Airflow 3.3.2 race (docs/guides/long-jobs.md) the output tests are
# not about.
BIG_OUTPUT = {
    "lines": 50_000, "line_bytes": 100, "chunk_bytes": 5_000, "interval": 0.005 * SIM_SPEED,
}  # fmt: skip


class KillableSubmit(FluxSubmitJobOperator):
    """Test hooks around the durable operator: it pushes its task process's ID to
    XCom (``pid``) before it waits, so that the test can kill it; with
    ``die_after_submit`` its first try dies between submitting the job and storing
    the job ID, the window ``ResumableJobMixin`` cannot close."""

    def __init__(self, *, die_after_submit: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.die_after_submit = die_after_submit

    def submit_job(self, context: Any) -> Any:
        jobid = super().submit_job(context)
        if self.die_after_submit and context["ti"].try_number == 1:
            os.kill(os.getpid(), signal.SIGKILL)
        return jobid

    def poll_until_complete(self, external_id: Any, context: Any) -> Any:
        context["ti"].xcom_push(key="pid", value=os.getpid())
        return super().poll_until_complete(external_id, context)


# What start-from-trigger tasks wait on: the run conf's first jobs, by position.
STARTED_IN_TRIGGERER = 2

for kind in ("sim", "real"):
    conn_id = f"flux_{kind}"

    # Sensors mapped over the run's jobs, as users wait on an ensemble they submitted.
    with DAG(f"mapped_sensors_{kind}", schedule=None, start_date=START, catchup=False):

        @task
        def jobids(**context: object) -> list[int]:
            return list(context["dag_run"].conf["jobids"])  # type: ignore[attr-defined]

        FluxJobEventSensor.partial(
            task_id="wait",
            event="clean",
            flux_conn_id=conn_id,
            retries=2,  # a job failure must use none
            retry_delay=timedelta(seconds=2),
        ).expand(jobid=jobids())

    # Sensors that start in the triggerer: the job ID from the run conf, from an
    # upstream XCom, and a mapped one (which Airflow cannot start there).
    with DAG(f"start_from_trigger_{kind}", schedule=None, start_date=START, catchup=False):

        @task
        def pick(**context: object) -> int:
            return int(context["dag_run"].conf["jobids"][-1])  # type: ignore[attr-defined]

        @task
        def mapped_jobids(**context: object) -> list[int]:
            return list(context["dag_run"].conf["jobids"][-1:])  # type: ignore[attr-defined]

        for index in range(STARTED_IN_TRIGGERER):
            FluxJobEventSensor(
                task_id=f"from_conf_{index}",
                jobid=f"{{{{ dag_run.conf['jobids'][{index}] }}}}",
                event="clean",
                flux_conn_id=conn_id,
                start_from_trigger=True,
            )
        pick() >> FluxJobEventSensor(
            task_id="from_xcom",
            jobid="{{ ti.xcom_pull(task_ids='pick', map_indexes=-1) }}",
            event="clean",
            flux_conn_id=conn_id,
            start_from_trigger=True,
        )
        FluxJobEventSensor.partial(
            task_id="mapped", event="clean", flux_conn_id=conn_id, start_from_trigger=True
        ).expand(jobid=mapped_jobids())

    # Waits for a second triggerer to take over: sensors mapped over the run's held
    # jobs, and submit tasks (cancel_on_kill, the default) whose jobs run until released.
    with DAG(f"failover_{kind}", schedule=None, start_date=START, catchup=False):

        @task
        def held(**context: object) -> list[int]:
            return list(context["dag_run"].conf["jobids"])  # type: ignore[attr-defined]

        FluxJobEventSensor.partial(
            task_id="wait", event="clean", flux_conn_id=conn_id, retries=2,
            retry_delay=timedelta(seconds=2),
        ).expand(jobid=held())  # fmt: skip
        for index in range(2):
            FluxSubmitJobOperator(
                task_id=f"run_{index}", command=UNTIL_FLAG, environment=PATH,
                attributes=HELD_UNTIL_RELEASED, flux_conn_id=conn_id, retries=2,
                retry_delay=timedelta(seconds=2),
            )  # fmt: skip

    # A job that runs until cancelled: the simulated one holds before `finish`.
    with DAG(f"long_job_{kind}", schedule=None, start_date=START, catchup=False):
        FluxSubmitJobOperator(
            task_id="run",
            command="sleep 600",
            environment=PATH,
            attributes=HELD_UNTIL_RELEASED,
            flux_conn_id=conn_id,
        )

    # [START howto_live_output]
    # A job that writes a line a second for 30 s.
    with DAG(f"live_output_{kind}", schedule=None, start_date=START, catchup=False):
        FluxSubmitJobOperator(
            task_id="run",
            command="sh -c 'for i in $(seq 1 30); do echo line $i; sleep 1; done'",
            environment=PATH,
            attributes={"system.simulator.output": {"lines": 30, "interval": SIM_SPEED}},
            flux_conn_id=conn_id,
        )
    # [END howto_live_output]

    # A job that writes 5 MB, of which output_limit (100 kB) is logged. (The
    # benchmark runs 50 MB: at one event per line, real Flux takes over a minute.)
    with DAG(f"big_output_{kind}", schedule=None, start_date=START, catchup=False):
        FluxSubmitJobOperator(
            task_id="run",
            command="sh -c 'yes {{ 99 * \"x\" }} | head -c 5000000'",
            environment=PATH,
            output_limit=100_000,
            attributes={"system.simulator.output": BIG_OUTPUT},
            flux_conn_id=conn_id,
        )

    # Jobs waited on in the worker, with retries: the tests kill the worker.
    with DAG(f"durable_{kind}", schedule=None, start_date=START, catchup=False):
        for task_id, die_after_submit in (("run", False), ("die_after_submit", True)):
            KillableSubmit(
                task_id=task_id,
                command=UNTIL_FLAG,
                environment=PATH,
                attributes=HELD_UNTIL_RELEASED,
                deferrable=False,
                die_after_submit=die_after_submit,
                retries=2,
                retry_delay=timedelta(seconds=2),
                flux_conn_id=conn_id,
            )

    # A @task.flux function that runs until the file the run conf names as `flag`
    # exists (on the simulated instance too: a job that carries files runs for real).
    with DAG(f"task_flux_{kind}", schedule=None, start_date=START, catchup=False):

        @task.flux(
            task_id="call", flux_conn_id=conn_id, retries=2, retry_delay=timedelta(seconds=2)
        )
        def until_flag(flag: str) -> str:
            import os
            import time

            print("waiting for the flag")
            while not os.path.exists(flag):
                time.sleep(0.2)
            return "flag seen"

        until_flag("{{ dag_run.conf['flag'] }}")
