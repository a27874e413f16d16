"""How an ended job ended: its fatal exception, or the wait status of its ``finish``."""

from __future__ import annotations

import os
import signal
from collections.abc import Sequence
from dataclasses import dataclass

from airflow_provider_flux.job.event import JobEvent

# Shells' (and ``flux job status``'s) exit code for a task killed by signal N.
SIGNAL_EXIT_BASE = 128


def describe_wait_status(status: int) -> tuple[int | None, int | None, str]:
    """Exit code, signal and words for a wait(2) status, as Flux puts in ``finish``."""
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = f"signal {number}"
        return None, number, f"was killed by signal {number} ({name})"
    code = os.WEXITSTATUS(status)
    return code, None, f"exited with code {code}"


def exit_code(status: int) -> int:
    """The exit code of a ``finish`` event's wait status; 128+N when killed by signal N."""
    code, number, _ = describe_wait_status(status)
    return code if code is not None else SIGNAL_EXIT_BASE + int(number or 0)


@dataclass(frozen=True)
class JobEnding:
    """How a job that is over ended, read from its main eventlog.

    :ivar fatal: its fatal exception (severity 0), if it had one.
    :ivar status: the wait status of its last ``finish`` (0 when it has none: a job
        cancelled before it ran).
    """

    fatal: JobEvent | None
    status: int

    @classmethod
    def from_events(cls, events: Sequence[JobEvent]) -> JobEnding:
        fatal = next((event for event in events if event.is_fatal_exception), None)
        finish = next((event for event in reversed(events) if event.name == "finish"), None)
        return cls(fatal, int(finish.context.get("status", 0)) if finish else 0)

    def failure(self) -> str | None:
        """How the job failed, in words (a fatal exception, a non-zero exit, a
        signal), or None when it succeeded."""
        if self.fatal is not None:
            context = self.fatal.context
            return (
                f"fatal exception type={context.get('type')}: {context.get('note') or '(no note)'}"
            )
        if self.status:
            return describe_wait_status(self.status)[2]
        return None
