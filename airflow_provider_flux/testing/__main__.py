"""``python -m airflow_provider_flux.testing``: run a simulated Flux instance.

- ``start [--speed X] COMMAND...``: start an instance, run COMMAND with ``FLUX_URI``
  set to it, stop it, exit with COMMAND's status (like ``flux start -s1``).
- ``serve --socket PATH``: serve a broker in the foreground.
- ``scenarios``: list the recorded job scenarios.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys

from airflow_provider_flux.testing.broker import SimulatedBroker
from airflow_provider_flux.testing.flux_processes import SimulatedFlux
from airflow_provider_flux.testing.scenarios import scenario_names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m airflow_provider_flux.testing")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve a simulated broker in the foreground")
    serve.add_argument("--socket", required=True)
    serve.add_argument("--speed", type=float, default=1.0)
    start = commands.add_parser("start", help="run a command inside a simulated instance")
    start.add_argument("--speed", type=float, default=1.0)
    start.add_argument("cmd", nargs=argparse.REMAINDER)
    commands.add_parser("scenarios", help="list the recorded job scenarios")
    args = parser.parse_args(argv)

    if args.command == "serve":
        broker = SimulatedBroker(args.socket, speed=args.speed)
        broker.listen()
        # Stopped (SIGTERM), the broker ends its step and kills the tasks of the jobs
        # it runs for real. (An exception raised by the handler could land inside a
        # step, such as a wait on a task, and leave the process hanging there.)
        stop_read, stop_write = os.pipe()
        os.set_blocking(stop_write, False)
        signal.set_wakeup_fd(stop_write)
        signal.signal(signal.SIGTERM, lambda *_: None)
        try:
            with contextlib.suppress(KeyboardInterrupt):
                broker.serve_forever(stop_read)
        finally:
            broker.stop_tasks()
        return 0
    if args.command == "scenarios":
        print("\n".join(scenario_names()))
        return 0
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        parser.error("start needs a command")
    with SimulatedFlux(speed=args.speed) as instance:
        return subprocess.call(cmd, env={**os.environ, "FLUX_URI": instance.uri})


if __name__ == "__main__":
    sys.exit(main())
