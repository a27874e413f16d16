"""The simulator's job-manager journal, acting as a guest, and the job-list attrs a
journal reader falls back on, seen as a user of the bindings sees them. What is
Flux's behaviour runs against real Flux too (``instance``), where its bindings import."""

from __future__ import annotations

import errno
import gc
import json
import math
import os
import time
import uuid
from collections.abc import Callable
from typing import Any
from unittest import mock

import pytest

from airflow_provider_flux.flux_bindings import (
    FluxBindings,
    FluxBindingsUnavailable,
    load_bindings,
    load_flux_core_bindings,
)
from airflow_provider_flux.jobspec import jobspec_from_command
from airflow_provider_flux.testing import SimulatedFlux
from airflow_provider_flux.testing.bindings import Flux, job
from airflow_provider_flux.testing.bindings.constants import FLUX_RPC_NORESPONSE, FLUX_RPC_STREAMING
from airflow_provider_flux.testing.broker import SimulatedBroker
from airflow_provider_flux.testing.broker.jobs import Job
from tests.flux_instances import FLUX, FluxTestInstance, SimInstance

MAIN_LIFECYCLE = ["submit", "validate", "depend", "priority", "alloc", "start", "finish",
                  "release", "free", "clean"]  # fmt: skip
# Live, the scheduler's annotations come just before alloc: in the journal only.
JOURNAL_LIFECYCLE = [*MAIN_LIFECYCLE[:4], "annotations", *MAIN_LIFECYCLE[4:]]
JOURNAL = "job-manager.events-journal"
SENTINEL = {"id": -1, "events": []}
GUEST_USERID = 9999
GUEST = {"FLUX_HANDLE_USERID": str(GUEST_USERID), "FLUX_HANDLE_ROLEMASK": "0x2"}
USERID_UNKNOWN = 0xFFFFFFFF
RUN, INACTIVE, PENDING, RUNNING = 16, 64, 14, 48
COMPLETED, FAILED, CANCELED, TIMEOUT = 1, 2, 4, 8
TIMEOUT_SECONDS = 60.0


@pytest.fixture(params=["simulated", "real"])
def instance(request: pytest.FixtureRequest, sim: SimulatedFlux) -> FluxTestInstance:
    """The session's simulated instance, then real Flux (skipped where flux-core's
    bindings do not import: they are built for one Python)."""
    if request.param == "simulated":
        return SimInstance(sim)
    if FLUX is not None:
        try:
            load_flux_core_bindings()
        except FluxBindingsUnavailable as err:
            pytest.skip(f"flux-core's Python bindings do not import here ({err.__cause__})")
    real: FluxTestInstance = request.getfixturevalue("real_flux")
    return real


class Client:
    """A handle on ``instance`` with the bindings that open it."""

    def __init__(self, instance: FluxTestInstance, env: dict[str, str] | None = None) -> None:
        self.bindings: FluxBindings = load_bindings(instance.uri)
        with mock.patch.dict(os.environ, env or {}):
            self.handle = self.bindings.open(instance.uri)

    def flag(self, name: str) -> int:
        return self.bindings.constant(name)

    def journal(self, **payload: Any) -> Any:
        return self.handle.rpc(JOURNAL, payload, 0, self.flag("RPC_STREAMING"))

    def matchtag(self, future: Any) -> int:
        # flux-core's futures give it through their C wrapper
        return int(future.matchtag if self.bindings.simulated else future.pimpl.get_matchtag())

    def cancel(self, future: Any) -> Any:
        payload = {"matchtag": self.matchtag(future)}
        return self.handle.rpc(f"{JOURNAL}-cancel", payload, 0, self.flag("RPC_NORESPONSE"))

    def listeners(self) -> int:
        return int(self.handle.rpc("job-manager.stats-get", {}).get()["journal"]["listeners"])

    def settled_listeners(self) -> int:
        """The listener count once handles other tests left behind are gone."""
        gc.collect()
        count = -1
        while count != (count := self.listeners()):
            time.sleep(0.1)
        return count

    def stop(self, future: Any) -> None:
        self.cancel(future)
        ends_with_enodata(future)


def next_response(future: Any) -> dict[str, Any]:
    response: dict[str, Any] = future.wait_for(TIMEOUT_SECONDS).get()
    future.reset()
    return response


def backlog(future: Any) -> list[dict[str, Any]]:
    """The journal's history, up to its sentinel (checked)."""
    history = []
    while (response := next_response(future))["id"] != -1:
        history.append(response)
    assert response == SENTINEL
    return history


def live(future: Any, jobids: set[int], until: Callable[[dict[str, Any]], bool]) -> list[Any]:
    """Live responses about ``jobids`` (other tests' jobs may still post), up to the
    first for which ``until`` is true."""
    found = []
    while True:
        response = next_response(future)
        if response["id"] in jobids:
            found.append(response)
            if until(response):
                return found


def ends_with_enodata(future: Any) -> None:
    """Read what was in flight; the stream then ends with ENODATA."""
    with pytest.raises(OSError, match="No data available") as ended:  # noqa: PT012
        while True:
            next_response(future)
    assert ended.value.errno == errno.ENODATA


def names(response: dict[str, Any]) -> list[str]:
    return [event["name"] for event in response["events"]]


def named(name: str, jobid: int) -> Callable[[dict[str, Any]], bool]:
    return lambda response: response["id"] == jobid and names(response) == [name]


def stamps(responses: list[dict[str, Any]]) -> list[float]:
    return [event["timestamp"] for response in responses for event in response["events"]]


# -- the journal (simulated and real) ---------------------------------------------


def test_journal_gives_each_jobs_history_then_a_sentinel_then_live_events(
    instance: FluxTestInstance,
) -> None:
    done, running = instance.completed_job(), instance.running_job()
    client = Client(instance)
    future = client.journal(full=True)
    history = backlog(future)
    jobs = {response["id"]: response for response in history}
    assert names(jobs[done]) == MAIN_LIFECYCLE
    assert names(jobs[running]) == MAIN_LIFECYCLE[:6]
    order = [response["id"] for response in history]
    assert order.index(done) < order.index(running)  # the inactive jobs, then the active
    for response in (jobs[done], jobs[running]):
        # An object (not JSON text): the jobspec without its environment.
        assert response["jobspec"]["version"] == 1
        assert "environment" not in response["jobspec"]["attributes"]["system"]
        assert all(set(event) <= {"timestamp", "name", "context"} for event in response["events"])

    instance.finish(running)
    ending = live(future, {running}, named("clean", running))
    assert [names(response) for response in ending] == [[n] for n in MAIN_LIFECYCLE[6:]]
    new = instance.completed_job()
    submitted = live(future, {new}, named("clean", new))
    assert [names(response)[0] for response in submitted] == JOURNAL_LIFECYCLE
    annotations = submitted[4]["events"][0]["context"]
    assert annotations == {"annotations": submitted[5]["events"][0]["context"]["annotations"]}
    # The jobspec comes with submit; no other live event carries it.
    assert [("jobspec" in response) for response in submitted] == [True] + [False] * 10
    command = ["true"] if instance.kind == "real" else ["success"]  # sim: its scenario
    assert submitted[0]["jobspec"]["tasks"][0]["command"] == command

    # Unique timestamps across all jobs; live events come in their order, after history.
    old, new_stamps = stamps(history), stamps(ending + submitted)
    assert len(set(old + new_stamps)) == len(old + new_stamps)
    assert new_stamps == sorted(new_stamps)
    assert min(new_stamps) > max(old)

    client.stop(future)


def test_journal_without_full_starts_with_the_active_jobs_and_still_sends_the_sentinel(
    instance: FluxTestInstance,
) -> None:
    done, pending = instance.completed_job(), instance.pending_job()
    client = Client(instance)
    client.bindings.job.event_wait(client.handle, pending, "priority")
    future = client.journal(full=False)
    # Read through a `then` callback, once per response, as a reactor-driven reader does.
    responses: list[dict[str, Any]] = []

    def on_response(fut: Any) -> None:
        responses.append(fut.get())
        fut.reset()
        if responses[-1]["id"] == -1:
            client.handle.reactor_stop()

    future.then(on_response)
    client.handle.reactor_run()
    assert responses[-1] == SENTINEL
    jobids = [response["id"] for response in responses[:-1]]
    assert pending in jobids
    assert done not in jobids
    assert names(responses[jobids.index(pending)]) == MAIN_LIFECYCLE[:4]
    client.cancel(future)
    instance.cancel(pending, "test over")


def test_journal_allow_and_deny_filter_events_by_name(instance: FluxTestInstance) -> None:
    done, pending = instance.completed_job(), instance.pending_job()
    client = Client(instance)
    future = client.journal(full=True, allow={"start": 1, "clean": 1}, deny={"clean": 1})
    jobs = {response["id"]: response for response in backlog(future)}
    assert names(jobs[done]) == ["start"]
    # A job with nothing left after filtering still gets its response (journal.c).
    assert jobs[pending]["events"] == []
    assert "jobspec" in jobs[pending]

    instance.release(pending)
    client.bindings.job.event_wait(client.bindings.open(instance.uri), pending, "clean")
    after = instance.completed_job()  # its start comes after the pending job's clean
    seen = live(future, {pending, after}, named("start", after))
    assert [(r["id"], names(r)) for r in seen] == [(pending, ["start"]), (after, ["start"])]
    client.stop(future)


def test_journal_cancel_ends_the_stream_and_a_client_that_leaves_loses_its_journals(
    instance: FluxTestInstance,
) -> None:
    client = Client(instance)
    before = client.settled_listeners()
    future = client.journal()
    backlog(future)
    assert client.listeners() == before + 1
    # A one-way request: its future is ready at once, with nothing to decode.
    sent = client.cancel(future)
    assert sent.is_ready()
    with pytest.raises(OSError, match="Invalid argument") as nothing:
        sent.get()
    assert nothing.value.errno == errno.EINVAL
    ends_with_enodata(future)
    assert client.listeners() == before

    leaving = Client(instance)
    other = leaving.journal()
    backlog(other)
    assert client.listeners() == before + 1
    del leaving, other
    gc.collect()
    deadline = time.monotonic() + TIMEOUT_SECONDS
    while client.listeners() != before and time.monotonic() < deadline:
        time.sleep(0.02)  # the broker sees the disconnect on its own time
    assert client.listeners() == before

    with pytest.raises(OSError, match="Invalid argument") as bad:
        client.handle.rpc(JOURNAL, {}, 0, 4)  # no such flag
    assert bad.value.errno == errno.EINVAL
    with pytest.raises(OSError, match="requires streaming RPC flag") as blocking:
        client.handle.rpc(JOURNAL, {"full": True}).get()
    assert blocking.value.errno == errno.EPROTO
    with pytest.raises(OSError, match="allow should be an object"):
        client.journal(allow=["start"]).get()


# -- acting as a guest (simulated and real) ----------------------------------------


def test_a_guest_is_refused_the_journal_and_the_owners_jobs_but_lists_every_job(
    instance: FluxTestInstance,
) -> None:
    done, pending = instance.completed_job(), instance.pending_job()
    guest = Client(instance, GUEST)
    jobs = guest.bindings.job
    with pytest.raises(PermissionError, match="Request requires owner credentials"):
        guest.journal(full=True).wait_for(TIMEOUT_SECONDS).get()
    with pytest.raises(PermissionError):
        jobs.event_watch_async(guest.handle, done).get_event()
    with pytest.raises(PermissionError, match="access is restricted to job/instance owner"):
        jobs.job_info_lookup(guest.handle, done, keys=["jobspec"]).get()
    with pytest.raises(PermissionError, match="guests can only raise exceptions on their own"):
        jobs.cancel(guest.handle, pending)
    # Without flux-security, J is signed "none" by this process: the owner's.
    with pytest.raises(PermissionError, match=f"signer={os.getuid()} != requestor=9999"):
        jobs.submit(guest.handle, json.dumps(jobspec_from_command(["true"])))
    listed = jobs.job_list(guest.handle, attrs=["userid"], userid=USERID_UNKNOWN).get_jobs()
    assert {"id": done, "userid": os.getuid()} in [dict(j) for j in listed]

    # The user role with the owner's userid: the owner's jobs are its own.
    user = Client(instance, {"FLUX_HANDLE_ROLEMASK": "2"})
    with pytest.raises(PermissionError, match="Request requires owner credentials"):
        user.journal(full=False).wait_for(TIMEOUT_SECONDS).get()
    assert user.bindings.job.event_watch_async(user.handle, done).get_event().name == "submit"
    with pytest.raises(PermissionError, match="only instance owner can use sign-type=none"):
        user.bindings.job.submit(user.handle, json.dumps(jobspec_from_command(["true"])))
    instance.cancel(pending, "test over")


def test_a_guest_reads_its_own_jobs(sim: SimulatedFlux) -> None:
    """A ``private`` job is another user's: that user, as a guest, may watch it."""
    private = sim.submit("success", private=True)
    env = {"FLUX_HANDLE_USERID": str(os.getuid() + 1), "FLUX_HANDLE_ROLEMASK": "0x2"}
    with mock.patch.dict(os.environ, env):
        guest = Flux(sim.uri)
    assert job.event_wait(guest, private, "clean").name == "clean"
    assert job.job_info_lookup(guest, private, keys=["eventlog"]).get()["id"] == private
    with pytest.raises(PermissionError):
        job.event_wait(Flux(sim.uri), private, "clean")  # the owner, as a plain user


# -- job-list's attrs (simulated and real) -------------------------------------------

ATTRS = ["userid", "queue", "state", "t_submit", "t_run", "t_cleanup", "t_inactive",
         "waitstatus", "exception_occurred", "exception_type", "exception_severity",
         "exception_note", "result", "success"]  # fmt: skip


def list_jobs(client: Client, jobids: list[int]) -> list[dict[str, Any]]:
    found = client.bindings.job.job_list(client.handle, max_entries=0, attrs=ATTRS).get_jobs()
    by_id = {j["id"]: dict(j) for j in found}
    return [by_id[jobid] for jobid in jobids]


def test_job_list_times_wait_status_and_the_most_severe_exception(
    instance: FluxTestInstance,
) -> None:
    client = Client(instance)
    done, pending, running = (
        instance.completed_job(), instance.pending_job(), instance.running_job()
    )  # fmt: skip
    instance.cancel(pending, "no longer needed")
    instance.raise_exception(running, "mild", 2, "first")
    instance.raise_exception(running, "worse", 1, "second")
    instance.raise_exception(running, "as-bad", 1, "third")  # equal: the first one stays
    (active,) = list_jobs(client, [running])
    assert active["state"] == RUN
    assert set(active) == {"id", "userid", "state", "t_submit", "t_run"}  # nothing else yet

    instance.finish(running)
    for jobid in (pending, running):
        client.bindings.job.event_wait(client.handle, jobid, "clean", raiseJobException=False)
    ok, canceled, nonfatal = list_jobs(client, [done, pending, running])
    assert ok["t_submit"] < ok["t_run"] < ok["t_cleanup"] < ok["t_inactive"]
    assert {k: ok.get(k) for k in ("waitstatus", "success", "result", "exception_occurred")} == {
        "waitstatus": 0, "success": True, "result": COMPLETED, "exception_occurred": False,
    }  # fmt: skip
    assert "exception_type" not in ok
    assert "queue" not in ok  # no queues configured
    assert "t_run" not in canceled
    assert "waitstatus" not in canceled
    assert canceled["t_cleanup"] < canceled["t_inactive"]
    assert (canceled["exception_type"], canceled["exception_severity"]) == ("cancel", 0)
    assert canceled["exception_note"] == "no longer needed"
    assert (canceled["result"], canceled["success"]) == (CANCELED, False)
    assert (nonfatal["exception_type"], nonfatal["exception_note"]) == ("worse", "second")
    assert nonfatal["exception_severity"] == 1
    assert (nonfatal["waitstatus"], nonfatal["result"], nonfatal["success"]) == (0, COMPLETED, True)


# -- the simulator only --------------------------------------------------------------


def test_jobs_posting_in_the_same_instant_get_unique_increasing_timestamps(
    sim: SimulatedFlux,
) -> None:
    handle = Flux(sim.uri)
    future = handle.rpc(JOURNAL, {"full": False}, 0, FLUX_RPC_STREAMING)
    backlog(future)
    # Same schedules, played together; a cancel posts five events at once.
    jobids = [sim.submit("success", hold_before="finish") for _ in range(30)]
    for jobid in jobids:
        job.event_wait(handle, jobid, "start")
    for jobid in jobids:
        sim.cancel(jobid)
    running = set(jobids)

    def all_clean(response: dict[str, Any]) -> bool:
        if names(response) == ["clean"]:
            running.discard(response["id"])
        return not running

    streamed = live(future, set(jobids), all_clean)
    canceled = [*JOURNAL_LIFECYCLE[:7], "exception", "finish", "release", "free", "clean"]
    assert len(streamed) == 30 * len(canceled)
    assert stamps(streamed) == sorted(set(stamps(streamed)))
    # A scripted job has no jobspec: the journal gives one named after its scenario.
    submits = [r for r in streamed if names(r) == ["submit"]]
    assert {r["jobspec"]["attributes"]["system"]["job"]["name"] for r in submits} == {"success"}
    handle.rpc(f"{JOURNAL}-cancel", {"matchtag": future.matchtag}, 0, FLUX_RPC_NORESPONSE)
    ends_with_enodata(future)
    full = handle.rpc(JOURNAL, {"full": True}, 0, FLUX_RPC_STREAMING)
    history = backlog(full)
    handle.rpc(f"{JOURNAL}-cancel", {"matchtag": full.matchtag}, 0, FLUX_RPC_NORESPONSE)
    assert len(set(stamps(history))) == len(stamps(history))
    for response in history:
        assert stamps([response]) == sorted(stamps([response]))


def submit(sim: SimulatedFlux, name: str, queue: str | None = None, **options: Any) -> int:
    attributes: dict[str, Any] = {"system.simulator": options} if options else {}
    if queue is not None:
        attributes["system.queue"] = queue
    jobspec = jobspec_from_command(["app"], name=name, attributes=attributes or None)
    return job.submit(Flux(sim.uri), jobspec)


def test_job_list_queue_attr_and_constraint_and_how_jobs_ended(sim: SimulatedFlux) -> None:
    name = f"queues-{uuid.uuid4().hex[:8]}"
    debug, batch = submit(sim, name, "debug"), submit(sim, name, "batch", hold_before="alloc")
    failed = submit(sim, name, scenario="exit-nonzero")
    timeout = submit(sim, name, scenario="timeout")
    handle = Flux(sim.uri)
    for jobid in (debug, failed, timeout):
        job.event_wait(handle, jobid, "clean", raiseJobException=False)
    job.event_wait(handle, batch, "priority")
    everything = {j["id"]: j for j in job.job_list(handle, name=name).get_jobs()}  # "all"
    assert everything[debug]["queue"] == "debug"
    assert "queue" not in everything[failed]
    assert set(ATTRS) - {"queue", "exception_type", "exception_severity", "exception_note"} <= set(
        everything[failed]
    )
    assert (everything[failed]["waitstatus"], everything[failed]["result"]) == (768, FAILED)
    assert everything[failed]["exception_occurred"] is False
    assert everything[timeout]["waitstatus"] == 36352
    assert (everything[timeout]["exception_type"], everything[timeout]["result"]) == (
        "timeout", TIMEOUT,
    )  # fmt: skip

    def ids(**kwargs: Any) -> list[int]:
        return [j["id"] for j in job.job_list(handle, attrs=[], name=name, **kwargs).get_jobs()]

    assert ids(queue="debug") == [debug]
    assert ids(queue=["debug", "batch"]) == [batch, debug]
    assert sorted(ids(constraint={"not": [{"queue": ["debug", "batch"]}]})) == [failed, timeout]
    # The request flux.job.JobList(h, since=..., name=..., queue=..., user="all",
    # filters=["pending", "completed"]) sends.
    payload = {
        "max_entries": 1000, "attrs": ["all"], "since": 0.0,
        "constraint": {"and": [{"name": [name]}, {"queue": ["batch", "debug"]},
                               {"or": [{"states": [PENDING]}, {"results": [COMPLETED]}]}]},
    }  # fmt: skip
    listed = handle.rpc("job-list.list", payload).get()["jobs"]
    assert [j["id"] for j in listed] == [batch, debug]
    with pytest.raises(OSError, match="queue value must be a string"):
        job.job_list(handle, constraint={"queue": [1]}).get_jobs()
    sim.release(batch)


def test_timestamps_stay_unique_and_increasing_when_the_clock_stands_still_or_steps_back(
    tmp_path: Any,
) -> None:
    broker = SimulatedBroker(str(tmp_path / "local-0"))
    jobs = [Job(jobid, None, "success") for jobid in (1, 2)]
    clock = iter([100.0, 100.0, 99.0, 100.5])
    posted = []
    with mock.patch("time.time", side_effect=clock):
        for index, name in enumerate(["submit", "submit", "validate", "validate"]):
            broker.append(jobs[index % 2], "eventlog", name, {})
            posted.append(json.loads(jobs[index % 2].eventlogs["eventlog"][-1])["timestamp"])
    after = math.nextafter(100.0, math.inf)
    assert posted == [100.0, after, math.nextafter(after, math.inf), 100.5]
