"""FluxJobEventTrigger against the simulated instance: serialization, and its one event
for every recorded scenario."""

from __future__ import annotations

import asyncio
import errno
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from types import SimpleNamespace
from typing import Any

import pytest
import structlog

from airflow_provider_flux.aio import connection_stats
from airflow_provider_flux.testing import SimulatedFlux
from airflow_provider_flux.testing.bindings import Flux
from airflow_provider_flux.testing.dag_test import use_flux_connection
from airflow_provider_flux.triggers import base as trigger_base
from airflow_provider_flux.triggers.base import finish_despite_cancels
from airflow_provider_flux.triggers.flux import FluxJobEventTrigger
from airflow_provider_flux.triggers.task_instance import UNKNOWN_STATE
from airflow_provider_flux.version_compat import (
    TRIGGER_ON_KILL_SUPPORTED,
    TaskSuccessEvent,
)
from tests.polling import broker_watchers, first_event
from tests.semantics_table import CASES, Row, case_id

CLASSPATH = "airflow_provider_flux.triggers.flux.FluxJobEventTrigger"


@pytest.fixture
def flux_default(sim: SimulatedFlux) -> SimulatedFlux:
    use_flux_connection(sim.uri)
    return sim


def test_serialize_round_trips() -> None:
    trigger = FluxJobEventTrigger(
        jobid="ƒ2",
        event="finish",
        eventlog="guest.exec.eventlog",
        flux_conn_id="my_flux",
        flux_uri="jobid:ƒA",
        match_context={"status": 0},
        raise_on_exception=False,
        waitcreate=True,
        reconnect_attempts=2,
        include_events=["finish"],
        cancel_on_kill=True,
        cancel_reason="killed",
        deadline=1800000000.5,
        count=3,
        end_from_trigger=True,
        xcom_push=False,
        stream_output=True,
        output_limit=1000,
    )
    classpath, kwargs = trigger.serialize()
    assert classpath == CLASSPATH
    assert kwargs == {
        "jobid": 1,
        "event": "finish",
        "eventlog": "guest.exec.eventlog",
        "flux_conn_id": "my_flux",
        "flux_uri": "jobid:ƒA",
        "match_context": {"status": 0},
        "raise_on_exception": False,
        "waitcreate": True,
        "reconnect_attempts": 2,
        "include_events": ["finish"],
        "cancel_on_kill": True,
        "cancel_reason": "killed",
        "deadline": 1800000000.5,
        "count": 3,
        "end_from_trigger": True,
        "xcom_push": False,
        "stream_output": True,
        "output_limit": 1000,
    }
    assert FluxJobEventTrigger(**kwargs).serialize() == (classpath, kwargs)


def test_short_eventlog_names_are_stored_as_their_paths() -> None:
    assert (
        FluxJobEventTrigger(1, event="shell.start", eventlog="exec").eventlog
        == "guest.exec.eventlog"
    )
    assert FluxJobEventTrigger(1, event="data", eventlog="output").serialize()[1]["eventlog"] == (
        "guest.output"
    )


@pytest.mark.parametrize("key", ["R", "jobspec", "J"])
def test_keys_that_are_not_eventlogs_are_refused_when_built(key: str) -> None:
    with pytest.raises(ValueError, match=f"eventlog '{key}' is not an eventlog of a job"):
        FluxJobEventTrigger(1, event="start", eventlog=key)


def test_bad_job_id_is_refused_when_built() -> None:
    with pytest.raises(ValueError, match="bogus is not a valid Flux jobid"):
        FluxJobEventTrigger(jobid="bogus", event="start")


@pytest.mark.parametrize("row", CASES, ids=[case_id(r) for r in CASES])
async def test_outcome_per_scenario(flux_default: SimulatedFlux, row: Row) -> None:
    scenario, eventlog, event, match, raise_exc, expected = row
    jobid = await asyncio.to_thread(flux_default.submit, scenario)
    trigger = FluxJobEventTrigger(
        jobid, event=event, eventlog=eventlog, match_context=match, raise_on_exception=raise_exc
    )
    payload = await first_event(trigger)
    assert payload["jobid"] == jobid
    assert payload["eventlog"] == eventlog
    if expected[0] == "matched":
        assert payload["status"] == "success", payload["message"]
        assert payload["event"]["name"] == expected[1]
    elif expected[0] == "job_exception":
        assert payload["status"] == "error"
        assert payload["reason"] == "job_exception"
        assert payload["event"]["context"]["type"] == expected[1]
        assert f"type={expected[1]}" in payload["message"]
        if expected[2]:
            assert expected[2] in payload["message"]
    else:
        assert payload["status"] == "error"
        assert payload["reason"] == "eventlog_ended"
        assert payload["errno"] == errno.ENODATA
        assert f"eventlog ended before event='{event}'" in payload["message"]


async def test_unknown_job(flux_default: SimulatedFlux) -> None:
    payload = await first_event(FluxJobEventTrigger(424242, event="start"))
    assert payload["reason"] == "not_found"
    assert payload["errno"] == errno.ENOENT
    assert "does not exist" in payload["message"]


async def test_job_of_another_user(flux_default: SimulatedFlux) -> None:
    jobid = await asyncio.to_thread(flux_default.submit, "success", private=True)
    payload = await first_event(FluxJobEventTrigger(jobid, event="start"))
    assert payload["reason"] == "permission"
    assert payload["errno"] == errno.EPERM


async def test_unreachable_instance(airflow_db: str, tmp_path: Any) -> None:
    use_flux_connection(f"sim://{tmp_path}/no-broker-here")
    payload = await first_event(FluxJobEventTrigger(1, event="start", reconnect_attempts=0))
    assert payload["reason"] == "connection"
    assert "cannot connect" in payload["message"]


async def test_cancelled_trigger_cancels_its_watch_on_the_broker(
    flux_default: SimulatedFlux,
) -> None:
    jobid = await asyncio.to_thread(flux_default.submit, "success", hold_before="start")
    task = asyncio.create_task(first_event(FluxJobEventTrigger(jobid, event="start")))
    await broker_watchers(flux_default, 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await broker_watchers(flux_default, 0)
    assert connection_stats()[flux_default.uri]["streams"] == 0
    await asyncio.to_thread(flux_default.release, jobid)


async def test_recreated_trigger_finds_an_event_that_happened_meanwhile(
    flux_default: SimulatedFlux,
) -> None:
    """A triggerer restart: the event came while no trigger ran; the replay finds it."""
    jobid = await asyncio.to_thread(flux_default.submit, "success", hold_before="start")
    _, kwargs = FluxJobEventTrigger(jobid, event="start").serialize()
    first = asyncio.create_task(first_event(FluxJobEventTrigger(**kwargs)))
    await asyncio.sleep(0.2)
    first.cancel()
    await asyncio.to_thread(flux_default.release, jobid)
    await asyncio.sleep(0.2)
    payload = await first_event(FluxJobEventTrigger(**kwargs))
    assert payload["status"] == "success"
    assert payload["event"]["name"] == "start"


async def test_waiting_through_a_lost_connection(flux_default: SimulatedFlux) -> None:
    jobid = await asyncio.to_thread(flux_default.submit, "success", hold_before="start")
    task = asyncio.create_task(first_event(FluxJobEventTrigger(jobid, event="start")))
    await broker_watchers(flux_default, 1)
    await asyncio.to_thread(flux_default.drop_connections)
    await asyncio.to_thread(flux_default.release, jobid)
    payload = await asyncio.wait_for(task, 30)
    assert payload["status"] == "success"


@pytest.fixture
def debug_logs() -> Iterator[list[dict[str, Any]]]:
    """Capture the structlog entries (Airflow's logging) down to debug level."""
    saved = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))
    try:
        with structlog.testing.capture_logs() as logs:
            yield logs
    finally:
        structlog.configure(**saved)


async def test_logs_each_event_at_debug_and_the_outcome_at_info(
    flux_default: SimulatedFlux, debug_logs: list[dict[str, Any]]
) -> None:
    jobid = await asyncio.to_thread(flux_default.submit, "nonfatal-exception")
    await first_event(FluxJobEventTrigger(jobid, event="clean"))
    records = [(entry["log_level"], entry["event"]) for entry in debug_logs]
    debug = [msg for level, msg in records if level == "debug"]
    info = [msg for level, msg in records if level == "info"]
    assert any(": alloc {'annotations'" in msg for msg in debug), debug
    assert len(debug) == 11  # every event of the lifecycle, one line each
    assert any("non-fatal exception type=test severity=1: a non-fatal note" in m for m in info)
    assert info[-1].endswith("event='clean' happened")


class TriggerSeeingState(FluxJobEventTrigger):
    """The trigger, with the task state the triggerer's supervisor would report."""

    state: str | None = "failed"
    xcom_jobid: int | None = None

    async def task_state(self) -> str | None:
        return self.state

    async def task_jobids(self) -> list[int] | None:
        return None if self.xcom_jobid is None else [self.xcom_jobid]


OWN_JOB = -1  # stands for the trigger's own job ID in the cases below


async def exceptions_of(sim: SimulatedFlux, jobid: int) -> list[str]:
    await asyncio.sleep(0.3)
    lookup = await asyncio.to_thread(
        lambda: Flux(sim.uri).rpc("job-info.lookup", {"id": jobid, "keys": ["eventlog"]}).get()
    )
    return [line for line in lookup["eventlog"].splitlines() if '"exception"' in line]


async def kill(
    sim: SimulatedFlux,
    state: str | None,
    xcom_jobid: int | None = None,
    stop: Callable[[FluxJobEventTrigger], Awaitable[None]] = FluxJobEventTrigger.on_kill,
    **kwargs: Any,
) -> list[str]:
    """Stop a trigger of a running job the way ``stop`` does, with the task in ``state``;
    the job's exception events afterwards."""
    jobid = await asyncio.to_thread(sim.submit, "success", hold_before="finish")
    trigger = TriggerSeeingState(jobid, event="clean", **kwargs)
    trigger.state = state
    trigger.xcom_jobid = jobid if xcom_jobid == OWN_JOB else xcom_jobid
    await stop(trigger)
    exceptions = await exceptions_of(sim, jobid)
    await asyncio.to_thread(sim.release, jobid)
    return exceptions


@pytest.mark.parametrize("state", ["failed", "success", None])
async def test_kill_cancels_the_job_with_the_reason(
    flux_default: SimulatedFlux, state: str | None
) -> None:
    exceptions = await kill(flux_default, state, cancel_on_kill=True, cancel_reason="user said so")
    assert len(exceptions) == 1
    assert '"type":"cancel"' in exceptions[0]
    assert '"note":"user said so"' in exceptions[0]


@pytest.mark.parametrize(
    ("state", "xcom_jobid"),
    [("deferred", OWN_JOB), ("deferred", None), (UNKNOWN_STATE, None)],
    ids=["deferred-on-this-job", "deferred-no-xcom", "state-unknown"],
)
async def test_kill_leaves_the_job_alone_on_a_move_or_when_unsure(
    flux_default: SimulatedFlux, state: str, xcom_jobid: int | None
) -> None:
    assert await kill(flux_default, state, xcom_jobid, cancel_on_kill=True) == []


async def test_kill_cancels_when_a_new_try_defers_on_another_job(
    flux_default: SimulatedFlux,
) -> None:
    # Cleared while deferred: by the time the triggerer lets go of the old trigger,
    # the task's next try may already be deferred, on the job it submitted.
    exceptions = await kill(flux_default, "deferred", 12345, cancel_on_kill=True)
    assert len(exceptions) == 1
    assert '"type":"cancel"' in exceptions[0]


async def test_kill_does_nothing_without_cancel_on_kill(flux_default: SimulatedFlux) -> None:
    assert await kill(flux_default, "failed") == []


@pytest.mark.parametrize(
    ("on_kill_supported", "cancels"),
    [(True, 0), (False, 1)],
    ids=["airflow-3.3-calls-on_kill", "older-airflow-calls-only-cleanup"],
)
async def test_cleanup_cancels_a_killed_task_s_job_only_where_airflow_has_no_on_kill(
    flux_default: SimulatedFlux,
    monkeypatch: pytest.MonkeyPatch,
    on_kill_supported: bool,
    cancels: int,
) -> None:
    monkeypatch.setattr(trigger_base, "TRIGGER_ON_KILL_SUPPORTED", on_kill_supported)
    exceptions = await kill(
        flux_default, "failed", stop=FluxJobEventTrigger.cleanup, cancel_on_kill=True
    )
    assert len(exceptions) == cancels


@pytest.mark.parametrize(
    ("state", "xcom_jobid"),
    [("deferred", OWN_JOB), (UNKNOWN_STATE, None)],
    ids=["triggerer-stopping-or-moving", "state-unknown"],
)
async def test_cleanup_without_on_kill_leaves_a_still_deferred_job_running(
    flux_default: SimulatedFlux,
    monkeypatch: pytest.MonkeyPatch,
    state: str,
    xcom_jobid: int | None,
) -> None:
    monkeypatch.setattr(trigger_base, "TRIGGER_ON_KILL_SUPPORTED", False)
    exceptions = await kill(
        flux_default, state, xcom_jobid, stop=FluxJobEventTrigger.cleanup, cancel_on_kill=True
    )
    assert exceptions == []


async def test_cleanup_after_the_trigger_fired_leaves_the_job_alone(
    flux_default: SimulatedFlux, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(trigger_base, "TRIGGER_ON_KILL_SUPPORTED", False)
    jobid = await asyncio.to_thread(flux_default.submit, "success", hold_before="finish")
    trigger = TriggerSeeingState(jobid, event="start", cancel_on_kill=True)
    trigger.state = "success"  # the task resumed and finished after the event
    assert (await first_event(trigger))["status"] == "success"
    await trigger.cleanup()
    assert await exceptions_of(flux_default, jobid) == []
    await asyncio.to_thread(flux_default.release, jobid)


async def test_the_triggerer_s_kill_sequence_cancels_the_job_once(
    flux_default: SimulatedFlux,
) -> None:
    """What this Airflow's triggerer calls on a kill: on_kill then cleanup (3.3 and
    newer), cleanup alone before."""

    async def triggerer_kills(trigger: FluxJobEventTrigger) -> None:
        if TRIGGER_ON_KILL_SUPPORTED:
            await trigger.on_kill()
        await trigger.cleanup()

    exceptions = await kill(flux_default, "failed", stop=triggerer_kills, cancel_on_kill=True)
    assert len(exceptions) == 1


async def test_task_state_and_jobid_are_unknown_outside_a_triggerer() -> None:
    trigger = FluxJobEventTrigger(1, event="clean", cancel_on_kill=True)
    trigger.task_instance = SimpleNamespace(  # type: ignore[assignment]
        dag_id="d", task_id="t", run_id="r", map_index=-1
    )
    assert await trigger.task_state() == UNKNOWN_STATE
    assert await trigger.task_jobids() is None


async def test_deadline_cancels_the_job_and_fails_as_timed_out(flux_default: SimulatedFlux) -> None:
    jobid = await asyncio.to_thread(flux_default.submit, "success", hold_before="finish")
    trigger = FluxJobEventTrigger(
        jobid, event="clean", raise_on_exception=False, cancel_reason="too slow",
        deadline=time.time() + 0.5, include_events=["exception"],
    )  # fmt: skip
    payload = await first_event(trigger)
    assert payload["reason"] == "timed_out"
    assert "too slow" in payload["message"]
    assert [e["context"]["note"] for e in payload["events"]] == ["too slow"]


async def run_to_end(trigger: FluxJobEventTrigger) -> Any:
    """The one event of a trigger run as a triggerer runs it (with a trigger ID)."""
    trigger.trigger_id = 7
    events = trigger.run()
    event = await anext(events)
    await events.aclose()
    return event


async def test_ends_a_successful_wait_in_the_triggerer_with_the_result_as_xcom(
    flux_default: SimulatedFlux,
) -> None:
    jobid = flux_default.submit("success")
    event = await run_to_end(FluxJobEventTrigger(jobid, event="finish", end_from_trigger=True))
    assert isinstance(event, TaskSuccessEvent)
    assert event.xcoms is not None
    result = event.xcoms["return_value"]
    assert (result["name"], result["jobid"], result["context"]) == ("finish", jobid, {"status": 0})
    quiet = FluxJobEventTrigger(jobid, event="finish", end_from_trigger=True, xcom_push=False)
    event = await run_to_end(quiet)
    assert isinstance(event, TaskSuccessEvent)
    assert event.xcoms is None


async def test_a_failed_wait_resumes_the_task_even_when_ending_from_the_trigger(
    flux_default: SimulatedFlux,
) -> None:
    jobid = flux_default.submit("cancel-running")
    event = await run_to_end(FluxJobEventTrigger(jobid, event="finish", end_from_trigger=True))
    assert not isinstance(event, TaskSuccessEvent)
    assert event.payload["reason"] == "job_exception"


async def test_dag_test_s_inline_run_gets_the_payload(flux_default: SimulatedFlux) -> None:
    # dag.test() gives the trigger no ID and resumes the task whatever the event.
    jobid = flux_default.submit("success")
    payload = await first_event(FluxJobEventTrigger(jobid, event="finish", end_from_trigger=True))
    assert payload["status"] == "success"
    assert payload["event"]["name"] == "finish"


async def test_fields_rendered_in_the_triggerer_are_checked_when_it_runs(
    flux_default: SimulatedFlux,
) -> None:
    jobid = flux_default.submit("success")
    trigger = FluxJobEventTrigger("{{ params.jobid }}", event="{{ params.event }}", eventlog="exec")
    assert trigger.jobid == "{{ params.jobid }}"  # not parsed before Airflow renders it
    trigger.jobid, trigger.event = str(jobid), "shell.start"  # as rendered
    payload = await first_event(trigger)
    assert (payload["status"], payload["jobid"]) == ("success", jobid)
    assert payload["eventlog"] == "guest.exec.eventlog"

    bad = FluxJobEventTrigger("{{ params.jobid }}", event="start")
    bad.jobid = "not-a-job"
    payload = await first_event(bad)
    assert (payload["status"], payload["reason"]) == ("error", "invalid")
    assert "not-a-job is not a valid Flux jobid" in payload["message"]


async def test_no_job_id_sends_the_task_to_a_worker_to_start() -> None:
    payload = await first_event(FluxJobEventTrigger(None, event=""))
    assert payload["status"] == "start_in_worker"
    assert "mapped task" in payload["message"]


async def test_a_kill_s_cancel_finishes_through_the_triggerer_s_repeated_cancels() -> None:
    # The triggerer cancels a stopped trigger again at each sync while on_kill runs.
    finished: list[bool] = []

    async def cancel_the_job() -> None:
        await asyncio.sleep(0.3)
        finished.append(True)

    on_kill = asyncio.create_task(finish_despite_cancels(cancel_the_job(), 5.0))
    for _ in range(3):
        await asyncio.sleep(0.05)
        on_kill.cancel("user action")
    await asyncio.wait([on_kill])
    assert finished == [True]


async def test_a_kill_s_cancel_gives_up_after_its_budget() -> None:
    never = asyncio.get_running_loop().create_future()
    with pytest.raises(asyncio.TimeoutError):
        await finish_despite_cancels(never, 0.1)
    assert never.cancelled()
