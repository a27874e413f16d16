"""One event loop, as one triggerer, watching jobs on three real instances at once."""

from __future__ import annotations

import asyncio
from contextlib import ExitStack
from pathlib import Path

import pytest

from airflow_provider_flux.aio import connection_stats
from airflow_provider_flux.triggers.flux import FluxJobEventTrigger
from tests.flux_instances import RealInstance
from tests.instances.conftest import real_instance
from tests.polling import first_event


@pytest.mark.asyncio
async def test_an_instance_that_goes_down_holds_up_only_its_own_waits(tmp_path: Path) -> None:
    with ExitStack() as stack:
        a, b, c = [real_instance(statedir=str(tmp_path / name)) for name in "abc"]
        real: dict[str, RealInstance] = {}
        for instance in (a, b, c):
            # Started in a thread: the loop must stay free meanwhile.
            await asyncio.to_thread(instance.start)
            real[instance.uri] = RealInstance(instance)
            stack.callback(real[instance.uri].stop)
        jobs = {uri: flux.pending_job() for uri, flux in real.items()}
        waits = {
            uri: asyncio.create_task(
                first_event(FluxJobEventTrigger(jobid, event="finish", flux_uri=uri,
                                                reconnect_attempts=8))
            )
            for uri, jobid in jobs.items()
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
            await asyncio.to_thread(real[instance.uri].release, jobs[instance.uri])
        for instance in (a, c):
            done = await asyncio.wait_for(waits[instance.uri], 60)
            assert done["status"] == "success", done
        assert not waits[b.uri].done()

        # Back at the same address: the wait reconnects and goes on.
        await asyncio.to_thread(b.start)
        await asyncio.to_thread(real[b.uri].release, jobs[b.uri])
        done = await asyncio.wait_for(waits[b.uri], 120)
        assert done["status"] == "success", done
