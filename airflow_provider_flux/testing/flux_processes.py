"""Start and script a simulated Flux instance, the way ``flux start -s1`` starts a real one."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any

from airflow_provider_flux.testing.bindings import Flux, job
from airflow_provider_flux.testing.bindings.handle import SCHEME
from airflow_provider_flux.testing.service import Service


class SimulatedFlux(Service):
    """A simulated Flux instance served by a child process.

    Use it as a context manager; its :attr:`uri` (``sim:///...``) goes where a Flux
    URI goes: ``FLUX_URI``, or the host of a ``flux`` Airflow connection. The
    control methods are blocking: call them from tests or DAG code, not from an
    event loop.

    :param speed: how much faster than recorded the job scenarios play out.
    :param rundir: directory for the socket (default: a new temporary directory).
    """

    def __init__(self, speed: float = 1.0, rundir: str | None = None) -> None:
        self.speed = speed
        self._own_rundir = rundir is None
        self.rundir = rundir or tempfile.mkdtemp(prefix="simflux-")
        self.socket_path = os.path.join(self.rundir, "local-0")
        self._process: subprocess.Popen[bytes] | None = None
        self._control: Flux | None = None

    @property
    def uri(self) -> str:
        """The instance URI: ``sim://`` + the broker's socket path."""
        return SCHEME + self.socket_path

    def start(self, timeout: float = 30.0) -> SimulatedFlux:
        """Start the broker and wait until it accepts connections."""
        command = [
            sys.executable, "-m", "airflow_provider_flux.testing", "serve",
            "--socket", self.socket_path, "--speed", str(self.speed),
        ]  # fmt: skip
        self._process = subprocess.Popen(command, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while True:
            if self._process.poll() is not None:
                _, stderr = self._process.communicate()
                raise RuntimeError(f"simulated Flux broker exited: {stderr.decode().strip()}")
            try:
                self._control = Flux(self.uri)
                return self
            except OSError as err:
                if time.monotonic() > deadline:
                    self.stop()
                    raise TimeoutError(
                        f"simulated Flux broker did not start in {timeout}s"
                    ) from err
                time.sleep(0.02)

    def stop(self) -> None:
        """Stop the broker (its clients see the connection drop) and remove the rundir."""
        self._control = None
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            self._process.wait(timeout=10)
        if self._process is not None and self._process.stderr is not None:
            self._process.stderr.close()
        self._process = None
        if self._own_rundir:
            shutil.rmtree(self.rundir, ignore_errors=True)

    # -- scripting ---------------------------------------------------------------

    def _rpc(self, topic: str, payload: dict[str, Any]) -> Any:
        if self._control is None:
            raise RuntimeError("the simulated Flux instance is not running")
        return self._control.rpc(topic, payload).get()

    def submit(
        self, scenario: str = "success", *, hold_before: str | None = None, private: bool = False
    ) -> int:
        """Submit a job that replays a recorded scenario; returns its ID.

        :param scenario: one of :func:`~airflow_provider_flux.testing.scenario_names`.
        :param hold_before: stop before the first event of this name until :meth:`release`.
        :param private: the job belongs to another user: watching it gives EPERM.
        """
        payload = {"scenario": scenario, "hold_before": hold_before, "private": private}
        return int(self._rpc("sim.submit", payload)["id"])

    def release(self, jobid: int) -> None:
        """Let a held job play out the rest of its scenario."""
        self._rpc("sim.release", {"id": int(jobid)})

    def post(
        self,
        jobid: int,
        name: str,
        context: dict[str, Any] | None = None,
        eventlog: str = "eventlog",
    ) -> None:
        """Append an event to a job eventlog now."""
        payload = {"id": int(jobid), "name": name, "context": context or {}, "path": eventlog}
        self._rpc("sim.post", payload)

    def raise_exception(self, jobid: int, type: str, severity: int = 0, note: str = "") -> None:
        """Raise a job exception, as ``flux job raise`` does (severity 0 ends the job)."""
        assert self._control is not None
        job.job_raise_async(self._control, jobid, type, severity, note).get()

    def cancel(self, jobid: int, note: str = "") -> None:
        """Cancel a job, as ``flux cancel`` does."""
        self.raise_exception(jobid, "cancel", 0, note)

    def drop_connections(self) -> None:
        """Close every client connection, as a broker that goes away does."""
        assert self._control is not None
        self._control._notify("sim.drop", {})
        self._control = None
        deadline = time.monotonic() + 10
        while self._control is None:
            try:
                self._control = Flux(self.uri)
                if self.stats()["clients"] == 1:
                    return
            except OSError:
                pass
            self._control = None
            if time.monotonic() > deadline:
                raise TimeoutError("the simulated broker did not drop its connections")
            time.sleep(0.01)

    def stats(self) -> dict[str, int]:
        """The broker's counters: ``watchers``, ``guest_watchers``, ``clients``, ``jobs``."""
        return dict(self._rpc("job-info.stats-get", {}))


class LocalFluxInstance(Service):
    """A real Flux instance for tests, when flux-core is installed: one broker
    (``flux start -s1``), or ``size`` brokers on this machine joined by Flux's own
    overlay network, as on that many nodes (``flux start --test-size=N``).

    :param flux: the ``flux`` command (default: found on PATH).
    :param statedir: keep the instance's jobs here across :meth:`restart`
        (``flux start -Sstatedir=DIR``); default: none, a restart loses them.
    :param size: how many brokers (nodes).
    """

    def __init__(self, flux: str | None = None, statedir: str | None = None, size: int = 1) -> None:
        found = flux or shutil.which("flux")
        if found is None:
            raise FileNotFoundError("flux is not on PATH")
        self.flux = found
        self.statedir = statedir
        self.size = size
        self.rundir = tempfile.mkdtemp(prefix="flux-")
        self.uri = f"local://{self.rundir}/local-0"
        self._process: subprocess.Popen[bytes] | None = None

    def run(
        self, *args: str, check: bool = True, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run ``flux ARGS...`` against this instance (``env``: more environment)."""
        return subprocess.run(
            [self.flux, *args], env={**os.environ, "FLUX_URI": self.uri, **(env or {})},
            capture_output=True, text=True, check=check, timeout=120,
        )  # fmt: skip

    def start(self, timeout: float = 60.0) -> LocalFluxInstance:
        """Start the broker and wait until it answers."""
        os.makedirs(self.rundir, exist_ok=True)
        state = [f"-Sstatedir={self.statedir}"] if self.statedir else []
        if self.statedir:  # flux start keeps nothing in a directory that is not there
            os.makedirs(self.statedir, exist_ok=True)
        self._process = subprocess.Popen(
            [self.flux, "start", f"--test-size={self.size}", *state, f"--test-rundir={self.rundir}",
             "--test-rundir-cleanup", "sleep", "inf"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        # The broker answers during rc1, before job submission works; "run" is ready.
        while " run " not in self.run("uptime", check=False).stdout:
            if self._process.poll() is not None:
                _, stderr = self._process.communicate()
                raise RuntimeError(f"flux start failed: {stderr.decode().strip()}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"flux start did not come up in {timeout}s")
            time.sleep(0.1)
        if self.size > 1:  # every broker joined: jobs may ask for every node at once
            self.run("overlay", "status", "--wait=full", f"--timeout={timeout}s", "--summary")
        return self

    def version(self) -> str:
        return self.run("version").stdout.splitlines()[0].split()[-1]

    def restart(self) -> None:
        """Shut the instance down and start it again at the same URI. Flux cancels the
        jobs still running at shutdown; with a ``statedir`` the others survive."""
        self.shutdown()
        self.start()

    def stop(self) -> None:
        """Shut the instance down (its initial program then exits 129, which is normal)."""
        self.shutdown()
        shutil.rmtree(self.rundir, ignore_errors=True)

    def shutdown(self) -> None:
        """Shut the instance down, for :meth:`start` to start it again at the same URI
        (a down instance, as its clients see it)."""
        if self._process is None:
            return
        self.run("shutdown", "--quiet", check=False)
        try:
            self._process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        if self._process.stderr is not None:
            self._process.stderr.close()
        self._process = None
