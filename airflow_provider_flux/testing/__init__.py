"""A simulated Flux instance, for tests and for running DAGs with no Flux cluster.

>>> from airflow_provider_flux.testing import SimulatedFlux
>>> with SimulatedFlux() as flux_instance:               # doctest: +SKIP
...     jobid = flux_instance.submit("cancel-running")
...     # point a `flux` connection (or FLUX_URI) at flux_instance.uri

Jobs replay lifecycles recorded from flux-core 0.88.0 (see :func:`scenario_names`);
tests can also hold a job, post events, and drop connections. The provider reaches
it through :mod:`airflow_provider_flux.testing.bindings`, a stand-in for the parts
of the ``flux`` package it uses, selected by the ``sim://`` URI scheme.
"""

from airflow_provider_flux.testing.flux_processes import LocalFluxInstance, SimulatedFlux
from airflow_provider_flux.testing.scenarios import load_scenario, scenario_names

__all__ = ["LocalFluxInstance", "SimulatedFlux", "load_scenario", "scenario_names"]
