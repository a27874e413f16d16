"""The simulator's generated job output (``attributes.system.simulator.output``), its
job-list service and its ``jobspec`` lookups, seen as a user of the bindings sees them."""

from __future__ import annotations

import errno
import json
import os
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from airflow_provider_flux.jobspec import jobspec_from_command
from airflow_provider_flux.testing import SimulatedFlux
from airflow_provider_flux.testing.bindings import Flux, job
from airflow_provider_flux.testing.bindings.job import EventLogEvent

WAITCREATE = 1
SPEED = 20  # the session simulator's (tests/conftest.py)
USERID_UNKNOWN = 0xFFFFFFFF
SCHED, RUN, INACTIVE, PENDING = 8, 16, 64, 14
COMPLETED, FAILED, CANCELED, TIMEOUT = 1, 2, 4, 8


def unique(prefix: str) -> str:
    """A job name no other test of the session uses."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def submit(sim: SimulatedFlux, output: Any = None, *, command: str = "app", **options: Any) -> int:
    """Submit ``command`` named ``name``, with these simulator ``options`` and ``output``."""
    name = options.pop("name", None)
    options = {**options, **({"output": output} if output is not None else {})}
    jobspec = jobspec_from_command(
        [command], name=name, attributes={"system.simulator": options} if options else None
    )
    return job.submit(Flux(sim.uri), jobspec)


def events(sim: SimulatedFlux, jobid: int, eventlog: str = "eventlog") -> Iterator[EventLogEvent]:
    """A job eventlog from its first event to its end (waiting for a guest one to exist)."""
    flags = WAITCREATE if eventlog.startswith("guest.") else 0
    watch = job.event_watch_async(Flux(sim.uri), jobid, eventlog, flags)
    while (event := watch.get_event()) is not None:
        yield event


def data(output: list[EventLogEvent]) -> list[EventLogEvent]:
    return [e for e in output if e.name == "data" and "data" in e.context]


def eofs(output: list[EventLogEvent]) -> list[tuple[str, str]]:
    return [(e.context["stream"], e.context["rank"]) for e in output if e.context.get("eof")]


def listed(sim: SimulatedFlux, **kwargs: Any) -> list[dict[str, Any]]:
    return job.job_list(Flux(sim.uri), **kwargs).get_jobs()


def ids(sim: SimulatedFlux, **kwargs: Any) -> list[int]:
    return [j["id"] for j in listed(sim, attrs=[], **kwargs)]


def wait_event(sim: SimulatedFlux, jobid: int, name: str) -> None:
    job.event_wait(Flux(sim.uri), jobid, name, raiseJobException=False)


def test_lines_arrive_in_order_spaced_by_interval_and_the_job_ends_after_them(
    sim: SimulatedFlux,
) -> None:
    jobid = submit(sim, {"lines": 5, "interval": 2.0, "stream": "stderr"})
    output = list(events(sim, jobid, "guest.output"))
    main = {e.name: e for e in events(sim, jobid)}
    execs = {e.name: e for e in events(sim, jobid, "guest.exec.eventlog")}
    lines = data(output)
    assert [(e.context["stream"], e.context["data"]) for e in lines] == [
        ("stderr", f"line {i}\n") for i in range(1, 6)
    ]
    # Every stream of every task ends, after the last line.
    assert [e.name for e in output] == ["header"] + ["data"] * 7
    assert eofs(output) == [("stderr", "0"), ("stdout", "0")]
    # Line k comes k intervals (of recorded time: the broker runs SPEED times faster)
    # after the first, never sooner.
    offsets = [e.timestamp - lines[0].timestamp for e in lines]
    assert all(offset >= k * 2.0 / SPEED - 0.005 for k, offset in enumerate(offsets)), offsets
    # The lines are written while the tasks run; the job ends after the last one.
    assert lines[0].timestamp >= max(execs["shell.start"].timestamp, main["start"].timestamp)
    assert execs["shell.task-exit"].timestamp >= output[-1].timestamp
    assert main["finish"].timestamp >= output[-1].timestamp
    assert main["finish"].context == {"status": 0}


def chunks(sim: SimulatedFlux, output: dict[str, Any]) -> list[str]:
    return [e.context["data"] for e in data(list(events(sim, submit(sim, output), "guest.output")))]


def test_chunk_bytes_packs_whole_lines_into_each_event_and_splits_longer_ones(
    sim: SimulatedFlux,
) -> None:
    packed = chunks(sim, {"lines": 1000, "line_bytes": 100, "chunk_bytes": 4096})
    assert "".join(packed) == "".join(f"line {i}".ljust(99, "x") + "\n" for i in range(1, 1001))
    assert all(len(chunk) == 4000 for chunk in packed[:-1])  # 40 whole lines fit in 4096
    assert len(packed) == 25
    split = chunks(sim, {"lines": 2, "line_bytes": 10, "chunk_bytes": 4})
    assert split == ["line", " 1xx", "x\n", "line", " 2xx", "x\n"]


def test_megabytes_of_output_arrive_whole_and_in_order(sim: SimulatedFlux) -> None:
    got = chunks(sim, {"lines": 20000, "line_bytes": 100})  # 2 MB, one line per event
    assert [int(line[5:].rstrip("x\n")) for line in got] == list(range(1, 20001))
    assert {len(line) for line in got} == {100}


def test_redirect_posts_a_redirect_event_per_stream_and_no_data(sim: SimulatedFlux) -> None:
    jobid = submit(sim, {"lines": 4, "interval": 0.2, "redirect": "/tmp/job.out"})
    output = list(events(sim, jobid, "guest.output"))
    assert [(e.name, e.context) for e in output[1:]] == [
        ("redirect", {"stream": "stdout", "rank": "0", "path": "/tmp/job.out"}),
        ("redirect", {"stream": "stderr", "rank": "0", "path": "/tmp/job.out"}),
    ]
    assert [e.name for e in events(sim, jobid)][-1] == "clean"


def test_cancel_stops_the_output(sim: SimulatedFlux) -> None:
    name = unique("cancel")
    jobid = submit(sim, {"lines": 1000, "interval": 1.0}, name=name)
    for event in events(sim, jobid, "guest.output"):
        if event.context.get("data") == "line 3\n":
            sim.cancel(jobid, "enough")
            break
    output = list(events(sim, jobid, "guest.output"))  # all of it: the job has ended
    lines = [e.context["data"] for e in data(output)]
    assert 3 <= len(lines) < 10
    assert lines == [f"line {i}\n" for i in range(1, len(lines) + 1)]
    assert eofs(output) == [("stderr", "0"), ("stdout", "0")]  # the killed tasks' streams
    assert [e.name for e in events(sim, jobid)][-4:] == ["finish", "release", "free", "clean"]
    time.sleep(3 / SPEED)  # time enough for lines that must not come
    written = job.job_info_lookup(Flux(sim.uri), jobid, ["guest.output"]).get()["guest.output"]
    assert written.count('"name":"data"') == len(output) - 1
    assert listed(sim, name=name, attrs=["result"]) == [{"id": jobid, "result": CANCELED}]


def test_a_job_whose_tasks_never_ran_writes_no_output(sim: SimulatedFlux) -> None:
    jobid = submit(sim, {"lines": 10}, scenario="exec-not-found")
    assert [e.name for e in events(sim, jobid, "guest.output")] == ["header", "log"]


def test_a_bad_output_option_is_refused_at_submit(sim: SimulatedFlux) -> None:
    for output, message in (
        ({"interval": 1}, "missing 1 required positional argument: 'lines'"),
        ({"lines": 1, "bogus": 1}, "unexpected keyword argument 'bogus'"),
        ({"lines": 100, "line_bytes": 8}, "line_bytes must be an integer >= 9, not 8"),
        ({"lines": 1, "interval": -2}, "interval must be a number of seconds >= 0, not -2"),
        ({"lines": 1, "redirect": ""}, "redirect must be a path, not ''"),
    ):
        with pytest.raises(OSError, match=r"simulator\.output: ") as info:
            submit(sim, output)
        assert info.value.errno == errno.EINVAL
        assert message in str(info.value)


def test_job_list_gives_pending_then_running_then_inactive_jobs_as_job_list_orders_them(
    sim: SimulatedFlux,
) -> None:
    """Pending: first submitted first; running, inactive: last started, ended first."""
    name = unique("states")
    done = []
    for _ in range(3):  # one after the other
        done.append(submit(sim, name=name))
        wait_event(sim, done[-1], "clean")
    running = [submit(sim, name=name, hold_before="finish") for _ in range(2)]
    for jobid in running:
        wait_event(sim, jobid, "start")
    pending = [submit(sim, name=name, hold_before="alloc") for _ in range(2)]
    for jobid in pending:
        wait_event(sim, jobid, "priority")
    active, inactive = pending + running[::-1], done[::-1]
    try:
        jobs = listed(sim, name=name)
        assert [j["id"] for j in jobs] == active + inactive
        assert [j["state"] for j in jobs] == [SCHED] * 2 + [RUN] * 2 + [INACTIVE] * 3
        assert [j.get("result") for j in jobs] == [None] * 4 + [COMPLETED] * 3  # once inactive
        assert {(j["name"], j["userid"]) for j in jobs} == {(name, os.getuid())}
        assert ids(sim, name=name, max_entries=3) == active[:3]
        assert ids(sim, name=name, states=PENDING) == pending
        assert ids(sim, name=name, states=RUN | INACTIVE) == running[::-1] + inactive
        assert ids(sim, name=name, states=PENDING, results=COMPLETED) == pending + inactive
        assert ids(sim, name=name, constraint={"not": [{"states": [INACTIVE]}]}) == active
        either = {"or": [{"states": [RUN]}, {"results": [COMPLETED]}]}
        assert ids(sim, name=name, constraint=either) == running[::-1] + inactive
        since = jobs[-2]["t_submit"]  # of the second job: it ended after then, the first before
        assert ids(sim, name=name, since=since) == active + inactive[:2]
    finally:
        for jobid in pending + running:
            sim.release(jobid)


def test_results_follow_how_each_job_ended(sim: SimulatedFlux) -> None:
    name = unique("results")
    jobs = {scenario: submit(sim, name=name, scenario=scenario)
            for scenario in ("success", "exit-nonzero", "timeout", "cancel-pending",
                             "nonfatal-exception", "dependency-failed")}  # fmt: skip
    for jobid in jobs.values():
        wait_event(sim, jobid, "clean")
    results = {j["id"]: j["result"] for j in listed(sim, name=name, attrs=["result"])}
    assert {scenario: results[jobid] for scenario, jobid in jobs.items()} == {
        "success": COMPLETED, "exit-nonzero": FAILED, "timeout": TIMEOUT,
        "cancel-pending": CANCELED, "nonfatal-exception": COMPLETED, "dependency-failed": FAILED,
    }  # fmt: skip
    failed = {jobs[s] for s in ("exit-nonzero", "timeout", "dependency-failed")}
    assert set(ids(sim, name=name, results=FAILED | TIMEOUT)) == failed


def test_job_names_come_from_the_jobspec_or_the_command(sim: SimulatedFlux) -> None:
    command, named = unique("/usr/local/bin/tool"), unique("named")
    jobid, other = submit(sim, command=command), submit(sim, name=named, command=command)
    basename = command.rsplit("/", 1)[1]
    for each in (jobid, other):
        wait_event(sim, each, "validate")
    assert listed(sim, name=basename, attrs=["name"]) == [{"id": jobid, "name": basename}]
    # As the provider asks: everyone's jobs with one of several names, in one response.
    payload = {"max_entries": 0, "attrs": ["t_submit"], "constraint": {"name": [basename, named]}}
    answer = Flux(sim.uri).rpc("job-list.list", payload).get()
    assert list(answer) == ["jobs"]
    assert sorted(j["id"] for j in answer["jobs"]) == sorted([jobid, other])
    assert all(set(j) == {"id", "t_submit"} for j in answer["jobs"])


def test_job_list_refuses_what_it_cannot_read(sim: SimulatedFlux) -> None:
    handle = Flux(sim.uri)
    base = {"max_entries": 1, "attrs": ["all"]}
    for payload, errnum, message in (
        ({**base, "constraint": {"color": ["blue"]}}, errno.EPROTO, "operator: color"),
        ({**base, "constraint": {"states": ["run"]}}, errno.EPROTO, "states value must be an"),
        ({**base, "max_entries": -1}, errno.EPROTO, "max_entries and attrs required"),
        ({**base, "since": "x"}, errno.EPROTO, "since must be a number >= 0"),
        ({**base, "attrs": ["bogus"]}, errno.EINVAL, "bogus is not a valid attribute"),
    ):
        with pytest.raises(OSError, match=message) as info:
            handle.rpc("job-list.list", payload).get()
        assert info.value.errno == errnum


def test_another_users_job_is_listed_under_their_userid(sim: SimulatedFlux) -> None:
    jobid = sim.submit("success", private=True)  # a scripted job: named after its scenario
    wait_event(sim, sim.submit("success"), "validate")  # and so has the private one
    everyone = listed(sim, name="success", attrs=["userid"], userid=USERID_UNKNOWN)
    assert {"id": jobid, "userid": os.getuid() + 1} in everyone
    assert jobid not in ids(sim, name="success")
    assert jobid in ids(sim, name="success", userid=os.getuid() + 1)


def test_jobspec_lookup_gives_the_submitted_jobspec_without_its_environment(
    sim: SimulatedFlux,
) -> None:
    airflow = {"dag_id": "etl", "task_id": "load", "run_id": "manual__1", "try_number": 2}
    attributes = {"system.airflow": airflow, "user.note": "ünïcode"}
    jobspec = jobspec_from_command(["app"], environment={"SECRET": "x"}, attributes=attributes)
    handle = Flux(sim.uri)
    jobid = job.submit(handle, jobspec)
    found = job.job_info_lookup(handle, jobid, keys=["jobspec"]).get()
    assert set(found) == {"id", "jobspec"}
    stored = json.loads(found["jobspec"])  # JSON text, as the KVS holds it
    # All of it but the environment, which job-ingest leaves out of this key.
    del jobspec["attributes"]["system"]["environment"]
    assert stored == jobspec
    assert stored["attributes"]["system"]["airflow"] == airflow
    private = sim.submit("success", private=True)
    with pytest.raises(PermissionError):
        job.job_info_lookup(handle, private, keys=["jobspec"]).get()
    with pytest.raises(FileNotFoundError):
        job.job_info_lookup(handle, 1234, keys=["jobspec"]).get()
