"""Airflow names for every supported Airflow version (3.1 and newer), in one place.

The rest of the provider imports Airflow's authoring names from here, never from
Airflow directly, so that version differences stay in this module, as in Airflow's
own providers:

- 3.1 has the authoring classes in ``airflow.sdk`` but not yet the exceptions in
  ``airflow.sdk.exceptions`` nor ``conf`` in ``airflow.sdk`` (both new in 3.2).
- ``BaseTrigger.on_kill`` is new in 3.3: before it, the triggerer only calls
  ``cleanup()``, whatever ended the trigger.
- ``ResumableJobMixin`` and the task state store are new in 3.3.
- An event trigger's ``asset_state_store`` and shared streams are new in 3.3: before,
  the triggerer runs each event trigger's own ``run()`` and gives it no store.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow import __version__ as _airflow_version
from airflow.sdk import (
    BaseHook,
    BaseOperator,
    BaseSensorOperator,
    Context,
    PokeReturnValue,
    XComArg,
    timezone,
)
from airflow.sdk.bases.decorator import DecoratedOperator, TaskDecorator, task_decorator_factory
from airflow.triggers.base import (
    BaseEventTrigger,
    BaseTrigger,
    StartTriggerArgs,
    TaskSuccessEvent,
    TriggerEvent,
)
from packaging.version import Version


def get_base_airflow_version_tuple() -> tuple[int, int, int]:
    """The running Airflow's version as (major, minor, micro), pre-release tags dropped."""
    version = Version(_airflow_version)
    return version.major, version.minor, version.micro


AIRFLOW_V_3_2_PLUS = get_base_airflow_version_tuple() >= (3, 2, 0)
AIRFLOW_V_3_3_PLUS = get_base_airflow_version_tuple() >= (3, 3, 0)

# The triggerer calls ``BaseTrigger.on_kill`` when a deferred task is killed,
# cleared or marked (3.3 and newer).
TRIGGER_ON_KILL_SUPPORTED = AIRFLOW_V_3_3_PLUS

# A task started in the triggerer (``start_from_trigger``) has its templated fields
# rendered there (3.3 and newer); before, the trigger gets them as written.
TRIGGER_RENDERS_TEMPLATES = AIRFLOW_V_3_3_PLUS

# The scheduler ignores an executor's late success for a task whose trigger already
# fired (resumed after deferral, the same try) from 3.2 on; 3.1 fails the task.
SCHEDULER_IGNORES_SUCCESS_AFTER_DEFER = AIRFLOW_V_3_2_PLUS

if TYPE_CHECKING or AIRFLOW_V_3_2_PLUS:
    from airflow.sdk import conf
    from airflow.sdk.exceptions import (
        AirflowException,
        AirflowFailException,
        AirflowNotFoundException,
        AirflowTaskTimeout,
        TaskDeferred,
    )
else:
    from airflow.configuration import conf
    from airflow.exceptions import (
        AirflowException,
        AirflowFailException,
        AirflowNotFoundException,
        AirflowTaskTimeout,
        TaskDeferred,
    )

if TYPE_CHECKING or AIRFLOW_V_3_3_PLUS:
    from airflow.sdk.bases.resumablejobmixin import ResumableJobMixin
else:

    class ResumableJobMixin:
        """Before Airflow 3.3 there is no task state store: the operator's own
        ``submit_job`` (which finds an earlier try's job by the identity it carries)
        is the whole of what ``durable`` does."""

        external_id_key = "remote_job_id"

        def __init__(self, *, durable: bool = True, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.durable = durable

        def execute_resumable(self, context: Context) -> Any:
            external_id = self.submit_job(context)
            self.poll_until_complete(external_id, context)
            return self.get_job_result(external_id, context)


__all__ = [
    "AIRFLOW_V_3_2_PLUS",
    "AIRFLOW_V_3_3_PLUS",
    "SCHEDULER_IGNORES_SUCCESS_AFTER_DEFER",
    "TRIGGER_ON_KILL_SUPPORTED",
    "TRIGGER_RENDERS_TEMPLATES",
    "AirflowException",
    "AirflowFailException",
    "AirflowNotFoundException",
    "AirflowTaskTimeout",
    "BaseEventTrigger",
    "BaseHook",
    "BaseOperator",
    "BaseSensorOperator",
    "BaseTrigger",
    "Context",
    "DecoratedOperator",
    "PokeReturnValue",
    "ResumableJobMixin",
    "StartTriggerArgs",
    "TaskDecorator",
    "TaskDeferred",
    "TaskSuccessEvent",
    "TriggerEvent",
    "XComArg",
    "conf",
    "task_decorator_factory",
    "timezone",
]
