"""What ``dag.test()`` cannot show, in a real deployment (PostgreSQL, scheduler,
dag-processor, triggerer and api-server as processes), read through Airflow's REST
API as a user sees it: task states, XComs, task logs, worker starts."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from airflow_provider_flux.hooks.flux import FluxHook
from airflow_provider_flux.job.jobid import format_jobid
from airflow_provider_flux.testing.deployment import (
    AirflowDeployment,
    wait_until,
    worker_starts,
)
from tests.conftest import skip_without_flux
from tests.deployment.conftest import Deployment
from tests.flux_instances import FluxTestInstance


def wait_for_trigger(
    airflow: AirflowDeployment,
    dag_id: str,
    run_id: str,
    task_id: str,
    try_number: int = 1,
    map_index: int = -1,
) -> None:
    """Wait until a triggerer runs the deferred try's trigger. (Until then no trigger
    exists that Airflow could tell of a kill: a task cleared or marked before it
    starts leaves its job running.)"""

    def watching() -> bool | None:
        log = airflow.task_log(dag_id, run_id, task_id, try_number, map_index)
        return True if "waiting for event='clean'" in log else None

    wait_until(watching, 60, f"the trigger of {task_id} try {try_number}", interval=0.5)


def task_log_showing(
    airflow: AirflowDeployment, dag_id: str, run_id: str, task_id: str, text: str,
    map_index: int = -1,
) -> str:  # fmt: skip
    """The try's log once it shows ``text`` (the triggerer's part can reach it a
    moment after the run has ended), or as it is after 30 s, for the assertion."""

    def showing() -> str | None:
        log = airflow.task_log(dag_id, run_id, task_id, map_index=map_index)
        return log if text in log else None

    try:
        return wait_until(showing, 30, f"{text!r} in the log of {task_id}", interval=0.5)
    except TimeoutError:
        return airflow.task_log(dag_id, run_id, task_id, map_index=map_index)


def wait_for_clean(conn_id: str, jobid: int) -> None:
    hook = FluxHook(conn_id)
    wait_until(lambda: hook.read_eventlog(jobid)[1] or None, 60, f"job {jobid} to be clean")


def exceptions_of(conn_id: str, jobid: int) -> list[dict[str, object]]:
    """The contexts of the job's exception events."""
    events, _ = FluxHook(conn_id).read_eventlog(jobid)
    return [event.context for event in events if event.name == "exception"]


def logged_after_its_trigger_ended(airflow: AirflowDeployment, line: str) -> bool:
    """Whether a trigger's last line went to the triggerer's own log. Airflow 3.3.2's
    triggerer closes a trigger's task log when the trigger runner reports it finished
    (``TriggerRunnerSupervisor._handle_request``), and log lines come on another
    socket: a line that the busy supervisor reads after that report goes to its own
    log instead (seen once in CI, with 20 triggers ending at once)."""
    return line in airflow.component_log("triggerer")


def triggerers_of(
    airflow: AirflowDeployment, dag_id: str, run_id: str, task_id: str, map_index: int = -1
) -> set[str]:
    """The triggerer jobs that ran the first try's trigger (each writes a log of its
    own: ``attempt=1.log.trigger.<triggerer job ID>.log``)."""
    task = Path(airflow.home, "logs", f"dag_id={dag_id}", f"run_id={run_id}", f"task_id={task_id}")
    if map_index >= 0:
        task = task / f"map_index={map_index}"
    return {path.name.split(".")[-2] for path in task.glob("attempt=1.log.trigger.*.log")}


def defer_mapped_sensors(airflow: AirflowDeployment, dag_id: str, jobids: list[int]) -> str:
    """Run the mapped sensors on ``jobids``; the run ID, once every sensor is deferred
    and its worker seen to exit."""
    run_id = airflow.trigger(dag_id, {"jobids": jobids})
    airflow.wait_for_deferred(dag_id, run_id, {("wait", index) for index in range(len(jobids))})
    # A trigger that fires before the deferring worker's exit is noticed (within
    # [workers] min_heartbeat_interval, 1 s here) may make Airflow 3.3.2 retry a task
    # that already ended (docs/guides/long-jobs.md): that race is not what these tests are about.
    time.sleep(2)
    return run_id


def test_mapped_sensors_end_in_the_triggerer(
    deployment: Deployment, flux: FluxTestInstance, kind: str
) -> None:
    airflow, dag_id = deployment.airflow, f"mapped_sensors_{kind}"
    jobids = flux.pending_jobs(20)
    run_id = defer_mapped_sensors(airflow, dag_id, jobids)
    for jobid in jobids:
        flux.release(jobid)
    assert airflow.wait_for_run(dag_id, run_id) == "success"
    for index, jobid in enumerate(jobids):
        value = airflow.xcom(dag_id, run_id, "wait", map_index=index)
        assert (value["name"], value["jobid"], value["job"]) == (
            "clean",
            jobid,
            format_jobid(jobid),
        )
        happened = f"job {format_jobid(jobid)}: event='clean' happened"
        log = task_log_showing(airflow, dag_id, run_id, "wait", happened, map_index=index)
        assert happened in log or logged_after_its_trigger_ended(airflow, happened)
        assert worker_starts(log) == 1, log  # to defer; it ended in the triggerer


def test_sensors_started_from_the_trigger_take_no_worker(
    deployment: Deployment, flux: FluxTestInstance, kind: str
) -> None:
    airflow, dag_id = deployment.airflow, f"start_from_trigger_{kind}"
    jobids = flux.pending_jobs(3)
    run_id = airflow.trigger(dag_id, {"jobids": jobids})
    waits = {("from_conf_0", 0), ("from_conf_1", 1), ("from_xcom", 2), ("mapped", 2)}
    airflow.wait_for_deferred(
        dag_id, run_id, {(task_id, -1 if task_id != "mapped" else 0) for task_id, _ in waits}
    )
    for jobid in jobids:
        flux.release(jobid)
    assert airflow.wait_for_run(dag_id, run_id) == "success"
    for task_id, position in waits:
        map_index = 0 if task_id == "mapped" else -1
        value = airflow.xcom(dag_id, run_id, task_id, map_index=map_index)
        assert (value["name"], value["jobid"]) == ("clean", jobids[position])
        if task_id == "mapped":
            # Airflow expands a mapped task's job ID only in a worker: it starts there.
            starts = "the task starts in a worker instead"
            log = task_log_showing(airflow, dag_id, run_id, task_id, starts, map_index)
            assert starts in log
            assert worker_starts(log) == 1, log
        else:
            log = airflow.task_log(dag_id, run_id, task_id, map_index=map_index)
            assert worker_starts(log) == 0, log


# [START howto_deployment_test]
def test_cancel_while_deferred_fails_the_task_once_with_the_note(
    deployment: Deployment, flux: FluxTestInstance, kind: str
) -> None:
    airflow, dag_id = deployment.airflow, f"mapped_sensors_{kind}"
    jobid = flux.running_job()
    run_id = defer_mapped_sensors(airflow, dag_id, [jobid])
    flux.cancel(jobid, "operator stopped the run")
    assert airflow.wait_for_run(dag_id, run_id) == "failed"
    (ti,) = [ti for ti in airflow.task_instances(dag_id, run_id) if ti["task_id"] == "wait"]
    assert (ti["state"], ti["try_number"]) == ("failed", 1)  # retries=2: none used
    log = task_log_showing(airflow, dag_id, run_id, "wait", "operator stopped the run", 0)
    assert "fatal exception type=cancel" in log
    assert "operator stopped the run" in log
    # [END howto_deployment_test]


def test_a_triggerer_killed_and_restarted_loses_no_event(
    deployment: Deployment, flux: FluxTestInstance, kind: str
) -> None:
    airflow, dag_id = deployment.airflow, f"mapped_sensors_{kind}"
    jobids = flux.pending_jobs(5)
    run_id = defer_mapped_sensors(airflow, dag_id, jobids)
    airflow.kill("triggerer")
    try:
        for jobid in jobids:  # every event happens while no triggerer runs
            flux.release(jobid)
        for jobid in jobids:
            wait_for_clean(f"flux_{kind}", jobid)
    finally:
        airflow.start_component("triggerer")
    assert airflow.wait_for_run(dag_id, run_id) == "success"
    for index, jobid in enumerate(jobids):
        assert airflow.xcom(dag_id, run_id, "wait", map_index=index)["jobid"] == jobid


def test_a_second_triggerer_takes_over_a_killed_ones_waits_and_cancels_nothing(
    deployment: Deployment, flux: FluxTestInstance, kind: str, tmp_path: Path
) -> None:
    airflow, dag_id, conn_id = deployment.airflow, f"failover_{kind}", f"flux_{kind}"
    flag = tmp_path / "flag"  # the real submitted jobs run until it exists
    jobids = flux.pending_jobs(4)
    run_id = airflow.trigger(dag_id, {"jobids": jobids, "flag": str(flag)})
    waits = [("wait", index) for index in range(len(jobids))] + [("run_0", -1), ("run_1", -1)]
    airflow.wait_for_deferred(dag_id, run_id, set(waits))
    for task_id, map_index in waits:  # every wait runs in the one triggerer
        wait_for_trigger(airflow, dag_id, run_id, task_id, map_index=map_index)
    submitted = [
        int(airflow.xcom(dag_id, run_id, task, key="jobid")) for task in ("run_0", "run_1")
    ]
    airflow.start_component("triggerer", name="triggerer-2")
    try:
        # Killed: its triggers move once its heartbeat is older than the health-check
        # threshold. Every job ends meanwhile, while no triggerer watches it.
        airflow.kill("triggerer")
        for jobid in jobids:
            flux.release(jobid)
        if kind == "sim":
            for jobid in submitted:
                deployment.sim.release(jobid)
        flag.touch()
        assert airflow.wait_for_run(dag_id, run_id) == "success"
    finally:
        airflow.kill("triggerer-2", signal.SIGTERM)
        airflow.start_component("triggerer")
    tries = {(ti["task_id"], ti["map_index"]): ti["try_number"]
             for ti in airflow.task_instances(dag_id, run_id)}  # fmt: skip
    assert {key: tries[key] for key in waits} == dict.fromkeys(waits, 1)
    # The move cancelled no job: each submitted job ran to its end, exit 0.
    for jobid in submitted:
        assert exceptions_of(conn_id, jobid) == []
    # Each wait's trigger ran in two triggerers: the killed one, then its successor.
    for task_id, map_index in waits:
        assert len(triggerers_of(airflow, dag_id, run_id, task_id, map_index)) == 2


def test_clearing_or_failing_a_deferred_submit_task_cancels_its_job(
    deployment: Deployment, flux: FluxTestInstance, kind: str
) -> None:
    airflow, dag_id, conn_id = deployment.airflow, f"long_job_{kind}", f"flux_{kind}"
    run_id = airflow.trigger(dag_id)
    airflow.wait_for_deferred(dag_id, run_id, {("run", -1)})
    first = int(airflow.xcom(dag_id, run_id, "run", key="jobid"))
    jobs = [first]
    try:
        wait_for_trigger(airflow, dag_id, run_id, "run", 1)
        airflow.clear_task(dag_id, run_id, "run")  # the new try submits a job of its own
        second = wait_until(
            lambda: _deferred_on_another_job(airflow, dag_id, run_id, first), 180, "the new try"
        )
        jobs.append(second)
        wait_for_trigger(airflow, dag_id, run_id, "run", 2)
        wait_for_clean(conn_id, first)
        assert [ctx["type"] for ctx in exceptions_of(conn_id, first)] == ["cancel"]

        airflow.set_task_state(dag_id, run_id, "run", "failed")
        wait_for_clean(conn_id, second)
        (cancel,) = exceptions_of(conn_id, second)
        assert cancel["type"] == "cancel"
        assert dag_id in str(cancel["note"])
        assert len(exceptions_of(conn_id, first)) == 1  # cancelled once
    finally:  # a job left running would hold the instance's cores
        for jobid in jobs:
            if not FluxHook(conn_id).read_eventlog(jobid)[1]:
                flux.cancel(jobid, "test cleanup")


def test_a_decorated_task_cancelled_from_flux_fails_once_with_the_note(
    deployment: Deployment, flux: FluxTestInstance, kind: str, tmp_path: Path
) -> None:
    airflow, dag_id = deployment.airflow, f"task_flux_{kind}"
    flag = tmp_path / "flag"
    run_id = airflow.trigger(dag_id, {"flag": str(flag)})
    try:
        airflow.wait_for_deferred(dag_id, run_id, {("call", -1)})
        wait_for_trigger(airflow, dag_id, run_id, "call", 1)
        # Past the window in which Airflow 3.3.2 may retry a task whose trigger fires
        # before the deferring worker is seen to exit (docs/guides/long-jobs.md): not this.
        time.sleep(2)
        jobid = int(airflow.xcom(dag_id, run_id, "call", key="jobid"))
        flux.cancel(jobid, "operator stopped the call")
        assert airflow.wait_for_run(dag_id, run_id) == "failed"
        (ti,) = airflow.task_instances(dag_id, run_id)
        # retries=2: a job's failure is not retried
        assert (ti["state"], ti["try_number"]) == ("failed", 1)
        log = task_log_showing(airflow, dag_id, run_id, "call", "operator stopped the call")
        assert "stdout: waiting for the flag" in log
        assert "fatal exception type=cancel: operator stopped the call" in log
    finally:
        flag.touch()  # ends the job of any try left running


def test_clearing_a_running_decorated_task_cancels_its_job(
    deployment: Deployment, flux: FluxTestInstance, kind: str, tmp_path: Path
) -> None:
    airflow, dag_id, conn_id = deployment.airflow, f"task_flux_{kind}", f"flux_{kind}"
    flag = tmp_path / "flag"
    run_id = airflow.trigger(dag_id, {"flag": str(flag)})
    airflow.wait_for_deferred(dag_id, run_id, {("call", -1)})
    first = int(airflow.xcom(dag_id, run_id, "call", key="jobid"))
    jobs = [first]
    try:
        wait_for_trigger(airflow, dag_id, run_id, "call", 1)
        airflow.clear_task(dag_id, run_id, "call")  # the new try calls the function again
        second = wait_until(
            lambda: _deferred_on_another_job(airflow, dag_id, run_id, first, "call"),
            180, "the new try",
        )  # fmt: skip
        jobs.append(second)
        wait_for_clean(conn_id, first)
        assert [ctx["type"] for ctx in exceptions_of(conn_id, first)] == ["cancel"]
        flag.touch()
        assert airflow.wait_for_run(dag_id, run_id) == "success"
        assert airflow.xcom(dag_id, run_id, "call") == "flag seen"
        assert exceptions_of(conn_id, second) == []
    finally:
        flag.touch()  # a job left running would hold the instance's cores
        for jobid in jobs:
            wait_for_clean(conn_id, jobid)


def _deferred_on_another_job(
    airflow: AirflowDeployment, dag_id: str, run_id: str, first: int, task_id: str = "run"
) -> int | None:
    if airflow.task_states(dag_id, run_id).get((task_id, -1)) != "deferred":
        return None
    try:
        jobid = int(airflow.xcom(dag_id, run_id, task_id, key="jobid"))
    except RuntimeError:  # not pushed yet
        return None
    return jobid if jobid != first else None


def test_waits_resume_after_the_flux_instance_restarts(deployment: Deployment) -> None:
    """A one-broker instance with a state directory keeps its pending jobs across a
    restart; Flux cancels the running ones at shutdown. Real Flux only: the
    simulator keeps no state across a restart."""
    real = deployment.real
    if real is None:
        skip_without_flux()
    airflow, dag_id = deployment.airflow, "mapped_sensors_real"
    pending, running = real.pending_job(), real.running_job()
    run_id = defer_mapped_sensors(airflow, dag_id, [pending, running])
    for map_index in (0, 1):  # the jobs are watched when Flux goes down
        wait_for_trigger(airflow, dag_id, run_id, "wait", map_index=map_index)
    real.instance.restart()
    real.release(pending)
    assert airflow.wait_for_run(dag_id, run_id) == "failed"
    states = airflow.task_states(dag_id, run_id)
    assert (states[("wait", 0)], states[("wait", 1)]) == ("success", "failed")
    assert airflow.xcom(dag_id, run_id, "wait", map_index=0)["jobid"] == pending
    cancelled = f"job {format_jobid(running)}: fatal exception type=cancel"
    log = task_log_showing(airflow, dag_id, run_id, "wait", cancelled, map_index=1)
    assert cancelled in log
