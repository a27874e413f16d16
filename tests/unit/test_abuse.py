"""Hostile or careless input cannot hurt a shared deployment: each limit refuses at
parse or before submit, with a clear error that does not echo the input whole; what
a watcher fires for and a retry adopts is its own user's and deployment's."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
import zlib
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_flux.flux_uri import normalize_flux_uri
from airflow_provider_flux.hooks.flux import FluxHook
from airflow_provider_flux.instance_events import sources
from airflow_provider_flux.instance_events.filter import ANY_USER
from airflow_provider_flux.instance_events.model import EventBatch, InstanceEvent, JobSummary
from airflow_provider_flux.job.event import JobEvent
from airflow_provider_flux.job.jobid import parse_jobid
from airflow_provider_flux.job.jobid_list import PACKED_PREFIX, pack_jobids, parse_jobids
from airflow_provider_flux.job.output import OutputLines, format_output
from airflow_provider_flux.jobspec import (
    array_indices,
    jobspec_from_command,
    parse_jobspec,
    set_attribute,
)
from airflow_provider_flux.operators.durable import (
    IDENTITY_ATTRIBUTE,
    TaskIdentity,
    jobs_of_latest_earlier_try,
)
from airflow_provider_flux.operators.flux import FluxSubmitJobOperator
from airflow_provider_flux.sensors.flux import FluxJobEventSensor, FluxJobsEventSensor
from airflow_provider_flux.testing import SimulatedFlux
from airflow_provider_flux.testing.dag_test import use_flux_connection
from airflow_provider_flux.triggers.flux import FluxJobEventTrigger, FluxJobsEventTrigger
from airflow_provider_flux.triggers.instance import FluxInstanceEventTrigger
from airflow_provider_flux.version_compat import AirflowFailException
from airflow_provider_flux.wait.ensemble import DETAILED_JOBS, EnsembleRule, ensemble_payload
from airflow_provider_flux.wait.outcome import REASON_JOB_EXCEPTION, JobOutcome
from airflow_provider_flux.wait.spec import EventWaitSpec

# What an error may echo of the input that caused it.
ECHO_BOUND = 300


def packed(raw: bytes) -> str:
    return PACKED_PREFIX + base64.b64encode(zlib.compress(raw, 9)).decode()


# -- 1. job-count bombs ---------------------------------------------------------------


def test_a_packed_job_list_bomb_is_refused_before_it_is_unpacked() -> None:
    bomb = packed(b"\x02" * 2_000_000)  # two million IDs, one apart
    assert len(bomb) < 5_000
    with pytest.raises(ValueError, match="more than the 10000 jobs allowed"):
        parse_jobids(bomb)


def test_a_packed_job_list_repeating_a_job_is_refused() -> None:
    with pytest.raises(ValueError, match="listed twice"):
        parse_jobids(packed(b"\x00" * 10))  # ten copies of one job


def test_the_job_list_limit_is_configurable(monkeypatch: pytest.MonkeyPatch) -> None:
    jobids = list(range(1, 202))
    monkeypatch.setenv("AIRFLOW__FLUX__MAX_JOBS_PER_TASK", "200")
    with pytest.raises(ValueError, match="more than the 200 jobs allowed"):
        FluxJobsEventTrigger(pack_jobids(jobids), event="clean")
    monkeypatch.setenv("AIRFLOW__FLUX__MAX_JOBS_PER_TASK", "201")
    assert FluxJobsEventTrigger(pack_jobids(jobids), event="clean").jobids == jobids


def test_a_templated_job_list_from_conf_fails_the_sensor_before_it_defers() -> None:
    sensor = FluxJobsEventSensor(task_id="wait", jobids=packed(b"\x02" * 2_000_000), event="start")
    with pytest.raises(AirflowFailException, match="more than the 10000 jobs allowed"):
        sensor.execute({})


@pytest.mark.parametrize("array", ["0-999999999", "0-99999", "[0-5000,5001-10000]", 10_001])
def test_a_job_array_over_the_limit_is_refused_before_it_is_listed(array: int | str) -> None:
    started = time.process_time()
    with pytest.raises(ValueError, match="more than the 10000 jobs a task may submit"):
        array_indices(array)
    assert time.process_time() - started < 1.0, "counted, not listed"
    task = FluxSubmitJobOperator(task_id="run", command=["true"], array=array)
    with pytest.raises(AirflowFailException, match="more than the 10000 jobs"):
        task.execute({})


def test_overlapping_ranges_count_each_index_once() -> None:
    assert array_indices("0-9999,0-9999") == list(range(10_000))


# -- 2. YAML ---------------------------------------------------------------------------

YAML_BOMB = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
"""


def test_a_yaml_alias_bomb_is_refused() -> None:
    with pytest.raises(ValueError, match=r"aliases \(\*name\) are not allowed \(line 2\)"):
        parse_jobspec(YAML_BOMB)
    task = FluxSubmitJobOperator(task_id="run", jobspec=YAML_BOMB)
    with pytest.raises(AirflowFailException, match="bad job request: jobspec: YAML aliases"):
        task.execute({})


@pytest.mark.parametrize(
    ("text", "what"),
    [("when: 2024-01-01", "date"), ("blob: !!binary aGVsbG8=", "bytes"), ("x: .nan", "float")],
)
def test_yaml_values_json_has_no_type_for_are_refused(text: str, what: str) -> None:
    with pytest.raises(ValueError, match=f"a value JSON has no type for: .*{what}"):
        parse_jobspec(text)


def test_a_jobspec_over_the_limit_is_refused_before_it_is_submitted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AIRFLOW__FLUX__MAX_JOBSPEC_BYTES", "2000")
    big = FluxSubmitJobOperator(task_id="run", command=["true"], environment={"X": "y" * 3000})
    with pytest.raises(ValueError, match="bytes as JSON: more than the 2000 allowed"):
        big.build_jobspec()


def test_a_built_jobspec_is_what_json_makes_of_it() -> None:
    task = FluxSubmitJobOperator(task_id="run", command=["true"], attributes={"user.n": (1, 2)})
    assert task.build_jobspec()["attributes"]["user"]["n"] == [1, 2]


# -- 3. connection URIs ------------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    [
        "ssh://-oProxyCommand=touch${IFS}/tmp/pwned/run/flux/local",
        "ssh://-oProxyCommand=x@node1/run/flux/local",
        "ssh://node1/run/flux/local;touch /tmp/pwned",
        "ssh://node1/run/flux/local$(id)",
        "ssh://node1/run/flux/local?setenv=X",
        "ssh://node 1/run/flux/local",
        "ssh://node1:0/run/flux/local",
        "ftp://node1/run/flux/local",
        "local://node1/run/flux/local",
        # flux-core's resolver hands these to scontrol, squeue, srun and /proc.
        "slurm:--help",
        "slurm:1;id",
        "pid:../../self",
        "lsf:-j",
        "jobid:ƒA;id",
        "jobid:",
        "jobid:ƒA//ƒB",
        "jobid:ƒA?wait",
        "pid://1",
    ],
)
def test_a_uri_that_could_be_taken_for_something_else_is_refused(host: str) -> None:
    says_the_rule = r"must|expected|no query|not a host|names|takes"
    with pytest.raises(ValueError, match=says_the_rule) as refused:
        normalize_flux_uri(host)
    assert len(str(refused.value)) < ECHO_BOUND


@pytest.mark.parametrize(
    "uri",
    [
        "ssh://node1/run/flux/local",
        "ssh://alice@node-1.cluster.example:2222/var/run/flux/local",
        "ssh://[fe80::1]:22/run/flux/local",
        "local:///run/flux/local",
        "sim:///tmp/sim-x/local-0",
        "jobid:ƒ2BKsXsZQ",
        "jobid:ƒ2BKsXsZQ/ƒ3mqZe1Q?local",
        "jobid:/ƒ2BKsXsZQ?remote",
        "jobid:../ƒ2BKsXsZQ",
        "pid:4242",
        "slurm:4242",
        "slurm:4242_7",
        "lsf:4242",
    ],
)
def test_the_uris_users_write_are_accepted(uri: str) -> None:
    assert normalize_flux_uri(uri) == uri


def test_a_proxycommand_host_is_refused_without_running_anything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, airflow_db: str
) -> None:
    marker = tmp_path / "ran"
    host = f"ssh://-oProxyCommand=touch${{IFS}}{marker}/run/flux/local"
    monkeypatch.setenv("AIRFLOW_CONN_FLUX_EVIL", json.dumps({"conn_type": "flux", "host": host}))
    ok, message = FluxHook("flux_evil").test_connection()
    assert not ok
    assert "an ssh:// host must be a host name" in message
    assert not marker.exists()


# -- 4. another user's jobs do not fire a watcher by default -----------------------------


def watcher_take(trigger: FluxInstanceEventTrigger, *items: InstanceEvent) -> list[int]:
    async def take() -> list[int]:
        await trigger._take(EventBatch((), history=True))  # a first start, empty history
        return [item.jobid for item in await trigger._take(EventBatch(items))]

    return asyncio.run(take())


def finish_of(jobid: int, userid: int, name: str = "sim-x") -> InstanceEvent:
    job = JobSummary(name, None, userid)
    return InstanceEvent(jobid, JobEvent("finish", 10.0 + jobid, {"status": 0}), job)


def test_a_watcher_fires_for_its_own_users_jobs_only_unless_told_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FLUX_HANDLE_USERID", "1000")  # this process acts as user 1000
    mine, theirs = finish_of(1, 1000), finish_of(2, 1001)
    default = FluxInstanceEventTrigger(flux_conn_id="flux_x", job_name="sim-*")
    assert watcher_take(default, mine, theirs) == [1]
    everyone = FluxInstanceEventTrigger(flux_conn_id="flux_x", job_name="sim-*", userid=ANY_USER)
    assert watcher_take(everyone, mine, theirs) == [1, 2]
    named = FluxInstanceEventTrigger(flux_conn_id="flux_x", job_name="sim-*", userid=1001)
    assert watcher_take(named, mine, theirs) == [2]
    # Scoped watchers do not share a stream with watchers of every user's jobs.
    assert default.shared_stream_key() != everyone.shared_stream_key()
    with pytest.raises(ValueError, match="'any' for every user's jobs"):
        FluxInstanceEventTrigger(flux_conn_id="flux_x", userid="everyone")


def test_a_guests_job_list_poll_asks_for_its_own_recent_jobs_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    asked: list[dict[str, Any]] = []

    async def list_jobs(payload: dict[str, Any], uri: str | None) -> list[dict[str, Any]]:
        asked.append(payload)
        return []

    monkeypatch.setattr(sources, "list_jobs", list_jobs)
    asyncio.run(sources._list_job_events(None, None, 1000))
    assert asked[0]["constraint"] == {"userid": [1000]}
    assert asked[0]["since"] >= time.time() - sources.LATE_EVENT_SECONDS - 5, "not all history"


# -- 5. a retry adopts only its own user's, deployment's and run's job -------------------

CONN_ID = "flux_abuse"


@pytest.fixture
def hook(sim: SimulatedFlux) -> FluxHook:
    use_flux_connection(sim.uri, CONN_ID)
    return FluxHook(CONN_ID)


def plant(hook: FluxHook, who: TaskIdentity, **simulator: Any) -> int:
    """A job carrying ``who``'s identity and name (``simulator``: how the simulated
    instance plays it: ``userid``, another user's job the owner can read)."""
    jobspec = jobspec_from_command(["true"], name=who.job_name())
    set_attribute(jobspec, IDENTITY_ATTRIBUTE, who.attribute(None))
    for key, value in simulator.items():
        set_attribute(jobspec, f"system.simulator.{key}", value)
    jobid = hook.submit(jobspec)
    bindings = hook.get_bindings()
    bindings.job.event_wait(bindings.open(hook.get_uri()), jobid, "validate")
    return jobid


def identity(try_number: int, run_id: str, **more: Any) -> TaskIdentity:
    return TaskIdentity("dag", "run", run_id, -1, try_number, **{"deployment": "prod", **more})


def test_a_job_planted_by_another_user_is_not_adopted(hook: FluxHook) -> None:
    run_id = f"manual__{uuid.uuid4().hex}"
    plant(hook, identity(1, run_id), userid=4242)  # the owner can read it, and it matches
    names = [identity(1, run_id).job_name()]
    assert jobs_of_latest_earlier_try(hook, identity(2, run_id), names) is None
    mine = plant(hook, identity(1, run_id))
    assert jobs_of_latest_earlier_try(hook, identity(2, run_id), names) == (1, {None: mine})


def test_another_deployments_job_is_not_adopted(hook: FluxHook) -> None:
    run_id = "scheduled__2026-12-06T00:00:00+00:00"  # the same in prod and staging
    staging = identity(1, run_id, deployment="staging")
    plant(hook, staging)
    names = [staging.job_name()]
    assert jobs_of_latest_earlier_try(hook, identity(2, run_id), names) is None


def test_a_job_from_before_the_run_began_is_not_adopted(hook: FluxHook) -> None:
    run_id = f"manual__{uuid.uuid4().hex}"
    plant(hook, identity(1, run_id))
    later = identity(2, run_id, run_started=time.time() + 3600)
    names = [identity(1, run_id).job_name()]
    assert jobs_of_latest_earlier_try(hook, later, names) is None


def test_a_job_of_release_0_2_0_which_names_no_deployment_is_still_adopted(
    hook: FluxHook,
) -> None:
    run_id = f"manual__{uuid.uuid4().hex}"
    old = identity(1, run_id)
    jobspec = jobspec_from_command(["true"], name=old.job_name())
    attribute = {k: v for k, v in old.attribute(None).items() if k != "deployment"}
    set_attribute(jobspec, IDENTITY_ATTRIBUTE, attribute)
    jobid = hook.submit(jobspec)
    bindings = hook.get_bindings()
    bindings.job.event_wait(bindings.open(hook.get_uri()), jobid, "validate")
    found = jobs_of_latest_earlier_try(hook, identity(2, run_id), [old.job_name()])
    assert found == (1, {None: jobid})


# -- 6. the output read at the end stops at its limit: tests/e2e and benchmarks ----------
# -- 7. unbounded strings and payloads ----------------------------------------------------


def test_a_100000_character_event_name_is_refused_and_not_echoed_whole() -> None:
    name = "x" * 100_000
    sensor = FluxJobEventSensor(task_id="wait", jobid="ƒ2", event=name)
    with pytest.raises(AirflowFailException, match="longer than the 256 characters") as refused:
        sensor.execute({})
    assert len(str(refused.value)) < ECHO_BOUND
    with pytest.raises(ValueError, match="longer than the 256 characters"):
        FluxJobEventTrigger(2, event=name)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("eventlog", "guest." + "x" * 100_000, "longer than the 256 characters"),
        ("match_context", {"k": "v" * 10_000}, "more than the 4096 allowed"),
        ("jobid", "1" * 100_000, "longer than 256 characters"),
    ],
)
def test_long_wait_fields_are_refused_and_not_echoed_whole(
    field: str, value: Any, message: str
) -> None:
    arguments = {"jobid": "ƒ2", "event": "start", field: value}
    with pytest.raises((ValueError, AirflowFailException), match=message) as refused:
        FluxJobEventSensor(task_id="wait", **arguments).execute({})
    assert len(str(refused.value)) < ECHO_BOUND


def test_a_bad_job_id_is_not_echoed_whole() -> None:
    with pytest.raises(ValueError, match="is not a valid Flux jobid") as refused:
        parse_jobid("ƒ" + "!" * 200)
    assert len(str(refused.value)) < ECHO_BOUND


def test_a_big_ensembles_payload_details_only_its_failures() -> None:
    jobids = list(range(1, 10_001))
    note = "n" * 1_000
    failed = JobOutcome(
        REASON_JOB_EXCEPTION,
        JobEvent("exception", 1.0, {"type": "x", "severity": 0, "note": note}),
        f"job failed: {note}",
    )
    matched = JobOutcome(None, JobEvent("finish", 1.0, {"status": 0}), "ok")
    outcomes = {jobid: failed if jobid % 10 == 0 else matched for jobid in jobids}
    rule = EnsembleRule("all", 1_000, len(jobids))
    payload = ensemble_payload(
        EventWaitSpec("finish"), rule, "eventlog", jobids, outcomes, "success"
    )
    assert len(json.dumps(payload)) < 100_000  # 1.15 MB when every job was detailed
    assert len(payload["jobs"]) == DETAILED_JOBS
    assert all(entry["outcome"] == REASON_JOB_EXCEPTION for entry in payload["jobs"])
    assert len(payload["jobs"][0]["event"]["context"]["note"]) < 250
    assert parse_jobids(payload["jobids"]) == jobids
    assert len(parse_jobids(payload["by_outcome"]["matched"])) == 9_000


# -- 8. malformed output events ---------------------------------------------------------


def test_a_malformed_output_event_is_told_once_and_skipped() -> None:
    lines = OutputLines(1_000)
    bad = JobEvent(
        "data", 1.0, {"stream": "stdout", "rank": "0", "data": "%%", "encoding": "base64"}
    )
    worse = JobEvent("data", 1.0, {"stream": "stdout", "rank": "0", "data": "x", "repeat": "lots"})
    good = JobEvent("data", 1.0, {"stream": "stdout", "rank": "0", "data": "ok\n"})
    told = lines.feed(bad)
    assert len(told) == 1
    assert "malformed output event was skipped" in told[0]
    assert lines.feed(worse) == []
    assert lines.feed(good) == ["stdout: ok"]
    assert format_output([bad, worse, good], 1_000) == ("--- stdout ---\nok\n", 0)


def test_repeated_output_is_expanded_only_as_far_as_it_shows() -> None:
    huge = JobEvent("data", 1.0, {"stream": "stdout", "rank": "0", "data": "x", "repeat": 10**9})
    text, left_out = format_output([huge], 100)
    assert len(text) == 100
    assert left_out == 10**9 + len("--- stdout ---\n") - 100


def test_many_eventlogs_are_read_on_one_handle_with_each_jobs_error_in_place(
    hook: FluxHook, sim: SimulatedFlux, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An array's endings, a durable status, an ensemble's poke: one handle for the
    batch (over ssh:// each handle is an ssh session), not one per job."""
    from airflow_provider_flux.flux_bindings import FluxBindings

    done = [sim.submit("success") for _ in range(3)]
    private = sim.submit("success", private=True)
    for jobid in done:
        hook.read_eventlog(jobid)  # wait until each is known
    opened: list[str | None] = []
    real_open = FluxBindings.open
    monkeypatch.setattr(
        FluxBindings, "open", lambda self, uri: opened.append(uri) or real_open(self, uri)
    )
    reads = hook.read_eventlogs([done[0], 424242, private, *done[1:]])
    assert len(opened) == 1
    assert isinstance(reads[1], FileNotFoundError)
    assert isinstance(reads[2], PermissionError)
    assert [read[0][0].name for read in (reads[0], reads[3], reads[4])] == ["submit"] * 3
