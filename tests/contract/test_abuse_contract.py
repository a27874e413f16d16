"""Where Flux matters for hostile input, on the simulator and on real Flux: another
user's jobs do not fire a watcher by default and are not adopted by a retry, and a
big output is read only up to its limit. A second user is played as flux-core's own
tests play one (``FLUX_HANDLE_USERID``, see ``tests/contract/test_instance_events_contract.py``):
the instance owner submits, the provider acts as the guest."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from airflow_provider_flux.aio.output_reader import read_outputs
from airflow_provider_flux.flux_bindings import load_bindings
from airflow_provider_flux.hooks.flux import FluxHook
from airflow_provider_flux.instance_events.filter import ANY_USER
from airflow_provider_flux.jobspec import jobspec_from_command, set_attribute
from airflow_provider_flux.operators.durable import (
    IDENTITY_ATTRIBUTE,
    TaskIdentity,
    jobs_of_latest_earlier_try,
)
from airflow_provider_flux.testing.dag_test import use_flux_connection
from airflow_provider_flux.triggers.instance import FluxInstanceEventTrigger
from airflow_provider_flux.version_compat import TriggerEvent
from tests.contract.test_instance_events_contract import GUEST, Submitter
from tests.flux_instances import FluxTestInstance

CONN_ID = "flux_abuse"


@pytest.fixture
def submitter(flux_instance: FluxTestInstance) -> Submitter:
    """Submits as the instance owner, on a handle opened before the test turns guest."""
    use_flux_connection(flux_instance.uri, CONN_ID)
    return Submitter(flux_instance)


def as_guest(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in GUEST.items():
        monkeypatch.setenv(name, value)


async def fired(trigger: FluxInstanceEventTrigger, submitter: Submitter, name: str) -> set[int]:
    """The owner's jobs named ``name`` the watcher fires for: it runs while jobs are
    submitted, one a second for 8 s (its history is read by then), and a while after."""
    events: AsyncIterator[TriggerEvent] = trigger.run()
    seen: set[int] = set()

    async def collect() -> None:
        async for event in events:
            seen.add(int(event.payload["jobid"]))

    collecting = asyncio.create_task(collect())
    try:
        submitted = []
        for _ in range(8):
            submitted.append(await submitter.submit(name))
            await asyncio.sleep(1.0)
        await asyncio.sleep(3.0)
    finally:
        collecting.cancel()
        await asyncio.gather(collecting, return_exceptions=True)
        await events.aclose()  # type: ignore[attr-defined]  # an async generator
    return seen & set(submitted)


async def test_a_guests_watcher_fires_for_another_users_jobs_only_when_told(
    flux_instance: FluxTestInstance, submitter: Submitter, monkeypatch: pytest.MonkeyPatch
) -> None:
    as_guest(monkeypatch)
    name = f"sim-{uuid.uuid4().hex[:8]}"
    default = FluxInstanceEventTrigger(flux_conn_id=CONN_ID, job_name=name, poll_interval=0.2)
    assert await fired(default, submitter, name) == set()
    everyone = FluxInstanceEventTrigger(
        flux_conn_id=CONN_ID, job_name=name, poll_interval=0.2, userid=ANY_USER
    )
    assert await fired(everyone, submitter, name), "the owner's jobs fire a watcher of anyone's"


async def test_a_retry_acting_as_another_user_does_not_adopt_the_owners_job(
    flux_instance: FluxTestInstance, submitter: Submitter, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = f"manual__{uuid.uuid4().hex}"
    planted = TaskIdentity("dag", "run", run_id, -1, 1, "prod")
    jobspec = jobspec_from_command(["true"], name=planted.job_name())
    set_attribute(jobspec, IDENTITY_ATTRIBUTE, planted.attribute(None))
    if flux_instance.kind == "simulated":
        set_attribute(jobspec, "system.simulator.scenario", "success")
    bindings = submitter.bindings
    jobid = await asyncio.to_thread(bindings.job.submit, submitter.handle, json.dumps(jobspec))
    await asyncio.to_thread(bindings.job.event_wait, submitter.handle, jobid, "validate")
    retry = TaskIdentity("dag", "run", run_id, -1, 2, "prod")
    hook = FluxHook(CONN_ID)
    owner = await asyncio.to_thread(jobs_of_latest_earlier_try, hook, retry, [planted.job_name()])
    assert owner == (1, {None: jobid}), "the owner's own retry adopts it"
    as_guest(monkeypatch)
    guest = await asyncio.to_thread(jobs_of_latest_earlier_try, hook, retry, [planted.job_name()])
    assert guest is None


async def test_a_big_output_is_read_up_to_its_limit_only(flux_instance: FluxTestInstance) -> None:
    lines = 200_000  # 20 MB in 100-byte lines
    attributes: dict[str, Any] = {}
    if flux_instance.kind == "simulated":
        option = {"lines": lines, "line_bytes": 100, "chunk_bytes": 65536}
        attributes = {"system.simulator.output": option}
    command = ["sh", "-c", f"yes {'x' * 99} | head -n {lines}"]
    jobspec = json.dumps(jobspec_from_command(command, attributes=attributes))
    bindings = load_bindings(flux_instance.uri)
    handle = bindings.open(flux_instance.uri)
    jobid = int(await asyncio.to_thread(bindings.job.submit, handle, jobspec))
    await asyncio.to_thread(bindings.job.event_wait, handle, jobid, "clean")
    (output,) = await read_outputs([jobid], flux_instance.uri, 64 * 1024)
    assert output.cut
    assert len(output.text.encode()) <= 64 * 1024
    header, *shown = output.text.split("\n")
    assert header == "--- stdout ---"
    assert len(shown) > 600  # 64 KiB of 100-byte lines: what was read, and all of it
    assert {len(line) for line in shown[:-1]} == {99}
