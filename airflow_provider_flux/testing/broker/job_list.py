"""The simulated ``job-list`` service: ``job-list.list``, answered in one response.

It serves what the provider asks of it: constraints on ``userid``, ``name``,
``queue``, ``states`` and ``results`` (masks) joined by ``and``, ``or`` and ``not``;
the attrs in :data:`LIST_ATTRS`.
"""

from __future__ import annotations

import errno
import functools
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from airflow_provider_flux.testing.broker.jobs import (
    MAIN_EVENTLOG,
    RESULT_CANCELED,
    RESULT_COMPLETED,
    RESULT_FAILED,
    RESULT_TIMEOUT,
    STATE_CLEANUP,
    STATE_DEPEND,
    STATE_INACTIVE,
    STATE_NEW,
    STATE_PRIORITY,
    STATE_RUN,
    STATE_SCHED,
    USERID_UNKNOWN,
    Job,
    RequestError,
)
from airflow_provider_flux.testing.protocol import Message

if TYPE_CHECKING:
    from airflow_provider_flux.testing.broker.server import Client, Handler, SimulatedBroker

# The main eventlog events that move a job on (the recordings only go forward).
EVENT_STATES = {
    "validate": STATE_DEPEND, "depend": STATE_PRIORITY, "priority": STATE_SCHED,
    "alloc": STATE_RUN, "finish": STATE_CLEANUP, "clean": STATE_INACTIVE,
}  # fmt: skip
# Events after which job-list moves a job in SCHED back to PRIORITY (RFC 21).
REVERT_EVENTS = ("urgency", "flux-restart", "jobspec-update")
# What job-list gives of a job here ("all": these).
LIST_ATTRS = (
    "userid", "name", "queue", "t_submit", "t_run", "t_cleanup", "t_inactive", "state",
    "waitstatus", "exception_occurred", "exception_type", "exception_severity",
    "exception_note", "result", "success",
)  # fmt: skip


def list_entry(job: Job) -> dict[str, Any]:
    """What job-list knows of a job, read from its main eventlog as job-list reads the
    journal (``src/modules/job-list/job_state.c``, ``job_util.c``): ``LIST_ATTRS``, with
    ``id`` and ``priority``, which order the listing.

    A state's time is that of its first entry (a fatal exception, or ``finish``,
    enters CLEANUP); ``waitstatus`` comes with ``finish``; ``success``, ``result``
    and ``exception_*`` (the most severe exception, the first of equal severity) only
    once the job is inactive.
    """
    info: dict[str, Any] = {"id": job.id, "name": job.name, "state": STATE_NEW, "priority": 0}
    queue = (job.jobspec or {}).get("attributes", {}).get("system", {}).get("queue")
    if isinstance(queue, str):
        info["queue"] = queue
    entered = 0  # job-list's states_events_mask
    worst: dict[str, Any] | None = None  # the context of the most severe exception
    success = False
    for line in job.eventlogs.get(MAIN_EVENTLOG, []):
        event = json.loads(line)
        name, context, stamp = event["name"], event.get("context", {}), event["timestamp"]
        state = EVENT_STATES.get(name)
        if name == "submit":
            info["t_submit"], info["userid"] = stamp, context.get("userid")
        elif name == "priority":
            info["priority"] = context.get("priority", 0)
        elif name == "finish":
            info["waitstatus"] = context.get("status")
            # Successful: exit status 0 and no fatal exception so far.
            success = context.get("status") == 0 and not (worst and worst["severity"] == 0)
        elif name == "exception":
            severity = int(context.get("severity", 0))
            if worst is None or severity < worst["severity"]:
                worst = {**context, "severity": severity}
            state = STATE_CLEANUP if severity == 0 else None
        elif name in REVERT_EVENTS and info["state"] == STATE_SCHED:
            info["state"] = STATE_PRIORITY
        # PRIORITY and SCHED may be entered again; the other states only once.
        if state is None or (entered & state and state not in (STATE_PRIORITY, STATE_SCHED)):
            continue
        entered |= state
        info["state"] = state
        key = {STATE_RUN: "t_run", STATE_CLEANUP: "t_cleanup", STATE_INACTIVE: "t_inactive"}
        if state in key:
            info[key[state]] = stamp
    if info["state"] == STATE_INACTIVE:
        info["success"] = success
        info["exception_occurred"] = worst is not None
        if worst is not None:
            info["exception_type"] = worst.get("type")
            info["exception_severity"] = worst["severity"]
            info["exception_note"] = worst.get("note")
        ended = {"cancel": RESULT_CANCELED, "timeout": RESULT_TIMEOUT}
        failed = ended.get((worst or {}).get("type", ""), RESULT_FAILED)
        info["result"] = RESULT_COMPLETED if success else failed
    return info


def listing_order(info: dict[str, Any]) -> tuple[int, float, int]:
    """job-list's order: pending jobs (highest priority, then first submitted,
    first), running ones (last started first), then inactive ones (last ended first)."""
    if info["state"] < STATE_RUN:
        return (0, -info["priority"], info["id"])
    if info["state"] < STATE_INACTIVE:
        return (1, -info.get("t_run", 0.0), -info["id"])
    return (2, -info["t_inactive"], -info["id"])


Match = Callable[[dict[str, Any]], bool]


def compile_constraint(constraint: Any) -> Match:
    """An RFC 31 constraint with the operators simulated; ``ValueError`` says what
    is wrong with it."""
    if not constraint:
        return lambda info: True
    if not isinstance(constraint, dict) or len(constraint) != 1:
        raise ValueError("constraint must be an object with one operator")
    ((op, values),) = constraint.items()
    if not isinstance(values, list):
        raise ValueError(f"operator {op} values not an array")
    if op in ("and", "or", "not"):
        parts = [compile_constraint(value) for value in values]
        if op == "and":
            return lambda info: all(part(info) for part in parts)
        if op == "or":  # an empty "or" is true (RFC 31)
            return lambda info: not parts or any(part(info) for part in parts)
        return lambda info: not all(part(info) for part in parts)
    kind = str if op in ("name", "queue") else int
    if op not in ("userid", "name", "queue", "states", "results"):
        raise ValueError(f"unknown constraint operator: {op}")
    if any(not isinstance(v, kind) or isinstance(v, bool) for v in values):
        raise ValueError(f"{op} value must be {'a string' if kind is str else 'an integer'}")
    if op == "userid":
        return lambda info: USERID_UNKNOWN in values or info.get("userid") in values
    if op == "name":
        return lambda info: info["name"] in values
    if op == "queue":  # a job with no queue matches none
        return lambda info: info.get("queue") in values
    mask = functools.reduce(int.__or__, values, 0)
    key = "state" if op == "states" else "result"
    return lambda info: bool(info.get(key, 0) & mask)


class JobListService:
    """``job-list.list``: the jobs the instance knows, filtered and ordered."""

    def __init__(self, broker: SimulatedBroker) -> None:
        self.broker = broker

    def handlers(self) -> dict[str, Handler]:
        return {"job-list.list": self._list}

    def _list(self, client: Client, message: Message) -> dict[str, Any]:
        payload = message.get("payload") or {}
        max_entries, attrs = payload.get("max_entries"), payload.get("attrs")
        since = payload.get("since", 0.0)
        if not (isinstance(max_entries, int) and max_entries >= 0 and isinstance(attrs, list)):
            raise RequestError(errno.EPROTO, "invalid payload: max_entries and attrs required")
        if not isinstance(since, (int, float)) or since < 0:
            raise RequestError(errno.EPROTO, "invalid payload: since must be a number >= 0")
        for attr in attrs:
            if attr != "all" and attr not in LIST_ATTRS:
                raise RequestError(errno.EINVAL, f"{attr} is not a valid attribute")
        try:
            match = compile_constraint(payload.get("constraint"))
        except ValueError as err:
            text = f"invalid payload: constraint object invalid: {err}"
            raise RequestError(errno.EPROTO, text) from err
        infos = [list_entry(job) for job in self.broker.jobs.values()]
        # A job still NEW is not listed yet; since: inactive jobs ended after then.
        infos = [
            i for i in infos if i["state"] != STATE_NEW and i.get("t_inactive", since + 1) > since
        ]
        infos = sorted(filter(match, infos), key=listing_order)[: max_entries or None]
        wanted = LIST_ATTRS if "all" in attrs else attrs
        entries = [{k: i[k] for k in ("id", *wanted) if i.get(k) is not None} for i in infos]
        return {"jobs": entries}
