"""The wait semantics over every recorded scenario, read straight from the eventlogs."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_flux.event_wait import EventWaitSpec, context_value_matches
from airflow_provider_flux.events import JobEvent
from airflow_provider_flux.testing import load_scenario, scenario_names
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
