"""Jobs as the simulated broker keeps them: their requests, schedules and eventlogs,
and the errors a request is answered with."""

from __future__ import annotations

import errno
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider_flux.testing.broker.job_info import Watcher
    from airflow_provider_flux.testing.broker.local_run import LocalRun

MAIN_EVENTLOG = "eventlog"
GUEST_PREFIX = "guest."
OUTPUT_EVENTLOG = "guest.output"
USERID_UNKNOWN = 0xFFFFFFFF  # FLUX_USERID_UNKNOWN
ROLE_OWNER = 1  # FLUX_ROLE_OWNER

# flux_job_state_t and flux_job_result_t (src/common/libjob/job.h).
STATE_NEW, STATE_DEPEND, STATE_PRIORITY, STATE_SCHED = 1, 2, 4, 8
STATE_RUN, STATE_CLEANUP, STATE_INACTIVE = 16, 32, 64
RESULT_COMPLETED, RESULT_FAILED, RESULT_CANCELED, RESULT_TIMEOUT = 1, 2, 4, 8


class RequestError(Exception):
    """Turns into an error response to the request being served."""

    def __init__(self, errnum: int, errstr: str | None = None) -> None:
        super().__init__(errnum, errstr)
        self.errnum = errnum
        self.errstr = errstr


@dataclass(frozen=True)
class Cred:
    """The credentials a request carries (``flux_msg_cred``)."""

    userid: int
    rolemask: int

    @property
    def owner(self) -> bool:
        return bool(self.rolemask & ROLE_OWNER)


def validate_jobspec(text: str) -> dict[str, Any]:
    """The checks job-ingest makes, with the answers flux-core 0.88.0 gives."""
    try:
        jobspec = json.loads(text)
    except ValueError as err:
        raise RequestError(errno.EINVAL, f"jobspec: invalid JSON: {err}") from err
    if not isinstance(jobspec, dict):
        raise RequestError(errno.EINVAL, "jobspec: invalid JSON: '[' or '{' expected")
    for key in ("resources", "tasks", "attributes", "version"):
        if key not in jobspec:
            raise RequestError(errno.EPERM, f"Missing key ({key})")
    if jobspec["version"] != 1:
        raise RequestError(errno.EPERM, "version must be 1")
    for task in jobspec["tasks"]:
        if not task.get("command"):
            raise RequestError(errno.EPERM, "command array cannot have length of zero")
    duration = jobspec["attributes"].get("system", {}).get("duration", 0)
    if not isinstance(duration, (int, float)) or duration < 0:
        raise RequestError(errno.EPERM, "duration must be a non-negative number")
    return dict(jobspec)


def redacted_jobspec(jobspec: dict[str, Any]) -> dict[str, Any]:
    """The jobspec without ``attributes.system.environment``: job-ingest's ``jobspec``
    key and job-manager's ``jobspec_redacted`` (the environment stays in ``J``)."""
    system = jobspec["attributes"].get("system")
    if isinstance(system, dict) and "environment" in system:
        system = {key: value for key, value in system.items() if key != "environment"}
        jobspec = {**jobspec, "attributes": {**jobspec["attributes"], "system": system}}
    return jobspec


def jobspec_text(jobspec: dict[str, Any]) -> str:
    """The ``jobspec`` key as job-ingest writes it: compact JSON, redacted."""
    return json.dumps(redacted_jobspec(jobspec), separators=(",", ":"), ensure_ascii=False)


def scenario_jobspec(scenario: str) -> dict[str, Any]:
    """What the journal gives as the jobspec of a ``sim.submit`` job, which has none:
    ``flux submit SCENARIO``'s, named after its scenario (``attributes.system.job.name``)."""
    return {
        "resources": [{"type": "slot", "count": 1, "label": "task",
                       "with": [{"type": "core", "count": 1}]}],
        "tasks": [{"command": [scenario], "slot": "task", "count": {"per_slot": 1}}],
        "attributes": {"system": {"duration": 0, "job": {"name": scenario}}},
        "version": 1,
    }  # fmt: skip


@dataclass(frozen=True)
class OutputOption:
    """``attributes.system.simulator.output``: what the job's tasks write once they run.

    Line ``i`` (from 1) is ``f"line {i}"``, padded with ``x`` to ``line_bytes`` bytes
    with its newline. Data events come ``interval`` seconds apart (of recorded time:
    the broker's speed divides it), one line each, or with ``chunk_bytes`` as many
    whole lines as fit in that many bytes (a longer line is split). With
    ``redirect`` (``flux submit --output=FILE``), ``guest.output`` gets a
    ``redirect`` event per stream instead, and no data, not even end of file.
    """

    lines: int
    interval: float = 0.0
    line_bytes: int | None = None
    stream: str = "stdout"
    chunk_bytes: int | None = None
    redirect: str | None = None

    @classmethod
    def parse(cls, value: Any) -> OutputOption:
        """Read the option from a jobspec; EINVAL says what is wrong with it."""
        try:
            option = cls(**value)
        except TypeError as err:  # not a mapping, or keys missing or unknown
            raise RequestError(errno.EINVAL, f"simulator.output: {err}") from None

        def at_least(found: Any, minimum: int, kind: Any = int) -> bool:
            return isinstance(found, kind) and not isinstance(found, bool) and found >= minimum

        shortest = len(f"line {option.lines}\n")  # the last line, unpadded
        for key, rule, ok in (
            ("lines", "an integer >= 0", at_least(option.lines, 0)),
            ("interval", "a number of seconds >= 0", at_least(option.interval, 0, (int, float))),
            ("line_bytes", f"an integer >= {shortest}", at_least(option.line_bytes, shortest)),
            ("stream", "'stdout' or 'stderr'", option.stream in ("stdout", "stderr")),
            ("chunk_bytes", "an integer >= 1", at_least(option.chunk_bytes, 1)),
            ("redirect", "a path", isinstance(option.redirect, str) and option.redirect != ""),
        ):
            found = getattr(option, key)
            if not ok and (found is not None or key in ("lines", "interval", "stream")):
                raise RequestError(
                    errno.EINVAL, f"simulator.output: {key} must be {rule}, not {found!r}"
                )
        return option

    def chunks(self) -> Iterator[str]:
        """The text of each data event, made as it is written (never held whole)."""
        pending = ""
        for number in range(1, self.lines + 1):
            line = f"line {number}"
            if self.line_bytes is not None:
                line = line.ljust(self.line_bytes - 1, "x")
            line += "\n"
            if self.chunk_bytes is None:
                yield line
                continue
            if pending and len(pending) + len(line) > self.chunk_bytes:
                yield pending
                pending = ""
            while len(line) > self.chunk_bytes:
                yield line[: self.chunk_bytes]
                line = line[self.chunk_bytes :]
            pending += line
        if pending:
            yield pending


@dataclass(frozen=True)
class Step:
    """An event a job posts ``at`` seconds into its schedule; with ``output``, the
    start of its generated output, which the steps after it wait for."""

    at: float
    path: str
    name: str
    context: dict[str, Any]
    output: OutputOption | None = None


def with_output(steps: list[Step], option: OutputOption) -> list[Step]:
    """A schedule whose tasks write ``option``'s output in place of the recorded one,
    once they have started and the ``guest.output`` header is written; every event
    recorded after that waits for its end. Tasks that never ran write none."""
    header = next((s for s in steps if s.path == OUTPUT_EVENTLOG and s.name == "header"), None)
    started = next((s for s in steps if s.name == "shell.start"), None)
    if header is None or started is None:
        return steps
    kept = [s for s in steps if not (s.path == OUTPUT_EVENTLOG and s.name == "data")]
    if option.redirect is not None:
        ntasks = int(header.context.get("count", {}).get("stdout", 1))
        ranks = "0" if ntasks == 1 else f"[0-{ntasks - 1}]"
        index = kept.index(header) + 1
        kept[index:index] = [
            Step(header.at, OUTPUT_EVENTLOG, "redirect",
                 {"stream": stream, "rank": ranks, "path": option.redirect})
            for stream in ("stdout", "stderr")
        ]  # fmt: skip
        return kept
    anchor = max(header.at, started.at)
    index = next((i for i, s in enumerate(kept) if s.at > anchor), len(kept))
    kept.insert(index, Step(anchor, OUTPUT_EVENTLOG, "data", {}, option))
    return kept


@dataclass(eq=False)
class Job:
    id: int
    jobspec: dict[str, Any] | None  # None: a job of sim.submit
    name: str | None
    private: bool = False
    userid: int = 0  # the submitter's
    eventlogs: dict[str, list[str]] = field(default_factory=dict)
    hold_before: str | None = None
    held: list[Step] = field(default_factory=list)
    timers: list[list[Any]] = field(default_factory=list)
    watchers: list[Watcher] = field(default_factory=list)  # job-info's
    output: Iterator[str] | None = None  # the generated output being written
    local: LocalRun | None = None  # its tasks, when they run here for real
    lose_output_watch: bool = False  # its next guest.output watch is never answered

    def has_event(self, name: str) -> bool:
        return any(f'"name":"{name}"' in line for line in self.eventlogs.get(MAIN_EVENTLOG, []))

    @property
    def started(self) -> bool:
        return self.has_event("start")

    @property
    def inactive(self) -> bool:
        return self.has_event("clean")
