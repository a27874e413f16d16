"""Event-driven runs: how long after a job's ``finish`` its trigger event comes out.

Starts a real Flux instance (``flux start -s1``), runs ``FluxInstanceEventTrigger``
as its owner (the journal) and as a guest (job-list polling), submits jobs named
``evt-*`` at a steady pace, and measures, for each job, the time from its
``finish`` event's timestamp (the broker's clock, on this machine) to the trigger
event. The trigger runs standalone (``run()``), in one event loop, as in a triggerer.

Run it with ``scripts/benchmark-events``; results go to
``benchmarks/event_latency_results.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).with_name("event_latency_results.json")
GUEST = {"FLUX_HANDLE_USERID": "9999", "FLUX_HANDLE_ROLEMASK": "0x2"}


async def measure(jobs: int, pace: float, poll_interval: float) -> dict[str, float | int | str]:
    """Inside the instance: submit ``jobs`` jobs and time their trigger events."""
    from airflow_provider_flux.testing.dag_test import use_flux_connection
    from airflow_provider_flux.triggers.instance import FluxInstanceEventTrigger

    use_flux_connection(os.environ["FLUX_URI"], "bench")
    trigger = FluxInstanceEventTrigger(
        flux_conn_id="bench", events="finish", job_name="evt-*", poll_interval=poll_interval
    )
    owner_env = {k: v for k, v in os.environ.items() if not k.startswith("FLUX_HANDLE_")}
    latencies: list[float] = []
    source = ""
    events = trigger.run()
    # The first event shows the watcher runs (its history is read by then).
    first = asyncio.ensure_future(events.__anext__())
    await asyncio.sleep(1.0)

    async def submit() -> None:
        for n in range(jobs + 1):
            # As another process would: the owner submits (a guest cannot).
            await asyncio.create_subprocess_exec(
                "flux", "submit", f"--job-name=evt-{n}", "true", env=owner_env,
                stdout=subprocess.DEVNULL,
            )  # fmt: skip
            await asyncio.sleep(pace)

    submitter = asyncio.ensure_future(submit())
    event = await first
    while len(latencies) < jobs:
        event = await asyncio.wait_for(events.__anext__(), 60)
        latencies.append(time.time() - event.payload["event"]["timestamp"])
        source = event.payload["source"]
    await submitter
    await events.aclose()
    latencies.sort()
    return {
        "source": source,
        "jobs": jobs,
        "p50_ms": round(statistics.median(latencies) * 1000, 1),
        "p95_ms": round(latencies[int(0.95 * (len(latencies) - 1))] * 1000, 1),
        "max_ms": round(latencies[-1] * 1000, 1),
    }


def run_in_instance(guest: bool, jobs: int, pace: float, poll_interval: float) -> dict[str, object]:
    flux = shutil.which("flux")
    if flux is None:
        sys.exit("flux is not on PATH: this benchmark measures real Flux")
    inner = [sys.executable, "-m", "benchmarks.event_latency_benchmark", "--inside",
             f"--jobs={jobs}", f"--pace={pace}", f"--poll-interval={poll_interval}"]  # fmt: skip
    if guest:
        # Only the measuring process is a guest: the instance and its submits are the owner's.
        inner = ["env", *(f"{k}={v}" for k, v in GUEST.items()), *inner]
    out = subprocess.run(
        [flux, "start", "-s1", *inner], capture_output=True, text=True, check=True, timeout=600
    ).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=50)
    parser.add_argument("--pace", type=float, default=0.2, help="seconds between submits")
    parser.add_argument("--poll-interval", type=float, default=5.0)
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inside:
        print(json.dumps(asyncio.run(measure(args.jobs, args.pace, args.poll_interval))))
        return
    python = platform.python_version()
    version = subprocess.run(["flux", "version"], capture_output=True, text=True).stdout.split()
    results = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {python}",
        "flux": version[1],
        "poll_interval_s": args.poll_interval,
        "owner (journal)": run_in_instance(False, args.jobs, args.pace, args.poll_interval),
        "guest (job-list)": run_in_instance(True, args.jobs, args.pace, args.poll_interval),
    }
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
