"""The ``[flux_executor]`` section of Airflow's configuration, and the environment a
task's job gets from it.

A job's environment is part of its signed jobspec: whoever can read the job can
read it. So a job gets an allow-list of the scheduler's variables, never its whole
environment (which holds the metadata database's URL and the JWT secret), and the
secret kinds of variable are left out even when allow-listed.
"""

from __future__ import annotations

import fnmatch
import sys
from collections.abc import Mapping
from dataclasses import dataclass

SECTION = "flux_executor"

# What the task runner on the node reads from its environment, besides the execution
# API's URL: where the DAGs and their bundles are, how to log, the Python to import.
DEFAULT_ENVIRONMENT = (
    "PATH", "PYTHONPATH", "VIRTUAL_ENV", "HOME", "LANG", "LC_*", "TZ", "AIRFLOW_HOME",
    "AIRFLOW__CORE__DAGS_FOLDER", "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST",
    "AIRFLOW__LOGGING__*", "AIRFLOW__CORE__DEFAULT_TIMEZONE",
)  # fmt: skip
# Never passed, whatever the allow-list says: the database, signing keys, secrets,
# commands that print secrets (Airflow's ``_CMD`` and ``_SECRET`` options), and
# connections and variables (the task reads those through the execution API).
NEVER_PASSED = (
    "AIRFLOW__DATABASE__*", "*SQL_ALCHEMY*", "*JWT*", "*SECRET*", "*FERNET*", "*PASSWORD*",
    "*TOKEN*", "*_CMD", "AIRFLOW_CONN_*", "AIRFLOW_VAR_*",
)  # fmt: skip
EXECUTION_API_VARIABLE = "AIRFLOW__CORE__EXECUTION_API_SERVER_URL"
# The worker checks that each task's executor is configured when it parses the DAG.
EXECUTORS_VARIABLE = "AIRFLOW__CORE__EXECUTOR"


@dataclass(frozen=True)
class ExecutorSettings:
    """How the executor runs tasks as Flux jobs.

    :param flux_conn_id: the Flux connection whose instance runs the tasks.
    :param python: the Python on the compute nodes, with apache-airflow at the
        scheduler's version installed.
    :param environment: the scheduler's variables that jobs get (names; ``*``
        patterns allowed).
    :param parallelism: jobs outstanding at once (0: ``[core] parallelism``).
    :param poll_interval: seconds between job-list polls, when the journal is not
        readable (not the instance owner).
    :param pending_check_interval: seconds between looks at why pending jobs wait.
    """

    flux_conn_id: str = "flux_default"
    python: str = sys.executable
    environment: tuple[str, ...] = DEFAULT_ENVIRONMENT
    parallelism: int = 0
    poll_interval: float = 2.0
    pending_check_interval: float = 10.0

    @classmethod
    def from_conf(cls) -> ExecutorSettings:
        """The settings as configured, else the defaults."""
        # Imported here: the provider info reads this module's defaults, and Airflow
        # reads the provider info while it sets up its configuration.
        from airflow_provider_flux.version_compat import conf

        default = cls()
        names = conf.get(SECTION, "environment", fallback="")
        return cls(
            flux_conn_id=conf.get(SECTION, "flux_conn_id", fallback=default.flux_conn_id),
            python=conf.get(SECTION, "python", fallback="") or default.python,
            environment=tuple(n.strip() for n in names.split(",") if n.strip())
            or default.environment,
            parallelism=conf.getint(SECTION, "parallelism", fallback=0),
            poll_interval=conf.getfloat(SECTION, "poll_interval", fallback=default.poll_interval),
            pending_check_interval=conf.getfloat(
                SECTION, "pending_check_interval", fallback=default.pending_check_interval
            ),
        )

    def job_environment(
        self, environ: Mapping[str, str], execution_api_url: str, executors: str
    ) -> dict[str, str]:
        """A job's environment: the allow-listed variables of ``environ`` that are not
        secret kinds, the execution API's URL and the configured executors."""
        passed = {
            name: value
            for name, value in environ.items()
            if _matches(name, self.environment) and not _matches(name, NEVER_PASSED)
        }
        passed[EXECUTION_API_VARIABLE] = execution_api_url
        passed[EXECUTORS_VARIABLE] = executors
        return passed


def _matches(name: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)
