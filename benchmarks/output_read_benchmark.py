"""What it costs a worker to show ``output_limit`` of a big output once the job is over.

The operator shows a job's output at the end when it is not streamed
(``stream_output=False``, job arrays, a timed-out wait). A job writes N MB in
100-byte lines on a real Flux instance (the simulator when ``flux`` is not on PATH,
said in the results); then, each in a fresh process, one design reads it and keeps
64 KiB:

- **whole read** (release 0.2.0): ``FluxHook.read_eventlog(jobid, "guest.output")``,
  one ``job-info.lookup`` of the whole eventlog, then ``format_output``;
- **bounded read** (now): ``aio.output_reader.read_outputs``, a watch of
  ``guest.output`` cancelled once the limit is reached.

Each measurement reports the peak of the Python heap during the read (tracemalloc)
and the process's peak RSS growth over its RSS once everything is imported
(``VmHWM`` reset through ``/proc/self/clear_refs``), and the read's wall time.

Run: ``scripts/benchmark-output-read`` (``--sizes``, in MB; ``--json FILE``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

LIMIT = 64 * 1024
LINE_BYTES = 100
DESIGNS = ("whole read", "bounded read")


def memory_kb(field: str) -> int:
    for row in Path("/proc/self/status").read_text().splitlines():
        if row.startswith(f"{field}:"):
            return int(row.split()[1])
    raise RuntimeError(f"no {field}")


def measure(design: str, uri: str, jobid: int) -> dict[str, Any]:
    """One read, in this (fresh) process."""
    from airflow_provider_flux.aio.output_reader import read_outputs
    from airflow_provider_flux.hooks.flux import FluxHook
    from airflow_provider_flux.job.output import format_output
    from airflow_provider_flux.testing.dag_test import use_flux_connection

    use_flux_connection(uri, "bench")
    hook = FluxHook("bench")
    hook.get_conn()  # the bindings and a first handle, before the peak is reset
    Path("/proc/self/clear_refs").write_text("5")
    rss_before = memory_kb("VmRSS")
    tracemalloc.start()
    started = time.monotonic()
    if design == "whole read":
        events, _ = hook.read_eventlog(jobid, "guest.output")
        text, _ = format_output(events, LIMIT)
    else:
        (output,) = asyncio.run(read_outputs([jobid], hook.get_uri(), LIMIT))
        text = output.text
    seconds = time.monotonic() - started
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "design": design,
        "shown_bytes": len(text.encode()),
        "traced_peak_kb": round(traced_peak / 1024),
        "rss_peak_growth_kb": memory_kb("VmHWM") - rss_before,
        "seconds": round(seconds, 2),
    }


def big_output_job(uri: str, megabytes: int, simulated: bool) -> int:
    from airflow_provider_flux.hooks.flux import FluxHook
    from airflow_provider_flux.jobspec import jobspec_from_command
    from airflow_provider_flux.testing.dag_test import use_flux_connection

    lines = megabytes * 1_000_000 // LINE_BYTES
    use_flux_connection(uri, "bench")
    hook = FluxHook("bench")
    attributes = {}
    if simulated:
        option = {"lines": lines, "line_bytes": LINE_BYTES, "chunk_bytes": 65536}
        attributes = {"system.simulator.output": option}
    line = "x" * (LINE_BYTES - 1)
    command = ["sh", "-c", f"yes {line} | head -n {lines}"]
    jobid = hook.submit(jobspec_from_command(command, attributes=attributes))
    bindings = hook.get_bindings()
    bindings.job.event_wait(bindings.open(hook.get_uri()), jobid, "clean")
    return jobid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="20,50", help="MB of output, comma-separated")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument(
        "--measure", nargs=3, metavar=("DESIGN", "URI", "JOBID"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.measure:
        design, uri, jobid = args.measure
        print(json.dumps(measure(design, uri, int(jobid))))
        return

    from airflow_provider_flux.testing import LocalFluxInstance, SimulatedFlux
    from benchmarks.watch_benchmark import machine

    simulated = shutil.which("flux") is None
    instance: Any = SimulatedFlux(speed=50) if simulated else LocalFluxInstance()
    results: list[dict[str, Any]] = []
    with instance:
        for megabytes in (int(size) for size in args.sizes.split(",")):
            jobid = big_output_job(instance.uri, megabytes, simulated)
            for design in DESIGNS:
                child = subprocess.run(
                    [sys.executable, "-m", "benchmarks.output_read_benchmark", "--measure",
                     design, instance.uri, str(jobid)],
                    capture_output=True, text=True, check=True, env=os.environ.copy(),
                )  # fmt: skip
                result = {"output_mb": megabytes, **json.loads(child.stdout.splitlines()[-1])}
                results.append(result)
                print(json.dumps(result), flush=True)
    kind = "the simulator" if simulated else "real Flux"
    print(f"\n# {machine()}; {kind}; output_limit {LIMIT // 1024} KiB")
    print("| output | design | shown | Python heap peak | RSS peak growth | read time |")
    print("|---:|---|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {r['output_mb']} MB | {r['design']} | {r['shown_bytes']:,} B | "
            f"{r['traced_peak_kb']:,} KB | {r['rss_peak_growth_kb']:,} KB | {r['seconds']} s |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine(), "results": results}, indent=1))


if __name__ == "__main__":
    main()
