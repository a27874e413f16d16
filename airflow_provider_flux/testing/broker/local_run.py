"""Jobs the simulated instance runs for real: their tasks as local processes.

A job that carries its own files (``attributes.system.files``, as ``flux submit
--add-file`` and ``@task.flux`` make them) or names the scenario ``run`` is not
replayed from a recording: its command runs here, once per task, the way a Flux
job shell would run it on one node. The files are written to the job's
``FLUX_JOB_TMPDIR`` first, ``{{tmpdir}}`` in the command becomes that directory,
and each task gets Flux's ``FLUX_*`` variables on top of the jobspec's environment.
Output lines are posted to ``guest.output`` as the tasks write them, and the main
eventlog gets ``start``, ``finish`` (the largest wait status of the tasks) through
``clean``; a command that cannot be started gets the ``exec`` exception Flux
raises, a job past its ``duration`` the ``timeout`` one, and a cancel kills the
tasks. Not simulated for such jobs: dependencies and holds (urgency 0).
"""

from __future__ import annotations

import base64
import functools
import json
import os
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_provider_flux.job.jobid import format_jobid
from airflow_provider_flux.testing.broker.jobs import MAIN_EVENTLOG, OUTPUT_EVENTLOG, Job

if TYPE_CHECKING:
    from airflow_provider_flux.testing.broker.server import SimulatedBroker

RUN_SCENARIO = "run"
EXEC_EVENTLOG = "guest.exec.eventlog"
EXIT_POLL_SECONDS = 0.005
READ_BYTES = 1 << 16


def runs_locally(jobspec: dict[str, Any] | None, options: dict[str, Any]) -> bool:
    """Whether the simulator runs the job's command rather than a recording."""
    if jobspec is None:
        return False
    if "scenario" in options or "scenarios" in options:
        return options.get("scenario") == RUN_SCENARIO
    return bool(jobspec["attributes"].get("system", {}).get("files"))


def task_count(jobspec: dict[str, Any]) -> int:
    """Tasks of the job: ``count.total``, or ``per_slot`` times the slots."""
    count = jobspec["tasks"][0].get("count", {})
    if isinstance(count.get("total"), int):
        return int(count["total"])
    return int(count.get("per_slot", 1)) * _slots(jobspec["resources"])


def _slots(resources: list[dict[str, Any]]) -> int:
    total = 0
    for resource in resources:
        count = resource.get("count", 1)
        count = count if isinstance(count, int) else 1
        if resource.get("type") == "slot":
            total += count
        elif resource.get("with"):
            total += count * _slots(resource["with"])
    return total


@dataclass(eq=False)
class Task:
    rank: int
    process: subprocess.Popen[bytes]
    open_streams: dict[int, str] = field(default_factory=dict)  # fd: stream name
    partial: dict[str, bytes] = field(default_factory=dict)  # stream: unfinished line


class LocalRun:
    """The tasks of one job, running here (see the module's docstring)."""

    def __init__(self, broker: SimulatedBroker, job: Job) -> None:
        assert job.jobspec is not None
        self.broker = broker
        self.job = job
        self.jobspec = job.jobspec
        self.ntasks = task_count(job.jobspec)
        self.tasks: list[Task] = []
        self.tmpdir = ""
        self.over = False

    def start(self) -> None:
        """Post the job's way to ``start``, write its files, and start its tasks."""
        job, post = self.job, self.broker.append
        post(job, MAIN_EVENTLOG, "submit",
             {"userid": job.userid, "urgency": 16, "flags": 0, "version": 1})  # fmt: skip
        for name, context in (("validate", {}), ("depend", {}), ("priority", {"priority": 16}),
                              ("alloc", {}), ("start", {})):  # fmt: skip
            post(job, MAIN_EVENTLOG, name, context)
        count = {"stdout": self.ntasks, "stderr": self.ntasks}
        header = {"version": 1, "encoding": {"stdout": "UTF-8", "stderr": "UTF-8"},
                  "count": count, "options": {}}  # fmt: skip
        post(job, OUTPUT_EVENTLOG, "header", header)
        post(job, EXEC_EVENTLOG, "shell.init", {"leader-rank": 0, "size": 1})
        job.local = self
        self.tmpdir = tempfile.mkdtemp(prefix=f"flux-sim-{job.id}-")
        system = self.jobspec["attributes"].get("system", {})
        self._write_files(system.get("files") or {})
        duration = system.get("duration") or 0
        if duration:
            self.broker.job_later(job, float(duration), self._time_out)
        for rank in range(self.ntasks):
            try:
                self._start_task(rank, system)
            except OSError as err:
                self._exec_failed(rank, err)
                return
        post(job, EXEC_EVENTLOG, "shell.start", {})

    def _write_files(self, files: dict[str, Any]) -> None:
        for name, ref in files.items():
            data = ref.get("data")
            if isinstance(data, (dict, list)):
                content = json.dumps(data).encode()
            elif ref.get("encoding") == "base64":
                content = base64.b64decode(data)
            else:
                content = str(data).encode()
            path = os.path.join(self.tmpdir, os.path.basename(name))
            with open(path, "wb") as file:
                file.write(content)
            os.chmod(path, int(ref.get("mode", 0o600)) & 0o777)

    def _start_task(self, rank: int, system: dict[str, Any]) -> None:
        command = [
            arg.replace("{{tmpdir}}", self.tmpdir) for arg in self.jobspec["tasks"][0]["command"]
        ]
        env = {str(k): str(v) for k, v in (system.get("environment") or {}).items()}
        env.update({
            "FLUX_URI": f"sim://{self.broker.socket_path}",
            "FLUX_JOB_ID": format_jobid(self.job.id),
            "FLUX_JOB_SIZE": str(self.ntasks),
            "FLUX_JOB_NNODES": "1",
            "FLUX_TASK_RANK": str(rank),
            "FLUX_TASK_LOCAL_ID": str(rank),
            "FLUX_JOB_TMPDIR": self.tmpdir,
        })  # fmt: skip
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=env, cwd=system.get("cwd") or self.tmpdir, start_new_session=True,
        )  # fmt: skip
        task = Task(rank, process)
        self.tasks.append(task)
        for pipe, stream in ((process.stdout, "stdout"), (process.stderr, "stderr")):
            assert pipe is not None
            fd = pipe.fileno()
            os.set_blocking(fd, False)
            task.open_streams[fd] = stream
            self.broker.watch_pipe(fd, functools.partial(self._read, task, fd))

    def _read(self, task: Task, fd: int) -> None:
        stream = task.open_streams[fd]
        try:
            data = os.read(fd, READ_BYTES)
        except BlockingIOError:
            return
        text = task.partial.pop(stream, b"") + data
        *lines, rest = text.split(b"\n")
        for line in lines:
            self._post_data(task, stream, line + b"\n")
        if data:
            if rest:
                task.partial[stream] = rest
            return
        if rest:
            self._post_data(task, stream, rest)
        self._close_stream(task, fd)
        if not any(t.open_streams for t in self.tasks):
            self._wait_for_exit()

    def _post_data(self, task: Task, stream: str, data: bytes) -> None:
        context: dict[str, Any] = {"stream": stream, "rank": str(task.rank)}
        try:
            context["data"] = data.decode("utf-8")
        except UnicodeDecodeError:  # Flux sends what is not UTF-8 as base64
            context.update(data=base64.b64encode(data).decode(), encoding="base64")
        self.broker.append(self.job, OUTPUT_EVENTLOG, "data", context)

    def _close_stream(self, task: Task, fd: int) -> None:
        stream = task.open_streams.pop(fd)
        self.broker.watch_pipe(fd, None)
        os.close(fd)
        context = {"stream": stream, "rank": str(task.rank), "eof": True}
        self.broker.append(self.job, OUTPUT_EVENTLOG, "data", context)

    def _wait_for_exit(self) -> None:
        if self.over:
            return
        if any(task.process.poll() is None for task in self.tasks):
            self.broker.job_later(self.job, EXIT_POLL_SECONDS, self._wait_for_exit)
            return
        statuses = [_wait_status(task.process.returncode) for task in self.tasks]
        self._finish(max(statuses, default=0))

    def _finish(self, status: int) -> None:
        self.over = True
        job, post = self.job, self.broker.append
        post(job, MAIN_EVENTLOG, "finish", {"status": status})
        post(job, MAIN_EVENTLOG, "release", {"ranks": "all", "final": True})
        post(job, MAIN_EVENTLOG, "free", {})
        self._remove_tmpdir()
        post(job, MAIN_EVENTLOG, "clean", {})

    def _exec_failed(self, rank: int, err: OSError) -> None:
        """What Flux posts when a task's command cannot be started."""
        command = self.jobspec["tasks"][0]["command"][0]
        note = f"task {rank} (host sim): start failed: {command}: {err.strerror}"
        self.broker.append(
            self.job, OUTPUT_EVENTLOG, "log", {"rank": 0, "level": 0, "message": note}
        )
        context = {"type": "exec", "severity": 0, "note": note, "userid": self.job.userid}
        self.broker.append(self.job, MAIN_EVENTLOG, "exception", context)
        self.kill()
        self._finish(127 << 8)

    def _time_out(self) -> None:
        context = {"type": "timeout", "severity": 0, "note": "resource allocation expired",
                   "userid": self.job.userid}  # fmt: skip
        self.broker.append(self.job, MAIN_EVENTLOG, "exception", context)
        self.broker.job_manager.end_job(self.job, signal.SIGKILL)

    def kill(self) -> None:
        """Stop the tasks (a fatal exception): killed, their pipes closed."""
        self.over = True
        for task in self.tasks:
            for fd in list(task.open_streams):
                self._close_stream(task, fd)
            if task.process.poll() is None:
                os.killpg(task.process.pid, signal.SIGKILL)
            task.process.wait()
        self._remove_tmpdir()

    def _remove_tmpdir(self) -> None:
        if self.tmpdir:
            shutil.rmtree(self.tmpdir, ignore_errors=True)
            self.tmpdir = ""


def _wait_status(returncode: int) -> int:
    """A Popen return code as a wait status (what ``finish`` carries)."""
    return -returncode if returncode < 0 else returncode << 8
