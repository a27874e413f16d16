"""A real multi-node instance: four brokers on this machine, joined by Flux's overlay
network as on four nodes (``flux start --test-size=4``)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import tempfile
from pathlib import Path

import pytest

from airflow_provider_flux.testing import LocalFluxInstance
from airflow_provider_flux.testing.dag_test import run_dag, use_flux_connection
from airflow_provider_flux.triggers.flux import FluxJobEventTrigger
from tests.instances.conftest import real_instance
from tests.polling import first_event

DAGS = Path(__file__).parent / "dags" / "instance_dags.py"


def ranks_of(instance: LocalFluxInstance, jobids: list[int]) -> list[str]:
    """The broker ranks each job ran on, as ``flux jobs`` shows them."""
    out = instance.run("jobs", "-a", "--no-header", "--format={ranks}", *map(str, jobids))
    return out.stdout.split()


def test_a_job_over_two_nodes_logs_every_tasks_output_and_a_sensor_waits_on_every_node(
    four_brokers: LocalFluxInstance,
    job_path: str,
    airflow_db: str,
    capfd: pytest.CaptureFixture[str],
) -> None:
    use_flux_connection(four_brokers.uri)
    result = run_dag(DAGS, "flux_across_nodes", run_conf={"path": job_path})
    out, err = capfd.readouterr()
    assert result.task_states == {
        "spread": "success", "submit_one_per_node": "success", "every_node": "success",
    }  # fmt: skip
    # Both tasks' lines reached the task log, each from a broker of its own.
    brokers = dict(re.findall(r"stdout\[(\d)\]: task \1 on broker (\d)", out + err))
    assert set(brokers) == {"0", "1"}
    assert brokers["0"] != brokers["1"]
    # The ensemble waited on four jobs, one on each node.
    assert sorted(ranks_of(four_brokers, result.xcoms["submit_one_per_node"])) == [
        "0", "1", "2", "3"
    ]  # fmt: skip


@pytest.mark.asyncio
async def test_a_lost_broker_fails_its_jobs_with_flux_note_and_leaves_other_waits_alone() -> None:
    # Its own instance: a broker is killed.
    with real_instance(size=3) as instance, tempfile.TemporaryDirectory() as flags:
        flag = Path(flags) / "finish"

        def submit(rank: int, command: str) -> int:
            out = instance.run("submit", f"--requires=rank:{rank}", "sh", "-c", command)
            jobid = out.stdout.strip()
            instance.run("job", "wait-event", "-t", "60", jobid, "start")
            return int(instance.run("job", "id", "--to=dec", jobid).stdout)

        doomed = submit(2, "sleep 300")
        spared = submit(1, f"while [ ! -e {flag} ]; do sleep 0.05; done")
        waits = {
            jobid: asyncio.create_task(
                first_event(FluxJobEventTrigger(jobid, event="finish", flux_uri=instance.uri))
            )
            for jobid in (doomed, spared)
        }
        await asyncio.sleep(0.5)  # both watches are open on the one connection
        pid = instance.run("exec", "-r", "2", "flux", "getattr", "broker.pid").stdout
        os.kill(int(pid), signal.SIGKILL)

        lost = await asyncio.wait_for(waits[doomed], 60)
        assert lost["reason"] == "job_exception"
        assert "node failure" in lost["message"]
        assert "rank 2" in lost["message"]
        assert not waits[spared].done()

        flag.touch()
        survived = await asyncio.wait_for(waits[spared], 60)
        assert survived["status"] == "success"
