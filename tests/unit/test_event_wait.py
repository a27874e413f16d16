"""The wait semantics over every recorded scenario, read straight from the eventlogs."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_flux.job.event import JobEvent
from airflow_provider_flux.testing import load_scenario, scenario_names
from airflow_provider_flux.wait.spec import (
    EventWaitSpec,
    context_value_matches,
    resolve_eventlog,
)
from tests.semantics_table import CASES, Row, case_id


def test_every_recorded_scenario_is_covered() -> None:
    assert {row[0] for row in CASES} == set(scenario_names())


@pytest.mark.parametrize("row", CASES, ids=[case_id(r) for r in CASES])
def test_wait_outcome(row: Row) -> None:
    scenario, eventlog, event, match, raise_exc, expected = row
    events = [JobEvent.from_flux(e) for e in load_scenario(scenario).eventlogs[eventlog]]
    result = EventWaitSpec(event, match, raise_exc).judge_eventlog(events, complete=True)
    assert result is not None
    assert result.verdict == expected[0]
    if expected[0] == "matched":
        assert result.event is not None
        assert result.event.name == expected[1]
        for key, value in match.items():
            assert context_value_matches(result.event.context[key], value)
    elif expected[0] == "job_exception":
        assert result.event is not None
        assert result.event.context["type"] == expected[1]
        if expected[2] is not None:
            assert result.event.context["note"] == expected[2]
        assert result.event.context["severity"] == 0
    else:
        assert result.event is None


def test_incomplete_eventlog_keeps_waiting() -> None:
    events = [JobEvent("submit", 1.0), JobEvent("alloc", 2.0)]
    assert EventWaitSpec("start").judge_eventlog(events, complete=False) is None


@pytest.mark.parametrize(
    ("actual", "wanted", "matches"),
    [
        (0, 0, True),
        (0, "0", True),
        (768, "768", True),
        ("cancel", "cancel", True),
        ("cancel", '"cancel"', True),
        (True, "true", True),
        (True, 1, False),
        (1, True, False),
        ({"a": 1}, {"a": 1}, True),
        ("all", "al", False),
    ],
)
def test_match_context_follows_wait_event(actual: Any, wanted: Any, matches: bool) -> None:
    assert context_value_matches(actual, wanted) is matches


@pytest.mark.parametrize("bad", ["", "   ", None, 3])
def test_bad_event_name_is_refused(bad: Any) -> None:
    with pytest.raises(ValueError, match="event must be a non-empty event name"):
        EventWaitSpec(bad)


def test_bad_match_context_is_refused() -> None:
    with pytest.raises(ValueError, match="match_context must be a mapping"):
        EventWaitSpec("finish", ["status"])  # type: ignore[arg-type]


def recorded(scenario: str, eventlog: str = "eventlog") -> list[JobEvent]:
    return [JobEvent.from_flux(e) for e in load_scenario(scenario).eventlogs[eventlog]]


@pytest.mark.parametrize(
    ("scenario", "eventlog", "event", "match", "count", "verdict", "timestamp_index"),
    [
        # urgency-hold-release has two priority events (submit at urgency 0, then released).
        ("urgency-hold-release", "eventlog", "priority", {}, 1, "matched", 0),
        ("urgency-hold-release", "eventlog", "priority", {}, 2, "matched", 1),
        ("urgency-hold-release", "eventlog", "priority", {}, 3, "eventlog_ended", None),
        # An event that happens once: --count=2 never comes, as `flux job wait-event`.
        ("success", "eventlog", "start", {}, 2, "eventlog_ended", None),
        ("success", "guest.output", "data", {}, 2, "matched", 1),
        ("success", "guest.output", "data", {"stream": "stdout"}, 1, "matched", 0),
        # A fatal exception before the second match fails the wait.
        ("cancel-running", "eventlog", "alloc", {}, 2, "job_exception", None),
    ],
)
def test_count_waits_for_the_nth_matching_event(
    scenario: str,
    eventlog: str,
    event: str,
    match: dict[str, Any],
    count: int,
    verdict: str,
    timestamp_index: int | None,
) -> None:
    events = recorded(scenario, eventlog)
    result = EventWaitSpec(event, match, count=count).judge_eventlog(events, complete=True)
    assert result is not None
    assert result.verdict == verdict
    if timestamp_index is not None:
        matching = [e for e in events if EventWaitSpec(event, match).matches(e)]
        assert result.event == matching[timestamp_index]


@pytest.mark.parametrize("bad", [0, -1, True, "2", 1.5])
def test_count_below_one_or_not_a_whole_number_is_refused(bad: Any) -> None:
    with pytest.raises(ValueError, match="count must be a whole number of at least 1"):
        EventWaitSpec("start", count=bad)


def test_count_shows_in_the_description() -> None:
    assert EventWaitSpec("data", count=3).describe() == "event='data' (occurrence 3)"
    assert EventWaitSpec("data").describe() == "event='data'"


@pytest.mark.parametrize(
    ("name", "path"),
    [
        ("eventlog", "eventlog"),
        ("exec", "guest.exec.eventlog"),
        ("output", "guest.output"),
        ("input", "guest.input"),
        ("guest.exec.eventlog", "guest.exec.eventlog"),
        ("guest.my.own.log", "guest.my.own.log"),
    ],
)
def test_eventlog_names_mean_what_flux_job_wait_event_p_reads(name: str, path: str) -> None:
    assert resolve_eventlog(name) == path


@pytest.mark.parametrize("key", ["R", "jobspec", "J", "guest.", "", "Eventlog", "exec.eventlog"])
def test_job_keys_that_are_not_eventlogs_are_refused(key: str) -> None:
    with pytest.raises(ValueError, match=f"eventlog {key!r} is not an eventlog of a job") as caught:
        resolve_eventlog(key)
    message = str(caught.value)
    for accepted in ("'eventlog'", "guest.exec.eventlog", "'exec'", "'output'", "'input'"):
        assert accepted in message
