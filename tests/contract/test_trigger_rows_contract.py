"""A task deferred by release 0.2.0 runs after an upgrade: each trigger row that
release wrote (``tests/data/trigger_rows_0.2.0.json``, made with its code) goes
through Airflow's own trigger table, is rebuilt as the triggerer rebuilds it (its
class path imported, called with the stored keyword arguments) and runs to its
event, on the simulator and on real Flux."""

from __future__ import annotations

import asyncio
import importlib
import json
from pathlib import Path
from typing import Any

import pytest
from airflow.models.trigger import Trigger

from airflow_provider_flux.flux_bindings import load_bindings
from airflow_provider_flux.job.jobid_list import pack_jobids
from airflow_provider_flux.jobspec import jobspec_from_command
from airflow_provider_flux.testing.dag_test import use_flux_connection
from airflow_provider_flux.version_compat import BaseTrigger, TriggerEvent
from tests.flux_instances import FluxTestInstance

ROWS_FILE = Path(__file__).parents[1] / "data" / "trigger_rows_0.2.0.json"
ROWS: dict[str, dict[str, Any]] = json.loads(ROWS_FILE.read_text())["rows"]
# The job IDs 0.2.0's rows were written with (they name no job of these instances).
WRITTEN_WITH = 2_000_000_000


@pytest.fixture
def instance(flux_instance: FluxTestInstance) -> FluxTestInstance:
    for conn_id in ("flux_sim", "flux_default"):  # the connections the rows name
        use_flux_connection(flux_instance.uri, conn_id)
    return flux_instance


def rebuilt(name: str, **rendered: Any) -> BaseTrigger:
    """The trigger the triggerer builds from the row ``name``: its keyword arguments
    through the trigger table's own encoding, then its class path imported and called.
    ``rendered``: values that differ from the row's (this test's job IDs)."""
    row = ROWS[name]
    table_row = Trigger(classpath=row["classpath"], kwargs={**row["kwargs"], **rendered})
    module, _, cls = table_row.classpath.rpartition(".")
    trigger = getattr(importlib.import_module(module), cls)(**table_row.kwargs)
    assert isinstance(trigger, BaseTrigger)
    return trigger


async def first_payload(trigger: BaseTrigger) -> dict[str, Any]:
    events = trigger.run()
    try:
        event = await asyncio.wait_for(anext(events), 60)
    finally:
        await events.aclose()
    assert isinstance(event, TriggerEvent)
    return dict(event.payload)


@pytest.mark.parametrize("name", sorted(ROWS))
def test_a_row_of_0_2_0_is_rebuilt_and_written_again_unchanged(name: str) -> None:
    trigger = rebuilt(name)
    assert trigger.serialize() == (ROWS[name]["classpath"], ROWS[name]["kwargs"])


def test_the_packed_job_ids_of_0_2_0_read_as_written() -> None:
    trigger = rebuilt("ensemble_packed")
    assert trigger.jobids == list(range(WRITTEN_WITH, WRITTEN_WITH + 20))


async def test_a_sensor_row_fires_on_the_event(instance: FluxTestInstance) -> None:
    jobid = await asyncio.to_thread(instance.completed_job)
    payload = await first_payload(rebuilt("sensor", jobid=jobid))
    assert (payload["status"], payload["jobid"], payload["event"]["name"]) == (
        "success", jobid, "start",
    )  # fmt: skip


async def test_an_output_row_counts_matching_output_events(instance: FluxTestInstance) -> None:
    attributes = {"system.simulator.output": {"lines": 2}} if instance.kind == "simulated" else {}
    command = ["sh", "-c", "echo one; sleep 0.5; echo two"]
    jobspec = json.dumps(jobspec_from_command(command, attributes=attributes))
    bindings = load_bindings(instance.uri)
    jobid = int(await asyncio.to_thread(bindings.job.submit, bindings.open(instance.uri), jobspec))
    payload = await first_payload(rebuilt("sensor_context_count", jobid=jobid))
    assert payload["status"] == "success", payload["message"]
    assert (payload["eventlog"], payload["event"]["name"]) == ("guest.output", "data")
    assert payload["event"]["context"]["stream"] == "stdout"


async def test_an_operator_row_waits_for_clean_with_its_events(instance: FluxTestInstance) -> None:
    jobid = await asyncio.to_thread(instance.running_job)
    waiting = asyncio.create_task(first_payload(rebuilt("operator", jobid=jobid)))
    await asyncio.to_thread(instance.finish, jobid)
    payload = await waiting
    assert (payload["status"], payload["event"]["name"]) == ("success", "clean")
    assert [event["name"] for event in payload["events"]] == ["finish"]
    assert payload["output"]["events"] > 0  # its output was followed (stream_output)


async def test_a_mapped_start_from_trigger_row_sends_the_task_to_a_worker(
    instance: FluxTestInstance,
) -> None:
    payload = await first_payload(rebuilt("start_from_trigger_mapped"))
    assert payload["status"] == "start_in_worker"


async def test_a_templated_row_runs_with_its_fields_as_rendered(
    instance: FluxTestInstance,
) -> None:
    jobid = await asyncio.to_thread(instance.completed_job)
    trigger = rebuilt("start_from_trigger_templated")
    trigger.jobid, trigger.event = str(jobid), "finish"  # as rendered
    payload = await first_payload(trigger)
    assert (payload["status"], payload["event"]["name"]) == ("success", "finish")


async def test_ensemble_rows_decide_on_their_jobs(instance: FluxTestInstance) -> None:
    jobids = [await asyncio.to_thread(instance.completed_job) for _ in range(3)]
    payload = await first_payload(rebuilt("ensemble", jobids=jobids))
    assert payload["status"] == "success"
    assert payload["matched"] >= 1  # wait_for="any"
    many = [await asyncio.to_thread(instance.completed_job) for _ in range(20)]
    payload = await first_payload(rebuilt("ensemble_packed", jobids=pack_jobids(many)))
    assert (payload["status"], payload["matched"]) == ("success", 20)


async def test_an_instance_row_fires_for_a_matching_job(instance: FluxTestInstance) -> None:
    """The trigger fires for what happens once it has read the instance's history,
    which takes a moment: a job is submitted every second until one fires it."""
    attributes = {"system.simulator.scenario": "success"} if instance.kind == "simulated" else {}
    jobspec = json.dumps(jobspec_from_command(["true"], name="sim-upgrade", attributes=attributes))
    bindings = load_bindings(instance.uri)
    handle = bindings.open(instance.uri)
    submitted: set[int] = set()
    events = rebuilt("instance").run()
    try:
        waiting = asyncio.ensure_future(anext(events))
        for _ in range(60):
            jobid = await asyncio.to_thread(bindings.job.submit, handle, jobspec)
            submitted.add(int(jobid))
            done, _ = await asyncio.wait([waiting], timeout=1.0)
            while done:
                event = waiting.result()
                assert isinstance(event, TriggerEvent)
                if event.payload["jobid"] in submitted:
                    assert event.payload["name"] == "sim-upgrade"
                    assert event.payload["event"]["name"] == "finish"
                    return
                waiting = asyncio.ensure_future(anext(events))  # another user's sim-* job
                done, _ = await asyncio.wait([waiting], timeout=0)
        pytest.fail("no job fired the trigger in 60 s")
    finally:
        waiting.cancel()
        await events.aclose()
