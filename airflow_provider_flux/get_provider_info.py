"""Provider metadata read by Airflow through the ``apache_airflow_provider`` entry point."""

from __future__ import annotations

from typing import Any

from airflow_provider_flux import __version__
from airflow_provider_flux.executors.settings import DEFAULT_ENVIRONMENT
from airflow_provider_flux.flux_uri import CONNECTION_FORM
from airflow_provider_flux.job.limits import (
    MAX_JOBS,
    MAX_JOBSPEC_BYTES,
    MAX_MATCH_CONTEXT_BYTES,
    MAX_NAME_LENGTH,
)


def get_provider_info() -> dict[str, Any]:
    """Describe the provider: its hooks, sensors, triggers, operators and connection type."""
    integration = "Flux"
    return {
        "package-name": "airflow-provider-flux",
        "name": "Flux",
        "description": "Gate Airflow tasks on events of jobs run by the Flux resource manager.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": integration,
                "external-doc-url": "https://flux-framework.readthedocs.io/",
                "tags": ["hpc"],
            }
        ],
        "hooks": [
            {
                "integration-name": integration,
                "python-modules": ["airflow_provider_flux.hooks.flux"],
            }
        ],
        "sensors": [
            {
                "integration-name": integration,
                "python-modules": ["airflow_provider_flux.sensors.flux"],
            }
        ],
        "triggers": [
            {
                "integration-name": integration,
                "python-modules": [
                    "airflow_provider_flux.triggers.flux",
                    "airflow_provider_flux.triggers.instance",
                ],
            }
        ],
        "operators": [
            {
                "integration-name": integration,
                "python-modules": ["airflow_provider_flux.operators.flux"],
            }
        ],
        "executors": ["airflow_provider_flux.executors.flux.FluxExecutor"],
        "cli": ["airflow_provider_flux.get_provider_info.get_cli_commands"],
        "task-decorators": [
            {"name": "flux", "class-name": "airflow_provider_flux.decorators.flux.flux_task"}
        ],
        "config": {
            "flux_executor": {
                "description": "FluxExecutor: which Flux instance runs task instances as "
                "jobs, and what the jobs get. See docs/guides/executor.md.",
                "options": {
                    "flux_conn_id": _option(
                        "The Flux connection whose instance runs the jobs.",
                        "string",
                        "flux_default",
                    ),
                    "python": _option(
                        "The Python on the compute nodes, with apache-airflow at the "
                        "scheduler's version (default: the scheduler's own).",
                        "string",
                        None,
                    ),
                    "environment": _option(
                        "Comma-separated names (* patterns allowed) of the scheduler's "
                        "environment variables that jobs get. Database, secret, token and "
                        "connection variables are never passed.",
                        "string",
                        ",".join(DEFAULT_ENVIRONMENT),
                    ),
                    "parallelism": _option(
                        "Jobs outstanding at once (0: [core] parallelism).", "integer", "0"
                    ),
                    "poll_interval": _option(
                        "Seconds between job-list polls when the journal cannot be read "
                        "(not the instance owner).",
                        "float",
                        "2.0",
                    ),
                    "pending_check_interval": _option(
                        "Seconds between looks at why pending jobs wait (the scheduler logs it).",
                        "float",
                        "10.0",
                    ),
                },
            },
            "flux": {
                "description": "Limits on what one task may ask of Flux and of the "
                "triggerer (a DAG run's conf is user input), and what tells this "
                "deployment's jobs from another's. See docs/security.md.",
                "options": {
                    "max_jobs_per_task": {
                        "description": "Jobs one task may wait on (a job list) or submit "
                        "(a job array). More are refused before the list is read.",
                        "version_added": None,
                        "type": "integer",
                        "example": None,
                        "default": str(MAX_JOBS),
                    },
                    "max_jobspec_bytes": {
                        "description": "Bytes of one jobspec as JSON.",
                        "version_added": None,
                        "type": "integer",
                        "example": None,
                        "default": str(MAX_JOBSPEC_BYTES),
                    },
                    "max_name_length": {
                        "description": "Characters of an event name or an eventlog path.",
                        "version_added": None,
                        "type": "integer",
                        "example": None,
                        "default": str(MAX_NAME_LENGTH),
                    },
                    "max_match_context_bytes": {
                        "description": "Bytes of a sensor's match_context as JSON.",
                        "version_added": None,
                        "type": "integer",
                        "example": None,
                        "default": str(MAX_MATCH_CONTEXT_BYTES),
                    },
                    "deployment_id": {
                        "description": "What this deployment's jobs carry, so that a retry "
                        "never adopts another deployment's job on a shared account and "
                        "instance. Default: a digest of [core] execution_api_server_url.",
                        "version_added": None,
                        "type": "string",
                        "example": "prod",
                        "default": "",
                    },
                },
            },
        },
        "connection-types": [
            {
                "connection-type": "flux",
                "hook-class-name": "airflow_provider_flux.hooks.flux.FluxHook",
                "hook-name": "Flux",
                "ui-field-behaviour": CONNECTION_FORM,
            }
        ],
    }


def get_cli_commands() -> list[Any]:
    """The ``airflow`` CLI commands the provider adds: none. Airflow 3.3 asks each
    provider with an executor for them (its ``cli`` section), and without the
    section warns on stdout, which breaks ``airflow ... --output json``."""
    return []


def _option(description: str, kind: str, default: str | None) -> dict[str, Any]:
    return {
        "description": description, "version_added": "0.5.0", "type": kind,
        "example": None, "default": default,
    }  # fmt: skip
