"""FluxExecutor's bookkeeping on a simulated instance: a task instance try resubmitted
under the same key (it deferred and resumed) is reported once, for its newest job;
a try revoked while its submit is in flight has its job cancelled and nothing
reported."""

from __future__ import annotations

import errno
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from airflow_provider_flux.executors.flux import REVOKED, FluxExecutor
from airflow_provider_flux.executors.follower import JobEnded, JobFollower
from airflow_provider_flux.executors.workload_job import job_name
from airflow_provider_flux.hooks.flux import FluxHook
from airflow_provider_flux.job.jobid import format_jobid
from airflow_provider_flux.jobspec import jobspec_from_command
from airflow_provider_flux.testing import SimulatedFlux
from airflow_provider_flux.testing.dag_test import use_flux_connection
from tests.unit.test_executor_job import workload

# The job's "python" fails at once: what matters here is which job's end is reported.
FAILS = {"flux": {"python": "/bin/false"}}


@pytest.fixture
def executor(sim: SimulatedFlux, monkeypatch: pytest.MonkeyPatch) -> Iterator[FluxExecutor]:
    use_flux_connection(sim.uri, "flux_executor_keys")
    monkeypatch.setenv("AIRFLOW__FLUX_EXECUTOR__FLUX_CONN_ID", "flux_executor_keys")
    monkeypatch.setenv("AIRFLOW__FLUX_EXECUTOR__POLL_INTERVAL", "0.2")
    running = FluxExecutor(parallelism=4)
    running.start()
    yield running
    running.end()


def events_until(executor: FluxExecutor, done: Any, timeout: float = 60) -> dict[Any, Any]:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, executor.event_buffer
        executor.sync()
        time.sleep(0.05)
    return executor.get_event_buffer()


def test_a_resubmitted_try_is_reported_once_for_its_newest_job(executor: FluxExecutor) -> None:
    task = workload(FAILS, run_id=f"resubmitted-{time.monotonic_ns()}")
    key = task.ti.key
    executor.queue_workload(task, session=None)  # type: ignore[arg-type]
    executor.trigger_tasks(open_slots=4)
    executor.queue_workload(task, session=None)  # type: ignore[arg-type]  # resumed
    executor.trigger_tasks(open_slots=4)
    assert executor.running == {key}
    events = events_until(executor, lambda: key not in executor.running)
    state, info = events[key]
    assert state == "failed"
    newest = executor_jobs_of(executor, key)[-1]
    assert info.startswith(f"Flux job {format_jobid(newest)} ended")


def test_a_try_revoked_while_submitting_has_its_job_cancelled(
    executor: FluxExecutor, tmp_path: Path
) -> None:
    slow = tmp_path / "slow-python"  # runs until cancelled, whatever it is given
    slow.write_text("#!/bin/sh\nsleep 60\n")
    slow.chmod(0o755)
    task = workload({"flux": {"python": str(slow)}}, run_id=f"revoked-{time.monotonic_ns()}")
    key = task.ti.key
    executor.queue_workload(task, session=None)  # type: ignore[arg-type]
    executor.trigger_tasks(open_slots=4)
    # What revoke_task reads of the task instance row the scheduler hands it.
    row = SimpleNamespace(key=key, external_executor_id=None)
    executor.revoke_task(ti=row)  # type: ignore[arg-type]
    assert key not in executor.running
    hook = FluxHook("flux_executor_keys")
    (jobid,) = wait_for(lambda: executor_jobs_of(executor, key))

    def ended() -> Any:
        executor.sync()  # the scheduler's heartbeat: the late submission is cancelled
        events = hook.read_eventlog(jobid)[0]
        return events if events[-1].name == "clean" else None

    events = wait_for(ended, timeout=30)
    assert any(e.name == "exception" and e.context.get("note") == REVOKED for e in events)
    executor.sync()
    assert executor.get_event_buffer() == {}


def executor_jobs_of(executor: FluxExecutor, key: Any) -> list[int]:
    """The jobs named for ``key``'s try, oldest first."""
    hook = FluxHook("flux_executor_keys")
    return sorted(int(job["id"]) for job in hook.find_jobs([job_name(key)], attrs=["t_submit"]))


def wait_for(check: Any, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return value


def test_a_try_flux_cannot_run_fails_without_a_job(executor: FluxExecutor) -> None:
    task = workload({"flux": {"nodes": 2}}, run_id=f"refused-{time.monotonic_ns()}")
    key = task.ti.key
    executor.queue_workload(task, session=None)  # type: ignore[arg-type]
    executor.trigger_tasks(open_slots=4)
    assert key not in executor.running
    state, info = executor.get_event_buffer()[key]
    assert state == "failed"
    assert info.startswith('cannot run as a Flux job: executor_config["flux"] has unknown')
    assert executor_jobs_of(executor, key) == []


def test_the_jobs_are_followed_again_after_an_error_no_reconnect_mends(
    sim: SimulatedFlux, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_provider_flux.executors import follower as follower_module

    real_stream = follower_module.instance_events
    failures = [OSError(errno.EPROTO, "bad journal response")]

    async def failing_once(*args: Any, **kwargs: Any) -> Any:
        if failures:
            raise failures.pop()
        async for batch in real_stream(*args, **kwargs):
            yield batch

    monkeypatch.setattr(follower_module, "instance_events", failing_once)
    monkeypatch.setattr(follower_module, "FOLLOW_AGAIN", 0.1)
    following = JobFollower(sim.uri, userid=None, poll_interval=0.2, pending_check_interval=60)
    following.start()
    try:
        following.submit("key", 1, jobspec_from_command(
            ["true"], name="airflow:again", attributes={"system.simulator": {"scenario": "run"}},
        ))  # fmt: skip
        ended = wait_for(lambda: [u for u in following.drain() if isinstance(u, JobEnded)])
        assert [(u.key, u.failure) for u in ended] == [("key", None)]
        assert failures == []
    finally:
        following.stop()
