"""Instances named by the URIs flux-core's resolver understands: a batch job's nested
instance (``jobid:``), a local broker (``pid:``), and instances started under Slurm
or LSF, as far as a machine without them can go."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_provider_flux.flux_bindings import FluxUriUnresolved
from airflow_provider_flux.hooks.flux import FluxHook
from airflow_provider_flux.testing import LocalFluxInstance
from airflow_provider_flux.testing.dag_test import run_dag, use_flux_connection
from airflow_provider_flux.triggers.flux import FluxJobEventTrigger
from tests.polling import first_event

DAGS = Path(__file__).parent / "dags" / "instance_dags.py"


@pytest.fixture
def inside(parent: LocalFluxInstance, monkeypatch: pytest.MonkeyPatch) -> LocalFluxInstance:
    """This process inside ``parent``, as a task on a node of it would be: a ``jobid:``
    path is resolved from the enclosing instance, ``FLUX_URI``."""
    monkeypatch.setenv("FLUX_URI", parent.uri)
    return parent


@pytest.fixture
def batch_job(inside: LocalFluxInstance) -> Iterator[str]:
    """A running batch job's nested instance (``flux alloc --bg``), by its jobid: URI
    in local form (the remote form is ssh:// to this host, which runs no ssh server)."""
    # flux alloc connects to what it started by the remote form unless told not to.
    local = {"FLUX_URI_RESOLVE_LOCAL": "1"}
    jobid = inside.run("alloc", "--bg", "-n1", env=local).stdout.strip()
    yield f"jobid:{jobid}?local"
    inside.run("cancel", jobid, check=False)


def to_decimal(instance: LocalFluxInstance, jobid: str, uri: str | None = None) -> int:
    proxy = ["proxy", uri, "flux"] if uri else []
    return int(instance.run(*proxy, "job", "id", "--to=dec", jobid).stdout)


@pytest.mark.parametrize("dag_id", ["flux_nested", "flux_nested_poke"])
def test_a_dag_submits_into_a_batch_jobs_nested_instance_and_watches_its_job(
    inside: LocalFluxInstance,
    job_path: str,
    airflow_db: str,
    capfd: pytest.CaptureFixture[str],
    dag_id: str,
) -> None:
    use_flux_connection(inside.uri)
    result = run_dag(DAGS, dag_id, run_conf={"path": job_path})
    out, err = capfd.readouterr()
    assert result.task_states == {
        "batch": "success", "started": "success", "inner": "success",
        "watched": "success", "end_batch": "success",
    }  # fmt: skip
    # The inner job ran one level down, and is not a job of the enclosing instance.
    assert "stdout: inside, at level 1" in out + err
    assert inside.run("job", "id", str(result.xcoms["inner"]), check=False).returncode == 0
    listed = inside.run("jobs", "-a", "--no-header", "--format={id.dec}").stdout.split()
    assert str(result.xcoms["inner"]) not in listed
    assert str(result.xcoms["batch"]) in listed
    assert result.xcoms["watched"]["name"] == "finish"


def test_a_pid_uri_reaches_the_broker_of_that_process(inside: LocalFluxInstance) -> None:
    pid = inside.run("getattr", "broker.pid").stdout.strip()
    hook = FluxHook("unused", flux_uri=f"pid:{pid}")
    ok, message = hook.test_connection()
    assert ok, message
    assert f"resolved to {inside.uri}" in message
    jobid = to_decimal(inside, inside.run("submit", "--wait", "true").stdout.strip())
    events, complete = hook.read_eventlog(jobid)
    assert complete
    assert events[-1].name == "clean"


@pytest.mark.asyncio
async def test_a_wait_whose_nested_instance_ends_fails_naming_its_uri(
    inside: LocalFluxInstance, batch_job: str
) -> None:
    jobid = to_decimal(inside, inside.run("proxy", batch_job, "flux", "submit", "sleep", "300")
                       .stdout.strip(), batch_job)  # fmt: skip
    trigger = FluxJobEventTrigger(jobid, event="finish", flux_uri=batch_job, reconnect_attempts=3)
    wait = asyncio.create_task(first_event(trigger))
    await asyncio.sleep(0.5)
    assert not wait.done()
    # The nested instance dies (its broker killed: shut down, it would first end the
    # job) and its batch job ends: the watch loses its connection, and each
    # reconnect resolves the URI again, to an instance that is gone.
    pid = inside.run("proxy", batch_job, "flux", "getattr", "broker.pid").stdout
    rundir = inside.run("proxy", batch_job, "flux", "getattr", "rundir").stdout.strip()
    os.kill(int(pid), signal.SIGKILL)
    shutil.rmtree(rundir, ignore_errors=True)  # a killed broker leaves its own
    payload = await asyncio.wait_for(wait, 60)
    assert payload["reason"] == "connection"
    assert f"cannot resolve the Flux URI {batch_job!r}" in payload["message"]
    assert "is not running" in payload["message"]


def test_a_uri_that_does_not_resolve_is_named_in_the_error(inside: LocalFluxInstance) -> None:
    ended = inside.run("submit", "--wait", "true").stdout.strip()
    with pytest.raises(FluxUriUnresolved, match=rf"'jobid:{ended}'.*is not running"):
        FluxHook("unused", flux_uri=f"jobid:{ended}").read_eventlog(1)


def test_an_address_a_job_wrote_in_its_uri_memo_is_checked_before_anything_runs(
    inside: LocalFluxInstance, tmp_path: Path
) -> None:
    # A job's memo is the job's own to write: a jobid: URI resolves to what it says.
    marker = tmp_path / "ran"
    jobid = inside.run("submit", "sleep", "300").stdout.strip()
    inside.run("job", "wait-event", "-t", "60", jobid, "start")
    hostile = f"ssh://-oProxyCommand=touch${{IFS}}{marker}/run/flux/local"
    inside.run("job", "memo", jobid, f"uri={hostile}")
    try:
        ok, message = FluxHook("unused", flux_uri=f"jobid:{jobid}").test_connection()
    finally:
        inside.run("cancel", jobid)
    assert not ok
    assert f"the Flux URI 'jobid:{jobid}' resolved to an address that is refused" in message
    assert "an ssh:// host must be a host name" in message
    assert not marker.exists()


@pytest.mark.parametrize(
    ("uri", "what"),
    [
        # flux-core's slurm resolver asks scontrol, then squeue and srun: this
        # machine has no Slurm, and the error says where resolving stopped.
        ("slurm:4242", "squeue"),
        # Its lsf resolver asks IBM CSM for the job's compute node.
        ("lsf:4242", "LSF Job 4242"),
    ],
)
def test_slurm_and_lsf_uris_go_to_flux_cores_resolver(
    inside: LocalFluxInstance, uri: str, what: str
) -> None:
    ok, message = FluxHook("unused", flux_uri=uri).test_connection()
    assert not ok
    assert f"cannot resolve the Flux URI {uri!r}" in message
    assert what in message
