"""Run a DAG file end to end with ``dag.test()``, for tests and for trying DAGs out.

Airflow reads its configuration when it is first imported, so call
:func:`configure_airflow_home` before anything imports ``airflow``.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from airflow.dag_processing.dagbag import DagBag


def configure_airflow_home(home: str | Path) -> Path:
    """Point Airflow at a private home with an SQLite database and its own DAG folder."""
    home = Path(home)
    dags = home / "dags"
    dags.mkdir(parents=True, exist_ok=True)
    os.environ.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        }
    )
    return dags


@contextmanager
def output_to(log: Path) -> Iterator[TextIO]:
    """Send everything written to fds 1 and 2 (Airflow's log, its child processes')
    to ``log``; yields a stream on the terminal, for what the user should see."""
    sys.stdout.flush()
    sys.stderr.flush()
    terminal = os.fdopen(os.dup(1), "w", buffering=1)
    saved_err = os.dup(2)
    with log.open("w") as file:
        os.dup2(file.fileno(), 1)
        os.dup2(file.fileno(), 2)
        try:
            yield terminal
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(terminal.fileno(), 1)
            os.dup2(saved_err, 2)
            os.close(saved_err)
            terminal.close()


def migrate_database() -> None:
    """``airflow db migrate`` for the configured home (a child process, like the CLI)."""
    airflow = shutil.which("airflow", path=os.path.dirname(sys.executable)) or "airflow"
    subprocess.run([airflow, "db", "migrate"], check=True, capture_output=True, text=True)


def use_flux_connection(uri: str, conn_id: str = "flux_default") -> None:
    """Define the ``flux`` connection ``conn_id`` through the environment."""
    os.environ[f"AIRFLOW_CONN_{conn_id.upper()}"] = f'{{"conn_type": "flux", "host": "{uri}"}}'


@dataclass
class DagTestResult:
    """What a ``dag.test()`` run left behind."""

    state: str
    task_states: dict[str, str | None] = field(default_factory=dict)
    xcoms: dict[str, Any] = field(default_factory=dict)
    tries: dict[str, int] = field(default_factory=dict)


def run_dag(
    dag_file: str | Path, dag_id: str, run_conf: dict[str, Any] | None = None
) -> DagTestResult:
    """Copy ``dag_file`` into the DAG folder and run ``dag_id`` with ``dag.test()``."""
    from airflow.models import TaskInstance
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    dags_folder = Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    target = dags_folder / Path(dag_file).name
    shutil.copy(dag_file, target)
    bag = dag_bag_class()(dag_folder=str(target))
    if bag.import_errors:
        raise RuntimeError(f"DAG import errors: {bag.import_errors}")
    dag = bag.get_dag(dag_id)
    if dag is None:
        raise LookupError(f"no DAG {dag_id!r} in {dag_file}")
    _serialize_if_new(bag, dag_id)
    _one_execution_api_per_process()
    run = dag.test(run_conf=run_conf)
    with create_session() as session:
        tis = session.query(TaskInstance).filter(
            TaskInstance.dag_id == dag_id, TaskInstance.run_id == run.run_id
        )
        states = {ti.task_id: (str(ti.state) if ti.state else None) for ti in tis}
        tries = {ti.task_id: ti.try_number for ti in tis}
        xcoms = {
            row.task_id: XComModel.deserialize_value(row)
            for row in session.query(XComModel).filter(
                XComModel.dag_id == dag_id,
                XComModel.run_id == run.run_id,
                XComModel.key == "return_value",
            )
        }
    return DagTestResult(str(run.state), states, xcoms, tries)


def _one_execution_api_per_process() -> None:
    """Build ``dag.test()``'s in-process execution API once per process, as Airflow
    3.3 does (its ``in_process_api_server`` is cached). 3.1 and 3.2 build it again for
    every task run, some 1.5 s each (most of a small DAG's run)."""
    from airflow.sdk.execution_time import supervisor

    if not hasattr(supervisor.in_process_api_server, "cache_info"):
        cached = functools.lru_cache(maxsize=1)(supervisor.in_process_api_server)
        supervisor.in_process_api_server = cached  # type: ignore[assignment,unused-ignore]


def _serialize_if_new(bag: Any, dag_id: str) -> None:
    """Put a DAG seen for the first time into the database, in the DAG folder's bundle.

    ``dag.test()`` needs the DAG serialized; from Airflow 3.1.8 on it does this
    itself; 3.1.0 fails with "the dag is not serialized".
    """
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.models.dag_version import DagVersion
    from airflow.utils.session import create_session

    if DagVersion.get_version(dag_id) is not None:
        return
    with create_session() as session:
        DagBundlesManager().sync_bundles_to_db(session=session)
    sync_dag_bag_to_db(bag, "dags-folder")


def dag_bag_class() -> type[DagBag]:
    """Airflow's ``DagBag`` (imported on demand: it loads the ORM models), where the
    running Airflow keeps it (it moved to ``airflow.dag_processing.dagbag`` in 3.2)."""
    from airflow_provider_flux.version_compat import AIRFLOW_V_3_2_PLUS

    if AIRFLOW_V_3_2_PLUS:
        from airflow.dag_processing.dagbag import DagBag
    else:
        from airflow.models.dagbag import DagBag  # type: ignore[no-redef,attr-defined,unused-ignore]
    return DagBag


def sync_dag_bag_to_db(bag: DagBag, bundle_name: str) -> None:
    """Serialize the bag's DAGs into the metadata database, as the DAG processor does."""
    from airflow_provider_flux.version_compat import AIRFLOW_V_3_2_PLUS

    if AIRFLOW_V_3_2_PLUS:
        from airflow.dag_processing.dagbag import sync_bag_to_db
    else:
        from airflow.models.dagbag import (  # type: ignore[no-redef,attr-defined,unused-ignore]
            sync_bag_to_db,
        )
    sync_bag_to_db(bag, bundle_name, None)
