"""``@task.flux``: a Python function run as a Flux job, its return value the task's
XCom value."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from airflow_provider_flux.aio.errors import FluxWatchError
from airflow_provider_flux.aio.output_reader import read_marked_lines
from airflow_provider_flux.config import limits
from airflow_provider_flux.exceptions import FluxFunctionError, FluxJobExceptionError
from airflow_provider_flux.function_job.call import (
    DEFAULT_MAX_RETURN_BYTES,
    FunctionCall,
    UnserializableError,
    check_max_return_bytes,
    check_serializer,
    load_value,
    runner_command,
)
from airflow_provider_flux.function_job.result import CallResult, parse_result
from airflow_provider_flux.hooks.flux import FluxHook
from airflow_provider_flux.job.ending import JobEnding
from airflow_provider_flux.job.jobid import format_jobid
from airflow_provider_flux.job.output import RESULT_MARK
from airflow_provider_flux.jobspec import json_clean, set_attribute
from airflow_provider_flux.operators.durable import jobids_of
from airflow_provider_flux.operators.flux import FluxSubmitJobOperator
from airflow_provider_flux.operators.job_report import raise_if_job_failed, read_endings
from airflow_provider_flux.version_compat import (
    AirflowException,
    AirflowFailException,
    Context,
    DecoratedOperator,
    TaskDecorator,
    task_decorator_factory,
)

# What the operator takes that a function call has no use for: the decorator makes
# the command, and waits for the job to have its return value.
NOT_FOR_A_FUNCTION = ("command", "jobspec", "script", "array", "wait_for_completion")


class _FluxDecoratedOperator(DecoratedOperator, FluxSubmitJobOperator):
    """Runs the decorated function in a Flux job; see :func:`flux_task`."""

    custom_operator_name = "@task.flux"
    template_fields: Sequence[str] = (
        *DecoratedOperator.template_fields, "python", "environment", "cwd", "job_name",
        "dependencies", "attributes", "flux_queue", "duration", "flux_uri",
    )  # fmt: skip
    template_fields_renderers: ClassVar[dict[str, str]] = dict(
        DecoratedOperator.template_fields_renderers
    )

    def __init__(
        self,
        *,
        python_callable: Callable[..., Any],
        python: str | None = None,
        serializer: str = "pickle",
        max_return_bytes: int = DEFAULT_MAX_RETURN_BYTES,
        **kwargs: Any,
    ) -> None:
        given = [name for name in NOT_FOR_A_FUNCTION if name in kwargs]
        if given:
            raise TypeError(
                f"@task.flux does not take {', '.join(given)}: the job runs the decorated "
                "function and the task waits for its return value"
            )
        self.python = python or sys.executable
        self.serializer = check_serializer(serializer)
        self.max_return_bytes = check_max_return_bytes(max_return_bytes)
        self._files: dict[str, Any] = {}
        self._results: dict[int, Any] = {}  # judged jobs' return values
        super().__init__(
            python_callable=python_callable, command=runner_command(self.python), **kwargs
        )

    def execute(self, context: Context) -> Any:
        # The arguments are rendered: a call that cannot be made is refused here,
        # before Flux is asked anything.
        call = FunctionCall(
            self.get_python_source(),  # type: ignore[no-untyped-call]
            self.python_callable.__name__,
            self.serializer,
            self.max_return_bytes,
            module=self.python_callable.__module__,
        )
        try:
            self._files = call.files(list(self.op_args), self.op_kwargs)
        except (UnserializableError, ValueError) as err:
            raise AirflowFailException(f"{self.task_id}: {err}; nothing was submitted") from err
        self.command = runner_command(self.python)
        return super().execute(context)

    def build_jobspec(self, index: int | None = None, identity: Any = None) -> dict[str, Any]:
        """The operator's jobspec, carrying the call in its files."""
        jobspec = super().build_jobspec(index, identity)
        set_attribute(jobspec, "system.files", self._files)
        return json_clean(jobspec, limits().max_jobspec_bytes)

    def get_job_result(self, external_id: Any, context: Context) -> Any:
        """The return value of the job's call (of an earlier try's, when it succeeded)."""
        jobid = jobids_of(external_id)[0]
        if jobid not in self._results:
            hook = self.hook()
            self._judge(hook, jobid, read_endings(hook, [jobid])[jobid])
        return self._results[jobid]

    def _judge(self, hook: FluxHook, jobid: int, ending: JobEnding) -> Any:
        """The function's return value, or the task's error: the job's, the call's, or
        the one the function raised (which is retried, as any error of a task's code)."""
        job = format_jobid(jobid)
        if ending.fatal is not None:
            if ending.fatal.context.get("type") == "exec":
                raise FluxJobExceptionError(
                    f"Flux job {job}: its Python, {self.python}, could not be started on the "
                    f"compute node ({ending.fatal.context.get('note')}); give @task.flux a "
                    "python= that exists there",
                    jobid, ending.fatal.to_dict(),
                )  # fmt: skip
            raise_if_job_failed(jobid, ending)  # cancel, timeout, ...: the job's failure
        result = self._read_result(hook, jobid)
        name = self.python_callable.__name__
        if result.raised is not None:
            raised = result.raised
            rank = raised.get("rank")
            raise FluxFunctionError(
                f"{name}() raised {raised.get('type')}: {raised.get('message')} (task {rank} "
                f"of Flux job {job}; its traceback is in the log above)",
                jobid, raised.get("type"), rank if isinstance(rank, int) else None,
            )  # fmt: skip
        if result.error is not None:
            raise AirflowFailException(f"Flux job {job}: {name}() could not run or return: "
                                       f"{result.error.get('message')}")  # fmt: skip
        raise_if_job_failed(jobid, ending)
        if result.value is None:
            what = "was cut short" if result.cut else "is not there"
            raise AirflowFailException(
                f"Flux job {job} ended well but {name}()'s return value {what} in its output "
                "(the job's stdout redirected, or cut at the shell's output.limit?)"
            )
        try:
            value = load_value(self.serializer, result.value)
        except Exception as err:  # each serializer has its own errors
            raise AirflowFailException(
                f"Flux job {job}: {name}()'s return value cannot be loaded here with "
                f"{self.serializer}: {type(err).__name__}: {err}"
            ) from err
        self.log.info("Flux job %s completed: %s() returned %d bytes (%s)",
                      job, name, len(result.value), self.serializer)  # fmt: skip
        self._results[jobid] = value
        return value

    def _read_result(self, hook: FluxHook, jobid: int) -> CallResult:
        # The value, base64 in lines of about 3 KiB, and a few short lines besides.
        limit = self.max_return_bytes * 4 // 3 + 64 * 1024
        try:
            lines, cut = asyncio.run(read_marked_lines(jobid, hook.get_uri(), RESULT_MARK, limit))
        except FluxWatchError as err:
            raise AirflowException(
                f"the output of Flux job {format_jobid(jobid)} could not be read: {err}"
            ) from err
        if cut:
            raise AirflowFailException(
                f"Flux job {format_jobid(jobid)} wrote more result lines than "
                f"max_return_bytes={self.max_return_bytes} allows"
            )
        return parse_result(lines)


def flux_task(
    python_callable: Callable[..., Any] | None = None,
    multiple_outputs: bool | None = None,
    **kwargs: Any,
) -> TaskDecorator:
    """Run the decorated function as a Flux job: ``@task.flux(num_tasks=..., ...)``.

    The function's source, its arguments and its return value travel through Flux
    itself: the source and the arguments (serialized) in the jobspec's files, the
    return value in the job's output. No filesystem need be shared between the
    worker and the compute nodes. The job runs ``python`` there; the function may
    import only what that Python has. The task context is not passed in: give the
    function what it needs as (templated) arguments.

    Every task of the job runs the function, with its rank in ``FLUX_TASK_RANK``
    and the task count in ``FLUX_JOB_SIZE``; task 0's return value is the task's
    XCom value (with ``multiple_outputs``, a dict's keys too). The others' are
    ignored. An exception raised by any task's function fails the task with its
    traceback in the log, and is retried like any error of a task's code; a failed
    job (a fatal Flux exception, a signal) is not retried, as with
    :class:`~airflow_provider_flux.operators.flux.FluxSubmitJobOperator`.

    :param python: the Python the job runs (a path on the compute nodes; default
        the worker's own interpreter path).
    :param serializer: ``pickle`` (default), ``cloudpickle`` or ``dill``: for the
        arguments and the return value; the job's Python must have it too.
    :param max_return_bytes: the largest return value, serialized (default 1 MiB, at
        most 6 MiB); a larger one fails the task, never comes back cut.
    :param multiple_outputs: push a returned dict's keys as XComs of their own.
    :param kwargs: :class:`~airflow_provider_flux.operators.flux.FluxSubmitJobOperator`'s
        arguments (resources, ``duration``, ``flux_queue``, ``urgency``,
        ``dependencies``, ``attributes``, ``environment``, ``flux_conn_id``, ``flux_uri``,
        ``deferrable``, ``durable``, ``stream_output``, ``output_limit``,
        ``cancel_on_kill``) and Airflow's; not ``command``, ``jobspec``, ``script``,
        ``array`` or ``wait_for_completion``.
    """
    return task_decorator_factory(
        python_callable=python_callable,
        multiple_outputs=multiple_outputs,
        decorated_operator_class=_FluxDecoratedOperator,
        **kwargs,
    )
