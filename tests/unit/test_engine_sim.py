"""Engine behaviour that needs the simulator's scripting: lost connections and resumption."""

from __future__ import annotations

import asyncio
import errno
from contextlib import aclosing

import pytest

from airflow_provider_flux.aio import (
    FluxConnectionError,
    FluxConnectionLost,
    connection_stats,
    watch,
)
from airflow_provider_flux.aio.connection import FluxConnection, acquire, release
from airflow_provider_flux.aio.errors import watch_error
from airflow_provider_flux.aio.watch import Reconnect
from airflow_provider_flux.job.event import JobEvent
from airflow_provider_flux.testing import SimulatedFlux
from tests.polling import broker_watchers

FAST = Reconnect(attempts=5, initial_delay=0.05)


async def test_lost_connection_fails_every_watch_then_the_next_reconnects(
    sim: SimulatedFlux,
) -> None:
    jobid = await asyncio.to_thread(sim.submit, "success", hold_before="start")

    async def read_all() -> list[str]:
        return [e.name async for e in watch(jobid, uri=sim.uri)]

    tasks = [asyncio.create_task(read_all()) for _ in range(5)]
    await broker_watchers(sim, 5)
    await asyncio.to_thread(sim.drop_connections)
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, FluxConnectionLost) for r in results), results
    assert "lost the connection to sim://" in str(results[0])
    assert sim.uri not in connection_stats()
    await asyncio.to_thread(sim.release, jobid)
    names = [e.name async for e in watch(jobid, uri=sim.uri)]
    assert names[-1] == "clean"


async def test_resumed_watch_loses_no_event_and_repeats_none(sim: SimulatedFlux) -> None:
    jobid = await asyncio.to_thread(sim.submit, "success", hold_before="start")
    seen: list[JobEvent] = []
    async with aclosing(watch(jobid, uri=sim.uri, reconnect=FAST)) as events:
        async for event in events:
            seen.append(event)
            if event.name == "priority":
                await asyncio.to_thread(sim.drop_connections)
                await asyncio.to_thread(sim.release, jobid)
    names = [e.name for e in seen]
    assert names == ["submit", "validate", "depend", "priority", "alloc", "start", "finish",
                     "release", "free", "clean"]  # fmt: skip
    assert len(set(seen_ts := [e.timestamp for e in seen])) == len(seen_ts)


async def test_reconnect_gives_up_after_its_attempts(sim: SimulatedFlux, tmp_path: object) -> None:
    uri = f"sim://{tmp_path}/gone"
    with pytest.raises(FluxConnectionError, match="cannot connect to sim://"):
        async for _ in watch(1, uri=uri, reconnect=Reconnect(attempts=2, initial_delay=0.01)):
            pass


async def test_idle_connection_closes(sim: SimulatedFlux, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(FluxConnection, "idle_timeout", 0.05)
    connection = await acquire(sim.uri)
    assert connection_stats()[sim.uri]["users"] == 1
    release(connection)
    await asyncio.sleep(0.2)
    assert connection.closed
    assert sim.uri not in connection_stats()


async def test_concurrent_first_watches_open_one_connection(sim: SimulatedFlux) -> None:
    connections = await asyncio.gather(*(acquire(sim.uri) for _ in range(20)))
    assert len({id(c) for c in connections}) == 1
    for connection in connections:
        release(connection)


async def test_thousands_of_events_do_not_block_the_loop(sim: SimulatedFlux) -> None:
    jobids = [await asyncio.to_thread(sim.submit, "success") for _ in range(50)]

    async def count(jobid: int) -> int:
        total = 0
        for _ in range(20):
            total += len([e async for e in watch(jobid, uri=sim.uri)])
        return total

    totals = await asyncio.gather(*(count(j) for j in jobids))
    assert totals == [200] * 50


async def test_a_read_that_timed_out_leaves_the_stream_readable(sim: SimulatedFlux) -> None:
    jobid = await asyncio.to_thread(sim.submit, "success", hold_before="alloc")
    connection = await acquire(sim.uri)
    stream = connection.start_stream(jobid, "eventlog")
    try:
        names = []
        while "priority" not in names:
            names.append((await stream.get()).name)  # type: ignore[union-attr]
        with pytest.raises(asyncio.TimeoutError):  # not TimeoutError before Python 3.11
            await asyncio.wait_for(stream.get(), 0.2)
        reading = asyncio.create_task(stream.get())
        await asyncio.sleep(0.1)  # waiting again, before the next event
        await asyncio.to_thread(sim.release, jobid)
        assert (await asyncio.wait_for(reading, 10)).name == "alloc"  # type: ignore[union-attr]
    finally:
        stream.cancel()
        release(connection)


def test_a_broker_shutting_down_is_a_lost_connection_that_a_watch_survives() -> None:
    # A broker that is shutting down unloads job-info first and answers ENOSYS; with
    # a state directory the instance comes back with its jobs (tests/deployment).
    err = watch_error(errno.ENOSYS, None, jobid=1, eventlog="eventlog", uri="local:///x")
    assert isinstance(err, FluxConnectionLost)
    assert "lost the connection to local:///x while watching job" in str(err)


def test_a_broker_not_yet_online_is_a_lost_connection_that_a_watch_survives() -> None:
    # A restarted broker answers EAGAIN ("Upstream Flux broker is offline. Try again
    # later.") until it is online; a watch that reconnects that early tries again
    # (tests/instances/test_several_instances.py met it in CI).
    detail = "Upstream Flux broker is offline. Try again later."
    err = watch_error(errno.EAGAIN, detail, jobid=1, eventlog="eventlog", uri="local:///x")
    assert isinstance(err, FluxConnectionLost)
    assert detail in str(err)
