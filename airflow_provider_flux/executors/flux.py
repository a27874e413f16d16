"""``FluxExecutor``: each try of a task instance runs as one Flux job.

Configured as Airflow's executors are::

    [core]
    executor = LocalExecutor,flux:airflow_provider_flux.executors.flux.FluxExecutor

and chosen per task with ``executor="flux"``; ``[flux_executor]`` says which Flux
instance runs the jobs and what they get (see :mod:`.settings`).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Hashable, Sequence
from typing import TYPE_CHECKING, Any, cast

from airflow.executors.base_executor import BaseExecutor

from airflow_provider_flux.executors.adoption import Orphan, find_jobs
from airflow_provider_flux.executors.follower import (
    JobEnded,
    JobFollower,
    JobPending,
    SubmitFailed,
    Submitted,
)
from airflow_provider_flux.executors.settings import ExecutorSettings
from airflow_provider_flux.executors.task_log import append_to_task_log, job_task_log
from airflow_provider_flux.executors.workload_job import workload_jobspec
from airflow_provider_flux.flux_bindings import own_userid
from airflow_provider_flux.hooks.flux import FluxHook
from airflow_provider_flux.job.jobid import format_jobid, parse_jobid
from airflow_provider_flux.version_compat import SCHEDULER_IGNORES_SUCCESS_AFTER_DEFER, conf

if TYPE_CHECKING:
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.taskinstancekey import TaskInstanceKey

# How long adoption waits for Flux to say which jobs are there.
ADOPT_TIMEOUT = 120.0
REVOKED = "revoked by Airflow: queued for longer than [scheduler] task_queued_timeout"


def execution_api_url() -> str:
    """The execution API's URL as the workers reach it, as Airflow's executors work it
    out (``[core] execution_api_server_url``, else from ``[api] base_url``)."""
    base_url = conf.get("api", "base_url", fallback="/") or "/"
    if base_url.startswith("/"):
        base_url = f"http://localhost:8080{base_url}"
    default = f"{base_url.rstrip('/')}/execution/"
    return str(conf.get("core", "execution_api_server_url", fallback=default) or default)


class FluxExecutor(BaseExecutor):
    """Runs each task instance try as a Flux job: ``python -m
    airflow.sdk.execution_time.execute_workload`` on a compute node, which reports the
    task's state to the execution API itself.

    The executor reports what the task could not: a job that could not be
    submitted, never started, was cancelled, or died. Jobs outlive the scheduler: a
    new one adopts them. Constructing it opens no connection (the api-server builds
    executors only to read logs); :meth:`start` does.

    :param parallelism: jobs outstanding at once (default: ``[flux_executor]
        parallelism``, else ``[core] parallelism``).
    :param team_name: the team this executor serves (multi-team deployments).
    """

    is_local = False
    serve_logs = False

    def __init__(self, parallelism: int | None = None, team_name: str | None = None) -> None:
        self.settings = ExecutorSettings.from_conf()
        parallelism = parallelism or self.settings.parallelism or conf.getint("core", "parallelism")
        super().__init__(parallelism=parallelism, team_name=team_name)
        self._follower: JobFollower | None = None
        self._environment: dict[str, str] = {}
        # The newest submission of each task instance try (a task that defers and
        # resumes is submitted again under the same key), and its job once known.
        self._serials: dict[Hashable, int] = {}
        self._jobs: dict[Hashable, int] = {}
        # Where each submitted try's log file is, under [logging] base_log_folder.
        self._log_paths: dict[Hashable, str] = {}
        self._next_serial = itertools.count(1)

    def start(self) -> None:
        """Connect to Flux and begin following the jobs."""
        hook = FluxHook(self.settings.flux_conn_id)
        self._environment = self.settings.job_environment(
            os.environ, execution_api_url(), str(conf.get("core", "executor"))
        )
        self._follower = JobFollower(
            hook.get_uri(),
            userid=own_userid(),
            poll_interval=self.settings.poll_interval,
            pending_check_interval=self.settings.pending_check_interval,
        )
        self._follower.start()
        self.log.info("FluxExecutor runs tasks as Flux jobs on %s", hook.describe())

    def _process_workloads(self, workloads: Sequence[Any]) -> None:
        from airflow.executors.workloads import ExecuteTask

        follower = self._started()
        for workload in workloads:
            if not isinstance(workload, ExecuteTask):
                raise ValueError(f"FluxExecutor runs tasks only, not {type(workload).__name__}")
            key = workload.ti.key
            self.queued_tasks.pop(key, None)
            self.running.add(key)
            serial = self._serials[key] = next(self._next_serial)
            if workload.log_path:
                self._log_paths[key] = workload.log_path
            try:
                jobspec = workload_jobspec(
                    workload, python=self.settings.python, environment=self._environment
                )
            except ValueError as err:
                self._forget(key)
                self.fail(key, f"cannot run as a Flux job: {err}")
                continue
            follower.submit(key, serial, jobspec)

    def sync(self) -> None:
        """Report what happened to the jobs since the last heartbeat (never waits)."""
        if self._follower is None:
            return
        for update in self._follower.drain():
            key = cast("TaskInstanceKey", update.key)
            current = self._serials.get(key) == update.serial
            if isinstance(update, Submitted):
                if current:
                    self._jobs[key] = update.jobid
                    self.running_state(key, format_jobid(update.jobid))
                else:  # revoked while its submit was in flight
                    self._follower.cancel(update.jobid, REVOKED)
            elif not current:
                continue  # of a submission superseded (the task deferred and resumed)
            elif isinstance(update, JobPending):
                self._tell_pending(key, update)
            elif isinstance(update, SubmitFailed):
                self._forget(key)
                self.fail(key, update.reason)
            elif isinstance(update, JobEnded):
                self._forget(key)
                self._report_end(key, update)

    def _tell_pending(self, key: TaskInstanceKey, update: JobPending) -> None:
        """Say why a queued task's job waits: in the scheduler's log, and in the try's
        own log (which the UI shows for a queued task) when the log folder is here."""
        message = f"waits in Flux's queue as job {format_jobid(update.jobid)}: {update.reason}"
        self.log.info("%s %s", key, message)
        log_path = self._log_paths.get(key)
        folder = conf.get("logging", "base_log_folder", fallback="")
        if log_path and folder:
            try:
                append_to_task_log(folder, log_path, f"The task {message}")
            except OSError as err:
                self.log.debug("Cannot write to the log of %s: %s", key, err)

    def _report_end(self, key: TaskInstanceKey, update: JobEnded) -> None:
        if update.failure is not None:
            self.log.warning("%s: %s", key, update.failure)
            self.fail(key, update.failure)
        elif SCHEDULER_IGNORES_SUCCESS_AFTER_DEFER:
            self.success(key)
        else:
            # The job ran the task's supervisor to its end, which reported the task's
            # state itself; a success here could fail a task that deferred and whose
            # trigger fired meanwhile (Airflow 3.1's scheduler takes it as "killed
            # externally"). The slot is free all the same.
            self.running.discard(key)

    def _forget(self, key: Hashable) -> None:
        self._serials.pop(key, None)
        self._jobs.pop(key, None)
        self._log_paths.pop(key, None)

    def _started(self) -> JobFollower:
        if self._follower is None:
            raise RuntimeError("FluxExecutor.start() was not called")
        return self._follower

    def end(self) -> None:
        """Stop following; the jobs keep running for the next scheduler to adopt."""
        self.sync()
        if self._follower is not None:
            self._follower.stop()
            self._follower = None

    def terminate(self) -> None:
        """As :meth:`end`: a scheduler that stops leaves its tasks running."""
        self.end()

    def revoke_task(self, *, ti: TaskInstance) -> None:
        """Cancel the task instance's job (queued too long) and forget it."""
        key = ti.key
        jobid = self._jobs.get(key)
        if jobid is None and ti.external_executor_id:
            try:
                jobid = parse_jobid(ti.external_executor_id)
            except ValueError:
                jobid = None
        self._forget(key)
        self.queued_tasks.pop(key, None)
        self.running.discard(key)
        if jobid is not None and self._follower is not None:
            self._follower.cancel(jobid, REVOKED)
        self.log.info("Revoked %s (Flux job %s)", key, jobid and format_jobid(jobid))

    def try_adopt_task_instances(self, tis: Sequence[TaskInstance]) -> Sequence[TaskInstance]:
        """Follow the jobs of task instances an earlier scheduler queued; return those
        that have none (the scheduler resets them)."""
        if not tis or self._follower is None:
            return list(tis)
        follower = self._follower
        orphans = [Orphan.of(ti) for ti in tis]
        try:
            found = follower.call(
                lambda: find_jobs(orphans, follower.uri, own_userid()), ADOPT_TIMEOUT
            )
        except (OSError, TimeoutError) as err:
            self.log.warning(
                "Cannot look in Flux for the jobs of %d task instances: %s", len(tis), err
            )
            return list(tis)
        not_adopted = []
        for ti in tis:
            job = found.get(str(ti.id))
            if job is None:
                not_adopted.append(ti)
                continue
            key = ti.key
            serial = self._serials[key] = next(self._next_serial)
            self._jobs[key] = job.jobid
            self.running.add(key)
            follower.follow(job.jobid, key, serial, job.events)
            if ti.external_executor_id != format_jobid(job.jobid):
                self.running_state(key, format_jobid(job.jobid))
        self.log.info("Adopted %d task instances' Flux jobs", len(tis) - len(not_adopted))
        return not_adopted

    def get_task_log(self, ti: TaskInstance, try_number: int) -> tuple[list[str], list[str]]:
        """A running task's log: its job's output so far."""
        if try_number != ti.try_number:
            return [], []
        return job_task_log(FluxHook(self.settings.flux_conn_id), ti.external_executor_id)
