"""Finding the jobs of a task instance's earlier tries by the identity they carry."""

from __future__ import annotations

import uuid
from types import SimpleNamespace

import pytest

from airflow_provider_flux.hooks.flux import FluxHook
from airflow_provider_flux.jobspec import jobspec_from_command, set_attribute
from airflow_provider_flux.operators.durable import (
    IDENTITY_ATTRIBUTE,
    TaskIdentity,
    follows_a_clear,
    jobs_of_latest_earlier_try,
)
from airflow_provider_flux.testing import SimulatedFlux
from airflow_provider_flux.testing.dag_test import use_flux_connection

CONN_ID = "flux_identity"


@pytest.fixture
def hook(sim: SimulatedFlux) -> FluxHook:
    use_flux_connection(sim.uri, CONN_ID)
    return FluxHook(CONN_ID)


def identity(try_number: int, run_id: str, task_id: str = "run") -> TaskIdentity:
    return TaskIdentity("dag", task_id, run_id, -1, try_number)


def submit(hook: FluxHook, who: TaskIdentity, index: int | None = None, name: str = "") -> int:
    """Submit a job carrying ``who``; once job-list lists it (after ``validate``: a retry
    looks for it seconds later, not at once)."""
    jobspec = jobspec_from_command(["true"], name=name or who.job_name())
    set_attribute(jobspec, IDENTITY_ATTRIBUTE, who.attribute(index))
    jobid = hook.submit(jobspec)
    bindings = hook.get_bindings()
    bindings.job.event_wait(bindings.open(hook.get_uri()), jobid, "validate")
    return jobid


def names(run_id: str, upto: int) -> list[str]:
    return [identity(1, run_id).job_name(n) for n in range(1, upto)]


def test_the_latest_earlier_try_is_found_not_other_tasks_or_later_tries(hook: FluxHook) -> None:
    run_id = f"manual__{uuid.uuid4().hex}"
    submit(hook, identity(1, run_id))
    second = submit(hook, identity(2, run_id))
    submit(hook, identity(2, run_id, task_id="other"))
    submit(hook, identity(4, run_id))  # a later try than the one looking
    found = jobs_of_latest_earlier_try(hook, identity(3, run_id), names(run_id, 5))
    assert found == (2, {None: second})


def test_an_array_is_found_by_index(hook: FluxHook) -> None:
    run_id = f"manual__{uuid.uuid4().hex}"
    jobs = {index: submit(hook, identity(1, run_id), index) for index in (0, 1, 2)}
    assert jobs_of_latest_earlier_try(hook, identity(2, run_id), names(run_id, 3)) == (1, jobs)


def test_jobs_named_by_the_task_are_told_apart_by_their_identity(hook: FluxHook) -> None:
    run_id = f"manual__{uuid.uuid4().hex}"
    name = f"sim-{uuid.uuid4().hex[:6]}"  # a name other runs share
    mine = submit(hook, identity(1, run_id), name=name)
    submit(hook, identity(1, f"{run_id}-other"), name=name)
    assert jobs_of_latest_earlier_try(hook, identity(2, run_id), [name]) == (1, {None: mine})


def test_a_first_try_or_a_task_that_never_submitted_finds_nothing(hook: FluxHook) -> None:
    run_id = f"manual__{uuid.uuid4().hex}"
    assert jobs_of_latest_earlier_try(hook, identity(3, run_id), names(run_id, 3)) is None


def test_default_names_lead_with_the_task_and_carry_the_identity() -> None:
    who = TaskIdentity("etl", "simulate", "manual__1", 7, 2)
    assert who.job_name() == "simulate[7].try2@etl/manual__1"
    assert who.attribute(3) == {
        "dag_id": "etl", "task_id": "simulate", "run_id": "manual__1", "map_index": 7,
        "try_number": 2, "deployment": "", "array_index": 3,
    }  # fmt: skip
    assert who.is_earlier_try_of({**who.attribute(None), "try_number": 1})
    assert not who.is_earlier_try_of({**who.attribute(None), "try_number": 2})
    assert not who.is_earlier_try_of({**who.attribute(None), "map_index": 6, "try_number": 1})


@pytest.mark.parametrize(
    ("try_number", "max_tries", "retries", "cleared"),
    [
        (1, 2, 2, False),  # the first try
        (2, 2, 2, False),  # a retry
        (3, 2, 2, False),  # the last retry
        (3, 4, 2, True),  # cleared after try 2: its retries anew
        (4, 4, 2, False),  # ... then a retry of that
        (2, 1, 0, True),  # no retries: any later try follows a clear
    ],
)
def test_a_clear_is_told_from_a_retry(
    try_number: int, max_tries: int, retries: int, cleared: bool
) -> None:
    ti = SimpleNamespace(try_number=try_number, max_tries=max_tries)
    assert follows_a_clear({"ti": ti}, retries) is cleared
