"""DAG runs started by Flux job events, under a real scheduler and triggerer: the jobs
that match reach the DAG, each once, across a triggerer restart and for a guest."""

from __future__ import annotations

import collections
import functools
import signal
import time
import uuid
from typing import Any

import pytest

from airflow_provider_flux.hooks.flux import FluxHook
from airflow_provider_flux.jobspec import jobspec_from_command
from airflow_provider_flux.testing.deployment import AirflowDeployment, wait_until
from airflow_provider_flux.triggers.instance import CHECKPOINT_DELAY, CHECKPOINT_INTERVAL
from tests.deployment.conftest import Deployment

# How flux-core's own tests act as a guest of an instance (t2232-job-info-security.t).
GUEST = {"FLUX_HANDLE_USERID": "9999", "FLUX_HANDLE_ROLEMASK": "0x2"}


def submit(kind: str, name: str, exit_code: int) -> int:
    """A job named ``name`` that exits with ``exit_code``."""
    attributes = None
    if kind == "sim":  # the simulator replays a recorded job that exited 1
        attributes = {"system.simulator.scenario": "exit-nonzero" if exit_code else "success"}
    command = ["sh", "-c", f"exit {exit_code}"]
    jobspec = jobspec_from_command(command, name=name, attributes=attributes)
    return FluxHook(f"flux_{kind}").submit(jobspec)


def submit_mix(kind: str, matching: int, failing: int, other: int) -> tuple[list[int], list[int]]:
    """Jobs that match the DAG's watcher (``evt-*``, exit 0) and jobs that do not
    (``evt-*`` exiting 1, and other names); the IDs of both."""
    tag = uuid.uuid4().hex[:6]
    wanted = [submit(kind, f"evt-{tag}-{n}", 0) for n in range(matching)]
    unwanted = [submit(kind, f"evt-{tag}-bad-{n}", 1) for n in range(failing)]
    unwanted += [submit(kind, f"post-{tag}-{n}", 0) for n in range(other)]
    return wanted, unwanted


def wait_until_inactive(kind: str, jobids: list[int]) -> None:
    hook = FluxHook(f"flux_{kind}")

    def all_clean() -> bool | None:
        for jobid in jobids:
            events, _ = hook.read_eventlog(jobid)
            if not any(event.name == "clean" for event in events):
                return None
        return True

    wait_until(all_clean, 120, f"{len(jobids)} jobs to end", 0.5)


def asset_events(airflow: AirflowDeployment, kind: str) -> list[dict[str, Any]]:
    """The payloads of every asset event the watcher of ``kind`` produced."""
    found: list[dict[str, Any]] = []
    while True:  # the API gives at most 100 a page
        page = functools.partial(asset_events_page, airflow, kind, len(found))
        answer = wait_until(page, 60, "asset events listed", 0.5)
        found += [event["extra"]["payload"] for event in answer["asset_events"]]
        if not answer["asset_events"] or len(found) >= answer["total_entries"]:
            return found


def asset_events_page(airflow: AirflowDeployment, kind: str, offset: int) -> Any:
    """A page of the watcher's asset events; None while Airflow cannot list them:
    3.3.2's API answers 500 while a DAG run an event created has not started
    (apache/airflow#71360), until the scheduler starts it."""
    try:
        return airflow.api(
            "GET", "/assets/events",
            params={"name_pattern": f"flux_{kind}_evt_jobs_finished", "limit": 100,
                    "offset": offset},
        )  # fmt: skip
    except RuntimeError as err:
        runs = airflow.dag_runs(f"on_flux_jobs_{kind}")
        if ": 500 " in str(err) and any(run["start_date"] is None for run in runs):
            return None
        raise


def delivered(airflow: AirflowDeployment, dag_id: str) -> list[dict[str, Any]]:
    """What every successful run of the DAG handled, in run order."""
    found: list[dict[str, Any]] = []
    for run in airflow.dag_runs(dag_id):
        if run["state"] == "success":
            found += airflow.xcom(dag_id, run["dag_run_id"], "handled")
    return found


def wait_for_delivery(airflow: AirflowDeployment, kind: str, jobids: list[int]) -> None:
    """Wait until the watcher turned each job into an asset event and a run of the DAG
    handled it; then until every run ended."""
    dag_id = f"on_flux_jobs_{kind}"

    def produced() -> bool | None:
        return True if set(jobids) <= {e["jobid"] for e in asset_events(airflow, kind)} else None

    wait_until(produced, 180, f"{len(jobids)} asset events of {dag_id}", 1.0)

    def handled() -> bool | None:
        if set(jobids) <= {e["jobid"] for e in delivered(airflow, dag_id)}:
            return True
        # Airflow 3.3.2 leaves an asset event that comes while the scheduler creates
        # a run for the asset queued until the asset's next event (apache/airflow#56050):
        # give it one, as the next job to finish would.
        submit_mix(kind, 1, 0, 0)
        return None

    wait_until(handled, 180, f"{len(jobids)} jobs to reach {dag_id}", 5.0)
    wait_until(
        lambda: all(r["state"] in ("success", "failed") for r in airflow.dag_runs(dag_id)) or None,
        120, f"the runs of {dag_id} to end", 1.0,
    )  # fmt: skip


def stop_triggerer(airflow: AirflowDeployment, sig: int = signal.SIGTERM) -> None:
    """Stop the triggerer once its watchers saved how far they got (an event handed
    over less than CHECKPOINT_DELAY ago would be delivered again, by design)."""
    time.sleep(CHECKPOINT_DELAY + 2 * CHECKPOINT_INTERVAL)
    airflow.kill("triggerer", sig)


def assert_each_once(
    airflow: AirflowDeployment, kind: str, wanted: list[int], unwanted: list[int]
) -> list[dict[str, Any]]:
    """The wanted jobs became one asset event each and reached the DAG once each, the
    unwanted ones neither; the wanted jobs' events."""
    dag_id = f"on_flux_jobs_{kind}"
    produced = collections.Counter(e["jobid"] for e in asset_events(airflow, kind))
    handled = collections.Counter(e["jobid"] for e in delivered(airflow, dag_id))
    for counts in (produced, handled):
        assert {jobid: counts[jobid] for jobid in wanted} == dict.fromkeys(wanted, 1)
        assert not [jobid for jobid in unwanted if counts[jobid]]
    assert not [run for run in airflow.dag_runs(dag_id) if run["state"] == "failed"]
    return [e for e in asset_events(airflow, kind) if e["jobid"] in wanted]


@pytest.fixture
def watcher_running(deployment: Deployment, kind: str) -> None:
    """Wait until the watcher of the instance's job events runs."""
    airflow, dag_id = deployment.airflow, f"on_flux_jobs_{kind}"
    airflow.wait_for_dag(dag_id)
    # The watcher starts once the scheduler has seen the DAG's asset, and fires for
    # what happens from then on: a probe job shows when it runs.
    probes: list[int] = []

    def probe_arrived() -> bool | None:
        probes.extend(submit_mix(kind, 1, 0, 0)[0])
        arrived = {e["jobid"] for e in asset_events(airflow, kind)}
        return True if arrived & set(probes) else None

    wait_until(probe_arrived, 180, f"the watcher of {dag_id} to run", 5.0)
    wait_for_delivery(airflow, kind, [])


@pytest.mark.usefixtures("watcher_running")
def test_only_the_matching_jobs_reach_the_dag_each_once(deployment: Deployment, kind: str) -> None:
    wanted, unwanted = submit_mix(kind, matching=5, failing=8, other=7)
    wait_until_inactive(kind, wanted + unwanted)
    wait_for_delivery(deployment.airflow, kind, wanted)
    events = assert_each_once(deployment.airflow, kind, wanted, unwanted)
    assert {e["source"] for e in events} == {"journal"}


@pytest.mark.usefixtures("watcher_running")
def test_jobs_that_finish_while_the_triggerer_is_down_reach_the_dag_after_it_restarts(
    deployment: Deployment, kind: str
) -> None:
    airflow = deployment.airflow
    before, unwanted_before = submit_mix(kind, matching=2, failing=1, other=1)
    wait_for_delivery(airflow, kind, before)
    stop_triggerer(airflow)
    try:
        wanted, unwanted = submit_mix(kind, matching=3, failing=2, other=2)
        wait_until_inactive(kind, wanted + unwanted)
    finally:
        airflow.start_component("triggerer")
    wait_for_delivery(airflow, kind, wanted)
    assert_each_once(airflow, kind, before + wanted, unwanted_before + unwanted)


@pytest.mark.usefixtures("watcher_running")
def test_a_second_triggerer_takes_over_the_watcher_of_a_killed_one(
    deployment: Deployment, kind: str
) -> None:
    airflow = deployment.airflow
    before, unwanted_before = submit_mix(kind, matching=2, failing=1, other=1)
    wait_for_delivery(airflow, kind, before)
    airflow.start_component("triggerer", name="triggerer-2")
    stop_triggerer(airflow, signal.SIGKILL)  # a crash: its watcher moves after the threshold
    try:
        wanted, unwanted = submit_mix(kind, matching=3, failing=2, other=2)
        wait_until_inactive(kind, wanted + unwanted)
        wait_for_delivery(airflow, kind, wanted)
    finally:
        airflow.kill("triggerer-2", signal.SIGTERM)
        airflow.start_component("triggerer")
    assert_each_once(airflow, kind, before + wanted, unwanted_before + unwanted)


@pytest.mark.usefixtures("watcher_running")
def test_a_guest_gets_the_same_events_through_job_list(deployment: Deployment, kind: str) -> None:
    airflow = deployment.airflow
    stop_triggerer(airflow)
    airflow.start_component("triggerer", env=GUEST)
    try:
        wanted, unwanted = submit_mix(kind, matching=2, failing=2, other=1)
        wait_until_inactive(kind, wanted + unwanted)
        wait_for_delivery(airflow, kind, wanted)
        events = assert_each_once(airflow, kind, wanted, unwanted)
        assert {e["source"] for e in events} == {"job-list"}
    finally:
        stop_triggerer(airflow)
        airflow.start_component("triggerer")
