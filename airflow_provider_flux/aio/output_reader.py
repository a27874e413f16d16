"""The output of jobs that are over, read within a byte budget on the shared
connection: each job's ``guest.output`` is watched (replayed, then ended) and the
watch cancelled once the budget is spent, so a job that wrote a gigabyte costs what
is shown, not what it wrote; the jobs after it are not read at all."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import aclosing
from dataclasses import dataclass

from airflow_provider_flux.aio.errors import FluxWatchError
from airflow_provider_flux.aio.watch import watch
from airflow_provider_flux.job.output import (
    OUTPUT_EVENTLOG,
    MalformedOutputError,
    decoded_data,
    format_output,
)


@dataclass(frozen=True)
class JobOutput:
    """What was read of one job's output.

    :ivar jobid: the job.
    :ivar text: its stdout and stderr, stream by stream (:func:`format_output`).
    :ivar cut: the budget ran out in it: what it wrote after ``text`` was not read.
    :ivar error: why it could not be read, if it could not.
    """

    jobid: int
    text: str = ""
    cut: bool = False
    error: str | None = None


async def read_outputs(jobids: Sequence[int], uri: str | None, limit: int) -> list[JobOutput]:
    """The output of ``jobids`` (over: their ``guest.output`` is complete), ``limit``
    bytes of text in all, in order; jobs past the budget are left out."""
    outputs: list[JobOutput] = []
    left = limit
    for jobid in jobids:
        if left <= 0:
            break
        output = await _read_output(jobid, uri, left)
        left -= len(output.text.encode())
        outputs.append(output)
    return outputs


async def _read_output(jobid: int, uri: str | None, limit: int) -> JobOutput:
    events = []
    size = 0  # bytes of text read, a little more than format_output will make of them
    try:
        async with aclosing(watch(jobid, OUTPUT_EVENTLOG, uri=uri)) as stream:
            async for event in stream:
                if event.name not in ("data", "log"):
                    continue
                events.append(event)
                size += len(str(event.context.get("data", event.context.get("message", ""))))
                if size > limit:
                    break  # the watch is cancelled on the broker as the loop is left
    except FluxWatchError as err:
        return JobOutput(jobid, error=str(err))
    text, left_out = format_output(events, limit)
    return JobOutput(jobid, text, cut=size > limit or left_out > 0)


async def read_marked_lines(
    jobid: int, uri: str | None, mark: str, limit: int
) -> tuple[list[tuple[str, str]], bool]:
    """The stdout lines of a job that is over which carry ``mark``, each from the mark
    on, with the rank of the task that wrote it, in order; and whether more than
    ``limit`` bytes of such lines made the reading stop. What else the job wrote is
    passed over, never held: memory stays within ``limit`` whatever it wrote.

    :raises FluxWatchError: the output could not be read.
    """
    found: list[tuple[str, str]] = []
    pending: dict[str, str] = {}  # each rank's unfinished line, from a mark (or its tail)
    size = 0
    async with aclosing(watch(jobid, OUTPUT_EVENTLOG, uri=uri)) as stream:
        async for event in stream:
            context = event.context
            if event.name != "data" or context.get("stream") != "stdout":
                continue
            rank = str(context.get("rank"))
            data, repeat = "", 1
            if "data" in context:
                try:
                    data, repeat = decoded_data(context)
                except MalformedOutputError:
                    continue
            if repeat > 1 and mark in data and len(data) * repeat > limit:
                return found, True
            # Repeated data holds the mark in every copy or in none.
            data *= repeat if mark in data else min(repeat, 2)
            # At the end of the stream its last line ends, newline or not.
            end = "\n" if context.get("eof") else ""
            *complete, rest = (pending.pop(rank, "") + data + end).split("\n")
            for line in complete:
                if mark in line:
                    found.append((rank, line[line.index(mark) :]))
                    size += len(found[-1][1])
            at = rest.find(mark)
            pending[rank] = rest[at:] if at >= 0 else rest[-(len(mark) - 1) :]
            if size > limit or len(pending[rank]) > limit:
                return found, True
    return found, False
