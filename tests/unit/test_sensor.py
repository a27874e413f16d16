"""FluxJobEventSensor behaviour that dag.test() does not exercise: the deferral itself."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from airflow_provider_flux.exceptions import (
    FluxConnectionFailedError,
    FluxEventNeverHappenedError,
    FluxInvalidWaitError,
    FluxJobExceptionError,
)
from airflow_provider_flux.sensors.flux import FluxJobEventSensor
from airflow_provider_flux.triggers.flux import FluxJobEventTrigger
from airflow_provider_flux.version_compat import (
    TRIGGER_RENDERS_TEMPLATES,
    AirflowFailException,
    TaskDeferred,
    timezone,
)


def sensor(**kwargs: Any) -> FluxJobEventSensor:
    return FluxJobEventSensor(task_id="wait", **{"jobid": "ƒ2", "event": "start", **kwargs})


def context(started_seconds_ago: float) -> Any:
    started = timezone.utcnow() - timedelta(seconds=started_seconds_ago)
    return {"ti": SimpleNamespace(start_date=started)}


def test_defers_to_the_trigger_with_what_is_left_of_the_timeout() -> None:
    task = sensor(timeout=600, match_context={"status": 0}, eventlog="exec", count=2)
    with pytest.raises(TaskDeferred) as deferred:
        task.execute(context(started_seconds_ago=100))
    trigger = deferred.value.trigger
    assert isinstance(trigger, FluxJobEventTrigger)
    assert trigger.serialize()[1] == {
        "jobid": 1, "event": "start", "eventlog": "guest.exec.eventlog",
        "flux_conn_id": "flux_default", "match_context": {"status": 0},
        "raise_on_exception": True, "waitcreate": False, "reconnect_attempts": 5,
        "include_events": [], "cancel_on_kill": False, "cancel_reason": None, "deadline": None,
        "count": 2, "end_from_trigger": True, "xcom_push": True, "stream_output": False,
        "output_limit": 65536,
    }  # fmt: skip
    assert deferred.value.method_name == "execute_complete"
    left = deferred.value.timeout.total_seconds()
    assert 495 <= left <= 500


def test_deferrable_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", raising=False)
    assert sensor().deferrable is True


def test_honours_default_deferrable_when_the_deployment_sets_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", "False")
    assert sensor().deferrable is False
    assert sensor(deferrable=True).deferrable is True


@pytest.mark.parametrize("jobid", ["", "ƒ0OIl", -1, 2**64, "1.5"])
def test_bad_job_id_fails_before_deferring(jobid: Any) -> None:
    with pytest.raises(AirflowFailException, match="bad jobid"):
        sensor(jobid=jobid).execute(context(0))


def test_bad_event_fails_before_deferring() -> None:
    with pytest.raises(ValueError, match="event must be a non-empty event name"):
        sensor(event=" ").execute(context(0))


@pytest.mark.parametrize("deferrable", [True, False], ids=["deferrable", "poke"])
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"eventlog": "R"}, "eventlog 'R' is not an eventlog of a job: expected 'eventlog'"),
        ({"eventlog": "jobspec"}, "eventlog 'jobspec' is not an eventlog of a job"),
        ({"count": 0}, "count must be a whole number of at least 1, not 0"),
    ],
)
def test_what_cannot_be_waited_on_fails_at_once_without_retry(
    kwargs: dict[str, Any], message: str, deferrable: bool
) -> None:
    task = sensor(deferrable=deferrable, flux_conn_id="no_such_connection", **kwargs)
    with pytest.raises(AirflowFailException, match=message):
        task.execute(context(0))


def test_execute_complete_returns_the_event() -> None:
    event = {"name": "start", "timestamp": 1.5, "context": {}}
    payload = {"status": "success", "jobid": 1, "job": "ƒ2", "event": event, "message": "ok"}
    assert sensor().execute_complete({}, payload) == {**event, "jobid": 1, "job": "ƒ2"}


def test_execute_complete_raises_the_job_exception_with_its_details() -> None:
    exception = {"name": "exception", "timestamp": 2.0,
                 "context": {"type": "cancel", "severity": 0, "note": "bye"}}  # fmt: skip
    message = "job ƒ2: fatal exception type=cancel: bye"
    payload = {"status": "error", "reason": "job_exception", "jobid": 1, "job": "ƒ2",
               "event": exception, "message": message}  # fmt: skip
    with pytest.raises(FluxJobExceptionError, match=message) as caught:
        sensor().execute_complete({}, payload)
    assert (caught.value.jobid, caught.value.type, caught.value.note) == (1, "cancel", "bye")
    assert caught.value.severity == 0


@pytest.mark.parametrize(
    ("reason", "error"),
    [
        ("eventlog_ended", FluxEventNeverHappenedError),
        ("connection", FluxConnectionFailedError),
        ("not_found", AirflowFailException),
        ("invalid", FluxInvalidWaitError),
    ],
)
def test_execute_complete_failures(reason: str, error: type[Exception]) -> None:
    payload = {"status": "error", "reason": reason, "jobid": 1, "message": "why"}
    with pytest.raises(error, match="why"):
        sensor().execute_complete({}, payload)


def test_connection_failures_are_retryable_and_job_failures_are_not() -> None:
    assert not issubclass(FluxConnectionFailedError, AirflowFailException)
    assert issubclass(FluxJobExceptionError, AirflowFailException)
    assert issubclass(FluxEventNeverHappenedError, AirflowFailException)


def test_templated_fields() -> None:
    assert set(FluxJobEventSensor.template_fields) == {
        "jobid",
        "event",
        "eventlog",
        "match_context",
        "flux_uri",
    }


def test_starts_in_the_triggerer_with_every_argument_and_the_timeout() -> None:
    task = sensor(
        jobid="{{ ti.xcom_pull('submit', map_indexes=-1) }}", event="clean", match_context={"a": 1},
        timeout=900, start_from_trigger=True, do_xcom_push=False,
    )  # fmt: skip
    assert task.start_from_trigger is TRIGGER_RENDERS_TEMPLATES
    if not TRIGGER_RENDERS_TEMPLATES:
        return  # the templated job ID falls back to starting in a worker
    args = task.start_trigger_args
    assert args is not None
    assert args.trigger_cls == "airflow_provider_flux.triggers.flux.FluxJobEventTrigger"
    assert args.next_method == "execute_complete"
    assert args.timeout == timedelta(seconds=900)
    trigger = FluxJobEventTrigger(**(args.trigger_kwargs or {}))
    assert (trigger.jobid, trigger.event, trigger.match_context) == (
        "{{ ti.xcom_pull('submit', map_indexes=-1) }}", "clean", {"a": 1},
    )  # fmt: skip
    assert (trigger.end_from_trigger, trigger.xcom_push) == (True, False)


@pytest.mark.parametrize(
    ("kwargs", "why"),
    [
        ({"deferrable": False}, "the sensor is not deferrable"),
        ({"count": 0}, "its arguments are not a valid wait"),
        (
            {"jobid": "{{ ti.xcom_pull('submit') }}"},
            "pass map_indexes=-1" if TRIGGER_RENDERS_TEMPLATES else "only from Airflow 3.3",
        ),
    ],
)
def test_starts_in_a_worker_when_the_triggerer_cannot(kwargs: dict[str, Any], why: str) -> None:
    task = sensor(start_from_trigger=True, **kwargs)
    assert task.start_from_trigger is False
    assert task.start_in_worker_reason is not None
    assert why in task.start_in_worker_reason


def test_a_task_sent_to_a_worker_to_start_defers_from_there() -> None:
    event = {"status": "start_in_worker", "message": "no job ID reached the triggerer"}
    with pytest.raises(TaskDeferred) as deferred:
        sensor(start_from_trigger=True).execute_complete(context(0), event)
    assert isinstance(deferred.value.trigger, FluxJobEventTrigger)
    assert deferred.value.trigger.jobid == 1
