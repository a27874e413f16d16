"""A real Airflow deployment for end-to-end tests: PostgreSQL, then Airflow's
scheduler, dag-processor, triggerer and api-server as separate processes, driven
through Airflow's REST API.

``dag.test()`` runs a DAG in one process, with triggers inline; this runs what it
skips: the trigger table, a triggerer process that can be killed and restarted, the
cancel and on_kill paths of a mark or a clear, and task logs as the UI shows them.

>>> with PostgresServer() as db, AirflowDeployment(dags, db.url) as af:  # doctest: +SKIP
...     run_id = af.trigger("my_dag")
...     af.wait_for_run("my_dag", run_id)

PostgreSQL comes from the machine (Debian's ``postgresql`` package: ``initdb`` and
``pg_ctl`` on PATH or under ``/usr/lib/postgresql/*/bin``); the driver is
``psycopg2``. When run as root, the server runs as the ``postgres`` user (which
Debian's package creates), since PostgreSQL refuses to run as root.

For tests on a machine of your own: the database listens on 127.0.0.1 (with a
random password, but any local user can reach the port), and every user of the
api-server is an admin (Airflow's simple auth manager, ``all_admins``). Do not run
it on a shared login node.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any, TypeVar

import httpx

from airflow_provider_flux.testing.service import Service

T = TypeVar("T")

# Airflow's processes, in the order they start.
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
KEEP_VARIABLE = "AIRFLOW_PROVIDER_FLUX_KEEP_DEPLOYMENT"
TERMINAL_RUN_STATES = frozenset({"success", "failed"})
FAILED_STATES = frozenset({"failed", "upstream_failed"})
# What each start of a task in a worker writes to the task log (the triggerer, none).
WORKER_START = "::group::Pre Execute"


def find_postgres_bin() -> Path | None:
    """The directory of ``initdb`` and ``pg_ctl``, or None when PostgreSQL is not installed."""
    initdb = shutil.which("initdb")
    if initdb is not None:
        return Path(initdb).resolve().parent
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def worker_starts(task_log: str) -> int:
    """How many times a try started in a worker, from its log (as `task_log` reads it)."""
    return task_log.count(WORKER_START)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(
    check: Callable[[], T | None], timeout: float, what: str, interval: float = 0.2
) -> T:
    """Call ``check`` until it returns something other than None; that value.

    :raises TimeoutError: naming ``what`` when ``timeout`` seconds pass first.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:.0f} s")
        time.sleep(interval)


class PostgresServer(Service):
    """A throw-away PostgreSQL server on a free local port, its one user ``airflow``
    with a random password (``url`` holds it): other local users cannot log in.

    :param workdir: where its data directory goes (default: a new temporary directory).
    """

    def __init__(self, workdir: str | None = None) -> None:
        bindir = find_postgres_bin()
        if bindir is None:
            raise FileNotFoundError(
                "PostgreSQL is not installed (initdb not found): apt-get install postgresql"
            )
        self.bindir = bindir
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="airflow-pg-"))
        self.datadir = self.workdir / "pgdata"
        self.port = free_port()
        self.password = secrets.token_urlsafe(24)
        self.url = f"postgresql+psycopg2://airflow:{self.password}@127.0.0.1:{self.port}/airflow"
        # PostgreSQL refuses to run as root: then its commands run as ``postgres``.
        self._as_user: dict[str, Any] = {}
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            self._as_user = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}

    def _run(self, *command: str, env: Mapping[str, str] | None = None) -> None:
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=120,
            env={**os.environ, **(env or {})}, **self._as_user,
        )  # fmt: skip
        if result.returncode != 0:
            raise RuntimeError(f"{command[0]} failed: {result.stderr.strip() or result.stdout}")

    def start(self) -> PostgresServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self._as_user:
            os.chmod(self.workdir, 0o755)
            self.datadir.mkdir()
            os.chown(self.datadir, self._as_user["user"], self._as_user["group"])
        pwfile = self.workdir / "password"
        pwfile.write_text(self.password)
        pwfile.chmod(0o600)
        if self._as_user:
            os.chown(pwfile, self._as_user["user"], self._as_user["group"])
        try:
            self._run(
                str(self.bindir / "initdb"), "-D", str(self.datadir), "-U", "airflow",
                "--auth=scram-sha-256", f"--pwfile={pwfile}", "--encoding=UTF8", "--no-sync",
            )  # fmt: skip
        finally:
            pwfile.unlink()
        options = f"-p {self.port} -k {self.datadir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-l",
            str(self.datadir / "server.log"), "-o", options, "-w", "start",
        )  # fmt: skip
        self._run(
            str(self.bindir / "createdb"), "-h", "127.0.0.1", "-p", str(self.port),
            "-U", "airflow", "airflow", env={"PGPASSWORD": self.password},
        )  # fmt: skip
        return self

    def stop(self) -> None:
        if self.datadir.exists():
            subprocess.run(
                [str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-m", "immediate",
                 "-w", "stop"],
                capture_output=True, timeout=60, **self._as_user,
            )  # fmt: skip
        shutil.rmtree(self.workdir, ignore_errors=True)


class AirflowDeployment(Service):
    """Airflow's scheduler, dag-processor, triggerer and api-server as processes.

    LocalExecutor, the simple auth manager with every user an admin, DAGs unpaused at
    creation. Each process writes to ``<home>/<component>.log``; task logs are under
    ``<home>/logs``. Connections are given as ``connections`` (conn id to the JSON
    form Airflow reads from ``AIRFLOW_CONN_*`` variables).

    :param dags_folder: the DAG files.
    :param database_url: the metadata database (e.g. :attr:`PostgresServer.url`).
    :param home: ``AIRFLOW_HOME`` (default: a new temporary directory).
    :param parallelism: the executor's worker slots.
    :param connections: Airflow connections, by conn id.
    :param env: more environment for every process.
    """

    def __init__(
        self,
        dags_folder: str | os.PathLike[str],
        database_url: str,
        *,
        home: str | None = None,
        parallelism: int = 8,
        connections: Mapping[str, Mapping[str, Any]] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.home = Path(home or tempfile.mkdtemp(prefix="airflow-deployment-"))
        self.api_port = free_port()
        self.base_url = f"http://127.0.0.1:{self.api_port}"
        # The deployment is configured here alone, not by the caller's Airflow settings
        # (nor by asyncio debug mode, which would slow the triggerer down).
        inherited = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith("AIRFLOW") and name != "PYTHONASYNCIODEBUG"
        }
        self.env = {
            **inherited,
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": database_url,
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": str(parallelism),
            "AIRFLOW__CORE__DAGS_FOLDER": str(Path(dags_folder).resolve()),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.base_url}/execution/",
            "AIRFLOW__API__PORT": str(self.api_port),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__BASE_URL": self.base_url,
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(16),
            # Airflow 3.1 signs tokens with no issuer unless one is set, which PyJWT
            # 2.10 and later refuse ("Issuer (iss) must be a string").
            "AIRFLOW__API_AUTH__JWT_ISSUER": "airflow-provider-flux-tests",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "2",
            # A killed triggerer's triggers go to the next one within seconds.
            "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "1",
            "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "10",
            # A worker's supervisor notices its task process ended within a second, not
            # five: until it does, a trigger that fires at once races its exit, and
            # Airflow 3.3.2 may then retry (or fail) a task that already ended.
            "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "1",
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(self.home / "logs"),
            # Log servers of their own, so that deployments side by side do not clash.
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__SCHEDULER__STANDALONE_DAG_PROCESSOR": "True",
            **{
                f"AIRFLOW_CONN_{conn_id.upper()}": json.dumps(dict(conn))
                for conn_id, conn in (connections or {}).items()
            },
            **(env or {}),
        }
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self._client: httpx.Client | None = None

    # -- processes -----------------------------------------------------------------

    def airflow(self, *args: str, timeout: float = 300) -> str:
        """Run an ``airflow`` CLI command in this deployment; its output."""
        result = subprocess.run(
            [sys.executable, "-m", "airflow", *args], env=self.env,
            capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip
        if result.returncode != 0:
            raise RuntimeError(f"airflow {' '.join(args)} failed:\n{result.stderr[-4000:]}")
        return result.stdout

    def start(self, timeout: float = 180) -> AirflowDeployment:
        """Migrate the database, start every component, wait until the API answers."""
        self.home.mkdir(parents=True, exist_ok=True)
        self.airflow("db", "migrate")
        try:
            for component in COMPONENTS:
                self.start_component(component)
            wait_until(self._token, timeout, "the api-server to answer")
        except BaseException:
            self.stop()
            raise
        return self

    def start_component(
        self, component: str, env: Mapping[str, str] | None = None, name: str | None = None
    ) -> None:
        """Start one component (after :meth:`kill`, to restart it), with ``env`` added
        to its environment. ``name`` starts another of it, known by that name to
        :meth:`kill` and :meth:`component_log` (a second triggerer: it gets a log
        server port of its own)."""
        name = name or component
        if name != component and component == "triggerer":
            env = {"AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()), **(env or {})}
        log = open(self.home / f"{name}.log", "ab")  # noqa: SIM115  # the child owns it
        with log:
            self.processes[name] = subprocess.Popen(
                [sys.executable, "-m", "airflow", *component.split()],
                env={**self.env, **(env or {})}, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip

    def kill(self, component: str, sig: int = signal.SIGKILL) -> None:
        """Stop one component and its children with ``sig`` (SIGKILL: as a crash)."""
        process = self.processes.pop(component)
        _signal_group(process, sig)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            _signal_group(process, signal.SIGKILL)
            process.wait()
        if sig != signal.SIGKILL:
            _signal_group(process, signal.SIGKILL)  # leftover children

    def component_log(self, component: str) -> str:
        return (self.home / f"{component}.log").read_text(errors="replace")

    def stop(self) -> None:
        """Stop every component (SIGTERM, then SIGKILL), and remove the home (unless
        ``AIRFLOW_PROVIDER_FLUX_KEEP_DEPLOYMENT`` is set, to read its logs)."""
        if self._client is not None:
            self._client.close()
            self._client = None
        for component in reversed(list(self.processes)):
            self.kill(component, signal.SIGTERM)
        if os.environ.get(KEEP_VARIABLE):
            print(f"{KEEP_VARIABLE} is set: the deployment's logs stay in {self.home}")
            return
        shutil.rmtree(self.home, ignore_errors=True)

    # -- REST API ------------------------------------------------------------------

    def _token(self) -> str | None:
        for component, process in self.processes.items():
            if process.poll() is not None:
                tail = self.component_log(component)[-3000:]
                raise RuntimeError(f"airflow {component} exited:\n{tail}")
        try:
            response = httpx.get(f"{self.base_url}/auth/token", timeout=5)
        except httpx.HTTPError:
            return None
        if response.status_code >= 300:
            return None
        token = str(response.json()["access_token"])
        self._client = httpx.Client(
            base_url=f"{self.base_url}/api/v2",
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        return token

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        """Call the REST API (``/api/v2`` + ``path``); the decoded JSON answer."""
        if self._client is None:
            raise RuntimeError("the deployment is not started")
        try:
            response = self._client.request(method, path, **kwargs)
        except (httpx.ReadError, httpx.RemoteProtocolError):
            if method != "GET":
                raise
            # The api-server resets a connection after an error it answered 500 (seen
            # on the next request): a GET is asked again, once, on a new connection.
            response = self._client.request(method, path, **kwargs)
        if response.status_code >= 500:  # the cause is in the api-server's log, soon removed
            tail = self.component_log("api-server")[-5000:]
            raise RuntimeError(
                f"{method} {path}: {response.status_code} {response.text}\n"
                f"The api-server's log ends:\n{tail}"
            )
        if response.status_code >= 300:
            raise RuntimeError(f"{method} {path}: {response.status_code} {response.text}")
        return response.json() if response.content else None

    def wait_for_dag(self, dag_id: str, timeout: float = 120) -> None:
        """Wait until the dag-processor has parsed ``dag_id``."""

        def parsed() -> bool | None:
            try:
                self.api("GET", f"/dags/{dag_id}")
            except RuntimeError as err:
                if " 404 " in str(err):
                    return None
                raise
            return True

        wait_until(parsed, timeout, f"DAG {dag_id} to be parsed", interval=0.5)

    def trigger(self, dag_id: str, conf: Mapping[str, Any] | None = None) -> str:
        """Start a run of ``dag_id`` now (parsing it first if need be); its run ID."""
        self.wait_for_dag(dag_id)
        run = self.api(
            "POST", f"/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": dict(conf or {})}
        )
        return str(run["dag_run_id"])

    def run_state(self, dag_id: str, run_id: str) -> str:
        return str(self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}")["state"])

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 300) -> str:
        """Wait until the run ends; its state (``success`` or ``failed``)."""

        def ended() -> str | None:
            state = self.run_state(dag_id, run_id)
            return state if state in TERMINAL_RUN_STATES else None

        return wait_until(ended, timeout, f"run {run_id} of {dag_id} to end", interval=0.5)

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        """Every task instance of the run (each map index of a mapped task)."""
        found: list[dict[str, Any]] = []
        while True:  # the API gives at most 100 a page
            answer = self.api(
                "GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances",
                params={"limit": 100, "offset": len(found)},
            )  # fmt: skip
            found += answer["task_instances"]
            if not answer["task_instances"] or len(found) >= answer["total_entries"]:
                return found

    def task_states(self, dag_id: str, run_id: str) -> dict[tuple[str, int], str | None]:
        """``(task_id, map_index)`` to state."""
        return {
            (ti["task_id"], ti["map_index"]): ti["state"]
            for ti in self.task_instances(dag_id, run_id)
        }

    def wait_for_deferred(
        self, dag_id: str, run_id: str, tasks: Collection[tuple[str, int]],
        timeout: float = 180, interval: float = 0.5,
    ) -> None:  # fmt: skip
        """Wait until every task instance in ``tasks`` (task ID, map index) is deferred.

        :raises RuntimeError: one of the run's tasks failed meanwhile.
        """

        def all_deferred() -> bool | None:
            states = self.task_states(dag_id, run_id)
            failed = {key: state for key, state in states.items() if state in FAILED_STATES}
            if failed:
                raise RuntimeError(f"{dag_id}: tasks failed before deferring: {failed}")
            return True if all(states.get(key) == "deferred" for key in tasks) else None

        wait_until(all_deferred, timeout, f"{len(tasks)} tasks of {dag_id} to defer", interval)

    def xcom(
        self, dag_id: str, run_id: str, task_id: str, key: str = "return_value", map_index: int = -1
    ) -> Any:
        path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}"
        return self.api("GET", path, params={"map_index": map_index, "deserialize": True})["value"]

    def task_log(
        self, dag_id: str, run_id: str, task_id: str, try_number: int = 1, map_index: int = -1
    ) -> str:
        """A try's log as the UI shows it (the worker's and the triggerer's parts)."""
        path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}"
        answer = self.api(
            "GET", path, params={"map_index": map_index, "full_content": True},
            headers={"Accept": "application/json"},
        )  # fmt: skip
        lines = []
        for entry in answer["content"]:
            if isinstance(entry, dict):
                lines.append(str(entry.get("event", "")))
                # An exception the task failed with, as the UI shows it under the line.
                for error in entry.get("error_detail") or []:
                    lines.append(f"{error.get('exc_type')}: {error.get('exc_value')}")
            else:
                lines.append(str(entry))
        return "\n".join(lines)

    def set_task_state(
        self, dag_id: str, run_id: str, task_id: str, state: str, map_index: int = -1
    ) -> None:
        """Mark a task instance, as a user does in the UI (``failed``, ``success``)."""
        path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}"
        if map_index >= 0:
            path += f"/{map_index}"
        self.api("PATCH", path, json={"new_state": state})

    def dag_runs(self, dag_id: str) -> list[dict[str, Any]]:
        """Every run of ``dag_id``, oldest first."""
        found: list[dict[str, Any]] = []
        while True:  # the API gives at most 100 a page
            answer = self.api(
                "GET", f"/dags/{dag_id}/dagRuns",
                params={"limit": 100, "offset": len(found), "order_by": "id"},
            )  # fmt: skip
            found += answer["dag_runs"]
            if not answer["dag_runs"] or len(found) >= answer["total_entries"]:
                return found

    def clear_task(self, dag_id: str, run_id: str, task_id: str) -> None:
        """Clear a task instance, as a user does in the UI: it runs again."""
        self.api(
            "POST", f"/dags/{dag_id}/clearTaskInstances",
            json={"dry_run": False, "task_ids": [task_id], "dag_run_id": run_id,
                  "only_failed": False, "reset_dag_runs": True},
        )  # fmt: skip


def _signal_group(process: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)
