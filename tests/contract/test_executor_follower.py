"""FluxExecutor's Flux side, held to the same assertions on a simulated and a real
instance: the follower thread submits and follows jobs, adoption finds a try's job
by what it carries, and a running job's output is read as it stands."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from airflow_provider_flux.executors.adoption import Orphan, find_jobs
from airflow_provider_flux.executors.follower import (
    JobEnded,
    JobFollower,
    SubmitFailed,
    Submitted,
    Update,
)
from airflow_provider_flux.executors.workload_job import IDENTITY_ATTRIBUTE, NAME_PREFIX, job_name
from airflow_provider_flux.flux_bindings import own_userid
from airflow_provider_flux.hooks.flux import FluxHook
from airflow_provider_flux.jobspec import jobspec_from_command
from airflow_provider_flux.operators.durable import deployment_identity
from airflow_provider_flux.testing.dag_test import use_flux_connection

# The simulator runs such a job's command for real, as real Flux does.
RUN_FOR_REAL = {"system.simulator": {"scenario": "run"}}


def shell(script: str, **options: Any) -> dict[str, Any]:
    """A job of the executor's (by its name) that runs ``script``."""
    options.setdefault("name", f"{NAME_PREFIX}test")
    attributes = {**RUN_FOR_REAL, **options.pop("attributes", {})}
    return jobspec_from_command(["sh", "-c", script], attributes=attributes, **options)


@pytest.fixture
def follower(flux_instance: Any) -> Iterator[JobFollower]:
    following = JobFollower(
        flux_instance.uri, userid=own_userid(), poll_interval=0.2, pending_check_interval=0.2
    )
    following.start()
    yield following
    following.stop()


def updates_until(follower: JobFollower, done: int, timeout: float = 60) -> list[Update]:
    """What the follower says until ``done`` jobs ended."""
    seen: list[Update] = []
    deadline = time.monotonic() + timeout
    while sum(isinstance(update, JobEnded) for update in seen) < done:
        assert time.monotonic() < deadline, seen
        seen += follower.drain()
        time.sleep(0.05)
    return seen


def test_submitted_jobs_are_followed_to_their_end(follower: JobFollower) -> None:
    follower.submit("ok", 1, shell("true"))
    follower.submit("exit3", 2, shell("exit 3"))
    updates = updates_until(follower, 2)
    submitted = {u.key: u.jobid for u in updates if isinstance(u, Submitted)}
    ended = {u.key: u for u in updates if isinstance(u, JobEnded)}
    assert set(submitted) == {"ok", "exit3"}
    assert (ended["ok"].jobid, ended["ok"].serial, ended["ok"].failure) == (
        submitted["ok"],
        1,
        None,
    )
    assert ended["exit3"].failure is not None
    assert ended["exit3"].failure.endswith("ended: exited with code 3")


def test_a_job_flux_refuses_is_a_failed_submission(follower: JobFollower) -> None:
    follower.submit("refused", 1, {"version": 1, "resources": [], "tasks": []})
    deadline = time.monotonic() + 30
    updates: list[Update] = []
    while not updates:
        assert time.monotonic() < deadline
        updates = follower.drain()
        time.sleep(0.05)
    (update,) = updates
    assert isinstance(update, SubmitFailed)
    assert update.reason.startswith("Flux refused the job")


def test_a_job_submitted_earlier_is_followed_from_its_eventlog(
    follower: JobFollower, flux_instance: Any
) -> None:
    hook = FluxHook(flux_conn_id="unused", flux_uri=flux_instance.uri)
    jobid = hook.submit(shell("exit 0"))
    events, _ = hook.read_eventlog(jobid)
    follower.follow(jobid, "adopted", 7, events)
    (ended,) = [u for u in updates_until(follower, 1) if isinstance(u, JobEnded)]
    assert (ended.key, ended.serial, ended.jobid, ended.failure) == ("adopted", 7, jobid, None)


def orphan(try_number: int, ti_id: str = "0198-ti", recorded: str | None = None) -> Orphan:
    return Orphan(ti_id, try_number, recorded, "dag", "task", "run", -1)


def identity_job(hook: FluxHook, of: Orphan, deployment: str) -> int:
    attribute = {"ti_id": of.ti_id, "try_number": of.try_number, "deployment": deployment}
    name = job_name(of)
    return hook.submit(shell("true", name=name, attributes={IDENTITY_ATTRIBUTE: attribute}))


def found_jobs(follower: JobFollower, orphans: Sequence[Orphan]) -> dict[str, int]:
    found = follower.call(lambda: find_jobs(orphans, follower.uri, own_userid()), 60)
    return {ti_id: job.jobid for ti_id, job in found.items()}


def test_adoption_finds_a_tries_job_by_its_identity(
    follower: JobFollower, flux_instance: Any
) -> None:
    hook = FluxHook(flux_conn_id="unused", flux_uri=flux_instance.uri)
    unique = f"ti-{time.monotonic_ns()}"
    mine = identity_job(hook, orphan(2, unique), deployment_identity())
    identity_job(hook, orphan(2, unique + "-other-deployment"), "elsewhere")
    # Recorded or not, the job is found; another try's or another deployment's is not.
    assert found_jobs(follower, [orphan(2, unique)]) == {unique: mine}
    assert found_jobs(follower, [orphan(2, unique, recorded=str(mine))]) == {unique: mine}
    assert found_jobs(follower, [orphan(3, unique, recorded=str(mine))]) == {}
    assert found_jobs(follower, [orphan(2, unique + "-other-deployment")]) == {}


def test_a_running_jobs_output_is_read_as_it_stands(flux_instance: Any, tmp_path: Any) -> None:
    use_flux_connection(flux_instance.uri, "flux_output_so_far")
    hook = FluxHook("flux_output_so_far")
    flag = tmp_path / "flag"
    jobid = hook.submit(shell(f"echo first; while [ ! -e {flag} ]; do sleep 0.05; done; echo last"))
    deadline = time.monotonic() + 60
    while "first" not in (text := hook.read_output_so_far(jobid, timeout=5))[0]:
        assert time.monotonic() < deadline, text
        time.sleep(0.1)
    assert text == ("--- stdout ---\nfirst\n", True)
    flag.touch()
    while "last" not in (text := hook.read_output_so_far(jobid, timeout=5))[0]:
        assert time.monotonic() < deadline, text
        time.sleep(0.1)
    assert text == ("--- stdout ---\nfirst\nlast\n", True)
