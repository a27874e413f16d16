"""One event loop, as one triggerer, watching jobs on three real instances at once."""

from __future__ import annotations

import asyncio
from contextlib import ExitStack
from pathlib import Path

import pytest

from airflow_provider_flux.aio import connection_stats
from airflow_provider_flux.testing import LocalFluxInstance
from airflow_provider_flux.triggers.flux import FluxJobEventTrigger
from tests.instances.conftest import real_instance
from tests.instances.test_multi_node import first_event


def held_job(instance: LocalFluxInstance) -> str:
    return instance.run("submit", "--urgency=hold", "true").stdout.strip()


def release(instance: LocalFluxInstance, jobid: str) -> None:
    instance.run("job", "urgency", jobid, "default")


@pytest.mark.asyncio
async def test_an_instance_that_goes_down_holds_up_only_its_own_waits(tmp_path: Path) -> None:
    with ExitStack() as stack:
        a, b, c = [real_instance(statedir=str(tmp_path / name)) for name in "abc"]
        for instance in (a, b, c):
            # Started in a thread: the loop must stay free meanwhile.
            await asyncio.to_thread(instance.start)
            stack.callback(instance.stop)
        jobs = {instance.uri: (instance, held_job(instance)) for instance in (a, b, c)}
        waits = {
            uri: asyncio.create_task(
                first_event(FluxJobEventTrigger(jobid, event="finish", flux_uri=uri,
                                                reconnect_attempts=8))
            )
            for uri, (_, jobid) in jobs.items()
        }  # fmt: skip
        # One connection per instance, each serving its own wait.
        for _ in range(1500):
            streams = {uri: s["streams"] for uri, s in connection_stats().items()}
            if streams == dict.fromkeys(jobs, 1):
                break
            await asyncio.sleep(0.02)
        assert streams == dict.fromkeys(jobs, 1)

        await asyncio.to_thread(b.shutdown)  # its held job is kept in its statedir
        for instance in (a, c):
            await asyncio.to_thread(release, instance, jobs[instance.uri][1])
        for instance in (a, c):
            done = await asyncio.wait_for(waits[instance.uri], 60)
            assert done["status"] == "success", done
        assert not waits[b.uri].done()

        # Back at the same address: the wait reconnects and goes on.
        await asyncio.to_thread(b.start)
        await asyncio.to_thread(release, b, jobs[b.uri][1])
        done = await asyncio.wait_for(waits[b.uri], 120)
        assert done["status"] == "success", done
