"""One triggerer-like process watching jobs on three real instances: does one that
goes down hold up the waits on the others?

Three one-broker instances (A, B, C) with N jobs each held behind a gate job
(``--dependency=afterany``), and one ``FluxJobEventTrigger`` per job waiting for its
``finish``, all on one event loop, each naming its instance with ``flux_uri``
(one connection per instance). Three rounds, each releasing one instance's gate:

- **all up**: A's jobs;
- **B down**: B shut down (its waits lose their connection and try again with
  backoff), then C's jobs;
- **B back**: B started again at the same address (its statedir keeps its held
  jobs), then B's jobs: their lag includes the wait for the next reconnect.

Measured per round: the lag from each job's ``finish`` (its Flux timestamp) to its
trigger event, p50 / p95 / max, and the loop's longest callback (a blocked loop
holds every wait up).

Run: ``scripts/benchmark-instances`` (option ``--jobs``). Results:
``benchmarks/instances_results.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from airflow_provider_flux.testing import LocalFluxInstance
from airflow_provider_flux.testing.dag_test import configure_airflow_home
from benchmarks.deployment_benchmark import Jobs
from benchmarks.watch_benchmark import machine

RESULTS = Path(__file__).parent / "instances_results.json"


class LongestCallback:
    """The loop's longest step, sampled by a ticker: how late each 10 ms tick runs."""

    def __init__(self) -> None:
        self.longest = 0.0

    async def run(self) -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(0.01)
            self.longest = max(self.longest, time.perf_counter() - before - 0.01)


async def rounds(instances: dict[str, LocalFluxInstance], jobs: int) -> list[dict[str, Any]]:
    from airflow_provider_flux.triggers.flux import FluxJobEventTrigger

    async def fire(trigger: FluxJobEventTrigger) -> tuple[dict[str, Any], float]:
        async for event in trigger.run():
            return dict(event.payload), time.time()
        raise RuntimeError("the trigger ended without an event")

    gated = {name: Jobs(instance, None) for name, instance in instances.items()}
    held = {name: gated[name].submit(jobs) for name in instances}
    waits = {
        name: [
            asyncio.create_task(fire(FluxJobEventTrigger(
                jobid, event="finish", flux_uri=instances[name].uri, reconnect_attempts=10,
            )))
            for jobid in jobids
        ]
        for name, (_, jobids) in held.items()
    }  # fmt: skip
    await asyncio.sleep(2)  # every watch open
    results = []

    async def release(label: str, name: str) -> None:
        ticker = LongestCallback()
        ticking = asyncio.create_task(ticker.run())
        await asyncio.to_thread(gated[name].release, *held[name])
        ended = await asyncio.gather(*waits[name])
        ticking.cancel()
        lags = sorted(fired - payload["event"]["timestamp"] for payload, fired in ended)
        assert all(payload["status"] == "success" for payload, _ in ended)
        result = {
            "round": label, "instance": name, "jobs": len(lags),
            "lag_p50_ms": round(lags[len(lags) // 2] * 1e3),
            "lag_p95_ms": round(lags[int(0.95 * (len(lags) - 1))] * 1e3),
            "lag_max_ms": round(lags[-1] * 1e3),
            "longest_loop_step_ms": round(ticker.longest * 1e3, 1),
        }  # fmt: skip
        print(json.dumps(result), flush=True)
        results.append(result)

    await release("all up", "A")
    await asyncio.to_thread(instances["B"].shutdown)
    await asyncio.sleep(1)  # B's waits are reconnecting
    await release("B down", "C")
    await asyncio.to_thread(instances["B"].start)
    await release("B back", "B")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200, help="jobs per instance")
    args = parser.parse_args()
    configure_airflow_home(tempfile.mkdtemp(prefix="instances-benchmark-"))
    with ExitStack() as stack, tempfile.TemporaryDirectory() as state:
        instances = {
            name: stack.enter_context(LocalFluxInstance(statedir=f"{state}/{name}"))
            for name in "ABC"
        }
        version = instances["A"].version()
        results = asyncio.run(rounds(instances, args.jobs))
    report = {"machine": machine(), "flux": version, "results": results}
    RESULTS.write_text(json.dumps(report, indent=1) + "\n")
    print("| round | instance released | jobs | lag p50 / p95 / max | longest loop step |")
    print("|---|---|---:|---|---:|")
    for r in results:
        lag = f"{r['lag_p50_ms']} / {r['lag_p95_ms']} / {r['lag_max_ms']} ms"
        print(f"| {r['round']} | {r['instance']} | {r['jobs']} | {lag} "
              f"| {r['longest_loop_step_ms']} ms |")  # fmt: skip


if __name__ == "__main__":
    main()
