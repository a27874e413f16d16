"""Stand-in for the ``flux`` Python package, talking to a simulated instance.

``Flux("sim:///path/to/socket")``, ``flux.job`` and ``flux.constants`` behave as
flux-core's do for what the provider uses, so the provider runs the same code
against both. Start an instance with :class:`airflow_provider_flux.testing.SimulatedFlux`.
"""

from airflow_provider_flux.testing.bindings import constants, job
from airflow_provider_flux.testing.bindings.handle import Flux, Future

__all__ = ["Flux", "Future", "constants", "job"]
