"""FluxJobsEventTrigger, one wait on many jobs, on the simulator and on real Flux."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from airflow_provider_flux.testing.dag_test import use_flux_connection
from airflow_provider_flux.triggers.flux import FluxJobsEventTrigger
from airflow_provider_flux.version_compat import TriggerEvent
from tests.contract.test_engine_contract import wait_for_watchers
from tests.flux_instances import FluxTestInstance

JOBS = 50


@pytest.fixture
def instance(flux_instance: FluxTestInstance) -> FluxTestInstance:
    use_flux_connection(flux_instance.uri)
    return flux_instance


async def outcome(trigger: FluxJobsEventTrigger, timeout: float = 120) -> dict[str, Any]:
    events = trigger.run()
    event = await asyncio.wait_for(anext(events), timeout)
    await events.aclose()
    assert isinstance(event, TriggerEvent)
    return dict(event.payload)


async def held_jobs(instance: FluxTestInstance, count: int = JOBS) -> list[int]:
    return await asyncio.to_thread(instance.pending_jobs, count)


async def release(instance: FluxTestInstance, jobids: list[int]) -> None:
    for jobid in jobids:
        await asyncio.to_thread(instance.release, jobid)


async def cancel(instance: FluxTestInstance, jobids: list[int]) -> None:
    """End jobs a test left pending."""
    for jobid in jobids:
        await asyncio.to_thread(instance.cancel, jobid, "test over")


async def test_all_of_50_fails_on_a_cancelled_job_with_its_note(
    instance: FluxTestInstance,
) -> None:
    jobids = await held_jobs(instance)
    waiting = asyncio.create_task(outcome(FluxJobsEventTrigger(jobids, event="start")))
    await asyncio.to_thread(instance.cancel, jobids[7], "bad parameters")
    payload = await waiting
    assert payload["status"] == "error"
    assert payload["reason"] == "jobs_failed"
    assert "type=cancel" in payload["message"]
    assert "bad parameters" in payload["message"]
    entry = payload["jobs"][7]
    assert entry["jobid"] == jobids[7]
    assert entry["outcome"] == "job_exception"
    assert entry["event"]["context"]["note"] == "bad parameters"
    assert payload["pending"] == JOBS - 1  # decided at once: no need to wait for the rest
    await cancel(instance, [j for j in jobids if j != jobids[7]])


async def test_all_of_50_with_one_failure_allowed_succeeds_listing_it(
    instance: FluxTestInstance,
) -> None:
    jobids = await held_jobs(instance)
    waiting = asyncio.create_task(
        outcome(FluxJobsEventTrigger(jobids, event="start", max_failures=1))
    )
    await asyncio.to_thread(instance.cancel, jobids[3], "one bad sample")
    await release(instance, [j for j in jobids if j != jobids[3]])
    payload = await waiting
    assert payload["status"] == "success"
    assert (payload["matched"], payload["failed"], payload["pending"]) == (JOBS - 1, 1, 0)
    assert payload["jobs"][3]["outcome"] == "job_exception"
    assert "one bad sample" in payload["jobs"][3]["message"]
    assert "one bad sample" in payload["message"]
    assert all(e["outcome"] == "matched" for i, e in enumerate(payload["jobs"]) if i != 3)
    assert all(e["event"]["name"] == "start" for i, e in enumerate(payload["jobs"]) if i != 3)


async def test_any_of_50_succeeds_on_the_first_job_to_start(instance: FluxTestInstance) -> None:
    jobids = await held_jobs(instance)
    before = await asyncio.to_thread(instance.watchers)
    waiting = asyncio.create_task(
        outcome(FluxJobsEventTrigger(jobids, event="start", wait_for="any"))
    )
    assert await wait_for_watchers(instance, before + JOBS) == before + JOBS
    await release(instance, [jobids[21]])
    payload = await waiting
    assert payload["status"] == "success"
    assert (payload["matched"], payload["pending"]) == (1, JOBS - 1)
    assert payload["jobs"][21]["outcome"] == "matched"
    assert {e["outcome"] for i, e in enumerate(payload["jobs"]) if i != 21} == {"pending"}
    assert await wait_for_watchers(instance, before) == before
    await cancel(instance, [j for j in jobids if j != jobids[21]])


async def test_at_least_40_of_50_ends_at_the_40th_and_cancels_the_other_watches(
    instance: FluxTestInstance,
) -> None:
    jobids = await held_jobs(instance)
    before = await asyncio.to_thread(instance.watchers)
    waiting = asyncio.create_task(outcome(FluxJobsEventTrigger(jobids, event="start", wait_for=40)))
    assert await wait_for_watchers(instance, before + JOBS) == before + JOBS
    await release(instance, jobids[:40])
    payload = await waiting
    assert payload["status"] == "success"
    assert (payload["matched"], payload["failed"], payload["pending"]) == (40, 0, 10)
    assert [e["outcome"] for e in payload["jobs"][40:]] == ["pending"] * 10
    # The ten watches still open when the wait was decided are cancelled on the broker.
    assert await wait_for_watchers(instance, before) == before
    await cancel(instance, jobids[40:])


async def test_at_least_n_fails_as_soon_as_too_few_can_still_match(
    instance: FluxTestInstance,
) -> None:
    jobids = await held_jobs(instance, 5)
    waiting = asyncio.create_task(
        outcome(FluxJobsEventTrigger(jobids, event="start", wait_for=4, max_failures=3))
    )
    for jobid in jobids[:2]:
        await asyncio.to_thread(instance.cancel, jobid, "gone")
    payload = await waiting
    assert payload["status"] == "error"
    assert "too few jobs can still match" in payload["message"]
    assert (payload["failed"], payload["pending"]) == (2, 3)
    await cancel(instance, jobids[2:])


async def test_the_deadline_cancels_the_jobs_still_running_and_fails_as_timed_out(
    instance: FluxTestInstance,
) -> None:
    jobids = await held_jobs(instance, 3)
    trigger = FluxJobsEventTrigger(
        jobids, event="clean", raise_on_exception=False, cancel_reason="too slow",
        deadline=time.time() + 1.0,
    )  # fmt: skip
    payload = await outcome(trigger)
    assert payload["status"] == "error"
    assert payload["reason"] == "timed_out"
    assert "the task timed out; 3 jobs were cancelled (too slow)" in payload["message"]
    # Within the grace period the cancelled jobs end, so each one's clean is seen.
    assert [entry["outcome"] for entry in payload["jobs"]] == ["matched"] * 3
