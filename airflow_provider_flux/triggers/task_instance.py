"""What a trigger can ask about its own task instance: its live state and its XComs.

These are requests to the triggerer's supervisor through Airflow's task-runner
channel (``SUPERVISOR_COMMS``, ``GetTaskStates``, ``GetXCom``, ``SetXCom``), which
are not public API: every use of them is here, so that an Airflow change breaks one
module. Each answers None (or ``UNKNOWN_STATE``) rather than raise when the
supervisor cannot answer (a test without one, a triggerer shutting down).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from contextlib import suppress
from typing import Any

from airflow_provider_flux.job.jobid import parse_jobid
from airflow_provider_flux.job.jobid_list import parse_jobids
from airflow_provider_flux.version_compat import BaseTrigger

# A task state that could not be read (None is a state: that of a cleared task).
UNKNOWN_STATE = "<unknown>"

# How long a question to the triggerer's supervisor may take (it may be shutting down).
SUPERVISOR_TIMEOUT_SECONDS = 10.0


async def task_state(trigger: BaseTrigger) -> str | None:
    """The live state of the trigger's task instance (``UNKNOWN_STATE`` when it
    cannot be read)."""
    response = await _ask_supervisor(trigger, "state", _state_request)
    ti = trigger.task_instance
    if ti is None or response is None:
        return UNKNOWN_STATE
    try:
        state = response.task_states[ti.run_id][ti.task_id]
    except (AttributeError, KeyError, TypeError) as err:
        trigger.log.warning("cannot read the state of the task from %r: %r", response, err)
        return UNKNOWN_STATE
    return None if state is None else str(state)


async def task_jobids(trigger: BaseTrigger) -> list[int] | None:
    """The job IDs in the XCom ``jobid`` of the trigger's task instance (one ID, or
    the list a job array pushes), if any."""
    value = await get_task_xcom(trigger, "jobid")
    if value is None:
        return None
    try:
        return [parse_jobid(value)] if isinstance(value, (int, str)) else parse_jobids(value)
    except (TypeError, ValueError):
        trigger.log.warning("the task's XCom jobid is not a job ID or a list of them: %r", value)
        return None


async def get_task_xcom(trigger: BaseTrigger, key: str) -> Any:
    """The value of the XCom ``key`` of the trigger's task instance, or None."""

    def build(ti: Any) -> Any:
        from airflow.sdk.execution_time.comms import GetXCom

        return GetXCom(
            key=key, dag_id=ti.dag_id, run_id=ti.run_id, task_id=ti.task_id,
            map_index=ti.map_index,
        )  # fmt: skip

    response = await _ask_supervisor(trigger, f"XCom {key}", build)
    value = getattr(response, "value", None)
    if isinstance(value, str):  # as the XCom backend stored it
        with suppress(ValueError):
            return json.loads(value)
    return value


async def set_task_xcom(trigger: BaseTrigger, key: str, value: Any) -> None:
    """Set the XCom ``key`` of the trigger's task instance (best effort)."""

    def build(ti: Any) -> Any:
        from airflow.sdk.execution_time.comms import SetXCom

        return SetXCom(
            key=key, value=value, dag_id=ti.dag_id, run_id=ti.run_id, task_id=ti.task_id,
            map_index=ti.map_index,
        )  # fmt: skip

    await _ask_supervisor(trigger, f"XCom {key}", build)


async def _ask_supervisor(trigger: BaseTrigger, what: str, build: Callable[[Any], Any]) -> Any:
    """Send the request ``build(ti)`` about the trigger's task instance to the
    triggerer's supervisor; None when there is no answer."""
    ti = trigger.task_instance
    if ti is None:
        return None
    try:
        from airflow.sdk.execution_time import task_runner

        request = build(ti)
        return await asyncio.wait_for(
            task_runner.SUPERVISOR_COMMS.asend(request), SUPERVISOR_TIMEOUT_SECONDS
        )
    except Exception as err:  # no supervisor (tests), or an API change: say we cannot tell
        trigger.log.warning("cannot read the %s of task %s: %r", what, ti.task_id, err)
        return None


def _state_request(ti: Any) -> Any:
    from airflow.sdk.execution_time.comms import GetTaskStates

    return GetTaskStates(
        dag_id=ti.dag_id, task_ids=[ti.task_id], run_ids=[ti.run_id], map_index=ti.map_index
    )
