"""The provider's settings, read from Airflow's configuration."""

from __future__ import annotations

import os
from dataclasses import dataclass

from airflow_provider_flux.job.limits import (
    MAX_JOBS,
    MAX_JOBSPEC_BYTES,
    MAX_MATCH_CONTEXT_BYTES,
    MAX_NAME_LENGTH,
)
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


# The provider's section of Airflow's configuration (``AIRFLOW__FLUX__...``).
SECTION = "flux"


@dataclass(frozen=True)
class Limits:
    """How much one task may ask for (see :mod:`airflow_provider_flux.job.limits`).

    :param max_jobs: jobs one task may wait on or submit (``max_jobs_per_task``).
    :param max_jobspec_bytes: bytes of one jobspec as JSON (``max_jobspec_bytes``).
    :param max_name_length: characters of an event name or an eventlog path
        (``max_name_length``).
    :param max_match_context_bytes: bytes of a match context as JSON
        (``max_match_context_bytes``).
    """

    max_jobs: int = MAX_JOBS
    max_jobspec_bytes: int = MAX_JOBSPEC_BYTES
    max_name_length: int = MAX_NAME_LENGTH
    max_match_context_bytes: int = MAX_MATCH_CONTEXT_BYTES


def limits() -> Limits:
    """The limits as configured in the ``[flux]`` section, else the defaults."""
    defaults = Limits()
    return Limits(
        conf.getint(SECTION, "max_jobs_per_task", fallback=defaults.max_jobs),
        conf.getint(SECTION, "max_jobspec_bytes", fallback=defaults.max_jobspec_bytes),
        conf.getint(SECTION, "max_name_length", fallback=defaults.max_name_length),
        conf.getint(SECTION, "max_match_context_bytes", fallback=defaults.max_match_context_bytes),
    )
