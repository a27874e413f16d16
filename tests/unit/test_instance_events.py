"""Events of every job of an instance: the filter a watcher applies, the events
job-list's answers imply, the journal's backlog, and the trigger's position."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_flux.aio.journal import SENTINEL_ID, JournalResponse
from airflow_provider_flux.instance_events import (
    LATE_EVENT_SECONDS,
    SOURCE_JOB_LIST,
    EventBatch,
    Frontier,
    InstanceEvent,
    JobEventFilter,
    JobSummary,
    JournalReader,
    job_list_events,
)
from airflow_provider_flux.instance_events.filter import ANY_USER
from airflow_provider_flux.instance_events.sources import by_timestamp
from airflow_provider_flux.job.ending import exit_code
from airflow_provider_flux.job.event import JobEvent
from airflow_provider_flux.triggers.instance import FluxInstanceEventTrigger

SUBMIT = {"userid": 1000, "urgency": 16, "flags": 0, "version": 1}


def jobspec(name: str | None = None, queue: str | None = None) -> dict[str, Any]:
    system: dict[str, Any] = {"duration": 0}
    if name:
        system["job"] = {"name": name}
    if queue:
        system["queue"] = queue
    return {
        "version": 1,
        "resources": [],
        "tasks": [{"command": ["/usr/bin/sim-app", "-x"], "slot": "task", "count": {}}],
        "attributes": {"system": system},
    }


def item(
    name: str, at: float = 1.0, jobid: int = 7, job: JobSummary | None = None, **ctx: Any
) -> InstanceEvent:
    return InstanceEvent(jobid, JobEvent(name, at, ctx), job or JobSummary("sim-1", "batch", 1000))


# -- the filter ---------------------------------------------------------------------


def test_a_filter_matches_name_pattern_queue_and_user() -> None:
    wanted = JobEventFilter.from_arguments("finish", job_name="sim-*", queue="batch", userid=1000)
    assert wanted.matches(item("finish", status=0))
    assert not wanted.matches(item("start"))
    assert not wanted.matches(item("finish", job=JobSummary("post-1", "batch", 1000), status=0))
    assert not wanted.matches(item("finish", job=JobSummary("sim-1", "debug", 1000), status=0))
    assert not wanted.matches(item("finish", job=JobSummary("sim-1", "batch", 1001), status=0))
    assert not wanted.matches(item("finish", job=JobSummary(None, None, None), status=0))


def test_exit_codes_read_the_wait_status_and_signals_exit_128_plus_n() -> None:
    assert exit_code(0) == 0
    assert exit_code(3 << 8) == 3
    assert exit_code(9) == 128 + 9
    ok = JobEventFilter.from_arguments(["finish"], exit_codes=0)
    assert ok.matches(item("finish", status=0))
    assert not ok.matches(item("finish", status=1 << 8))
    assert not ok.matches(item("finish", status=15))  # killed by SIGTERM
    killed = JobEventFilter.from_arguments(["finish"], exit_codes=[143])
    assert killed.matches(item("finish", status=15))


def test_exception_filters_read_type_and_severity() -> None:
    fatal_timeouts = JobEventFilter.from_arguments(
        ["exception"], exception_types="timeout", exception_severity=0
    )
    assert fatal_timeouts.matches(item("exception", type="timeout", severity=0, note=""))
    assert not fatal_timeouts.matches(item("exception", type="timeout", severity=1, note=""))
    assert not fatal_timeouts.matches(item("exception", type="cancel", severity=0, note=""))
    any_exception = JobEventFilter.from_arguments(["exception", "finish"])
    assert any_exception.matches(item("exception", type="x", severity=7))


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"events": []}, "events must be"),
        ({"events": ["finish", ""]}, "events must be"),
        ({"events": "start", "exit_codes": 0}, "add 'finish' to events"),
        ({"events": "finish", "exception_types": "timeout"}, "add 'exception' to events"),
        ({"exit_codes": ["0"]}, "exit_codes must be"),
        ({"exit_codes": True}, "exit_codes must be"),
        ({"job_name": ""}, "job_name must be"),
        ({"userid": -1}, "userid must be"),
    ],
)
def test_a_filter_that_cannot_match_what_was_meant_is_refused(
    arguments: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        JobEventFilter.from_arguments(**arguments)


# -- job-list's answers --------------------------------------------------------------


def test_a_job_list_entry_gives_the_events_of_the_job_in_order() -> None:
    entry = {
        "id": 9, "userid": 1000, "name": "sim-2", "queue": "batch", "state": 64,
        "t_submit": 10.0, "t_run": 11.0, "t_cleanup": 12.0, "t_inactive": 13.0,
        "waitstatus": 3 << 8, "exception_occurred": True, "exception_type": "timeout",
        "exception_severity": 0, "exception_note": "ran out of time",
    }  # fmt: skip
    events = job_list_events(entry)
    assert [e.event.name for e in events] == [
        "submit", "alloc", "start", "finish", "exception", "clean",
    ]  # fmt: skip
    assert [e.position for e in events] == sorted(e.position for e in events)
    assert len({e.position for e in events}) == len(events)
    finish = events[3]
    assert finish.event.context == {"status": 3 << 8}
    assert finish.job == JobSummary("sim-2", "batch", 1000)
    assert events[4].event.context == {"type": "timeout", "severity": 0, "note": "ran out of time"}
    assert all(e.source == SOURCE_JOB_LIST for e in events)


def test_a_pending_job_in_job_list_has_only_its_submit() -> None:
    events = job_list_events({"id": 5, "userid": 1, "name": "x", "state": 8, "t_submit": 3.0})
    assert [e.event.name for e in events] == ["submit"]


def test_a_job_cancelled_while_pending_has_no_finish() -> None:
    entry = {
        "id": 5, "t_submit": 3.0, "t_cleanup": 4.0, "t_inactive": 5.0,
        "exception_occurred": True, "exception_type": "cancel", "exception_severity": 0,
    }  # fmt: skip
    assert [e.event.name for e in job_list_events(entry)] == ["submit", "exception", "clean"]


# -- the journal ---------------------------------------------------------------------


def events(*names_and_times: tuple[str, float], userid: int = 1000) -> tuple[JobEvent, ...]:
    return tuple(
        JobEvent(name, at, SUBMIT | {"userid": userid} if name == "submit" else {})
        for name, at in names_and_times
    )


async def test_the_journal_backlog_comes_out_sorted_at_the_sentinel_with_each_jobs_name() -> None:
    reader = JournalReader()
    # The job-manager sends the backlog job by job, in hash order.
    assert (
        reader.feed(JournalResponse(2, events(("submit", 5.0), ("clean", 6.0)), jobspec("b")))
        is None
    )
    assert (
        reader.feed(JournalResponse(1, events(("submit", 1.0), ("start", 7.0)), jobspec(None, "q")))
        is None
    )
    backlog = reader.feed(JournalResponse(SENTINEL_ID))
    assert backlog is not None
    history = await by_timestamp(backlog)
    assert history.history
    assert [(e.jobid, e.event.name) for e in history.events] == [
        (1, "submit"), (2, "submit"), (2, "clean"), (1, "start"),
    ]  # fmt: skip
    # A job without a name attribute is named after its command, as flux jobs does.
    assert history.events[0].job == JobSummary("sim-app", "q", 1000)
    live = reader.feed(JournalResponse(1, events(("finish", 8.0))))
    assert live == EventBatch(
        (InstanceEvent(1, JobEvent("finish", 8.0), JobSummary("sim-app", "q", 1000)),)
    )
    new = reader.feed(JournalResponse(3, events(("submit", 9.0), userid=42), jobspec("c")))
    assert new is not None
    assert new.events[0].job == JobSummary("c", None, 42)


def test_an_empty_instance_has_an_empty_history_at_the_origin() -> None:
    history = JournalReader().feed(JournalResponse(SENTINEL_ID))
    assert history == EventBatch((), history=True)


# -- the trigger ---------------------------------------------------------------------


def trigger(**kwargs: Any) -> FluxInstanceEventTrigger:
    """A watcher of every user's jobs (these jobs are user 1000's)."""
    return FluxInstanceEventTrigger(flux_conn_id="flux_sim", **{"userid": ANY_USER, **kwargs})


def test_the_trigger_serializes_to_what_builds_it_again() -> None:
    first = trigger(events=["finish", "exception"], job_name="sim-*", exit_codes=0, poll_interval=2)
    classpath, kwargs = first.serialize()
    assert classpath == "airflow_provider_flux.triggers.instance.FluxInstanceEventTrigger"
    again = FluxInstanceEventTrigger(**kwargs)
    assert again.serialize() == (classpath, kwargs)
    assert again.filter == first.filter
    assert again.shared_stream_key() == first.shared_stream_key()


def test_watchers_of_one_instance_share_a_stream_whatever_their_filters() -> None:
    assert trigger(job_name="a*").shared_stream_key() == trigger(events="start").shared_stream_key()
    assert (
        trigger().shared_stream_key()
        != FluxInstanceEventTrigger(flux_conn_id="other").shared_stream_key()
    )


def test_bad_arguments_fail_when_the_dag_is_parsed() -> None:
    with pytest.raises(ValueError, match="poll_interval"):
        trigger(poll_interval=0)
    with pytest.raises(ValueError, match="add 'finish'"):
        trigger(events="start", exit_codes=0)


def history(*items: InstanceEvent) -> EventBatch:
    return EventBatch(items, history=True)


async def test_a_first_start_fires_only_for_what_happens_after_the_history() -> None:
    watcher = trigger(job_name="sim-*")
    assert await watcher._take(history(item("finish", 1.0), item("finish", 2.0, jobid=8))) == []
    later = item("finish", 3.0, jobid=9)
    assert await watcher._take(EventBatch((item("start", 2.5, jobid=9), later))) == [later]


async def test_a_submit_stamped_before_events_that_came_first_still_fires_once() -> None:
    # job-ingest stamps a submit before the job manager posts it: another job's
    # events, stamped later, can come first (seen on flux-core 0.88.0).
    watcher = trigger(events=["submit", "clean"])
    await watcher._take(history())
    other_clean = item("clean", 10.0, jobid=1)
    late_submit = item("submit", 9.99, jobid=2)
    assert await watcher._take(EventBatch((other_clean,))) == [other_clean]
    assert await watcher._take(EventBatch((late_submit,))) == [late_submit]
    # A history read again (a reconnection) repeats both: neither fires again.
    assert await watcher._take(history(late_submit, other_clean)) == []


async def test_after_a_restart_the_trigger_fires_for_what_it_had_not_seen_once() -> None:
    watcher = trigger()
    handled = item("finish", 2.0, jobid=8)
    watcher._frontier = Frontier.from_json({"newest": 2.0, "recent": [list(handled.key)]})
    missed = item("finish", 4.0, jobid=10)
    late = item("finish", 1.5, jobid=9)  # within the window, and not seen
    old = item("finish", 2.0 - LATE_EVENT_SECONDS - 1, jobid=7)  # before it: taken as seen
    assert await watcher._take(history(old, late, handled, missed)) == [late, missed]
    # The stream then repeats some of the history: nothing twice.
    again = item("finish", 5.0, jobid=11)
    assert await watcher._take(EventBatch((missed, again))) == [again]


def test_a_saved_frontier_holds_only_events_handed_over_long_enough_ago() -> None:
    frontier = Frontier()
    frontier.advance(item("finish", 1.0, jobid=1), when=10.0)
    frontier.advance(item("finish", 2.0, jobid=2), when=20.0)
    frontier.advance(item("start", 3.0, jobid=3), keep=False)
    assert frontier.to_json(newest=2.0, kept_by=15.0) == {
        "newest": 2.0,
        "recent": [[1, "finish", 1.0]],
    }
    again = Frontier.from_json(frontier.to_json())
    assert again.newest == 3.0
    assert set(again.recent) == {(1, "finish", 1.0), (2, "finish", 2.0)}
