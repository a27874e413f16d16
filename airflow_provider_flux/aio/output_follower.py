"""Follows a job's output on the shared connection while something else waits on
the job, and hands its lines to a log as they come."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextlib import aclosing, suppress

from airflow_provider_flux.aio.errors import FluxWatchError
from airflow_provider_flux.aio.watch import Reconnect, watch
from airflow_provider_flux.job.event import JobEvent
from airflow_provider_flux.job.jobid import format_jobid
from airflow_provider_flux.job.output import OutputLines, OutputProgress

# After the job is clean, how long the output watch may take to deliver its last lines.
OUTPUT_GRACE_SECONDS = 10.0
# Once the job is over, an output watch that gives nothing for this long is sent
# again (see OutputFollower.close). A stalled watch costs every short deferred job
# that meets it this long; sending one again that was only slow costs a re-read.
STALLED_WATCH_SECONDS = 0.25
# While output flows, how often a follower saves how far it got (see ``checkpoint``).
CHECKPOINT_SECONDS = 5.0
# At most this much output goes into one log message: each message is copied a few
# times on its way to the log, and the copies count against the triggerer's memory.
EMIT_BATCH_BYTES = 64 * 1024


class OutputFollower:
    """Follows one job's output while something else waits on the job.

    Feed it the job's main eventlog through :meth:`seen`: on ``start`` it begins to
    watch ``guest.output`` (which exists only once the job runs). A reader turns
    events into lines as fast as they come; a writer hands ``emit`` all the lines
    waiting, in one message, as often as ``emit`` returns (a log call per event
    would fall behind a burst). :meth:`close` lets the reader reach the end of the
    output, writes the rest, and says what was shown and cut.

    :param jobid: the job.
    :param uri: its instance.
    :param limit: bytes of output to show (``output_limit``).
    :param emit: writes lines (one message, lines joined by newlines) to the log.
    :param resume: progress saved by an earlier follower of the same wait (its
        events are skipped, its counts go on).
    :param checkpoint: saves progress every ``CHECKPOINT_SECONDS`` while output
        flows, so that a follower re-created after a restart can resume.
    """

    def __init__(
        self,
        jobid: int,
        uri: str | None,
        limit: int,
        emit: Callable[[str], Awaitable[None]],
        resume: OutputProgress | None = None,
        checkpoint: Callable[[OutputProgress], Awaitable[None]] | None = None,
    ) -> None:
        self.jobid = jobid
        self.uri = uri
        self.emit = emit
        self.checkpoint = checkpoint
        self.resume = resume or OutputProgress()
        self.lines = OutputLines(limit, self.resume.shown, self.resume.cut)
        self.events = 0
        self._pending: list[str] = []  # lines read, not yet written (within the limit)
        self._ready = asyncio.Event()
        self._reading: asyncio.Task[None] | None = None
        self._others: list[asyncio.Task[None]] = []
        self._written = self.resume  # what is in the log for sure
        self._idle = False  # the writer waits: everything read is in the log
        self._finished = False

    @property
    def progress(self) -> OutputProgress:
        return OutputProgress(self.events, self.lines.shown, self.lines.cut)

    def seen(self, event: JobEvent) -> None:
        """An event of the job's main eventlog: ``start`` starts the output watch."""
        if event.name == "start" and self._reading is None:
            self._reading = asyncio.create_task(self._read())
            self._others.append(asyncio.create_task(self._write()))
            if self.checkpoint is not None:
                self._others.append(asyncio.create_task(self._save_progress(self.checkpoint)))

    async def close(self, grace: float = OUTPUT_GRACE_SECONDS) -> OutputProgress:
        """Let the reader reach the end of the output (the job is over) while it makes
        progress, at most ``grace`` seconds without; write what is left, and what was
        cut."""
        if self._reading is not None:
            restarted = False
            while not self._reading.done():
                before = self.events
                with suppress(asyncio.TimeoutError):
                    wait = grace if restarted else min(grace, STALLED_WATCH_SECONDS)
                    await asyncio.wait_for(asyncio.shield(self._reading), wait)
                if self.events == before and not self._reading.done() and not restarted:
                    # flux-core 0.88.0: a guest.output watch sent just as a short job
                    # ends may never answer (seen about one time in two). The job is
                    # inactive now: a new watch reads on from where this one stopped.
                    await _cancelled(self._reading)
                    self._reading = asyncio.create_task(self._read(skip=self.events))
                    restarted = True
                elif self.events == before:
                    break
            await _cancelled(self._reading)
            self._queue(self.lines.flush())
            self._finished = True
            self._ready.set()
            await self._others[0]  # the writer, until it wrote the rest
        await self.cancel()
        if self.lines.cut:
            await self.emit(
                f"output of job {format_jobid(self.jobid)}: {self.lines.cut} bytes not shown "
                f"(output_limit={self.lines.limit} bytes; {self.lines.shown} shown)"
            )
        return self.progress

    async def cancel(self) -> None:
        """End the watch at once (the wait was abandoned)."""
        for task in [*([self._reading] if self._reading else []), *self._others]:
            await _cancelled(task)

    def _queue(self, lines: list[str]) -> None:
        if lines:
            self._pending.extend(lines)
            self._ready.set()

    async def _read(self, skip: int = 0) -> None:
        """Read the output into lines; the first ``skip`` events were read before."""
        job = format_jobid(self.jobid)
        if self.resume.events and not skip:
            self._queue([
                f"output of job {job}: going on after the {self.resume.events} output events "
                f"already shown; lines shown in the {CHECKPOINT_SECONDS:.0f} s before the "
                f"trigger was re-created may show again"
            ])  # fmt: skip
        told_cut = self.lines.exhausted
        events = watch(self.jobid, "guest.output", uri=self.uri, waitcreate=True,
                       reconnect=Reconnect())  # fmt: skip
        try:
            async with aclosing(events) as stream:
                replayed = 0
                async for event in stream:
                    if replayed < skip:
                        replayed += 1
                        continue
                    self.events += 1
                    if self.events <= self.resume.events:
                        continue
                    self._queue(self.lines.feed(event))
                    if self.lines.exhausted and not told_cut:
                        told_cut = True
                        self._queue([
                            f"output of job {job}: output_limit={self.lines.limit} bytes "
                            f"reached; the rest is counted, not shown"
                        ])  # fmt: skip
        except FluxWatchError as err:
            self._queue([f"output of job {job} cannot be read: {err.strerror}"])

    async def _write(self) -> None:
        while True:
            if not self._pending:
                if self._finished:
                    return
                self._idle = True
                await self._ready.wait()
                self._ready.clear()
                self._idle = False
                continue
            batch = self._take_batch()
            read = self.progress if not self._pending else self._written
            await self.emit("\n".join(batch))
            self._written = read

    def _take_batch(self) -> list[str]:
        """The first waiting lines, ``EMIT_BATCH_BYTES`` of them (at least one)."""
        size = 0
        for count, line in enumerate(self._pending):
            size += len(line)
            if size > EMIT_BATCH_BYTES and count:
                batch, self._pending = self._pending[:count], self._pending[count:]
                return batch
        batch, self._pending = self._pending, []
        return batch

    async def _save_progress(self, checkpoint: Callable[[OutputProgress], Awaitable[None]]) -> None:
        saved = self._written
        while True:
            await asyncio.sleep(CHECKPOINT_SECONDS)
            # Past the limit nothing is written, but every event read is accounted for.
            current = self.progress if self._idle and not self._pending else self._written
            if current != saved:
                saved = current
                await checkpoint(saved)


async def _cancelled(task: asyncio.Task[None]) -> None:
    task.cancel()
    with suppress(asyncio.CancelledError):
        await task
