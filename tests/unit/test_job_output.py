"""Job output as log lines: streams, partial lines, encodings, redirects and the limit."""

from __future__ import annotations

import base64
from contextlib import aclosing
from typing import Any

from airflow_provider_flux.aio import watch
from airflow_provider_flux.aio.output_follower import OutputFollower
from airflow_provider_flux.job.event import JobEvent
from airflow_provider_flux.job.output import OutputLines, OutputProgress
from airflow_provider_flux.jobspec import jobspec_from_command
from airflow_provider_flux.testing import SimulatedFlux
from airflow_provider_flux.testing.bindings import Flux, job

HEADER = JobEvent("header", 1.0, {"version": 1, "count": {"stdout": 1, "stderr": 1}})


def data(stream: str, text: str | None = None, rank: str = "0", **extra: Any) -> JobEvent:
    context: dict[str, Any] = {"stream": stream, "rank": rank, **extra}
    if text is not None:
        context["data"] = text
    return JobEvent("data", 2.0, context)


def feed_all(lines: OutputLines, events: list[JobEvent]) -> list[str]:
    shown: list[str] = []
    for event in [HEADER, *events]:
        shown += lines.feed(event)
    return shown + lines.flush()


def test_lines_are_labelled_by_stream_and_joined_across_events() -> None:
    events = [
        data("stdout", "hel"), data("stderr", "warn"), data("stdout", "lo\nwor"),
        data("stderr", "ing\n"), data("stdout", "ld\n"),
    ]  # fmt: skip
    assert feed_all(OutputLines(1000), events) == [
        "stdout: hello", "stderr: warning", "stdout: world",
    ]  # fmt: skip


def test_an_unterminated_last_line_shows_at_eof() -> None:
    lines = OutputLines(1000)
    lines.feed(HEADER)
    assert lines.feed(data("stdout", "no newline")) == []
    assert lines.feed(data("stdout", eof=True)) == ["stdout: no newline"]


def test_base64_data_and_repeats_are_decoded_as_flux_does() -> None:
    raw = base64.b64encode(b"ok\xff\n").decode()
    events = [data("stdout", raw, encoding="base64"), data("stdout", "ab\n", repeat=3)]
    assert feed_all(OutputLines(1000), events) == [
        "stdout: ok\ufffd", "stdout: ab", "stdout: ab", "stdout: ab",
    ]  # fmt: skip


def test_ranks_are_named_when_the_job_has_several_tasks() -> None:
    header = JobEvent("header", 1.0, {"count": {"stdout": 2, "stderr": 2}})
    lines = OutputLines(1000)
    lines.feed(header)
    assert lines.feed(data("stdout", "a\n", rank="1")) == ["stdout[1]: a"]


def test_redirected_streams_say_where_their_output_went() -> None:
    redirect = JobEvent("redirect", 2.0, {"stream": "stdout", "rank": "0", "path": "/tmp/o"})
    assert feed_all(OutputLines(1000), [redirect]) == ["stdout: redirected to /tmp/o"]


def test_output_past_the_limit_is_counted_exactly_and_not_shown() -> None:
    lines = OutputLines(25)
    events = [data("stdout", f"{i:09d}\n") for i in range(100)]  # 10 bytes each
    shown = feed_all(lines, events)
    assert shown == ["stdout: 000000000", "stdout: 000000001", "stdout: 00000 [cut]"]
    assert (lines.shown, lines.cut) == (25, 975)


def test_one_huge_line_is_cut_without_being_held_whole() -> None:
    lines = OutputLines(100)
    lines.feed(HEADER)
    chunk = "y" * 4 * 1024 * 1024  # Flux splits a long line into 4 MiB events
    first = lines.feed(data("stdout", chunk))
    assert first == ["stdout: " + "y" * 100 + " [cut]"]
    assert lines.feed(data("stdout", chunk)) == []
    assert lines.feed(data("stdout", "end\n")) == []
    assert (lines.shown, lines.cut) == (100, 2 * len(chunk) + 4 - 100)


def test_a_follower_resumes_the_counts_it_was_given() -> None:
    progress = OutputProgress(events=7, shown=20, cut=0)
    assert OutputProgress.from_dict(progress.to_dict()) == progress
    assert OutputProgress.from_dict({"events": "x"}) is None
    lines = OutputLines(25, shown=progress.shown)
    assert lines.feed(data("stdout", "0123456789\n")) == ["stdout: 01234 [cut]"]


async def follow(
    sim: SimulatedFlux, jobid: int, limit: int, resume: OutputProgress | None = None
) -> tuple[list[str], OutputProgress]:
    """Follow a job's output to its end, as a trigger does; the lines logged."""
    logged: list[str] = []

    async def emit(text: str) -> None:
        logged.extend(text.split("\n"))

    follower = OutputFollower(jobid, sim.uri, limit, emit, resume)
    async with aclosing(watch(jobid, uri=sim.uri)) as events:
        async for event in events:
            follower.seen(event)
    return logged, await follower.close()


def output_job(sim: SimulatedFlux, lines: int) -> int:
    jobspec = jobspec_from_command(
        ["app"], attributes={"system.simulator.output": {"lines": lines, "interval": 1.0}}
    )
    return job.submit(Flux(sim.uri), jobspec)


async def test_a_follower_logs_each_line_once_and_says_what_it_cut(sim: SimulatedFlux) -> None:
    logged, progress = await follow(sim, output_job(sim, 6), limit=28)  # "line N\n": 7 bytes
    assert logged[:4] == [f"stdout: line {n}" for n in range(1, 5)]
    assert "output_limit=28 bytes reached" in logged[4]
    assert logged[-1].endswith("14 bytes not shown (output_limit=28 bytes; 28 shown)")
    assert (progress.shown, progress.cut) == (28, 14)


async def test_a_re_created_follower_goes_on_after_the_saved_progress(sim: SimulatedFlux) -> None:
    jobid = output_job(sim, 6)
    # Saved after the header and three lines.
    logged, _ = await follow(sim, jobid, 1000, OutputProgress(events=4, shown=21, cut=0))
    assert "going on after the 4 output events already shown" in logged[0]
    assert logged[1:] == [f"stdout: line {n}" for n in (4, 5, 6)]


async def test_a_follower_whose_output_watch_is_never_answered_reads_on_with_another(
    sim: SimulatedFlux,
) -> None:
    # flux-core 0.88.0 may never answer a guest.output watch sent as a short job ends.
    jobspec = jobspec_from_command(["app"], attributes={
        "system.simulator.output": {"lines": 3},
        "system.simulator.lost_output_watch": True,
    })  # fmt: skip
    logged, progress = await follow(sim, job.submit(Flux(sim.uri), jobspec), limit=1000)
    assert logged == [f"stdout: line {n}" for n in (1, 2, 3)]
    assert (progress.shown, progress.cut) == (21, 0)
