"""``FluxSubmitJobOperator``: submit a Flux job and wait for it without holding a worker."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any, ClassVar

from airflow_provider_flux.config import default_deferrable, limits
from airflow_provider_flux.exceptions import FluxJobFailedError
from airflow_provider_flux.hooks.flux import FluxHook
from airflow_provider_flux.job.ending import JobEnding
from airflow_provider_flux.job.event import JobEvent
from airflow_provider_flux.job.jobid import format_jobid, parse_jobid
from airflow_provider_flux.job.output import DEFAULT_OUTPUT_LIMIT, OutputProgress
from airflow_provider_flux.jobspec import (
    add_dependencies,
    array_indices,
    jobspec_from_batch_script,
    jobspec_from_command,
    json_clean,
    parse_jobspec,
    set_attribute,
    substitute_index,
)
from airflow_provider_flux.operators.durable import (
    IDENTITY_ATTRIBUTE,
    JOB_ACTIVE,
    JOB_SUCCEEDED,
    EarlierTries,
    TaskIdentity,
    follows_a_clear,
    given_job_names,
    job_status,
    jobids_of,
)
from airflow_provider_flux.operators.job_report import (
    log_outputs,
    log_streamed_output,
    raise_if_job_failed,
    read_endings,
    report_array,
)
from airflow_provider_flux.operators.worker_wait import poll_until_clean, watch_until_clean
from airflow_provider_flux.triggers.base import CANCEL_GRACE_SECONDS
from airflow_provider_flux.triggers.flux import FluxJobEventTrigger, FluxJobsEventTrigger
from airflow_provider_flux.version_compat import (
    AirflowFailException,
    BaseOperator,
    Context,
    ResumableJobMixin,
)
from airflow_provider_flux.wait.ensemble import payload_jobids
from airflow_provider_flux.wait.failures import raise_for_failure
from airflow_provider_flux.wait.outcome import REASON_TIMED_OUT

__all__ = ["FluxJobFailedError", "FluxSubmitJobOperator"]  # the error lived here until 0.2.0


class FluxSubmitJobOperator(ResumableJobMixin, BaseOperator):
    """Submits a job to Flux, waits for it to end, and fails when it fails.

    Give exactly one of ``command``, ``jobspec`` or ``script``. The task's XCom value
    is the job ID (int). Before it waits, the task pushes the job ID under the key
    ``jobid`` and the instance URI under ``flux_uri``. With ``wait_for_completion``
    (default) the task waits until the job is ``clean`` (deferred to the triggerer
    unless ``deferrable=False``), logs the job's stdout and stderr as the job writes
    them (``stream_output``), and fails on a fatal job exception (type and note in
    the message: ``cancel``, ``timeout``, ``exec``, ``dependency`` ...) or a non-zero
    exit status (exit code, or the signal that killed it). Neither is retried.

    Durable (``durable``, default True; Airflow's ``ResumableJobMixin``): a retry
    does not submit the job again while it runs. The job ID is kept in the task
    state store (Airflow 3.3+, key ``flux_jobid``) before the task waits, and every
    job carries its task instance (DAG, task, run, map index, try) in the jobspec
    attribute ``system.airflow`` and, unless ``job_name`` is given, in its name.
    A retry reconnects to the job of an earlier try while it runs, returns at once
    if it succeeded, and submits a new job only if it failed, could not be read, or
    there is none. A worker that died between submit and storing the ID is covered
    too: the retry finds the job by its identity. A cleared task starts over: the
    earlier job is cancelled if it still runs (``cancel_on_kill``), and a new one
    submitted.

    :param command: the command, a list or a string split like a shell would.
    :param jobspec: a complete jobspec: a dict, or its JSON or YAML text.
    :param script: a batch script (``#!`` first line) run in a nested Flux instance.
    :param num_tasks: tasks (batch: resource slots).
    :param cores_per_task: cores per task (batch: per slot).
    :param gpus_per_task: GPUs per task (batch: per slot).
    :param num_nodes: spread the tasks over this many nodes.
    :param exclusive: allocate whole nodes (with ``num_nodes``).
    :param duration: time limit: seconds, a ``timedelta``, or Flux duration text (``30m``).
    :param cwd: working directory of the job.
    :param environment: the job's whole environment. Default: empty, so the worker's
        environment (and any secret in it) does not leak into the job.
    :param job_name: the job's name (``flux jobs`` shows it).
    :param urgency: 0 (held) to 31; default 16.
    :param dependencies: job IDs that must complete successfully first (``afterok``).
    :param flux_queue: the Flux queue (``queue`` is Airflow's own, for the executor).
    :param attributes: extra jobspec attributes as dotted keys (``--setattr``).
    :param flux_conn_id: the ``flux`` Airflow connection.
    :param flux_uri: the instance's URI instead of the connection's (templated), as
        :class:`~airflow_provider_flux.hooks.flux.FluxHook` takes it: ``jobid:ƒA``
        submits into the nested instance of batch job ƒA.
    :param wait_for_completion: wait for the job to end.
    :param deferrable: wait in the triggerer (default True; see
        :func:`~airflow_provider_flux.config.default_deferrable`).
    :param cancel_on_kill: cancel the job, with a note naming the DAG, task and run,
        when the task is killed, cleared, marked, or reaches ``execution_timeout``
        while it waits (deferred or in the worker).
    :param poll_interval: seconds between eventlog reads when a job array waits in the
        worker (one job is watched, not polled).
    :param output_limit: bytes of job output copied into the task log (for an array:
        in all, shared out job by job).
    :param stream_output: log a job's output lines while it runs, as the job writes
        them (default True), rather than all of it once the job is clean. A job array's
        output is logged once the array is clean.
    :param durable: reconnect to an earlier try's job rather than submit again (see
        above; default True).
    :param array: submit a job array, like ``flux submit --cc``: a count N (indices 0
        to N-1) or a Flux idset (``"1-100"``, ``"0,2,4-7"``). Each job gets its index
        in ``FLUX_JOB_CC`` and in place of ``{cc}`` in the command, the job name and the
        working directory. The XCom value (and key ``jobid``) is then the list of job
        IDs; the task waits for all of them and fails, with a table of which jobs
        failed and how, if any one does.
    """

    template_fields: Sequence[str] = (
        "command", "jobspec", "script", "environment", "cwd", "job_name",
        "dependencies", "attributes", "flux_queue", "duration", "array", "flux_uri",
    )  # fmt: skip
    template_fields_renderers: ClassVar[dict[str, str]] = {"jobspec": "json", "script": "bash"}
    ui_color = "#c6e3f7"
    # The task state store key of the submitted job ID (a list for an array).
    external_id_key = "flux_jobid"

    def __init__(
        self,
        *,
        command: Sequence[str] | str | None = None,
        jobspec: Mapping[str, Any] | str | None = None,
        script: str | None = None,
        num_tasks: int = 1,
        cores_per_task: int = 1,
        gpus_per_task: int | None = None,
        num_nodes: int | None = None,
        exclusive: bool = False,
        duration: float | timedelta | str | None = None,
        cwd: str | None = None,
        environment: Mapping[str, str] | None = None,
        job_name: str | None = None,
        urgency: int = 16,
        dependencies: Sequence[int | str] = (),
        flux_queue: str | None = None,
        attributes: Mapping[str, Any] | None = None,
        flux_conn_id: str = FluxHook.default_conn_name,
        flux_uri: str | None = None,
        wait_for_completion: bool = True,
        deferrable: bool | None = None,
        cancel_on_kill: bool = True,
        poll_interval: float = 5.0,
        output_limit: int = DEFAULT_OUTPUT_LIMIT,
        stream_output: bool = True,
        array: int | str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        given = [name for name, v in (("command", command), ("jobspec", jobspec),
                                      ("script", script)) if v is not None]  # fmt: skip
        if len(given) != 1:
            raise ValueError(
                f"{self.task_id}: give exactly one of command, jobspec or script (got "
                f"{', '.join(given) or 'none'})"
            )
        self.command = command
        self.jobspec = jobspec
        self.script = script
        self.num_tasks = num_tasks
        self.cores_per_task = cores_per_task
        self.gpus_per_task = gpus_per_task
        self.num_nodes = num_nodes
        self.exclusive = exclusive
        self.duration = duration
        self.cwd = cwd
        self.environment = dict(environment or {})
        self.job_name = job_name
        self.urgency = urgency
        self.dependencies = list(dependencies)
        self.flux_queue = flux_queue
        self.attributes = dict(attributes or {})
        self.flux_conn_id = flux_conn_id
        self.flux_uri = flux_uri
        self.wait_for_completion = wait_for_completion
        self.deferrable = default_deferrable() if deferrable is None else deferrable
        self.cancel_on_kill = cancel_on_kill
        self.poll_interval = poll_interval
        self.output_limit = output_limit
        self.stream_output = stream_output
        self.array = array
        self.submitted_jobids: list[int] = []
        self._run_id: str | None = None

    def hook(self) -> FluxHook:
        """The hook to the instance the jobs run on."""
        return FluxHook(self.flux_conn_id, self.flux_uri)

    def build_jobspec(
        self, index: int | None = None, identity: TaskIdentity | None = None
    ) -> dict[str, Any]:
        """The jobspec this task submits (``index``: the job's place in an array;
        ``identity``: the task instance it carries), as Flux gets it; ``ValueError`` for
        bad input or one over ``[flux] max_jobspec_bytes``."""
        if not isinstance(self.urgency, int) or not 0 <= self.urgency <= 31:
            raise ValueError(f"urgency must be an integer from 0 to 31, not {self.urgency!r}")

        def indexed(value: Any) -> Any:
            if index is None or not isinstance(value, str):
                return value
            return substitute_index(value, index)

        max_bytes = limits().max_jobspec_bytes
        environment = dict(self.environment)
        if index is not None:
            environment["FLUX_JOB_CC"] = str(index)
        options: dict[str, Any] = {
            "duration": self.duration, "environment": environment, "cwd": indexed(self.cwd),
            "name": indexed(self.job_name), "queue": self.flux_queue,
            "attributes": {key: indexed(value) for key, value in self.attributes.items()},
            "num_nodes": self.num_nodes,
            "exclusive": self.exclusive,
        }  # fmt: skip
        if self.jobspec is not None:
            jobspec = parse_jobspec(self.jobspec, max_bytes)
            for key, value in self.attributes.items():
                set_attribute(jobspec, key, indexed(value))
            if index is not None:
                set_attribute(jobspec, "system.environment.FLUX_JOB_CC", str(index))
        elif self.script is not None:
            jobspec = jobspec_from_batch_script(
                self.script, num_slots=self.num_tasks, cores_per_slot=self.cores_per_task,
                gpus_per_slot=self.gpus_per_task, **options,
            )  # fmt: skip
        else:
            assert self.command is not None
            given = self.command
            command = indexed(given) if isinstance(given, str) else [indexed(a) for a in given]
            jobspec = jobspec_from_command(
                command, num_tasks=self.num_tasks, cores_per_task=self.cores_per_task,
                gpus_per_task=self.gpus_per_task, **options,
            )  # fmt: skip
        add_dependencies(jobspec, [parse_jobid(j) for j in self.dependencies])
        if identity is not None:
            set_attribute(jobspec, IDENTITY_ATTRIBUTE, identity.attribute(index))
            if not jobspec["attributes"].get("system", {}).get("job", {}).get("name"):
                set_attribute(jobspec, "system.job.name", identity.job_name())
        return json_clean(jobspec, max_bytes)

    # -- running ---------------------------------------------------------------------

    def execute(self, context: Context) -> Any:
        # Bad input fails here, before Flux or the task state store is asked anything.
        self._jobspec_or_fail(self._indices()[0])
        self._run_id = context.get("run_id")
        self._identity = TaskIdentity.from_context(context)
        # Retries reconnect; a cleared task starts over, with a job of its own.
        self._starting_over = self.durable and follows_a_clear(context, self.retries or 0)
        if self._starting_over:
            self._forget_earlier_jobs(context, self.hook())
        return self.execute_resumable(context)

    def _forget_earlier_jobs(self, context: Context, hook: FluxHook) -> None:
        """Start a cleared task over: cancel its earlier try's job if that still runs
        (``cancel_on_kill``; the trigger that would have may not have run yet) and
        forget its ID, so that a new job is submitted."""
        store = context.get("task_state_store")
        stored = store.get(self.external_id_key) if store is not None else None
        if store is not None and stored:
            jobids = jobids_of(stored)
            store.delete(self.external_id_key)
        else:
            found = self._earlier_tries(hook).latest()
            jobids = list(found[1].values()) if found else []
        if jobids and self.cancel_on_kill and job_status(hook, jobids) == JOB_ACTIVE:
            self.log.info("the task was cleared: cancelling the %d job(s) of its earlier "
                          "try (%s ...)", len(jobids), format_jobid(jobids[0]))  # fmt: skip
            hook.cancel_many(jobids, f"{self._kill_reason()}: cleared, a new try starts over")

    def _earlier_tries(self, hook: FluxHook) -> EarlierTries:
        names = given_job_names(self.jobspec, self.job_name, self._indices())
        return EarlierTries(hook, self._identity, names, self.log)

    # ResumableJobMixin: the external ID is the job ID, or the list of an array's.

    def submit_job(self, context: Context) -> Any:
        """Submit the job (or array), unless an earlier try of this task instance
        submitted one that runs or succeeded: then that one (its worker died before
        the ID was stored, or there is no task state store)."""
        hook = self.hook()
        indices = self._indices()
        jobids = None
        if self.durable and not self._starting_over:
            jobids = self._earlier_tries(hook).reusable(indices)
        if jobids is None:
            jobids = self._submit(hook, indices)
            if self.array is None:
                self.log.info("submitted Flux job %s (%d) to %s", format_jobid(jobids[0]),
                              jobids[0], hook.describe())  # fmt: skip
            else:
                self.log.info(
                    "submitted a job array of %d Flux jobs (%s ... %s) to %s", len(jobids),
                    format_jobid(jobids[0]), format_jobid(jobids[-1]), hook.describe(),
                )  # fmt: skip
        return jobids if self.array is not None else jobids[0]

    def get_job_status(self, external_id: Any, context: Context) -> str:
        return job_status(self.hook(), jobids_of(external_id))

    def is_job_active(self, status: str) -> bool:
        return status == JOB_ACTIVE

    def is_job_succeeded(self, status: str) -> bool:
        return status == JOB_SUCCEEDED

    # The mixin returns this method's value when it reconnects: the task's result.
    def poll_until_complete(self, external_id: Any, context: Context) -> Any:
        """Make the jobs known (XCom ``jobid`` and ``flux_uri``, ``on_kill``), then wait
        for them: in the triggerer (deferring) or here."""
        hook = self.hook()
        jobids = jobids_of(external_id)
        self.submitted_jobids = jobids
        ti = context["ti"]
        ti.xcom_push(key="jobid", value=external_id)
        ti.xcom_push(key="flux_uri", value=hook.instance_uri())
        if not self.wait_for_completion:
            return self.get_job_result(external_id, context)
        if self.deferrable:
            self._defer_until_clean(jobids)
        if self.array is not None:  # read here every poll_interval until all are clean
            endings = poll_until_clean(hook, jobids, self.poll_interval)
            return self._finish_array(hook, jobids, endings)
        return self._wait_in_worker(hook, jobids[0])

    def get_job_result(self, external_id: Any, context: Context) -> int | list[int]:
        jobids = jobids_of(external_id)
        return jobids if self.array is not None else jobids[0]

    def _indices(self) -> list[int | None]:
        """The array indices of the jobs to submit ([None]: one job, not an array)."""
        if self.array is None:
            return [None]
        try:
            return list(array_indices(self.array, limits().max_jobs))
        except ValueError as err:
            raise AirflowFailException(f"{self.task_id}: bad job request: {err}") from err

    def _submit(self, hook: FluxHook, indices: Sequence[int | None]) -> list[int]:
        """Submit one job per index (None: a job that is not in an array), all or none;
        each carries this try's identity."""
        jobspecs = [self._jobspec_or_fail(index, self._identity) for index in indices]
        what = "the job" if self.array is None else "a job of the array"
        try:
            return hook.submit_many(jobspecs, urgency=self.urgency)
        except OSError as err:
            raise AirflowFailException(
                f"Flux at {hook.describe()} rejected {what}: {err.strerror or err}"
            ) from err

    def _jobspec_or_fail(
        self, index: int | None, identity: TaskIdentity | None = None
    ) -> dict[str, Any]:
        try:
            return self.build_jobspec(index, identity)
        except (TypeError, ValueError) as err:
            raise AirflowFailException(f"{self.task_id}: bad job request: {err}") from err

    # -- waiting -----------------------------------------------------------------------

    def _deadline_and_timeout(self) -> tuple[float | None, timedelta | None]:
        """The trigger cancels the jobs on kill and at ``execution_timeout`` (Airflow
        enforces neither for deferred tasks in a way that reaches Flux); Airflow's own
        deferral timeout is only a backstop behind the trigger's deadline."""
        deadline = None
        timeout = self.execution_timeout
        if self.cancel_on_kill and timeout is not None:
            deadline = time.time() + timeout.total_seconds()
            timeout += timedelta(seconds=CANCEL_GRACE_SECONDS * 2)
        return deadline, timeout

    def _defer_until_clean(self, jobids: list[int]) -> None:
        """Wait in the triggerer until the job (or every job of the array) is clean."""
        deadline, timeout = self._deadline_and_timeout()
        until_clean: dict[str, Any] = {
            "event": "clean",
            "raise_on_exception": False,
            "flux_conn_id": self.flux_conn_id,
            "flux_uri": self.flux_uri,
            "cancel_on_kill": self.cancel_on_kill,
            "cancel_reason": self._kill_reason(),
            "deadline": deadline,
        }
        trigger: FluxJobEventTrigger | FluxJobsEventTrigger
        if self.array is not None:
            trigger = FluxJobsEventTrigger(jobids, **until_clean)
        else:
            trigger = FluxJobEventTrigger(
                jobids[0], include_events=["finish", "exception"],
                stream_output=self.stream_output, output_limit=self.output_limit, **until_clean,
            )  # fmt: skip
        self.defer(trigger=trigger, method_name="execute_complete", timeout=timeout)

    def _wait_in_worker(self, hook: FluxHook, jobid: int) -> Any:
        """Watch the job here until it is clean, its output lines logged as they come."""
        events, output = asyncio.run(
            watch_until_clean(
                jobid, hook.get_uri(), self.output_limit if self.stream_output else None, self.log
            )
        )
        return self._finish(hook, jobid, events, output)

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> Any:
        """Resume when the job (or every job of the array) is clean: log the output
        (unless it was logged as it came), then judge how it ended."""
        if not event:
            raise AirflowFailException(f"{self.task_id}: the trigger returned no event")
        hook = self.hook()
        if "jobs" in event:
            jobids = payload_jobids(event, limits().max_jobs)
            if event.get("reason") == REASON_TIMED_OUT:
                self._log_outputs(hook, jobids)
            if event.get("status") != "success":
                raise_for_failure(event)
            return self._finish_array(hook, jobids)
        output = OutputProgress.from_dict(event.get("output"))
        if event.get("reason") == REASON_TIMED_OUT and output is None:
            self._log_outputs(hook, [int(event["jobid"])])
        if event.get("status") != "success":
            raise_for_failure(event)
        jobid = int(event["jobid"])
        events = [JobEvent.from_flux(e) for e in event.get("events", [])]
        return self._finish(hook, jobid, events, output)

    # -- how the jobs ended ------------------------------------------------------------

    def _finish(
        self,
        hook: FluxHook,
        jobid: int,
        events: Sequence[JobEvent],
        output: OutputProgress | None = None,
    ) -> Any:
        """Judge how the clean job ended; log its output first unless ``output`` says
        it was logged as the job wrote it."""
        if output is None:
            self._log_outputs(hook, [jobid])
        else:
            log_streamed_output(jobid, output, self.log)
        return self._judge(hook, jobid, JobEnding.from_events(events))

    def _judge(self, hook: FluxHook, jobid: int, ending: JobEnding) -> Any:
        """The task's result for a job that ended so (its ID), or its error."""
        raise_if_job_failed(jobid, ending)
        self.log.info("Flux job %s completed successfully", format_jobid(jobid))
        return jobid

    def _finish_array(
        self, hook: FluxHook, jobids: list[int], endings: Mapping[int, JobEnding] | None = None
    ) -> list[int]:
        """Judge each job of a clean array as one job is judged, after its output
        (``endings``: how they ended, when already read)."""
        endings = read_endings(hook, jobids) if endings is None else endings
        report_array(hook, endings, self._array_index_of(jobids), self.output_limit, self.log)
        return jobids

    def _array_index_of(self, jobids: Sequence[int]) -> dict[int, int]:
        """Each job's index in the array (jobs are submitted in index order)."""
        if self.array is None:
            return {}
        return dict(zip(jobids, array_indices(self.array, limits().max_jobs), strict=False))

    def _log_outputs(self, hook: FluxHook, jobids: Sequence[int]) -> None:
        """The jobs' output, read once they are over: ``output_limit`` bytes in all."""
        log_outputs(hook, jobids, self._array_index_of(jobids), self.output_limit, self.log)

    # -- stopping ----------------------------------------------------------------------

    def _kill_reason(self) -> str:
        # One note for kill, clear, mark and execution_timeout: the trigger reuses it.
        return f"Airflow stopped task {self.dag_id}.{self.task_id} (run {self._run_id})"

    def on_kill(self) -> None:
        """Cancel the jobs when the task is killed while it waits in the worker."""
        if not (self.cancel_on_kill and self.submitted_jobids):
            return
        reason = self._kill_reason()
        first = format_jobid(self.submitted_jobids[0])
        self.log.info("cancelling %d Flux job(s) (%s ...): %s", len(self.submitted_jobids),
                      first, reason)  # fmt: skip
        self.hook().cancel_many(self.submitted_jobids, reason)
