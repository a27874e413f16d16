"""What one deferred sensor's trigger holds in a triggerer's event loop, by where it
was allocated: ``FluxJobEventTrigger`` (with its watch on real Flux) against the
standard provider's ``DateTimeTrigger``.

In a fresh process per design, one trigger of the design runs first (what loads
once: imports, the Flux connection), then N more start and wait (the Flux ones on
held jobs, the floor's on a moment an hour away). tracemalloc compares the Python
heap before and after, per trigger, by file and line; the process's RSS added per
trigger is read too (it also holds what tracemalloc cannot see: flux-core's C
futures, the allocator's slack).

Run: ``scripts/benchmark-trigger-memory`` (option ``--triggers``; needs ``flux`` on
PATH). Results: ``benchmarks/trigger_memory_results.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import subprocess
import sys
import tempfile
import tracemalloc
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psutil

from airflow_provider_flux.testing import LocalFluxInstance
from airflow_provider_flux.testing.dag_test import configure_airflow_home
from benchmarks.ensemble_benchmark import held_jobs
from benchmarks.watch_benchmark import Instance, machine

RESULTS = Path(__file__).parent / "trigger_memory_results.json"
DESIGNS = ("datetime", "flux")
ROOT = str(Path(__file__).resolve().parents[1])


async def run_until_first_event(trigger: Any) -> None:
    async for _ in trigger.run():
        return


async def per_trigger(make: Callable[[int], Any], count: int) -> dict[str, Any]:
    first = asyncio.create_task(run_until_first_event(make(0)))
    await asyncio.sleep(1)
    gc.collect()
    tracemalloc.start(1)
    before, rss_before = tracemalloc.take_snapshot(), psutil.Process().memory_info().rss
    waits = [asyncio.create_task(run_until_first_event(make(i))) for i in range(1, count + 1)]
    await asyncio.sleep(3)  # every trigger waits, every watch is open
    gc.collect()
    after, rss_after = tracemalloc.take_snapshot(), psutil.Process().memory_info().rss
    lines = after.compare_to(before, "lineno")
    where = [
        {"bytes": round(line.size_diff / count), "at": _short(line.traceback[0])}
        for line in lines[:12]
    ]
    for wait in [first, *waits]:
        wait.cancel()
    return {
        "traced_kb": round(sum(line.size_diff for line in lines) / count / 1024, 2),
        "rss_kb": round((rss_after - rss_before) / count / 1024, 2),
        "top_lines": where,
    }


def _short(frame: Any) -> str:
    name = frame.filename.split("site-packages/")[-1].replace(ROOT + "/", "")
    return f"{name}:{frame.lineno}"


def measure(design: str, uri: str, count: int) -> dict[str, Any]:
    """One design in this (fresh) process."""
    home = tempfile.TemporaryDirectory(prefix="trigger-memory-")  # removed on return
    configure_airflow_home(home.name)
    make: Callable[[int], Any]
    if design == "flux":
        from airflow_provider_flux.triggers.flux import FluxJobEventTrigger

        jobids = held_jobs(Instance("real", uri), count + 1)

        def make(i: int) -> Any:
            return FluxJobEventTrigger(
                jobids[i], event="clean", flux_uri=uri, end_from_trigger=True
            )
    else:
        from airflow.providers.standard.triggers.temporal import DateTimeTrigger

        moment = datetime.now(timezone.utc) + timedelta(hours=1)

        def make(i: int) -> Any:
            return DateTimeTrigger(moment, end_from_trigger=True)

    return {"design": design, "triggers": count, **asyncio.run(per_trigger(make, count))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--triggers", type=int, default=2000)
    parser.add_argument("--measure", nargs=2, metavar=("DESIGN", "URI"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure[0], args.measure[1], args.triggers)), flush=True)
        os._exit(0)  # the waits are left as they are: the process is done
    results = []
    with LocalFluxInstance() as instance:
        for design in DESIGNS:
            child = subprocess.run(
                [sys.executable, "-m", "benchmarks.trigger_memory_benchmark", "--measure",
                 design, instance.uri, "--triggers", str(args.triggers)],
                capture_output=True, text=True,
            )  # fmt: skip
            if child.returncode:
                raise RuntimeError(f"{design}: {child.stderr[-3000:]}")
            results.append(json.loads(child.stdout.strip().splitlines()[-1]))
            instance.run("cancel", "--all", check=False)
    RESULTS.write_text(json.dumps({"machine": machine(), "results": results}, indent=1) + "\n")
    for result in results:
        print(f"{result['design']}: {result['traced_kb']} KB traced, {result['rss_kb']} KB RSS "
              "per trigger")  # fmt: skip
        for line in result["top_lines"]:
            print(f"  {line['bytes']:6d} B  {line['at']}")


if __name__ == "__main__":
    main()
