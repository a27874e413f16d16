"""The provider's settings, read from Airflow's configuration."""

from __future__ import annotations

import os

from airflow_provider_flux.version_compat import conf


def default_deferrable() -> bool:
    """Deferrable unless ``[operators] default_deferrable`` is set to something else.

    Airflow's own default for that option is False; this provider's sensors and
    operator exist to free worker slots, so they defer unless the deployment
    configured the option.
    """
    configured = conf.get("operators", "default_deferrable", fallback=None)
    if "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE" in os.environ or (
        configured is not None
        and configured != conf.get_default_value("operators", "default_deferrable")
    ):
        return conf.getboolean("operators", "default_deferrable")
    return True
