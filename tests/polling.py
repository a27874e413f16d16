"""Waiting for what another process or a trigger reaches on its own time."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from airflow_provider_flux.testing import SimulatedFlux
from airflow_provider_flux.triggers.base import FluxWaitTrigger
from airflow_provider_flux.version_compat import TriggerEvent


async def eventually(check: Callable[[], bool], timeout: float = 30.0) -> None:
    """Poll ``check`` (run in a thread: it may block) until it is true."""
    for _ in range(int(timeout / 0.02)):
        if await asyncio.to_thread(check):
            return
        await asyncio.sleep(0.02)
    raise TimeoutError(f"{check} did not become true in {timeout}s")


async def broker_watchers(sim: SimulatedFlux, count: int) -> None:
    """Wait until the simulated broker serves exactly ``count`` main-eventlog watchers."""
    await eventually(lambda: sim.stats()["watchers"] == count)


async def first_event(trigger: FluxWaitTrigger) -> dict[str, Any]:
    """Run ``trigger`` until its first event; that event's payload."""
    events = trigger.run()
    event = await anext(events)
    await events.aclose()
    assert isinstance(event, TriggerEvent)
    return dict(event.payload)
