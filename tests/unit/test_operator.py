"""FluxSubmitJobOperator: the jobspecs it builds, the input it refuses, how it judges a
finished job, and cancelling on kill."""

from __future__ import annotations

import asyncio
import json
import stat
from typing import Any

import pytest

from airflow_provider_flux.hooks.flux import FluxHook
from airflow_provider_flux.job.ending import describe_wait_status
from airflow_provider_flux.job.event import JobEvent
from airflow_provider_flux.job.jobid import parse_jobid
from airflow_provider_flux.job.output import format_output
from airflow_provider_flux.jobspec import array_indices
from airflow_provider_flux.operators.flux import FluxSubmitJobOperator
from airflow_provider_flux.testing import SimulatedFlux, load_scenario
from airflow_provider_flux.testing.bindings import Flux, job
from airflow_provider_flux.testing.dag_test import use_flux_connection
from airflow_provider_flux.version_compat import AirflowFailException


def operator(**kwargs: Any) -> FluxSubmitJobOperator:
    return FluxSubmitJobOperator(task_id="run", **kwargs)


def test_command_jobspec_carries_the_options() -> None:
    spec = operator(
        command="python sim.py --steps '10 20'", num_tasks=4, cores_per_task=2,
        gpus_per_task=1, num_nodes=2, duration="2h", cwd="/scratch", job_name="sim",
        environment={"OMP_NUM_THREADS": "2"}, flux_queue="batch", dependencies=["ƒ2", 5],
        attributes={"user.project": "climate"},
    ).build_jobspec()  # fmt: skip
    assert spec["tasks"][0]["command"] == ["python", "sim.py", "--steps", "10 20"]
    node = spec["resources"][0]
    assert (node["type"], node["count"]) == ("node", 2)
    slot = node["with"][0]
    assert slot["count"] == 2
    assert slot["with"] == [{"type": "core", "count": 2}, {"type": "gpu", "count": 1}]
    system = spec["attributes"]["system"]
    assert system["duration"] == 7200
    assert system["cwd"] == "/scratch"
    assert system["job"]["name"] == "sim"
    assert system["environment"] == {"OMP_NUM_THREADS": "2"}
    assert system["queue"] == "batch"
    assert system["dependencies"] == [
        {"scheme": "afterok", "value": "1"}, {"scheme": "afterok", "value": "5"},
    ]  # fmt: skip
    assert spec["attributes"]["user"]["project"] == "climate"


def test_the_worker_environment_does_not_leak_into_jobs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SECRET_TOKEN", "hunter2")
    assert operator(command=["true"]).build_jobspec()["attributes"]["system"]["environment"] == {}


@pytest.mark.parametrize("text", [
    '{"version": 1, "resources": [], "tasks": [], "attributes": {"system": {}}}',
    "version: 1\nresources: []\ntasks: []\nattributes:\n  system: {}\n",
])  # fmt: skip
def test_jobspec_as_json_or_yaml_text(text: str) -> None:
    spec = operator(jobspec=text, attributes={"system.duration": 60}).build_jobspec()
    assert spec["version"] == 1
    assert spec["attributes"]["system"]["duration"] == 60


def test_batch_script_runs_in_a_nested_instance() -> None:
    script = "#!/bin/sh\nflux run hostname\n"
    spec = operator(script=script, num_tasks=2, job_name="batch").build_jobspec()
    assert spec["tasks"][0]["command"] == ["flux", "broker", "{{tmpdir}}/script"]
    system = spec["attributes"]["system"]
    assert system["files"]["script"]["data"] == script
    assert system["files"]["script"]["mode"] == 0o700 | stat.S_IFREG
    assert system["shell"]["options"]["per-resource"] == {"type": "node"}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "give exactly one of command, jobspec or script"),
        ({"command": "true", "script": "#!/bin/sh"}, "give exactly one"),
    ],
)
def test_ambiguous_request_is_refused_when_the_dag_is_parsed(
    kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        operator(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"command": ""}, "command must not be empty"),
        ({"command": []}, "command must not be empty"),
        ({"command": "true", "num_tasks": 0}, "num_tasks must be an integer >= 1"),
        ({"command": "true", "duration": "soon"}, "invalid Flux duration 'soon'"),
        ({"command": "true", "urgency": 40}, "urgency must be an integer from 0 to 31"),
        ({"command": "true", "dependencies": ["nope"]}, "nope is not a valid Flux jobid"),
        ({"script": "echo no shebang"}, "must start with '#!'"),
        ({"jobspec": "[1, 2"}, "neither JSON nor YAML"),
        ({"jobspec": "- a list"}, "jobspec must be a mapping"),
    ],
)
def test_bad_input_fails_before_submitting(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(AirflowFailException, match="bad job request") as caught:
        operator(**kwargs).execute({})  # type: ignore[arg-type]
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (0, (0, None, "exited with code 0")),
        (768, (3, None, "exited with code 3")),
        (15, (None, 15, "was killed by signal 15 (SIGTERM)")),
        (36352, (142, None, "exited with code 142")),
    ],
)
def test_wait_status(status: int, expected: tuple[Any, ...]) -> None:
    assert describe_wait_status(status) == expected


def test_output_is_grouped_by_stream_and_cut_at_the_limit() -> None:
    events = [JobEvent.from_flux(e) for e in load_scenario("two-tasks").eventlogs["guest.output"]]
    text, left_out = format_output(events, 10_000)
    assert left_out == 0
    assert text.startswith("--- stdout ---\n")
    cut, left_out = format_output(events, 10)
    assert len(cut.encode()) <= 10
    assert left_out == len(text.encode()) - 10


async def test_on_kill_cancels_the_job_naming_dag_task_and_run(
    sim: SimulatedFlux, airflow_db: str
) -> None:
    use_flux_connection(sim.uri)
    jobid = await asyncio.to_thread(sim.submit, "success", hold_before="finish")
    task = operator(command="true")
    task.submitted_jobids = [jobid]
    task._run_id = "manual__1"
    await asyncio.to_thread(task.on_kill)
    events = await asyncio.to_thread(lambda: list(job.event_watch(Flux(sim.uri), jobid)))
    exception = next(e for e in events if e.name == "exception")
    assert exception.context["type"] == "cancel"
    assert exception.context["note"] == "Airflow stopped task adhoc_airflow.run (run manual__1)"
    assert events[-1].name == "clean"


def test_on_kill_leaves_the_job_alone_when_told_to(sim: SimulatedFlux, airflow_db: str) -> None:
    use_flux_connection(sim.uri)
    jobid = sim.submit("success", hold_before="finish")
    task = operator(command="true", cancel_on_kill=False)
    task.submitted_jobids = [jobid]
    task.on_kill()
    lookup = Flux(sim.uri).rpc("job-info.lookup", {"id": jobid, "keys": ["eventlog"]}).get()
    assert "exception" not in json.dumps(lookup)
    sim.release(jobid)


def test_the_airflow_queue_stays_the_executor_queue() -> None:
    task = operator(command="true", flux_queue="gpu", queue="celery-hpc")
    assert task.queue == "celery-hpc"
    assert task.build_jobspec()["attributes"]["system"]["queue"] == "gpu"


@pytest.mark.parametrize(
    ("array", "indices"),
    [(3, [0, 1, 2]), ("1-3", [1, 2, 3]), ("[0,2,4-6]", [0, 2, 4, 5, 6]), ("5-5", [5])],
)
def test_array_indices_are_a_count_or_a_flux_idset(array: Any, indices: list[int]) -> None:
    assert array_indices(array) == indices


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (0, "array must be an integer >= 1"),
        ("20", "array '20' is text: as an idset it is the one index 20"),
        ("3-1", "runs backwards"),
        ("1-", "is not an idset"),
        ("a-b", "is not an idset"),
        (True, "array must be a count or an idset"),
    ],
)
def test_bad_arrays_are_refused(array: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        array_indices(array)


def test_each_array_job_is_told_its_index_as_flux_submit_cc_does() -> None:
    task = operator(
        command=["simulate", "--sample={cc}"], job_name="sweep-{cc}", cwd="/runs/{cc}",
        attributes={"user.sample": "s{cc}"}, environment={"A": "1"}, array="4-5",
    )  # fmt: skip
    spec = task.build_jobspec(5)
    assert spec["tasks"][0]["command"] == ["simulate", "--sample=5"]
    system = spec["attributes"]["system"]
    assert system["job"]["name"] == "sweep-5"
    assert system["cwd"] == "/runs/5"
    assert system["environment"] == {"A": "1", "FLUX_JOB_CC": "5"}
    assert spec["attributes"]["user"]["sample"] == "s5"
    assert "FLUX_JOB_CC" not in task.build_jobspec()["attributes"]["system"]["environment"]


def test_an_array_is_submitted_all_or_none(sim: SimulatedFlux, airflow_db: str) -> None:
    use_flux_connection(sim.uri)
    held = operator(command="true", attributes={"system.simulator.hold_before": "alloc"})
    bad = {"version": 1, "tasks": [], "attributes": {}}
    with pytest.raises(OSError, match="the 2 jobs accepted were cancelled: ") as caught:
        FluxHook().submit_many([held.build_jobspec(), held.build_jobspec(), bad])
    cancelled = str(caught.value).rsplit(": ", 1)[1].split(", ")
    assert len(cancelled) == 2
    handle = Flux(sim.uri)
    for jobid in cancelled:
        found = handle.rpc("job-info.lookup", {"id": parse_jobid(jobid), "keys": ["eventlog"]})
        assert '"type":"cancel"' in found.get()["eventlog"]


def test_the_hook_cancels_a_job_as_flux_cancel_does(sim: SimulatedFlux, airflow_db: str) -> None:
    """``FluxHook.cancel`` is API for DAG authors (no caller in the provider)."""
    use_flux_connection(sim.uri)
    held = operator(command="true", attributes={"system.simulator.hold_before": "alloc"})
    hook = FluxHook()
    jobid = hook.submit(held.build_jobspec())
    hook.cancel(jobid, "not needed any more")
    events, complete = hook.read_eventlog(jobid)
    exception = next(event for event in events if event.name == "exception")
    assert exception.context["type"] == "cancel"
    assert exception.context["note"] == "not needed any more"
    assert complete  # a pending job that is cancelled ends at once
    with pytest.raises(OSError, match="inactive"):
        hook.cancel(jobid)  # as flux cancel says of a job that has ended


def test_many_jobs_are_submitted_and_cancelled_a_window_at_a_time(
    sim: SimulatedFlux, airflow_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_provider_flux.hooks import flux as hook_module

    monkeypatch.setattr(hook_module, "IN_FLIGHT", 3)
    use_flux_connection(sim.uri)
    held = operator(command="true", attributes={"system.simulator.hold_before": "alloc"})
    hook = FluxHook()
    jobids = hook.submit_many([held.build_jobspec() for _ in range(7)])
    assert len(set(jobids)) == 7
    assert jobids == sorted(jobids)  # in submission order
    hook.cancel_many(jobids, "done")
    handle = Flux(sim.uri)
    for jobid in jobids:
        found = handle.rpc("job-info.lookup", {"id": jobid, "keys": ["eventlog"]}).get()
        assert '"note":"done"' in found["eventlog"]


def test_the_job_failed_error_is_still_importable_from_the_operator_module() -> None:
    """Until 0.2.0 it was defined there, and DAGs catch it by that path."""
    from airflow_provider_flux import exceptions
    from airflow_provider_flux.operators import flux

    assert flux.FluxJobFailedError is exceptions.FluxJobFailedError
