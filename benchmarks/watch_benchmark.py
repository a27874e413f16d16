"""How many concurrent eventlog watches one process carries, and what each costs.

For N concurrent watches (spread over a set of held jobs) it measures, for the
engine (one shared handle per loop, driven by the poll fd) and for the naive
design (one ``asyncio.to_thread(flux.job.event_wait)`` per watch, each with its own
handle): threads, RSS per watch, CPU per delivered event, event-to-consumer
latency (p50/p99), events per second, wall time and the longest loop hold. With
real Flux it also times ``flux job wait-event`` for the same events, the latency
target's reference.

Run: ``scripts/benchmark`` (options: ``--sizes``, ``--instances``, ``--jobs``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

import psutil

from airflow_provider_flux.aio import watch
from airflow_provider_flux.flux_bindings import load_bindings
from airflow_provider_flux.testing import LocalFluxInstance, SimulatedFlux

T = TypeVar("T")


@dataclass
class Result:
    design: str
    instance: str
    watches: int
    open_on_broker: int
    threads: int
    rss_per_watch_kb: float
    cpu_us_per_event: float
    latency_p50_ms: float
    latency_p99_ms: float
    events_per_s: float
    wall_s: float
    # The loop holds in the burst (see Heartbeat), for the engine and the bindings
    # alone on real Flux.
    longest_hold_ms: float | None = None
    longest_busy_outside_gc_ms: float | None = None
    longest_gc_pause_ms: float | None = None


# The heartbeat that measures loop holds: a timer due every millisecond.
HEARTBEAT_SECONDS = 0.001


class Heartbeat:
    """The longest a timer due every millisecond waited beyond its period: how long
    the loop was held in one go, as any other trigger of a triggerer would see it.

    On a shared 2-core machine that wait also holds Python's garbage collector
    (which stops the process for a time that grows with its live objects) and the
    time the OS gave the cores to the broker. So it also reports the loop thread's
    own CPU time between two beats, less the collector's: the work the design
    itself did in one go.
    """

    def __init__(self) -> None:
        self.longest = 0.0
        self.longest_busy = 0.0
        self.longest_gc = 0.0
        self._last: tuple[float, float] | None = None
        self._gc_started = (0.0, 0.0)
        self._gc_cpu = 0.0
        self._gc_cpu_at_last = 0.0
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, _info: dict[str, int]) -> None:
        now = (time.perf_counter(), time.thread_time())
        if phase == "start":
            self._gc_started = now
        elif self._last is not None:
            self.longest_gc = max(self.longest_gc, now[0] - self._gc_started[0])
            self._gc_cpu += now[1] - self._gc_started[1]

    def beat(self) -> None:
        now = (time.perf_counter(), time.thread_time())
        if self._last is not None:
            self.longest = max(self.longest, now[0] - self._last[0] - HEARTBEAT_SECONDS)
            busy = now[1] - self._last[1] - (self._gc_cpu - self._gc_cpu_at_last)
            self.longest_busy = max(self.longest_busy, busy)
        self._last = now
        self._gc_cpu_at_last = self._gc_cpu

    def stop(self) -> None:
        gc.callbacks.remove(self._on_gc)

    def report(self) -> dict[str, float]:
        return {
            "longest_hold_ms": self.longest * 1e3,
            "longest_busy_outside_gc_ms": self.longest_busy * 1e3,
            "longest_gc_pause_ms": self.longest_gc * 1e3,
        }


def asyncio_heartbeat(loop: asyncio.AbstractEventLoop) -> tuple[Heartbeat, Callable[[], None]]:
    """A heartbeat on ``loop``, and the function that stops it."""
    heartbeat = Heartbeat()
    timer: asyncio.TimerHandle | None = None

    def beat() -> None:
        nonlocal timer
        heartbeat.beat()
        timer = loop.call_later(HEARTBEAT_SECONDS, beat)

    def stop() -> None:
        heartbeat.stop()
        if timer is not None:
            timer.cancel()

    beat()
    return heartbeat, stop


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Instance:
    """Held jobs on a running instance (simulated or real), released all at once."""

    def __init__(self, kind: str, uri: str) -> None:
        self.kind = kind
        self.uri = uri
        self.bindings = load_bindings(uri)
        self.control = self.bindings.open(uri)

    def _flux(self, *args: str) -> str:
        env = {**os.environ, "FLUX_URI": self.uri}
        flux = shutil.which("flux") or "flux"
        return subprocess.run(
            [flux, *args], env=env, capture_output=True, text=True, check=True
        ).stdout

    def held_jobs(self, count: int) -> list[int]:
        """Jobs that stop after ``priority`` until released."""
        if self.kind == "simulated":
            payload = {"scenario": "success", "hold_before": "alloc"}
            return [int(self.control.rpc("sim.submit", payload).get()["id"]) for _ in range(count)]
        ids = self._flux("submit", "--urgency=hold", f"--cc=1-{count}", "true").split()
        return [int(self._flux("job", "id", "--to=dec", i)) for i in ids]

    def watchers(self) -> int:
        """Eventlog watches the broker serves right now."""
        if self.kind == "simulated":
            return int(self.control.rpc("job-info.stats-get", {}).get()["watchers"])
        return int(json.loads(self._flux("module", "stats", "job-info"))["watchers"])

    def release(self, jobs: list[int]) -> None:
        """Every release request in flight at once, on a handle of this thread."""
        handle = self.bindings.open(self.uri)
        if self.kind == "simulated":
            futures = [handle.rpc("sim.release", {"id": j}) for j in jobs]
        else:
            futures = [handle.rpc("job-manager.urgency", {"id": j, "urgency": 16}) for j in jobs]
        for future in futures:
            future.get()


async def engine(
    instance: Instance,
    jobs: list[int],
    n: int,
    on_established: Callable[[], None] | None = None,
) -> tuple[Result, dict[int, float]]:
    process = psutil.Process()
    gc.collect()
    rss_before = process.memory_info().rss
    established = 0
    all_established = asyncio.Event()
    released = False
    latencies: list[float] = []
    clean_latency: dict[int, float] = {}
    delivered = 0

    async def consume(jobid: int) -> None:
        nonlocal established, delivered
        async for event in watch(jobid, uri=instance.uri):
            now = time.time()
            if not released:
                if event.name == "priority":
                    established += 1
                    if established == n:
                        all_established.set()
                continue
            delivered += 1
            latencies.append(now - event.timestamp)
            if event.name == "clean":
                clean_latency.setdefault(jobid, now - event.timestamp)
        nonlocal ended
        ended += 1
        if ended == n:
            all_ended.set()

    # The burst is over when the last stream ends: gathering the tasks afterwards
    # keeps their 10,000 done callbacks (the benchmark's, not the engine's) out of it.
    ended = 0
    all_ended = asyncio.Event()
    tasks = [asyncio.create_task(consume(jobs[i % len(jobs)])) for i in range(n)]
    await asyncio.wait_for(all_established.wait(), 600)
    gc.collect()
    if on_established is not None:
        on_established()
    rss = process.memory_info().rss - rss_before
    threads = process.num_threads()
    open_on_broker = await asyncio.to_thread(instance.watchers)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    released = True
    heartbeat, stop_heartbeat = asyncio_heartbeat(asyncio.get_running_loop())
    await off_executor(lambda: instance.release(jobs))
    await all_ended.wait()
    stop_heartbeat()
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    await asyncio.gather(*tasks)
    result = Result(
        "engine", instance.kind, n, open_on_broker, threads, rss / n / 1024, cpu / delivered * 1e6,
        percentile(latencies, 0.5) * 1e3, percentile(latencies, 0.99) * 1e3,
        delivered / wall, wall, **heartbeat.report(),
    )  # fmt: skip
    return result, clean_latency


async def naive(instance: Instance, jobs: list[int], n: int) -> Result:
    """The baseline: a thread of the default executor and a handle per watch."""
    bindings = load_bindings(instance.uri)
    process = psutil.Process()
    gc.collect()
    rss_before = process.memory_info().rss
    latencies: list[float] = []
    lock = threading.Lock()

    def wait_clean(jobid: int) -> None:
        handle = bindings.open(instance.uri)
        event = bindings.job.event_wait(handle, jobid, "clean")
        with lock:
            latencies.append(time.time() - event.timestamp)

    tasks = [asyncio.create_task(asyncio.to_thread(wait_clean, jobs[i % len(jobs)]))
             for i in range(n)]  # fmt: skip
    await asyncio.sleep(1.0)  # let the executor's threads start their watches
    rss = process.memory_info().rss - rss_before
    threads = process.num_threads()
    open_on_broker = await off_executor(instance.watchers)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    await off_executor(lambda: instance.release(jobs))
    await asyncio.gather(*tasks)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    # Each event_wait reads the whole eventlog: count those events as delivered.
    per_watch = 12 if instance.kind == "real" else 10
    delivered = n * per_watch
    return Result(
        "naive to_thread(event_wait)", instance.kind, n, open_on_broker, threads,
        rss / n / 1024,
        cpu / delivered * 1e6, percentile(latencies, 0.5) * 1e3,
        percentile(latencies, 0.99) * 1e3, delivered / wall, wall,
    )  # fmt: skip


def bindings_floor(instance: Instance, jobs: list[int], n: int) -> Result:
    """What the flux bindings alone cost: the same watches on one handle, run by flux's
    own blocking reactor in one thread, no asyncio. Engine overhead is the rest."""
    bindings, handle = instance.bindings, instance.bindings.open(instance.uri)
    process = psutil.Process()
    gc.collect()
    rss_before = process.memory_info().rss
    released = False
    established = 0
    delivered = 0
    latencies: list[float] = []

    def on_event(future: Any) -> None:
        nonlocal established, delivered
        event = future.get_event()
        if event is None:
            return
        if not released:
            established += event.name == "priority"
            if established == n:
                handle.reactor_stop()
            return
        delivered += 1
        latencies.append(time.time() - event.timestamp)

    futures = [bindings.event_watch_async(handle, jobs[i % len(jobs)]).then(on_event)
               for i in range(n)]  # fmt: skip
    handle.reactor_run()
    rss = process.memory_info().rss - rss_before
    threads = process.num_threads()
    open_on_broker = instance.watchers()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    released = True
    heartbeat = reactor_heartbeat(instance, handle)
    releaser = threading.Thread(target=instance.release, args=(jobs,))
    releaser.start()
    handle.reactor_run()
    releaser.join()
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    del futures
    holds = {}
    if heartbeat is not None:
        heartbeat.stop()
        holds = heartbeat.report()
    return Result(
        "bindings alone (flux reactor)", instance.kind, n, open_on_broker, threads,
        rss / n / 1024, cpu / delivered * 1e6, percentile(latencies, 0.5) * 1e3,
        percentile(latencies, 0.99) * 1e3, delivered / wall, wall, **holds,
    )  # fmt: skip


def reactor_heartbeat(instance: Instance, handle: Any) -> Heartbeat | None:
    """A heartbeat in flux's own reactor (a repeating timer watcher), stopped with the
    last watch: ``None`` on the simulator, whose bindings have no timer watchers."""
    if instance.bindings.simulated:
        return None
    heartbeat = Heartbeat()
    timer = handle.timer_watcher_create(
        HEARTBEAT_SECONDS, lambda *_: heartbeat.beat(), repeat=HEARTBEAT_SECONDS
    )
    # Unreferenced: the reactor still ends when the last watch does.
    timer.start().unref()
    heartbeat.beat()
    return heartbeat


def wait_event_latency(instance: Instance, jobs: list[int]) -> list[float]:
    """``flux job wait-event JOBID clean``, started before the release: when it prints."""
    assert instance.kind == "real"
    env = {**os.environ, "FLUX_URI": instance.uri}
    flux = shutil.which("flux") or "flux"
    procs = [
        subprocess.Popen([flux, "job", "wait-event", "-f", "json", str(j), "clean"],
                         stdout=subprocess.PIPE, text=True, env=env)
        for j in jobs
    ]  # fmt: skip
    time.sleep(1.0)
    latencies: list[float] = []

    def read(proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        latencies.append(time.time() - json.loads(line)["timestamp"])
        proc.wait()

    readers = [threading.Thread(target=read, args=(p,)) for p in procs]
    for thread in readers:
        thread.start()
    instance.release(jobs)
    for thread in readers:
        thread.join()
    return latencies


async def off_executor(action: Callable[[], T]) -> T:
    """Run ``action`` in a thread of its own: the naive design can hold every thread of
    the default executor, and releasing the jobs must not queue behind it."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[T] = loop.create_future()

    def target() -> None:
        result = action()
        loop.call_soon_threadsafe(done.set_result, result)

    threading.Thread(target=target, daemon=True).start()
    return await done


def start_instance(stack: ExitStack, kind: str) -> str:
    """Start a ``simulated``, ``real`` (one broker) or ``real-4`` (four brokers, as on
    four nodes) instance for the benchmark's runs; its URI."""
    if kind == "simulated":
        return stack.enter_context(SimulatedFlux(speed=50)).uri
    size = 4 if kind == "real-4" else 1
    return stack.enter_context(LocalFluxInstance(size=size)).uri


def machine() -> str:
    cpu = "unknown CPU"
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as info:
        cpu = next((ln.split(":", 1)[1].strip() for ln in info if ln.startswith("model name")), cpu)
    memory = psutil.virtual_memory().total / 2**30
    system = f"{platform.system()} {platform.release()}, Python {platform.python_version()}"
    return f"{cpu}, {os.cpu_count()} cores, {memory:.0f} GiB RAM, {system}"


def measure(design: str, kind: str, uri: str, watches: int, jobs: int) -> None:
    """One measurement, in this (fresh) process: print its result as JSON."""
    instance = Instance(kind, uri)
    held = instance.held_jobs(min(jobs, watches))
    if design == "engine":
        result, _ = asyncio.run(engine(instance, held, watches))
    elif design == "floor":
        result = bindings_floor(instance, held, watches)
    else:
        result = asyncio.run(naive(instance, held, watches))
    print(json.dumps(asdict(result)), flush=True)


def memory_by_line(kind: str, uri: str, watches: int, jobs: int, top: int = 15) -> None:
    """Where the engine's Python memory per watch goes, once every watch is up:
    tracemalloc's allocations by source line (its own overhead inflates the RSS,
    so this is not a measurement of RSS)."""
    instance = Instance(kind, uri)
    held = instance.held_jobs(min(jobs, watches))
    snapshots: list[tracemalloc.Snapshot] = []
    tracemalloc.start()
    snapshots.append(tracemalloc.take_snapshot())
    snapshot = lambda: snapshots.append(tracemalloc.take_snapshot())  # noqa: E731
    asyncio.run(engine(instance, held, watches, snapshot))
    tracemalloc.stop()
    lines = snapshots[1].compare_to(snapshots[0], "lineno")
    print(f"traced: {sum(line.size_diff for line in lines) / watches:.0f} B per watch")
    for line in lines[:top]:
        per_watch = f"{line.size_diff / watches:7.0f} B {line.count_diff / watches:5.2f} blocks"
        print(f"{per_watch}  {line.traceback}")


def compare_with_wait_event(kind: str, uri: str) -> dict[str, float]:
    instance = Instance(kind, uri)
    reference = wait_event_latency(instance, instance.held_jobs(20))
    _, ours = asyncio.run(engine(instance, instance.held_jobs(20), 20))
    return {
        "wait_event_clean_p50_ms": statistics.median(reference) * 1e3,
        "engine_clean_p50_ms": statistics.median(ours.values()) * 1e3,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000,10000")
    parser.add_argument("--jobs", type=int, default=100, help="held jobs the watches share")
    parser.add_argument("--instances", default="simulated,real")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument(
        "--measure", nargs=3, metavar=("DESIGN", "KIND", "URI"), help=argparse.SUPPRESS
    )
    parser.add_argument(
        "--memory-by-line",
        nargs=2,
        metavar=("KIND", "URI"),
        help="instead: the engine's Python allocations per watch by source line, "
        "for --watches N on a running instance (simulated or real)",
    )
    parser.add_argument("--watches", type=int, default=10000)
    args = parser.parse_args()
    if args.measure:
        measure(*args.measure, watches=args.watches, jobs=args.jobs)
        return
    if args.memory_by_line:
        memory_by_line(*args.memory_by_line, watches=args.watches, jobs=args.jobs)
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    kinds = [k for k in args.instances.split(",") if k != "real" or shutil.which("flux")]
    report: dict[str, object] = {"machine": machine(), "results": [], "latency_vs_wait_event": {}}
    print(f"machine: {report['machine']}", flush=True)
    for kind in kinds:
        with ExitStack() as stack:
            uri = start_instance(stack, kind)
            for n in sizes:
                for design in ("engine", "floor", "naive"):
                    child = subprocess.run(
                        [sys.executable, "-m", "benchmarks.watch_benchmark", "--measure",
                         design, kind, uri, "--watches", str(n), "--jobs", str(args.jobs)],
                        capture_output=True, text=True, check=True,
                    )  # fmt: skip
                    line = child.stdout.strip().splitlines()[-1]
                    report["results"].append(json.loads(line))  # type: ignore[attr-defined]
                    print(line, flush=True)
            if kind == "real":
                comparison = compare_with_wait_event(kind, uri)
                report["latency_vs_wait_event"] = comparison
                print(json.dumps(comparison), flush=True)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump(report, out, indent=1)


if __name__ == "__main__":
    main()
