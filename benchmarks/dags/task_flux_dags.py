"""DAGs of the ``@task.flux`` benchmark (benchmarks/task_flux_benchmark.py): one task
each, the same small function (the sum of the squares of a list) run five ways:

- ``bench_task_flux``: ``@task.flux(deferrable=False)``, the wait in the worker;
- ``bench_task_flux_deferred``: ``@task.flux`` as it comes (deferred; ``dag.test()``
  runs the trigger inline);
- ``bench_flux_command``: ``FluxSubmitJobOperator`` with a hand-written command that
  prints the result (the task's value is the job ID), ``deferrable=False``;
- ``bench_external_python``: ``@task.external_python`` with this interpreter (the
  worker's, with Airflow), a local process and no Flux;
- ``bench_external_python_bare``: the same with the interpreter this virtualenv was
  made from, which has no Airflow to import (``expect_airflow=False``).
"""

from __future__ import annotations

import os
import sys
from datetime import datetime

from airflow.sdk import DAG, task

from airflow_provider_flux.operators.flux import FluxSubmitJobOperator

CONN_ID = "flux_bench"
START = datetime(2026, 1, 1)
VALUES = list(range(1000))
EXPECTED = sum(v * v for v in VALUES)
# The hand-written job: the same function, its argument written into the command.
SOURCE = "def sum_of_squares(values):\n    return sum(v * v for v in values)\n"
COMMAND = [sys.executable, "-c", f"{SOURCE}print(sum_of_squares({VALUES!r}))"]
# On the simulator (the benchmark says so) a command job is replayed from a
# recording unless it asks to be run; @task.flux's jobs carry files and are run.
# The interpreter this virtualenv was made from: no Airflow in it.
BARE_PYTHON = os.path.realpath(sys.executable)
SIMULATED = os.environ.get("FLUX_BENCH_SIMULATED") == "1"
RUN_IT = {"system.simulator.scenario": "run"} if SIMULATED else {}

with DAG("bench_task_flux", schedule=None, start_date=START, catchup=False):

    @task.flux(deferrable=False, flux_conn_id=CONN_ID)
    def sum_of_squares(values: list[int]) -> int:
        return sum(v * v for v in values)

    sum_of_squares(VALUES)

with DAG("bench_task_flux_deferred", schedule=None, start_date=START, catchup=False):

    @task.flux(flux_conn_id=CONN_ID)
    def sum_of_squares(values: list[int]) -> int:
        return sum(v * v for v in values)

    sum_of_squares(VALUES)

with DAG("bench_flux_command", schedule=None, start_date=START, catchup=False):
    FluxSubmitJobOperator(
        task_id="sum_of_squares",
        command=COMMAND,
        attributes=RUN_IT,
        deferrable=False,
        flux_conn_id=CONN_ID,
    )

with DAG("bench_external_python", schedule=None, start_date=START, catchup=False):

    @task.external_python(python=sys.executable)
    def sum_of_squares(values: list[int]) -> int:
        return sum(v * v for v in values)

    sum_of_squares(VALUES)

with DAG("bench_external_python_bare", schedule=None, start_date=START, catchup=False):

    @task.external_python(python=BARE_PYTHON, expect_airflow=False)
    def sum_of_squares(values: list[int]) -> int:
        return sum(v * v for v in values)

    sum_of_squares(VALUES)
