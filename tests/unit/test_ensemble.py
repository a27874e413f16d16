"""Waits on many jobs: job ID lists, the rule that decides, and the trigger's
serialized form (one row of Airflow's trigger table, even at 10,000 jobs)."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_flux.job.jobid import format_jobid
from airflow_provider_flux.job.jobid_list import pack_jobids, parse_jobids, unpack_jobids
from airflow_provider_flux.triggers.flux import FluxJobsEventTrigger
from airflow_provider_flux.wait.ensemble import EnsembleRule

CLASSPATH = "airflow_provider_flux.triggers.flux.FluxJobsEventTrigger"
# MySQL's TEXT, the smallest column Airflow's metadata databases give trigger kwargs.
TRIGGER_ROW_LIMIT = 65_535


def array_jobids(count: int, per_millisecond: int = 3) -> list[int]:
    """IDs as Flux gives a job array (RFC 19 FLUIDs: milliseconds since the instance
    started, generator, sequence): here a day into the instance's life."""
    start_ms = 86_400_000
    return [
        ((start_ms + i // per_millisecond) << 24) | (1 << 10) | (i % per_millisecond)
        for i in range(count)
    ]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ([1, "ƒ3", "0x4"], [1, 2, 4]),
        ((5, 6), [5, 6]),
        ("[1, 2, 3]", [1, 2, 3]),  # an XCom list of ints rendered into a template
        ("['ƒ2', 'ƒ3']", [1, 2]),  # an XCom list of strings: Python's repr, not JSON
        ('["ƒ2"]', [1]),
        ("1, 2 3\n4", [1, 2, 3, 4]),
    ],
)
def test_job_id_lists_parse_from_lists_and_rendered_text(value: Any, expected: list[int]) -> None:
    assert parse_jobids(value) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([], "jobids is empty"),
        ("", "jobids is empty"),
        ([1, "bogus"], r"jobids\[1\]: "),
        ([1, "ƒ2"], r"jobids\[1\]: job 'ƒ2' is listed twice"),
        (7, "jobids must be a list of job IDs, not int"),
        ("[1, 2", "is not a list"),
        ("{'a': 1}", r"jobids\[0\]: {'a': is not a valid Flux jobid"),
    ],
)
def test_bad_job_id_lists_are_refused_with_the_place(value: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_jobids(value)


@pytest.mark.parametrize(
    "jobids",
    [array_jobids(10_000), [7, 3, 2**63, 1, 0], [12345]],
    ids=["array", "unordered-and-wide", "one"],
)
def test_packed_lists_round_trip_in_order(jobids: list[int]) -> None:
    assert unpack_jobids(pack_jobids(jobids)) == jobids
    assert parse_jobids(pack_jobids(jobids)) == jobids


def test_a_corrupt_packed_list_is_refused() -> None:
    with pytest.raises(ValueError, match="not a packed job ID list"):
        unpack_jobids("zdelta:not base64!")


@pytest.mark.parametrize(
    ("wait_for", "max_failures", "matched", "failed", "decision"),
    [
        ("all", 0, 49, 0, None),
        ("all", 0, 50, 0, "success"),
        ("all", 0, 0, 1, "failure"),  # the first failure decides
        ("all", 1, 49, 1, "success"),
        ("all", 1, 48, 1, None),
        ("all", 1, 0, 2, "failure"),
        ("any", 0, 1, 0, "success"),
        ("any", 0, 0, 1, "failure"),
        ("any", 49, 0, 49, None),
        ("any", 50, 0, 50, "failure"),  # nothing can match any more
        (40, 0, 39, 0, None),
        (40, 0, 40, 0, "success"),
        (40, 10, 0, 10, None),
        (40, 10, 39, 10, None),
        (40, 10, 39, 11, "failure"),
        (40, 20, 30, 11, "failure"),  # 30 + 9 pending < 40
    ],
)
def test_the_rule_decides_as_soon_as_it_can(
    wait_for: Any, max_failures: int, matched: int, failed: int, decision: str | None
) -> None:
    assert EnsembleRule(wait_for, max_failures, 50).decide(matched, failed) == decision


@pytest.mark.parametrize(
    ("wait_for", "max_failures", "message"),
    [
        ("most", 0, "wait_for must be 'all', 'any', or a number of jobs from 1 to 50"),
        (0, 0, "wait_for must be"),
        (51, 0, "wait_for must be"),
        (True, 0, "wait_for must be"),
        ("all", -1, "max_failures must be a whole number of at least 0"),
    ],
)
def test_bad_rules_are_refused(wait_for: Any, max_failures: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EnsembleRule(wait_for, max_failures, 50)


def test_rules_describe_themselves() -> None:
    assert EnsembleRule("all", 0, 50).describe() == "all 50 jobs"
    assert EnsembleRule("any", 2, 50).describe() == "any of 50 jobs (at most 2 may fail)"
    assert EnsembleRule(40, 0, 50).describe() == "at least 40 of 50 jobs"


@pytest.mark.parametrize("count", [3, 100], ids=["listed", "packed"])
def test_serialize_round_trips(count: int) -> None:
    jobids = array_jobids(count)
    trigger = FluxJobsEventTrigger(
        [format_jobid(j) for j in jobids], event="finish", eventlog="exec", flux_conn_id="hpc",
        match_context={"status": 0}, raise_on_exception=False, count=2, waitcreate=True,
        wait_for=2, max_failures=1, reconnect_attempts=3,
    )  # fmt: skip
    classpath, kwargs = trigger.serialize()
    assert classpath == CLASSPATH
    assert kwargs["eventlog"] == "guest.exec.eventlog"
    assert (kwargs["wait_for"], kwargs["max_failures"], kwargs["count"]) == (2, 1, 2)
    assert isinstance(kwargs["jobids"], list if count <= 16 else str)
    rebuilt = FluxJobsEventTrigger(**kwargs)
    assert rebuilt.jobids == jobids
    assert rebuilt.serialize() == (classpath, kwargs)


def test_10000_jobs_fit_one_row_of_airflow_s_trigger_table() -> None:
    from airflow.models.trigger import Trigger

    trigger = FluxJobsEventTrigger(array_jobids(10_000), event="clean", wait_for=9_000)
    stored = Trigger.encrypt_kwargs(trigger.serialize()[1])
    assert len(stored) < TRIGGER_ROW_LIMIT
    assert Trigger._decrypt_kwargs(stored)["jobids"] == trigger.serialize()[1]["jobids"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"jobids": []}, "jobids is empty"),
        ({"jobids": [1], "wait_for": 2}, "wait_for must be"),
        ({"jobids": [1], "eventlog": "R"}, "is not an eventlog of a job"),
        ({"jobids": [1], "count": 0}, "count must be"),
    ],
)
def test_the_trigger_refuses_what_it_cannot_wait_on(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FluxJobsEventTrigger(event="start", **kwargs)
