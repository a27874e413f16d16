"""One task waiting on many jobs, next to one sensor task per job.

For N held jobs (1,000 and 10,000) it compares, in one triggerer-like process:

- **one task**: one ``FluxJobsEventTrigger`` over the N jobs (``FluxJobsEventSensor``);
- **N sensor tasks**: N ``FluxJobEventTrigger`` on the same loop, as a triggerer runs
  N deferred ``FluxJobEventSensor`` tasks.

Each waits for the jobs' ``exception`` event. Once every watch is open on the broker
the benchmark raises a non-fatal exception on every job at once (the jobs stay held:
nothing runs, so the burst is as fast as the broker can post it) and measures:

- **trigger rows**: rows in Airflow's trigger table, and their total size as Airflow
  stores them (``Trigger.encrypt_kwargs``, with a Fernet key);
- **event payload KB**: what the trigger events carry to the task (``next_kwargs``);
- **RSS MB**: the process's memory added by the waits;
- **last event to outcome**: from the Flux timestamp of the last job's event to the
  moment the last trigger fired (one task: its one event);
- **CPU s** from the burst to the outcome.

Run: ``scripts/benchmark-ensemble`` (options: ``--sizes``, ``--instances``: any of
``simulated``, ``real`` (one broker) and ``real-4`` (four brokers, as on four nodes)).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from typing import Any

import psutil

from airflow_provider_flux.hooks.flux import windows
from benchmarks.watch_benchmark import Instance, machine, off_executor, start_instance

DESIGNS = ("one task", "N sensor tasks")


@dataclass
class Result:
    design: str
    instance: str
    jobs: int
    trigger_rows: int
    trigger_rows_kb: float
    event_payload_kb: float
    rss_mb: float
    last_event_to_outcome_ms: float
    cpu_s: float


def held_jobs(instance: Instance, count: int) -> list[int]:
    """Jobs held in the queue, submitted as one array on real Flux."""
    from airflow_provider_flux.job.jobid import parse_jobid

    if instance.kind == "simulated":
        return instance.held_jobs(count)
    out = instance._flux("submit", "--urgency=hold", f"--cc=1-{count}", "true")
    return [parse_jobid(word) for word in out.split()]


def raise_nonfatal(instance: Instance, jobids: list[int]) -> None:
    """A severity-1 exception on every job, all requests in flight at once."""
    handle = instance.bindings.open(instance.uri)
    payload = {"type": "benchmark", "severity": 1, "note": "burst"}
    for window in windows(jobids):  # all 10,000 at once can abort flux's reactor
        for future in [handle.rpc("job-manager.raise", {"id": j, **payload}) for j in window]:
            future.get()


def exception_times(jobids: list[int]) -> list[float]:
    """The Flux timestamp of each job's (first) exception event."""
    from airflow_provider_flux.hooks.flux import FluxHook

    times = []
    for read in FluxHook().read_eventlogs(jobids):
        assert not isinstance(read, OSError), read
        times.append(next(event.timestamp for event in read[0] if event.name == "exception"))
    return times


def cancel_all(instance: Instance, jobids: list[int]) -> None:
    """End the held jobs, so the next measurement starts from an empty queue."""
    if instance.kind != "simulated":
        instance._flux("cancel", "--all", "--message=benchmark over")
        return
    handle = instance.bindings.open(instance.uri)
    payload = {"type": "cancel", "severity": 0, "note": "benchmark over"}
    for window in windows(jobids):
        for future in [handle.rpc("job-manager.raise", {"id": j, **payload}) for j in window]:
            future.get()


async def run_design(instance: Instance, jobids: list[int], design: str) -> Result:
    from airflow.models.trigger import Trigger

    from airflow_provider_flux.triggers.flux import FluxJobEventTrigger, FluxJobsEventTrigger

    process = psutil.Process()
    gc.collect()
    rss_before = process.memory_info().rss
    before = await asyncio.to_thread(instance.watchers)
    triggers: list[Any]
    if design == "one task":
        triggers = [FluxJobsEventTrigger(jobids, event="exception", reconnect_attempts=0)]
    else:
        triggers = [FluxJobEventTrigger(j, event="exception", reconnect_attempts=0) for j in jobids]
    rows = [Trigger.encrypt_kwargs(t.serialize()[1]) for t in triggers]
    payloads: list[dict[str, Any]] = []
    fired: list[float] = []

    async def fire(trigger: Any) -> None:
        events = trigger.run()
        event = await anext(events)
        fired.append(time.time())
        payloads.append(event.payload)
        await events.aclose()

    tasks = [asyncio.create_task(fire(t)) for t in triggers]
    for _ in range(3000):  # every watch open on the broker, within 10 minutes
        if await asyncio.to_thread(instance.watchers) >= before + len(jobids):
            break
        await asyncio.sleep(0.2)
    gc.collect()
    rss = process.memory_info().rss - rss_before
    cpu0 = time.process_time()
    await off_executor(lambda: raise_nonfatal(instance, jobids))
    await asyncio.gather(*tasks)
    cpu = time.process_time() - cpu0
    assert all(p["status"] == "success" for p in payloads), payloads[0]["message"]
    # Past 100 jobs the one task's payload details only failed jobs: the events'
    # times are read from Flux, once the measurement is over.
    stamps = await asyncio.to_thread(exception_times, jobids)
    return Result(
        design, instance.kind, len(jobids), len(rows), sum(map(len, rows)) / 1024,
        sum(len(json.dumps(p)) for p in payloads) / 1024, rss / 2**20,
        (max(fired) - max(stamps)) * 1e3, cpu,
    )  # fmt: skip


def measure(design: str, kind: str, uri: str, jobs: int) -> None:
    """One measurement, in this (fresh) process: print its result as JSON."""
    from cryptography.fernet import Fernet

    from airflow_provider_flux.testing.dag_test import configure_airflow_home

    home = tempfile.TemporaryDirectory(prefix="ensemble-benchmark-")  # removed on return
    configure_airflow_home(home.name)
    os.environ["AIRFLOW__CORE__FERNET_KEY"] = Fernet.generate_key().decode()
    os.environ["AIRFLOW_CONN_FLUX_DEFAULT"] = json.dumps({"conn_type": "flux", "host": uri})
    instance = Instance(kind, uri)
    jobids = held_jobs(instance, jobs)
    try:
        result = asyncio.run(run_design(instance, jobids, design))
    finally:
        cancel_all(instance, jobids)
    print(json.dumps(asdict(result)), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--instances", default="simulated,real")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--measure", nargs=3, metavar=("DESIGN", "KIND", "URI"),
                        help=argparse.SUPPRESS)  # fmt: skip
    parser.add_argument("--jobs", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        measure(*args.measure, jobs=args.jobs)
        return
    kinds = [k for k in args.instances.split(",") if k == "simulated" or shutil.which("flux")]
    report: dict[str, Any] = {"machine": machine(), "results": []}
    print(f"machine: {report['machine']}", flush=True)
    for kind in kinds:
        with ExitStack() as stack:
            uri = start_instance(stack, kind)
            for n in (int(s) for s in args.sizes.split(",")):
                for design in DESIGNS:
                    child = subprocess.run(
                        [sys.executable, "-m", "benchmarks.ensemble_benchmark", "--measure",
                         design, kind, uri, "--jobs", str(n)],
                        capture_output=True, text=True,
                    )  # fmt: skip
                    if child.returncode:
                        raise RuntimeError(f"{design} {kind} {n}: {child.stderr[-3000:]}")
                    line = child.stdout.strip().splitlines()[-1]
                    report["results"].append(json.loads(line))
                    print(line, flush=True)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump(report, out, indent=1)


if __name__ == "__main__":
    main()
