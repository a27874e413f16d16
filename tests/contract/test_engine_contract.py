"""The async engine's contract, held against the simulated instance and real Flux."""

from __future__ import annotations

import asyncio
import errno
import itertools
import select
from contextlib import aclosing
from typing import Any

import pytest

from airflow_provider_flux.aio import (
    FluxEventlogNotFound,
    cancel_job,
    connection_stats,
    watch,
)
from airflow_provider_flux.aio.connection import acquire, release
from airflow_provider_flux.job.event import JobEvent
from airflow_provider_flux.triggers.base import cancel_jobs
from tests.flux_instances import FluxTestInstance

MAIN_LIFECYCLE = ["submit", "validate", "depend", "priority", "alloc", "start", "finish",
                  "release", "free", "clean"]  # fmt: skip


async def collect(jobid: int, uri: str, eventlog: str = "eventlog") -> list[JobEvent]:
    return [event async for event in watch(jobid, eventlog, uri=uri)]


async def wait_for_watchers(instance: FluxTestInstance, expected: int) -> int:
    """The broker's count settles once the cancel requests are served."""
    for _ in range(200):
        count = await asyncio.to_thread(instance.watchers)
        if count == expected:
            return count
        await asyncio.sleep(0.05)
    return count


async def test_completed_job_replays_its_whole_eventlog_then_ends(
    flux_instance: FluxTestInstance,
) -> None:
    jobid = await asyncio.to_thread(flux_instance.completed_job)
    events = await collect(jobid, flux_instance.uri)
    names = [e.name for e in events]
    assert names == MAIN_LIFECYCLE
    assert events[0].context["urgency"] == 16
    assert events[6].context == {"status": 0}
    assert all(a.timestamp <= b.timestamp for a, b in itertools.pairwise(events))


async def test_live_job_streams_events_as_they_happen(flux_instance: FluxTestInstance) -> None:
    jobid = await asyncio.to_thread(flux_instance.running_job)
    seen: list[str] = []
    async with aclosing(watch(jobid, uri=flux_instance.uri)) as events:
        async for event in events:
            seen.append(event.name)
            if event.name == "start":
                await asyncio.to_thread(flux_instance.finish, jobid)
    assert seen == MAIN_LIFECYCLE


async def test_guest_eventlog_of_a_running_job(flux_instance: FluxTestInstance) -> None:
    jobid = await asyncio.to_thread(flux_instance.running_job)
    async with aclosing(watch(jobid, "guest.exec.eventlog", uri=flux_instance.uri)) as events:
        async for event in events:
            if event.name == "shell.start":
                break
    assert event.name == "shell.start"
    await asyncio.to_thread(flux_instance.finish, jobid)


async def test_waitcreate_waits_for_an_eventlog_not_created_yet(
    flux_instance: FluxTestInstance,
) -> None:
    # Without WAITCREATE, a guest eventlog a running job lacks is ENOENT at once.
    jobid = await asyncio.to_thread(flux_instance.running_job)
    events = watch(jobid, "guest.not-yet", uri=flux_instance.uri, waitcreate=True)
    async with aclosing(events):
        first = asyncio.ensure_future(anext(events))
        await asyncio.sleep(0.5)
        assert not first.done()
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
    await asyncio.to_thread(flux_instance.finish, jobid)


async def test_unknown_job_is_a_typed_error_naming_job_and_instance(
    flux_instance: FluxTestInstance,
) -> None:
    with pytest.raises(FluxEventlogNotFound) as caught:
        await collect(123456789, flux_instance.uri)
    assert caught.value.errno == errno.ENOENT
    assert caught.value.jobid == 123456789
    assert "ƒ" in str(caught.value)
    assert flux_instance.uri in str(caught.value)


async def test_unknown_eventlog_path_is_enoent(flux_instance: FluxTestInstance) -> None:
    jobid = await asyncio.to_thread(flux_instance.completed_job)
    with pytest.raises(FluxEventlogNotFound, match="no-such-eventlog"):
        await collect(jobid, flux_instance.uri, "no-such-eventlog")


async def test_cancel_running_job_ends_with_exception_then_clean(
    flux_instance: FluxTestInstance,
) -> None:
    jobid = await asyncio.to_thread(flux_instance.running_job)
    await asyncio.to_thread(flux_instance.cancel, jobid, "stopping early")
    events = await collect(jobid, flux_instance.uri)
    names = [e.name for e in events]
    exception = events[names.index("exception")]
    assert exception.context["type"] == "cancel"
    assert exception.context["severity"] == 0
    assert exception.context["note"] == "stopping early"
    assert names[names.index("exception") :] == ["exception", "finish", "release", "free", "clean"]


async def test_cancel_pending_job_has_no_start(flux_instance: FluxTestInstance) -> None:
    jobid = await asyncio.to_thread(flux_instance.pending_job)
    await asyncio.to_thread(flux_instance.cancel, jobid, "")
    names = [e.name for e in await collect(jobid, flux_instance.uri)]
    assert "start" not in names
    assert names[-2:] == ["exception", "clean"]


async def test_cancelling_jobs_that_ended_passes_them_over(flux_instance: FluxTestInstance) -> None:
    ended = await asyncio.to_thread(flux_instance.completed_job)
    running = await asyncio.to_thread(flux_instance.running_job)
    # A kill that comes as a job ends (the job manager answers ENOENT "job is
    # inactive" on real Flux) must still cancel the others, and not fail.
    await cancel_jobs([ended, running], "stopping", flux_instance.uri)
    names = [e.name for e in await collect(running, flux_instance.uri)]
    assert names[-5:] == ["exception", "finish", "release", "free", "clean"]
    with pytest.raises(OSError, match="job is inactive") as refused:
        await cancel_job(ended, "again", uri=flux_instance.uri)
    assert refused.value.errno == errno.ENOENT


async def test_nonfatal_exception_does_not_end_the_job(flux_instance: FluxTestInstance) -> None:
    jobid = await asyncio.to_thread(flux_instance.running_job)
    await asyncio.to_thread(flux_instance.raise_exception, jobid, "test", 1, "a non-fatal note")
    await asyncio.to_thread(flux_instance.finish, jobid)
    events = await collect(jobid, flux_instance.uri)
    exception = next(e for e in events if e.name == "exception")
    assert exception.context["severity"] == 1
    assert [e.name for e in events][-5:] == ["exception", "finish", "release", "free", "clean"]
    finish = next(e for e in events if e.name == "finish")
    assert finish.context["status"] == 0


async def test_leaving_early_cancels_the_stream_on_the_broker(
    flux_instance: FluxTestInstance,
) -> None:
    # A held job: a running one has its shell's own watches, set up around `start`.
    jobid = await asyncio.to_thread(flux_instance.pending_job)
    before = await asyncio.to_thread(flux_instance.watchers)
    async with aclosing(watch(jobid, uri=flux_instance.uri)) as events:
        async for event in events:
            if event.name == "priority":
                assert await wait_for_watchers(flux_instance, before + 1) == before + 1
                break
    assert await wait_for_watchers(flux_instance, before) == before
    await asyncio.to_thread(flux_instance.cancel, jobid, "test over")


async def test_cancelling_1000_watches_leaves_no_stream_open(
    flux_instance: FluxTestInstance,
) -> None:
    jobid = await asyncio.to_thread(flux_instance.pending_job)
    before = await asyncio.to_thread(flux_instance.watchers)
    started = asyncio.Event()
    count = 0

    async def reader() -> None:
        nonlocal count
        async for event in watch(jobid, uri=flux_instance.uri):
            if event.name == "priority":
                count += 1
                if count == 1000:
                    started.set()

    tasks = [asyncio.create_task(reader()) for _ in range(1000)]
    await asyncio.wait_for(started.wait(), 60)
    assert await wait_for_watchers(flux_instance, before + 1000) == before + 1000
    assert connection_stats()[flux_instance.uri]["streams"] == 1000
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert await wait_for_watchers(flux_instance, before) == before
    await asyncio.to_thread(flux_instance.cancel, jobid, "test over")


async def test_one_failing_watch_does_not_disturb_others(flux_instance: FluxTestInstance) -> None:
    jobid = await asyncio.to_thread(flux_instance.completed_job)
    results = await asyncio.gather(
        collect(jobid, flux_instance.uri),
        collect(987654321, flux_instance.uri),
        collect(jobid, flux_instance.uri),
        return_exceptions=True,
    )
    assert [e.name for e in results[0]] == MAIN_LIFECYCLE  # type: ignore[union-attr]
    assert isinstance(results[1], FluxEventlogNotFound)
    assert results[2] == results[0]


async def test_watches_share_one_connection_per_loop_and_instance(
    flux_instance: FluxTestInstance,
) -> None:
    jobid = await asyncio.to_thread(flux_instance.running_job)
    gens = [watch(jobid, uri=flux_instance.uri) for _ in range(3)]
    firsts = [await anext(g) for g in gens]
    assert {e.name for e in firsts} == {"submit"}
    assert connection_stats()[flux_instance.uri] == {"users": 3, "streams": 3}
    for g in gens:
        await g.aclose()
    assert connection_stats()[flux_instance.uri]["users"] == 0
    await asyncio.to_thread(flux_instance.finish, jobid)


async def test_an_answer_landing_between_two_reactor_runs_is_called_back(
    flux_instance: FluxTestInstance,
) -> None:
    """The reactor receives a message in one run and calls its future back in the
    next, and the poll fd's edge is spent by then: the engine must run it again."""
    jobid = await asyncio.to_thread(flux_instance.pending_job)
    connection = await acquire(flux_instance.uri)
    handle, bindings = connection.handle, connection.bindings
    # A stream kept open, so the handle's dispatcher is already running, as in use.
    stream = connection.start_stream(jobid, "eventlog")
    while (await stream.get()).name != "priority":  # type: ignore[union-attr]
        pass
    called_back: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    run_reactor = handle.flux_reactor_run
    pollin = bindings.constant("POLLIN")
    runs = 0

    def on_answer(future: Any) -> None:
        future.needs_cancel = False  # an error answer ends the stream on the broker
        if not called_back.done():
            called_back.set_result(None)

    def ask_between_runs(reactor: Any, flags: int) -> int:
        nonlocal runs
        runs += 1
        if runs == 2:
            # Between two runs of one drain: ask (no drain is scheduled for it),
            # and let the broker's answer land before the run goes on.
            bindings.event_watch_async(handle, 123456789).then(on_answer)
            while not handle.pollevents() & pollin:  # the fd also wakes for POLLOUT
                select.select([handle.pollfd()], [], [], 5)
        return int(run_reactor(reactor, flags))

    handle.flux_reactor_run = ask_between_runs
    try:
        connection._schedule_drain()
        await asyncio.wait_for(called_back, 5)
    finally:
        handle.flux_reactor_run = run_reactor
        stream.cancel()
        release(connection)
        await asyncio.to_thread(flux_instance.cancel, jobid, "test over")
