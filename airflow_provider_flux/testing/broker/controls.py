"""The simulator's own ``sim.*`` topics, which script it from tests: submit a
scenario and hold it before an event, release it, post an event now, drop every
connection."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_provider_flux.testing.broker.jobs import MAIN_EVENTLOG
from airflow_provider_flux.testing.protocol import Message

if TYPE_CHECKING:
    from airflow_provider_flux.testing.broker.server import Client, Handler, SimulatedBroker


class TestControls:
    """``sim.*``: what tests do to the instance that no Flux client can."""

    def __init__(self, broker: SimulatedBroker) -> None:
        self.broker = broker

    def handlers(self) -> dict[str, Handler]:
        return {
            "sim.submit": self.broker.job_manager.submit,
            "sim.release": self._release,
            "sim.post": self._post,
            "sim.drop": self._drop,
        }

    def _release(self, client: Client, message: Message) -> dict[str, Any]:
        self.broker.job_manager.release(self.broker.job(message.get("payload") or {}))
        return {}

    def _post(self, client: Client, message: Message) -> dict[str, Any]:
        payload = message.get("payload") or {}
        job = self.broker.job(payload)
        path = payload.get("path", MAIN_EVENTLOG)
        self.broker.append(job, path, payload["name"], payload.get("context", {}))
        return {}

    def _drop(self, client: Client, message: Message) -> None:
        """Drop every connection, as a broker that goes away does."""
        for other in list(self.broker.clients.values()):
            self.broker.disconnect(other)
        return None
