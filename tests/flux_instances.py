"""The Flux instances tests run against: the simulated one always, a real one when
``flux`` is on PATH. Both answer the same questions, so contract tests hold them
to the same assertions."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Protocol

from airflow_provider_flux.testing import LocalFluxInstance, SimulatedFlux
from airflow_provider_flux.testing.bindings import Flux, job

FLUX = shutil.which("flux")
NO_FLUX_REASON = "flux is not on PATH: real-Flux tests need flux-core installed"


class FluxTestInstance(Protocol):
    kind: str
    uri: str

    def completed_job(self) -> int: ...
    def running_job(self) -> int: ...
    def pending_job(self) -> int: ...
    def pending_jobs(self, count: int) -> list[int]: ...
    def release(self, jobid: int) -> None: ...
    def finish(self, jobid: int) -> None: ...
    def cancel(self, jobid: int, note: str) -> None: ...
    def raise_exception(self, jobid: int, type: str, severity: int, note: str) -> None: ...
    def watchers(self) -> int: ...


class SimInstance:
    kind = "simulated"

    def __init__(self, sim: SimulatedFlux) -> None:
        self.sim = sim
        self.uri = sim.uri

    def completed_job(self) -> int:
        jobid = self.sim.submit("success")
        handle = Flux(self.uri)
        job.event_wait(handle, jobid, "clean")
        return jobid

    def running_job(self) -> int:
        """Started; runs until :meth:`finish`."""
        jobid = self.sim.submit("success", hold_before="finish")
        job.event_wait(Flux(self.uri), jobid, "start")
        return jobid

    def pending_job(self) -> int:
        return self.sim.submit("success", hold_before="alloc")

    def pending_jobs(self, count: int) -> list[int]:
        return [self.pending_job() for _ in range(count)]

    def release(self, jobid: int) -> None:
        """Let a pending job run to its end."""
        self.sim.release(jobid)

    def finish(self, jobid: int) -> None:
        self.sim.release(jobid)

    def cancel(self, jobid: int, note: str) -> None:
        self.sim.cancel(jobid, note)

    def raise_exception(self, jobid: int, type: str, severity: int, note: str) -> None:
        self.sim.raise_exception(jobid, type, severity, note)

    def watchers(self) -> int:
        return int(self.sim.stats()["watchers"])


class RealInstance:
    """A one-broker instance started with ``flux start -s1``."""

    kind = "real"

    def __init__(self, instance: LocalFluxInstance | None = None) -> None:
        self.instance = instance or LocalFluxInstance().start()
        self.uri = self.instance.uri
        self.flagdir = Path(tempfile.mkdtemp(prefix="flux-flags-"))
        self._flags: dict[int, Path] = {}

    def _flux(self, *args: str) -> str:
        return self.instance.run(*args).stdout.strip()

    def _submit(self, *args: str) -> int:
        jobid = self._flux("submit", *args)
        return int(self._flux("job", "id", "--to=dec", jobid))

    def completed_job(self) -> int:
        jobid = self._submit("true")
        self._flux("job", "wait-event", "-t", "60", str(jobid), "clean")
        return jobid

    def running_job(self) -> int:
        """Runs until :meth:`finish` creates its flag file."""
        flag = self.flagdir / f"finish-{time.monotonic_ns()}"
        jobid = self._submit("sh", "-c", f"while [ ! -e {flag} ]; do sleep 0.05; done")
        self._flags[jobid] = flag
        self._flux("job", "wait-event", "-t", "60", str(jobid), "start")
        return jobid

    def pending_job(self) -> int:
        return self._submit("--urgency=hold", "true")

    def pending_jobs(self, count: int) -> list[int]:
        """Held jobs, submitted as one array (``flux submit --cc``)."""
        out = self._flux("submit", f"--cc=1-{count}", "--urgency=hold", "true")
        return [int(self._flux("job", "id", "--to=dec", line)) for line in out.split()]

    def release(self, jobid: int) -> None:
        """Let a pending job run to its end."""
        self._flux("job", "urgency", str(jobid), "default")

    def finish(self, jobid: int) -> None:
        self._flags[jobid].touch()

    def cancel(self, jobid: int, note: str) -> None:
        self._flux("cancel", f"--message={note}", str(jobid))

    def raise_exception(self, jobid: int, type: str, severity: int, note: str) -> None:
        self._flux("job", "raise", f"--type={type}", f"--severity={severity}",
                   f"--message={note}", str(jobid))  # fmt: skip

    def watchers(self) -> int:
        return int(json.loads(self._flux("module", "stats", "job-info"))["watchers"])

    def stop(self) -> None:
        self.instance.stop()
        shutil.rmtree(self.flagdir, ignore_errors=True)
