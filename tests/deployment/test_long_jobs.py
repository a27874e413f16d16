"""Long jobs in a real deployment: their output in the task log while they run, and
retries after a worker died that reconnect to the job rather than submit it again."""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

from airflow_provider_flux.hooks.flux import FluxHook
from airflow_provider_flux.operators.durable import IDENTITY_ATTRIBUTE, TaskIdentity
from airflow_provider_flux.testing.deployment import AirflowDeployment, wait_until
from tests.deployment.conftest import Deployment
from tests.flux_instances import FluxTestInstance

LINE = re.compile(r"stdout: line (\d+)\b")


def seen_lines(log: str) -> list[int]:
    """The job's output lines in a task log, in the order logged."""
    return [int(number) for number in LINE.findall(log)]


def test_output_lines_reach_the_task_log_while_the_job_runs(
    deployment: Deployment, kind: str
) -> None:
    airflow, dag_id = deployment.airflow, f"live_output_{kind}"
    run_id = airflow.trigger(dag_id)
    airflow.wait_for_deferred(dag_id, run_id, {("run", -1)})
    seen_while_deferred: set[int] = set()
    while airflow.task_states(dag_id, run_id)[("run", -1)] == "deferred":
        # Read first, then check the state: a line counts only if the task was
        # still deferred after the log showed it.
        lines = seen_lines(airflow.task_log(dag_id, run_id, "run", 1))
        if airflow.task_states(dag_id, run_id)[("run", -1)] == "deferred":
            seen_while_deferred.update(lines)
        time.sleep(0.5)
    assert airflow.wait_for_run(dag_id, run_id) == "success"
    final = seen_lines(airflow.task_log(dag_id, run_id, "run", 1))
    assert final == list(range(1, 31))  # each line once, in order
    # The last lines may land as the job ends; the others showed while it ran.
    assert set(range(1, 26)) <= seen_while_deferred


def test_a_trigger_re_created_after_a_triggerer_crash_goes_on_where_it_was(
    deployment: Deployment, kind: str
) -> None:
    airflow, dag_id = deployment.airflow, f"live_output_{kind}"
    run_id = airflow.trigger(dag_id)
    airflow.wait_for_deferred(dag_id, run_id, {("run", -1)})

    def saved_past_line_8() -> bool | None:
        try:
            progress = airflow.xcom(dag_id, run_id, "run", key="flux_output")
        except RuntimeError:  # not saved yet
            return None
        return True if progress["events"] > 9 else None  # the header, then lines

    wait_until(saved_past_line_8, 60, "the trigger's saved output progress", 0.5)
    airflow.kill("triggerer")
    try:
        time.sleep(3)  # lines written while no triggerer runs are not lost
    finally:
        airflow.start_component("triggerer")
    assert airflow.wait_for_run(dag_id, run_id) == "success"
    log = airflow.task_log(dag_id, run_id, "run", 1)
    assert "already shown; lines shown in the 5 s before the trigger was re-created" in log
    lines = seen_lines(log)
    assert sorted(set(lines)) == list(range(1, 31))
    # Shown twice: at most what the trigger showed after its last save (5 s apart).
    assert len(lines) - 30 <= 6


def test_output_past_the_limit_is_counted_not_logged(deployment: Deployment, kind: str) -> None:
    airflow, dag_id = deployment.airflow, f"big_output_{kind}"
    run_id = airflow.trigger(dag_id)
    state = airflow.wait_for_run(dag_id, run_id, timeout=300)
    log = airflow.task_log(dag_id, run_id, "run", 1)
    scheduler = [line for line in airflow.component_log("scheduler").splitlines() if run_id in line]
    assert state == "success", "\n".join([log[-2000:], *scheduler[-30:]])
    assert "output_limit=100000 bytes reached; the rest is counted, not shown" in log
    match = re.search(r"(\d+) bytes not shown \(output_limit=100000 bytes; (\d+) shown\)", log)
    assert match, "the log says how much was cut"
    cut, shown = int(match.group(1)), int(match.group(2))
    assert shown == 100_000
    assert cut + shown == 5_000_000


def jobs_of_task(conn_id: str, dag_id: str, run_id: str, task_id: str) -> list[int]:
    """The jobs every try of a task instance submitted, by the identity they carry."""
    hook = FluxHook(conn_id)
    names = [TaskIdentity(dag_id, task_id, run_id, -1, n).job_name() for n in range(1, 5)]
    jobids = [int(job["id"]) for job in hook.find_jobs(names, attrs=["t_submit"])]
    found = []
    for jobid, jobspec in hook.read_jobspecs(jobids).items():
        attribute = jobspec["attributes"]
        for part in IDENTITY_ATTRIBUTE.split("."):
            attribute = attribute[part]
        if (attribute["dag_id"], attribute["run_id"], attribute["task_id"]) == (
            dag_id, run_id, task_id,
        ):  # fmt: skip
            found.append(jobid)
    return sorted(found)


def xcom_or_none(airflow: AirflowDeployment, dag_id: str, run_id: str, task_id: str,
                 key: str) -> int | None:  # fmt: skip
    try:
        return int(airflow.xcom(dag_id, run_id, task_id, key=key))
    except RuntimeError:  # not pushed (yet)
        return None


def pushed_jobid(airflow: AirflowDeployment, dag_id: str, run_id: str, task_id: str) -> int:
    """The job ID the waiting try pushes, just after its ``pid`` (so maybe not yet)."""

    def jobid() -> int | None:
        return xcom_or_none(airflow, dag_id, run_id, task_id, "jobid")

    return wait_until(jobid, 30, f"{task_id}'s jobid XCom", 0.2)


def try_waiting(airflow: AirflowDeployment, dag_id: str, run_id: str, task_id: str,
                try_number: int, killed: int | None = None) -> int:  # fmt: skip
    """The task process of the task's try ``try_number`` once it waits on its job
    (the ``pid`` it pushes before waiting; not ``killed``, the last try's)."""

    def waiting() -> int | None:
        tis = {ti["task_id"]: ti for ti in airflow.task_instances(dag_id, run_id)}
        ti = tis.get(task_id)
        if ti is None or ti["try_number"] != try_number or ti["state"] != "running":
            return None
        pid = xcom_or_none(airflow, dag_id, run_id, task_id, "pid")
        return None if pid == killed else pid

    return wait_until(waiting, 120, f"{task_id} try {try_number} waiting on its job", 0.5)


def let_jobs_end(flux: FluxTestInstance, jobids: list[int], flag: Path) -> None:
    """The simulated jobs hold before they finish; the real ones wait for ``flag``."""
    flag.touch()
    if flux.kind == "simulated":
        for jobid in jobids:
            flux.finish(jobid)


def kill_waiting_worker(
    airflow: AirflowDeployment, dag_id: str, conn_id: str, flagdir: Path
) -> tuple[str, Path, int, int]:
    """Run ``dag_id``; once its ``run`` task waits on its job, kill the task's process.
    The run ID, the flag (in ``flagdir``) that lets real jobs end, the killed process
    and the job."""
    flag = flagdir / "done"
    run_id = airflow.trigger(dag_id, {"flag": str(flag)})
    pid = try_waiting(airflow, dag_id, run_id, "run", 1)
    (jobid,) = jobs_of_task(conn_id, dag_id, run_id, "run")
    os.kill(pid, signal.SIGKILL)
    return run_id, flag, pid, jobid


def test_a_worker_killed_while_its_job_runs_reconnects_without_submitting_again(
    deployment: Deployment, flux: FluxTestInstance, kind: str, tmp_path: Path
) -> None:
    airflow, dag_id, conn_id = deployment.airflow, f"durable_{kind}", f"flux_{kind}"
    run_id, flag, pid, jobid = kill_waiting_worker(airflow, dag_id, conn_id, tmp_path)
    try:
        # The retry waits on the same job: Flux has no second one.
        try_waiting(airflow, dag_id, run_id, "run", 2, killed=pid)
        assert pushed_jobid(airflow, dag_id, run_id, "run") == jobid
        assert jobs_of_task(conn_id, dag_id, run_id, "run") == [jobid]
        # The other task died between submit and storing the job ID: its retry found the
        # job by the identity the job carries.
        try_waiting(airflow, dag_id, run_id, "die_after_submit", 2)
        (gap_jobid,) = jobs_of_task(conn_id, dag_id, run_id, "die_after_submit")
        assert pushed_jobid(airflow, dag_id, run_id, "die_after_submit") == gap_jobid
        retry_log = airflow.task_log(dag_id, run_id, "die_after_submit", 2)
        assert "found 1 job(s) of try 1" in retry_log
        assert "not submitting again" in retry_log

        let_jobs_end(flux, [jobid, gap_jobid], flag)
        assert airflow.wait_for_run(dag_id, run_id) == "success"
        assert airflow.xcom(dag_id, run_id, "run") == jobid
        assert airflow.xcom(dag_id, run_id, "die_after_submit") == gap_jobid
        assert jobs_of_task(conn_id, dag_id, run_id, "run") == [jobid]
        assert jobs_of_task(conn_id, dag_id, run_id, "die_after_submit") == [gap_jobid]
    finally:
        flag.touch()  # a failure must not leave real jobs holding the cores


def test_a_retry_after_the_job_failed_submits_a_new_job(
    deployment: Deployment, flux: FluxTestInstance, kind: str, tmp_path: Path
) -> None:
    airflow, dag_id, conn_id = deployment.airflow, f"durable_{kind}", f"flux_{kind}"
    run_id, flag, pid, first = kill_waiting_worker(airflow, dag_id, conn_id, tmp_path)
    try:
        flux.cancel(first, "the job fails while no worker watches it")
        try_waiting(airflow, dag_id, run_id, "run", 2, killed=pid)
        new = pushed_jobid(airflow, dag_id, run_id, "run")
        assert new != first

        try_waiting(airflow, dag_id, run_id, "die_after_submit", 2)
        gap_jobs = jobs_of_task(conn_id, dag_id, run_id, "die_after_submit")
        let_jobs_end(flux, [new, *gap_jobs], flag)
        assert airflow.wait_for_run(dag_id, run_id) == "success"
        assert airflow.xcom(dag_id, run_id, "run") == new
        assert jobs_of_task(conn_id, dag_id, run_id, "run") == [first, new]
    finally:
        flag.touch()  # a failure must not leave real jobs holding the cores
