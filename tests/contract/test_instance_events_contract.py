"""Events of every job of an instance, and the watcher trigger that follows them, on the
simulator and on real Flux: as the owner (the journal) and as a guest (job-list)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import pytest
import structlog
from airflow.triggers.shared_stream import SharedStreamManager

from airflow_provider_flux.aio import connection_stats
from airflow_provider_flux.flux_bindings import load_bindings
from airflow_provider_flux.instance_events import (
    SOURCE_JOB_LIST,
    SOURCE_JOURNAL,
    EventBatch,
    InstanceEvent,
    instance_events,
)
from airflow_provider_flux.instance_events.filter import ANY_USER
from airflow_provider_flux.jobspec import jobspec_from_command
from airflow_provider_flux.testing.dag_test import use_flux_connection
from airflow_provider_flux.triggers.instance import FluxInstanceEventTrigger
from airflow_provider_flux.version_compat import TriggerEvent
from tests.flux_instances import FluxTestInstance

CONN_ID = "flux_events"
GUEST = {"FLUX_HANDLE_USERID": "9999", "FLUX_HANDLE_ROLEMASK": "0x2"}
LIFECYCLE = ["submit", "validate", "depend", "priority", "alloc", "start", "finish",
             "release", "free", "clean"]  # fmt: skip


class Submitter:
    """Submits named jobs as the instance owner, on a handle opened before any test
    makes this process a guest."""

    def __init__(self, instance: FluxTestInstance) -> None:
        self.kind = instance.kind
        self.bindings = load_bindings(instance.uri)
        self.handle = self.bindings.open(instance.uri)

    async def submit(self, name: str, exit_code: int = 0) -> int:
        attributes = None
        if self.kind == "simulated":
            scenario = "exit-nonzero" if exit_code else "success"
            attributes = {"system.simulator.scenario": scenario}
        command = ["sh", "-c", f"exit {exit_code}"]
        jobspec = json.dumps(jobspec_from_command(command, name=name, attributes=attributes))
        return int(await asyncio.to_thread(self.bindings.job.submit, self.handle, jobspec))


@pytest.fixture
def submitter(flux_instance: FluxTestInstance) -> Submitter:
    use_flux_connection(flux_instance.uri, CONN_ID)
    return Submitter(flux_instance)


@pytest.fixture
def guest(monkeypatch: pytest.MonkeyPatch, submitter: Submitter) -> None:
    """Handles opened from now on (not the submitter's) are a guest's, as flux-core's
    own tests make them."""
    for name, value in GUEST.items():
        monkeypatch.setenv(name, value)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def events_until_clean(
    batches: AsyncIterator[EventBatch], jobids: set[int]
) -> list[InstanceEvent]:
    """Live events until every job of ``jobids`` is clean."""
    seen: list[InstanceEvent] = []
    waiting = set(jobids)
    while waiting:
        batch = await asyncio.wait_for(anext(batches), 60)
        assert not batch.history
        seen += batch.events
        waiting -= {e.jobid for e in batch.events if e.event.name == "clean"}
    return seen


async def test_the_owner_reads_history_then_every_event_as_it_happens(
    flux_instance: FluxTestInstance, submitter: Submitter
) -> None:
    name = unique("early")
    early = await submitter.submit(name)
    async with aclosing(instance_events(flux_instance.uri, poll_interval=60)) as batches:
        history = await asyncio.wait_for(anext(batches), 60)
        assert history.history
        early_events = [e for e in history.events if e.jobid == early]
        assert {e.source for e in history.events} == {SOURCE_JOURNAL}
        assert {e.job.name for e in early_events} == {name}
        late = await submitter.submit(unique("late"), exit_code=3)
        ended = {e.jobid for e in early_events if e.event.name == "clean"}
        live = await events_until_clean(batches, {early, late} - ended)
    keys = [e.key for e in [*history.events, *live]]
    assert len(keys) == len(set(keys)), "each once"
    assert list(history.events) == sorted(history.events, key=lambda e: e.position)
    early_names = [e.event.name for e in [*early_events, *live] if e.jobid == early]
    assert [n for n in early_names if n in LIFECYCLE] == LIFECYCLE
    late_events = [e for e in live if e.jobid == late]
    assert [e.event.name for e in late_events if e.event.name in LIFECYCLE] == LIFECYCLE
    finish = next(e for e in late_events if e.event.name == "finish")
    assert finish.event.context["status"] >> 8 == 3


@pytest.mark.usefixtures("guest")
async def test_a_guest_follows_the_same_jobs_through_job_list(
    flux_instance: FluxTestInstance, submitter: Submitter
) -> None:
    async with aclosing(instance_events(flux_instance.uri, poll_interval=0.2)) as batches:
        history = await asyncio.wait_for(anext(batches), 60)
        assert history.history
        name = unique("guest")
        jobid = await submitter.submit(name, exit_code=3)
        live = await events_until_clean(batches, {jobid})
    assert {e.source for e in live} == {SOURCE_JOB_LIST}
    mine = [e for e in live if e.jobid == jobid]
    assert [e.event.name for e in mine] == ["submit", "alloc", "start", "finish", "clean"]
    assert {e.job.name for e in mine} == {name}
    assert mine[3].event.context["status"] >> 8 == 3
    keys = [e.key for e in live]
    assert len(keys) == len(set(keys)), "each once"


async def next_payload(events: AsyncIterator[TriggerEvent]) -> dict[str, Any]:
    return dict((await asyncio.wait_for(anext(events), 60)).payload)


@pytest.mark.parametrize("as_guest", [False, True], ids=["owner", "guest"])
async def test_watchers_share_one_stream_and_fire_only_for_their_jobs(
    flux_instance: FluxTestInstance,
    submitter: Submitter,
    monkeypatch: pytest.MonkeyPatch,
    as_guest: bool,
) -> None:
    if as_guest:
        for name, value in GUEST.items():
            monkeypatch.setenv(name, value)
    # The triggerer's own manager of shared streams (Airflow 3.3), as it runs watchers.
    manager = SharedStreamManager(
        max_subscriber_queue=1024, ack_timeout=60, cohort_grace_period=0,
        log=structlog.get_logger(),
    )  # fmt: skip
    prefix = unique("share")

    def watcher(trigger_id: int, exit_codes: int) -> AsyncIterator[TriggerEvent]:
        # The guest watches the owner's jobs: every user's, said so.
        trigger = FluxInstanceEventTrigger(
            flux_conn_id=CONN_ID, job_name=f"{prefix}-*", exit_codes=exit_codes,
            poll_interval=0.2, userid=ANY_USER if as_guest else None,
        )  # fmt: skip
        stream = manager.subscribe(
            trigger_id=trigger_id, trigger=trigger, key=trigger.shared_stream_key()
        )
        return trigger.filter_shared_stream(stream)

    async def running(events: AsyncIterator[TriggerEvent], exit_code: int) -> list[int]:
        """Probe jobs until the watcher fires for one (it fires for what happens once it
        has read the history); the probes submitted."""
        first = asyncio.ensure_future(anext(events))
        probes = []
        while not first.done():
            probes.append(await submitter.submit(f"{prefix}-probe", exit_code))
            await asyncio.wait({first}, timeout=2)
        assert dict(first.result().payload)["jobid"] in probes
        return probes

    try:
        ok_events = watcher(1, exit_codes=0)
        ok_probes = await running(ok_events, 0)
        # A watcher that joins the running stream reads the history on its own.
        failed_events = watcher(2, exit_codes=3)
        failed_probes = await running(failed_events, 3)
        bad = await submitter.submit(f"{prefix}-bad", exit_code=3)
        good = await submitter.submit(f"{prefix}-good")
        await submitter.submit(unique("other"))
        ok_fired = [await next_payload(ok_events)]
        while ok_fired[-1]["jobid"] != good:
            ok_fired.append(await next_payload(ok_events))
        assert {p["jobid"] for p in ok_fired} <= {good, *ok_probes}
        failed_fired = [await next_payload(failed_events)]
        while failed_fired[-1]["jobid"] != bad:
            failed_fired.append(await next_payload(failed_events))
        assert {p["jobid"] for p in failed_fired} <= {bad, *failed_probes}
        assert {p["event"]["name"] for p in ok_fired + failed_fired} == {"finish"}
        # One journal stream for both watchers (job-list polls have none).
        assert [s["streams"] for s in connection_stats().values()] == [0 if as_guest else 1]
    finally:
        await manager.stop_all()
