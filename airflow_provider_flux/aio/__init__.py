"""The asyncio engine: Flux eventlog watches on one shared handle per loop and instance.

>>> async for event in watch(jobid, uri="local:///run/flux/local"):   # doctest: +SKIP
...     print(event.name)
"""

from airflow_provider_flux.aio.connection import FluxConnection, connection_stats
from airflow_provider_flux.aio.errors import (
    FluxConnectionError,
    FluxConnectionLost,
    FluxEventlogNotFound,
    FluxPermissionError,
    FluxWatchError,
)
from airflow_provider_flux.aio.watch import cancel_job, watch

__all__ = [
    "FluxConnection",
    "FluxConnectionError",
    "FluxConnectionLost",
    "FluxEventlogNotFound",
    "FluxPermissionError",
    "FluxWatchError",
    "cancel_job",
    "connection_stats",
    "watch",
]
