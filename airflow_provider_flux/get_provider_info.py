"""Provider metadata read by Airflow through the ``apache_airflow_provider`` entry point."""

from __future__ import annotations

from typing import Any

from airflow_provider_flux import __version__


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
        "connection-types": [
            {
                "connection-type": "flux",
                "hook-class-name": "airflow_provider_flux.hooks.flux.FluxHook",
                "hook-name": "Flux",
                "ui-field-behaviour": {
                    "hidden-fields": ["port", "login", "password", "schema", "extra"],
                    "relabeling": {"host": "Flux URI"},
                    "placeholders": {
                        "host": "local:///run/flux/local, ssh://host/path, or empty for "
                        "$FLUX_URI / the system instance",
                    },
                },
            }
        ],
    }
