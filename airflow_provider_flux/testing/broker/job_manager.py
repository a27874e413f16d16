"""The simulated ``job-manager`` (with ``job-ingest``): submitting jobs and playing
their recorded lifecycles, raising exceptions (what ``flux cancel`` sends), urgency,
the jobs' generated output, and the events journal.

A job's ``attributes.system.simulator`` options shape it: ``scenario`` (the
recording it replays), ``hold_before``, ``private`` (another user's job, unreadable
even by the owner), ``userid`` (another user's job, as the owner sees it),
``lost_output_watch`` (its first ``guest.output`` watch is never answered, as
flux-core 0.88.0 may do) and ``output`` (lines its tasks write while it runs; see
:class:`~airflow_provider_flux.testing.broker.jobs.OutputOption`).
"""

from __future__ import annotations

import errno
import functools
import json
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_provider_flux.jobspec import job_name
from airflow_provider_flux.testing import protocol
from airflow_provider_flux.testing.broker.jobs import (
    MAIN_EVENTLOG,
    OUTPUT_EVENTLOG,
    Job,
    OutputOption,
    RequestError,
    Step,
    redacted_jobspec,
    scenario_jobspec,
    validate_jobspec,
    with_output,
)
from airflow_provider_flux.testing.broker.local_run import LocalRun, runs_locally
from airflow_provider_flux.testing.protocol import Message
from airflow_provider_flux.testing.scenarios import DEFAULT_SCENARIO, load_scenario

if TYPE_CHECKING:
    from airflow_provider_flux.testing.broker.server import Client, Handler, SimulatedBroker

RPC_STREAMING = 2  # FLUX_RPC_STREAMING: the request's flags
JOBID_ANY = -1  # FLUX_JOBID_ANY as job-manager packs it into the journal sentinel
# Generated output with no interval is written this much per turn of the broker's
# loop, which then serves its clients.
OUTPUT_BURST_BYTES = 1 << 18
OUTPUT_BURST_EVENTS = 256


@dataclass(eq=False)
class JournalListener:
    """A ``job-manager.events-journal`` stream: events named in ``allow`` (when given)
    and not in ``deny``."""

    client: Client
    matchtag: int
    allow: dict[str, Any] | None
    deny: dict[str, Any] | None

    def wants(self, name: str) -> bool:
        """journal.c's ``allow_deny_check``."""
        return (self.allow is None or name in self.allow) and not (
            self.deny is not None and name in self.deny
        )


class JobManagerService:
    """``job-manager.*``: jobs submitted, played, raised, released, and journaled."""

    def __init__(self, broker: SimulatedBroker) -> None:
        self.broker = broker
        self._started = time.monotonic()
        self._last_millis = 0
        self._seq = 0
        self._journals: list[JournalListener] = []
        self._journal_events = 0  # events through the journal (job-manager's count)

    def handlers(self) -> dict[str, Handler]:
        return {
            "job-manager.submit": self.submit,
            "job-manager.raise": self._raise,
            "job-manager.urgency": self._urgency,
            "job-manager.events-journal": self._journal,
            "job-manager.events-journal-cancel": self._journal_cancel,
            "job-manager.stats-get": self._stats,
        }

    def forget(self, client: Client) -> None:
        """A client went away: its journals end with it."""
        self._journals = [j for j in self._journals if j.client is not client]

    # -- jobs ----------------------------------------------------------------

    def submit(self, client: Client, message: Message) -> dict[str, Any]:
        """``job-manager.submit`` (a jobspec), or ``sim.submit`` (a scenario by name)."""
        broker = self.broker
        payload = message.get("payload") or {}
        if message.get("topic") == "job-manager.submit":
            # job-ingest checks the signature first; with no flux-security, J is signed
            # "none" by the submitting process (the owner's), which only the owner may.
            cred = broker.cred(message)
            if cred.userid != broker.userid:
                raise RequestError(
                    errno.EPERM, f"signer={broker.userid} != requestor={cred.userid}"
                )
            if not cred.owner:
                raise RequestError(errno.EPERM, "only instance owner can use sign-type=none")
        jobspec = validate_jobspec(payload["J"]) if "J" in payload else None
        system = (jobspec or {}).get("attributes", {}).get("system", {})
        options = {**system.get("simulator", {}), **payload}
        name = options.get("scenario", DEFAULT_SCENARIO)
        # A job array's jobs (FLUX_JOB_CC) may each play their own scenario.
        index = str(system.get("environment", {}).get("FLUX_JOB_CC"))
        name = dict(options.get("scenarios") or {}).get(index, name)
        scenario = None  # a job that runs for real plays no recording
        if not runs_locally(jobspec, options):
            try:
                scenario = load_scenario(name)
            except ValueError as err:
                raise RequestError(errno.EINVAL, str(err)) from err
        output = None if options.get("output") is None else OutputOption.parse(options["output"])
        jobid = self._new_jobid()
        private = bool(options.get("private", False))
        userid = broker.userid + 1 if private else broker.userid  # another user's job
        if isinstance(options.get("userid"), int):
            userid = options["userid"]  # another user's job, which the owner may read
        job = Job(jobid, jobspec, job_name(jobspec) if jobspec else name, private, userid)
        broker.jobs[jobid] = job
        job.hold_before = options.get("hold_before")
        job.lose_output_watch = bool(options.get("lost_output_watch", False))
        if options.get("urgency") == 0:
            job.hold_before = job.hold_before or "alloc"  # urgency 0 is a hold, as in flux
        if scenario is None:
            LocalRun(broker, job).start()
            return {"id": jobid}
        steps = []
        for event in scenario.schedule():
            context = event.context
            if event.eventlog == MAIN_EVENTLOG and event.name == "submit":
                context = {**context, "userid": userid}  # the submitter's, not the recording's
            steps.append(Step(event.offset / broker.speed, event.eventlog, event.name, context))
        self._play(job, with_output(steps, output) if output else steps, 0.0)
        return {"id": jobid}

    def _new_jobid(self) -> int:
        # A FLUID (RFC 19): 40 bits of milliseconds since the instance started,
        # 14 bits of generator ID (0 on rank 0), 10 bits of sequence.
        millis = int((time.monotonic() - self._started) * 1000) + 1
        if millis != self._last_millis:
            self._last_millis, self._seq = millis, 0
        self._seq += 1
        if self._seq >= 1 << 10:
            self._last_millis, self._seq = millis + 1, 0
        return (self._last_millis << 24) | self._seq

    def _play(self, job: Job, steps: list[Step], now: float) -> None:
        """Schedule ``steps`` (``now``: the time in the schedule that is the present) up
        to the event the job is held before, or up to generated output, which plays
        the steps after it once it is written."""
        for index, step in enumerate(steps):
            if step.name == job.hold_before:
                job.hold_before = None
                job.held = steps[index:]
                return
            if step.output is not None:
                start = functools.partial(self._write_output, job, step, steps[index + 1 :])
                self.broker.job_later(job, step.at - now, start)
                return
            post = functools.partial(self.broker.append, job, step.path, step.name, step.context)
            self.broker.job_later(job, step.at - now, post)

    def release(self, job: Job) -> None:
        """Play the rest of a held job's schedule."""
        if job.held:
            steps, job.held = job.held, []
            self._play(job, steps, steps[0].at)

    def _urgency(self, client: Client, message: Message) -> dict[str, Any]:
        """A held job (urgency 0) runs once its urgency is raised."""
        payload = message.get("payload") or {}
        job = self.broker.job(payload)
        urgency = int(payload.get("urgency", 0))
        if not self.broker.owns(job, message):
            raise RequestError(errno.EPERM, "guests can only reprioritize their own jobs")
        if urgency > 16 and not self.broker.cred(message).owner:
            raise RequestError(errno.EPERM, "guests can only adjust urgency <= default")
        if urgency > 0:
            self.release(job)
        return {}

    def _raise(self, client: Client, message: Message) -> dict[str, Any]:
        payload = message.get("payload") or {}
        job = self.broker.job(payload)
        if job.inactive:
            raise RequestError(errno.ENOENT, "job is inactive")  # as job-manager/raise.c
        if not self.broker.owns(job, message):
            raise RequestError(errno.EPERM, "guests can only raise exceptions on their own jobs")
        severity = int(payload.get("severity", 0))
        context = {
            "type": payload.get("type", "cancel"),
            "severity": severity,
            "note": payload.get("note") or "",
            "userid": os.getuid(),
        }
        self.broker.append(job, MAIN_EVENTLOG, "exception", context)
        if severity == 0:
            self.end_job(job, 15)
        return {}

    def end_job(self, job: Job, status: int) -> None:
        """A fatal exception stops the job the way the job manager does."""
        for timer in job.timers:
            timer[2] = None
        job.timers.clear()
        job.held.clear()
        if job.local is not None:
            job.local.kill()
        if job.output is not None:
            self._close_output(job)  # the tasks are killed: their streams close
        append = self.broker.append
        if job.started:
            append(job, MAIN_EVENTLOG, "finish", {"status": status})
            append(job, MAIN_EVENTLOG, "release", {"ranks": "all", "final": True})
            append(job, MAIN_EVENTLOG, "free", {})
        append(job, MAIN_EVENTLOG, "clean", {})

    # -- generated output -------------------------------------------------------

    def _write_output(self, job: Job, step: Step, rest: list[Step]) -> None:
        """Write the job's generated output, one event every interval (several when
        the interval is 0, then let other work in), then play ``rest``."""
        assert step.output is not None
        stream = step.output.stream
        interval = step.output.interval / self.broker.speed
        texts = job.output = step.output.chunks()
        began = time.monotonic()

        def tick(written: int) -> None:
            burst = 0
            for text in texts:
                context = {"stream": stream, "rank": "0", "data": text}
                self.broker.append(job, OUTPUT_EVENTLOG, "data", context)
                written += 1
                burst += len(text)
                if interval or burst >= OUTPUT_BURST_BYTES or written % OUTPUT_BURST_EVENTS == 0:
                    delay = max(0.0, began + written * interval - time.monotonic())
                    self.broker.job_later(job, delay, functools.partial(tick, written))
                    return
            self._close_output(job)
            self._play(job, rest, step.at)

        tick(0)

    def _close_output(self, job: Job) -> None:
        """End of file on every stream of every task."""
        job.output = None
        header = next(
            (line for line in job.eventlogs.get(OUTPUT_EVENTLOG, []) if '"name":"header"' in line),
            None,
        )
        ntasks = json.loads(header)["context"]["count"]["stdout"] if header else 1
        for stream in ("stderr", "stdout"):
            for rank in range(ntasks):
                context = {"stream": stream, "rank": str(rank), "eof": True}
                self.broker.append(job, OUTPUT_EVENTLOG, "data", context)

    # -- the events journal ------------------------------------------------------

    def _journal(self, client: Client, message: Message) -> None:
        """``job-manager.events-journal`` (``src/modules/job-manager/journal.c``):
        ``{"full"?: bool, "allow"?: {name: 1}, "deny"?: {name: 1}}``, owner only, streaming.

        The backlog comes first, one response per job: ``{"id", "events": [its main
        eventlog entries so far, as objects, filtered], "jobspec": <object>}``, with
        ``full`` the inactive jobs then the active ones, without only the active ones;
        a job whose entries are all filtered out still gets one (with ``"events": []``).
        Then the sentinel ``{"id": -1, "events": []}`` (with or without ``full``), then
        one response per new main eventlog event of any job, ``"jobspec"`` with ``submit``.

        Measured on flux-core 0.88.0: ``jobspec`` is a JSON object, the redacted
        jobspec (no ``attributes.system.environment``); real responses also carry
        ``R`` (the backlog's, and with ``alloc``), which the simulator leaves out.
        Jobs come in the job-manager's hash order there, in submission order here.
        """
        payload = message.get("payload") or {}
        if not isinstance(payload, dict) or not isinstance(payload.get("full", False), bool):
            raise RequestError(errno.EPROTO)
        allow, deny = payload.get("allow"), payload.get("deny")
        if not int(message.get("flags", 0)) & RPC_STREAMING:
            raise RequestError(errno.EPROTO, "job-manager.events requires streaming RPC flag")
        for key, rules in (("allow", allow), ("deny", deny)):
            if rules is not None and not isinstance(rules, dict):
                raise RequestError(errno.EPROTO, f"job-manager.events {key} should be an object")
        listener = JournalListener(client, int(message["matchtag"]), allow, deny)
        jobs = list(self.broker.jobs.values())
        backlog = [j for j in jobs if j.inactive] if payload.get("full") else []
        for job in backlog + [j for j in jobs if not j.inactive]:
            lines = job.eventlogs.get(MAIN_EVENTLOG)
            if not lines:  # not submitted yet: the job-manager does not know it
                continue
            events = [e for e in map(json.loads, lines) if listener.wants(e["name"])]
            answer = {"id": job.id, "events": events, "jobspec": self._journal_jobspec(job)}
            self.broker.send(client, protocol.response(listener.matchtag, answer))
        sentinel = {"id": JOBID_ANY, "events": []}
        self.broker.send(client, protocol.response(listener.matchtag, sentinel))
        self._journals.append(listener)

    def _journal_jobspec(self, job: Job) -> dict[str, Any]:
        if job.jobspec is None:
            return scenario_jobspec(job.name or DEFAULT_SCENARIO)
        return redacted_jobspec(job.jobspec)

    def journal_post(self, job: Job, event: dict[str, Any]) -> None:
        """Stream a new main eventlog event to the journals that want it."""
        self._journal_events += 1
        answer: dict[str, Any] = {"id": job.id, "events": [event]}
        if event["name"] == "submit":
            answer["jobspec"] = self._journal_jobspec(job)
        for listener in self._journals:
            if listener.wants(event["name"]):
                self.broker.send(listener.client, protocol.response(listener.matchtag, answer))

    def _journal_cancel(self, client: Client, message: Message) -> None:
        """End the client's journal of that matchtag with ENODATA; never answered."""
        matchtag = (message.get("payload") or {}).get("matchtag")
        for listener in self._journals:
            if listener.client is client and listener.matchtag == matchtag:
                self._journals.remove(listener)
                self.broker.send(client, protocol.error_response(listener.matchtag, errno.ENODATA))
                break
        return None

    def _stats(self, client: Client, message: Message) -> dict[str, Any]:
        """The part of ``flux module stats job-manager`` simulated."""
        jobs = self.broker.jobs
        active = sum(1 for job in jobs.values() if not job.inactive)
        return {
            "journal": {"listeners": len(self._journals), "events": self._journal_events},
            "active_jobs": active,
            "inactive_jobs": len(jobs) - active,
            "max_jobid": max(jobs, default=0),
        }
