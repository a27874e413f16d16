"""What waiting for each event of each recorded scenario must give, per flux.job.event_wait.

Each row: (scenario, eventlog, event, match_context, raise_on_exception) ->
("matched", event name) | ("job_exception", exception type, note) | ("eventlog_ended",).
Shared by the unit tests of the wait semantics, the trigger tests and the sensor tests.
"""

from __future__ import annotations

from typing import Any

STOPPING = "stopping early"  # the note of the recorded cancel

Row = tuple[str, str, str, dict[str, Any], bool, tuple[Any, ...]]

CASES: list[Row] = [
    # A job that runs and exits 0: every lifecycle event comes.
    ("success", "eventlog", "start", {}, True, ("matched", "start")),
    ("success", "eventlog", "clean", {}, True, ("matched", "clean")),
    ("success", "eventlog", "finish", {"status": 0}, True, ("matched", "finish")),
    ("success", "eventlog", "exception", {}, True, ("eventlog_ended",)),
    ("success", "eventlog", "never-happens", {}, True, ("eventlog_ended",)),
    ("success", "guest.exec.eventlog", "shell.start", {}, True, ("matched", "shell.start")),
    ("success", "guest.exec.eventlog", "complete", {"status": 0}, True, ("matched", "complete")),
    # Exit code 3: finish comes with wait status 768; a context match on 0 never does.
    ("exit-nonzero", "eventlog", "finish", {}, True, ("matched", "finish")),
    ("exit-nonzero", "eventlog", "finish", {"status": 768}, True, ("matched", "finish")),
    ("exit-nonzero", "eventlog", "finish", {"status": "768"}, True, ("matched", "finish")),
    ("exit-nonzero", "eventlog", "finish", {"status": 0}, True, ("eventlog_ended",)),
    # Cancelled while running: start came first; anything after the exception fails.
    ("cancel-running", "eventlog", "start", {}, True, ("matched", "start")),
    ("cancel-running", "eventlog", "finish", {}, True, ("job_exception", "cancel", STOPPING)),
    ("cancel-running", "eventlog", "clean", {}, True, ("job_exception", "cancel", STOPPING)),
    ("cancel-running", "eventlog", "clean", {}, False, ("matched", "clean")),
    ("cancel-running", "eventlog", "exception", {}, True, ("matched", "exception")),
    ("cancel-running", "eventlog", "exception", {"type": "cancel"}, True, ("matched", "exception")),
    # Cancelled while pending: it never starts.
    ("cancel-pending", "eventlog", "start", {}, True, ("job_exception", "cancel", "")),
    ("cancel-pending", "eventlog", "start", {}, False, ("eventlog_ended",)),
    ("cancel-pending", "eventlog", "clean", {}, True, ("job_exception", "cancel", "")),
    ("cancel-pending", "eventlog", "priority", {}, True, ("matched", "priority")),
    # A non-fatal exception (severity 1) does not end the wait.
    ("nonfatal-exception", "eventlog", "finish", {}, True, ("matched", "finish")),
    ("nonfatal-exception", "eventlog", "clean", {}, True, ("matched", "clean")),
    ("nonfatal-exception", "eventlog", "exception", {}, True, ("matched", "exception")),
    # Time limit: a fatal timeout exception, then finish with status 36352.
    ("timeout", "eventlog", "start", {}, True, ("matched", "start")),
    ("timeout", "eventlog", "finish", {}, True,
     ("job_exception", "timeout", "resource allocation expired")),
    ("timeout", "eventlog", "finish", {}, False, ("matched", "finish")),
    # A failed afterok dependency: it never starts.
    ("dependency-failed", "eventlog", "start", {}, True, ("job_exception", "dependency", None)),
    ("dependency-afterok", "eventlog", "start", {}, True, ("matched", "start")),
    ("dependency-afterok", "eventlog", "dependency-remove", {}, True,
     ("matched", "dependency-remove")),
    # The command does not exist: an exec exception while running.
    ("exec-not-found", "eventlog", "start", {}, True, ("matched", "start")),
    ("exec-not-found", "eventlog", "clean", {}, True, ("job_exception", "exec", None)),
    # Held, then released: priority is first 0, then 16.
    ("urgency-hold-release", "eventlog", "priority", {"priority": 16}, True,
     ("matched", "priority")),
    ("urgency-hold-release", "eventlog", "urgency", {"urgency": 16}, True, ("matched", "urgency")),
    ("urgency-hold-release", "eventlog", "start", {}, True, ("matched", "start")),
    ("two-tasks", "eventlog", "clean", {}, True, ("matched", "clean")),
    ("two-tasks", "guest.exec.eventlog", "shell.start", {}, True, ("matched", "shell.start")),
]  # fmt: skip


def case_id(row: Row) -> str:
    scenario, eventlog, event, match, raise_exc, _ = row
    parts = [scenario, event if eventlog == "eventlog" else f"{eventlog}:{event}"]
    if match:
        parts.append(",".join(f"{k}={v!r}" for k, v in match.items()))
    if not raise_exc:
        parts.append("no-raise")
    return "-".join(parts)
