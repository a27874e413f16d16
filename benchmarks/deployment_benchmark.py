"""Sensors in a real Airflow deployment: what a user waits for, and what it costs.

PostgreSQL, then Airflow's scheduler, dag-processor, triggerer and api-server as
processes (LocalExecutor, parallelism 8), against a real Flux instance (the
simulator when ``flux`` is not on PATH, said in the results). For N = 100 and 300
(``--sizes``), N sensor tasks each wait for one job's ``clean`` (FluxJobEventSensor),
and, as the floor in the same run, N ``DateTimeSensorAsync`` tasks wait for one
moment. Each design runs three ways: ``worker`` (the task starts in a worker,
defers, and resumes in a worker to end: the only way before this release), ``end``
(it starts in a worker and ends in the triggerer, ``end_from_trigger``: the
sensor's default now) and ``trigger`` (``start_from_trigger`` too: no worker).

The jobs are held behind one gate job (``--dependency=afterany``), so releasing the
gate releases them all at once. Measured, per run:

- **worker starts**: task starts in a worker, counted in the task logs (each start
  writes a "Pre Execute" group);
- **to all deferred**: from the run's trigger to every task deferred;
- **triggerer RSS/task**: the triggerer's memory (all its processes) added per
  deferred task, once every trigger runs (just before the release);
- **lag**: from the event (the job's ``clean`` in Flux; the floor's moment) to the
  task's success in Airflow (its ``end_date``): p50, p95, max;
- **loop stall**: the longest "Triggerer's async thread was blocked" the triggerer
  logged from the release to the end of the run (it logs stalls over 0.2 s).

Two more studies (``--study``):

- ``memory``: the triggerer's memory per task as a slope. Each size runs on a fresh
  triggerer (restarted before the run), whose memory is read once every trigger
  runs; the slope between two sizes leaves out what a triggerer loads once
  (imports, the Flux bindings, the connection), which the default study's
  difference on a warm triggerer counts against the tasks of the first run.
- ``triggerers``: N sensors with one triggerer, then with two (a second started
  beside the first): the lag, and each triggerer's load (the triggers it ran, from
  their log files, and its CPU seconds over the run).

Run: ``scripts/benchmark-deployment`` (options: ``--study``, ``--sizes``,
``--modes``, ``--designs``). Results: ``benchmarks/deployment_results.json`` (the
other studies: ``deployment_<study>_results.json``), and a table to paste into
``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psutil

from airflow_provider_flux.hooks.flux import FluxHook
from airflow_provider_flux.job.jobid import parse_jobid
from airflow_provider_flux.testing import LocalFluxInstance, SimulatedFlux
from airflow_provider_flux.testing.dag_test import use_flux_connection
from airflow_provider_flux.testing.deployment import (
    AirflowDeployment,
    PostgresServer,
    wait_until,
    worker_starts,
)
from benchmarks.watch_benchmark import machine

DAGS = Path(__file__).parent / "dags"
RESULTS = Path(__file__).parent / "deployment_results.json"
CONN_ID = "flux_bench"
# A first small run of each design loads what a triggerer loads once (imports, the
# Flux connection): not measured.
WARM_UP = 5
SENSORS = {"flux": "FluxJobEventSensor", "datetime": "DateTimeSensorAsync (floor)"}
STALL = re.compile(r"async thread was blocked for ([0-9.]+) seconds")


@dataclass
class Result:
    design: str
    mode: str
    tasks: int
    worker_starts: int
    to_all_deferred_s: float
    triggerer_rss_kb_per_task: float
    lag_p50_s: float
    lag_p95_s: float
    lag_max_s: float
    longest_stall_s: float
    stalls: int
    note: str = ""
    triggerer_rss_mb: float = 0.0
    triggers_per_triggerer: list[int] = field(default_factory=list)
    cpu_s_per_triggerer: list[float] = field(default_factory=list)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def parse_time(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class Jobs:
    """N jobs held behind one gate, on the real instance or the simulator."""

    def __init__(self, flux: LocalFluxInstance | None, sim: SimulatedFlux | None) -> None:
        self.flux, self.sim = flux, sim

    def submit(self, count: int) -> tuple[Any, list[int]]:
        if self.sim is not None:
            return None, [self.sim.submit("success", hold_before="alloc") for _ in range(count)]
        assert self.flux is not None
        gate = self.flux.run("submit", "--urgency=hold", "true").stdout.strip()
        out = self.flux.run(
            "submit", f"--cc=1-{count}", f"--dependency=afterany:{gate}", "true"
        ).stdout
        return gate, [parse_jobid(line) for line in out.split()]

    def watchers(self) -> int:
        """Eventlog watches open on the broker."""
        if self.sim is not None:
            return int(self.sim.stats()["watchers"])
        assert self.flux is not None
        return int(json.loads(self.flux.run("module", "stats", "job-info").stdout)["watchers"])

    def release(self, gate: Any, jobids: list[int]) -> None:
        if self.sim is not None:
            for jobid in jobids:
                self.sim.release(jobid)
            return
        assert self.flux is not None
        self.flux.run("job", "urgency", gate, "default")


def triggerers(airflow: AirflowDeployment) -> list[str]:
    """The names of the triggerers running (``triggerer``, ``triggerer-2``)."""
    return sorted(name for name in airflow.processes if name.startswith("triggerer"))


def processes_of(airflow: AirflowDeployment, name: str) -> list[psutil.Process]:
    process = psutil.Process(airflow.processes[name].pid)
    return [process, *process.children(recursive=True)]


def triggerer_rss(airflow: AirflowDeployment) -> int:
    """The memory of every triggerer running, with its children."""
    return sum(
        p.memory_info().rss for name in triggerers(airflow) for p in processes_of(airflow, name)
    )


def triggerer_cpu(airflow: AirflowDeployment) -> list[float]:
    """Each triggerer's CPU seconds so far, with its children."""
    cpu = []
    for name in triggerers(airflow):
        times = [p.cpu_times() for p in processes_of(airflow, name)]
        cpu.append(sum(t.user + t.system for t in times))
    return cpu


def triggers_per_triggerer(airflow: AirflowDeployment, dag_id: str, run_id: str) -> list[int]:
    """How many of the run's triggers each triggerer ran, most first: each writes its
    part of a task's log to ``attempt=1.log.trigger.<triggerer job ID>.log``."""
    run = Path(airflow.home, "logs", f"dag_id={dag_id}", f"run_id={run_id}")
    ran = collections.Counter(
        path.name.split(".")[-2] for path in run.glob("task_id=*/attempt=1.log.trigger.*.log")
    )
    return sorted(ran.values(), reverse=True)


def fresh_triggerers(airflow: AirflowDeployment, count: int) -> None:
    """Stop every triggerer, start ``count`` new ones, and wait until each runs its
    trigger loop (its trigger runner process is up)."""
    for name in triggerers(airflow):
        airflow.kill(name, signal.SIGTERM)
    for index in range(count):
        name = "triggerer" if index == 0 else f"triggerer-{index + 1}"
        airflow.start_component("triggerer", name=name)
    for name in triggerers(airflow):
        wait_until(
            lambda name=name: len(processes_of(airflow, name)) > 1 or None, 120,
            f"{name} to run its trigger loop", 0.5,
        )  # fmt: skip


def measure(
    airflow: AirflowDeployment,
    jobs: Jobs,
    design: str,
    mode: str,
    tasks: int,
    lead_s: float,
    profile: Path | None = None,
) -> Result:
    dag_id = f"bench_{design}_{tasks}_{mode}"
    airflow.wait_for_dag(dag_id, timeout=600)
    rss_before = triggerer_rss(airflow)
    log_offsets = {name: len(airflow.component_log(name)) for name in triggerers(airflow)}
    note = ""
    if design == "flux":
        gate, jobids = jobs.submit(tasks)
        conf: dict[str, Any] = {"jobids": jobids}
    else:
        release_at = datetime.now(timezone.utc) + timedelta(seconds=lead_s)
        conf = {"release_at": release_at.isoformat()}
    started = time.monotonic()
    run_id = airflow.trigger(dag_id, conf)
    task_ids = [f"wait_{index}" for index in range(tasks)]
    airflow.wait_for_deferred(
        dag_id, run_id, [(task_id, -1) for task_id in task_ids], timeout=1800, interval=1.0
    )
    to_deferred = time.monotonic() - started
    if design == "flux":  # release once every trigger watches its job
        wait_until(lambda: jobs.watchers() >= tasks or None, 600, "every watch open", 0.5)
    else:  # every trigger runs by then
        time.sleep(max(0.0, release_at.timestamp() - time.time() - 2))
    rss_after = triggerer_rss(airflow)
    rss_per_task = (rss_after - rss_before) / tasks / 1024
    cpu_before = triggerer_cpu(airflow)
    profiler = start_profiler(airflow, profile, dag_id) if profile else None
    if design == "flux":
        jobs.release(gate, jobids)
    elif datetime.now(timezone.utc) > release_at:
        note = "not all deferred before the moment"
    state = airflow.wait_for_run(dag_id, run_id, timeout=1800)
    cpu = [after - before for before, after in zip(cpu_before, triggerer_cpu(airflow), strict=True)]
    if profiler is not None:
        profiler.send_signal(signal.SIGINT)
        profiler.wait(timeout=60)
    if state != "success":
        raise RuntimeError(f"{dag_id}: run {state}")
    ends = {
        ti["task_id"]: parse_time(ti["end_date"]) for ti in airflow.task_instances(dag_id, run_id)
    }
    if design == "flux":
        hook = FluxHook(CONN_ID)
        events = {}
        for index, jobid in enumerate(jobids):
            eventlog, _ = hook.read_eventlog(jobid)
            events[f"wait_{index}"] = next(e.timestamp for e in eventlog if e.name == "clean")
    else:
        events = dict.fromkeys(ends, release_at.timestamp())
    lags = [ends[task_id] - events[task_id] for task_id in events]
    starts = sum(worker_starts(airflow.task_log(dag_id, run_id, task_id)) for task_id in ends)
    stalls = [
        float(s)
        for name, offset in log_offsets.items()
        for s in STALL.findall(airflow.component_log(name)[offset:])
    ]
    return Result(
        design=design, mode=mode, tasks=tasks, worker_starts=starts,
        to_all_deferred_s=round(to_deferred, 1),
        triggerer_rss_kb_per_task=round(rss_per_task, 1),
        lag_p50_s=round(statistics.median(lags), 2),
        lag_p95_s=round(percentile(lags, 0.95), 2), lag_max_s=round(max(lags), 2),
        longest_stall_s=round(max(stalls, default=0.0), 2), stalls=len(stalls), note=note,
        triggerer_rss_mb=round(rss_after / 2**20, 1),
        triggers_per_triggerer=triggers_per_triggerer(airflow, dag_id, run_id),
        cpu_s_per_triggerer=[round(seconds, 1) for seconds in cpu],
    )  # fmt: skip


def trigger_runner_pid(airflow: AirflowDeployment) -> int:
    """The triggerer's child process that runs the triggers' event loop."""
    children = processes_of(airflow, "triggerer")[1:]
    runners = [p for p in children if "python" in p.name() or "airflow" in " ".join(p.cmdline())]
    return (runners or children)[-1].pid


def start_profiler(
    airflow: AirflowDeployment, folder: Path, dag_id: str
) -> subprocess.Popen[bytes]:
    """py-spy, sampling the trigger runner from the release to the run's end (its
    collapsed stacks go to ``folder/dag_id.txt``; summarize them with ``--summarize``)."""
    folder.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        ["py-spy", "record", "--pid", str(trigger_runner_pid(airflow)), "--format", "raw",
         "--rate", "200", "--output", str(folder / f"{dag_id}.txt")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def summarize(path: Path, top: int = 20) -> str:
    """Where the trigger runner's event-loop thread spent its samples: the share with
    a frame in each group of modules, and the leaf functions that took the most."""
    groups = {"airflow_provider_flux": 0, "flux": 0, "airflow": 0, "structlog": 0}
    leaves: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if stack.startswith("Thread._bootstrap"):
            continue  # not the event loop's thread (thread pools, the log reader)
        count = int(count_text)
        total += count
        frames = stack.split(";")
        for group in groups:
            if any(f"({group}/" in frame for frame in frames):
                groups[group] += count
        leaves[frames[-1]] = leaves.get(frames[-1], 0) + count
    lines = [f"{total} samples of the event loop's thread"]
    for group, count in groups.items():
        lines.append(f"  {count / total:6.1%}  with a frame in {group}/")
    lines.append("  top leaf functions:")
    for frame, count in sorted(leaves.items(), key=lambda item: -item[1])[:top]:
        lines.append(f"  {count / total:6.1%}  {frame}")
    return "\n".join(lines)


def table(results: list[Result]) -> str:
    lines = [
        "| sensor | start/end in | N | worker starts | to all deferred | triggerer RSS/task "
        "| lag p50 / p95 / max | longest loop stall (count) |",
        "|---|---|---:|---:|---:|---:|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {SENSORS[r.design]} | {r.mode} | {r.tasks} | {r.worker_starts} "
            f"| {r.to_all_deferred_s} s | {r.triggerer_rss_kb_per_task} KB "
            f"| {r.lag_p50_s} / {r.lag_p95_s} / {r.lag_max_s} s "
            f"| {r.longest_stall_s} s ({r.stalls}) |" + (f" {r.note}" if r.note else "")
        )
    return "\n".join(lines)


def memory_table(results: list[Result]) -> str:
    """Each design's memory per task, as the slope between its two sizes (each on a
    fresh triggerer), and what the line puts at zero tasks (loaded once)."""
    lines = [
        "| sensor | N | triggerer RSS | per task (slope) | at zero tasks |",
        "|---|---:|---:|---:|---:|",
    ]
    for design in dict.fromkeys(r.design for r in results):
        runs = sorted((r for r in results if r.design == design), key=lambda r: r.tasks)
        small, large = runs[0], runs[-1]
        slope_mb = (large.triggerer_rss_mb - small.triggerer_rss_mb) / (large.tasks - small.tasks)
        base = small.triggerer_rss_mb - slope_mb * small.tasks
        for r in runs:
            lines.append(f"| {SENSORS[design]} | {r.tasks} | {r.triggerer_rss_mb} MB | "
                         f"{slope_mb * 1024:.1f} KB | {base:.1f} MB |")  # fmt: skip
    return "\n".join(lines)


def triggerers_table(results: list[Result]) -> str:
    lines = [
        "| sensor | triggerers | N | lag p50 / p95 / max | triggers per triggerer "
        "| CPU s per triggerer | longest loop stall (count) |",
        "|---|---:|---:|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {SENSORS[r.design]} | {len(r.cpu_s_per_triggerer)} | {r.tasks} "
            f"| {r.lag_p50_s} / {r.lag_p95_s} / {r.lag_max_s} s "
            f"| {' + '.join(map(str, r.triggers_per_triggerer))} "
            f"| {' + '.join(map(str, r.cpu_s_per_triggerer))} "
            f"| {r.longest_stall_s} s ({r.stalls}) |"
        )
    return "\n".join(lines)


def run_study(
    study: str, airflow: AirflowDeployment, jobs: Jobs, args: argparse.Namespace
) -> tuple[list[Result], str]:
    """The study's results, and their table."""
    sizes = [int(size) for size in args.sizes.split(",")]
    designs = args.designs.split(",")
    results: list[Result] = []

    def run(design: str, mode: str, tasks: int, lead: float) -> Result:
        result = measure(airflow, jobs, design, mode, tasks, lead, args.profile)
        print(json.dumps(asdict(result)), flush=True)
        return result

    if study == "memory":
        for tasks in sizes:
            lead = 30.0
            for design in designs:
                fresh_triggerers(airflow, 1)
                result = run(design, "end", tasks, lead)
                lead = result.to_all_deferred_s * 1.5 + 20
                results.append(result)
        return results, memory_table(results)
    if study == "triggerers":
        for count in (1, 2):
            fresh_triggerers(airflow, count)
            for design in designs:  # imports and connections, not measured
                measure(airflow, jobs, design, "end", WARM_UP, 5.0)
            lead = 30.0
            for design in designs:
                result = run(design, "end", sizes[-1], lead)
                lead = result.to_all_deferred_s * 1.5 + 20
                results.append(result)
        return results, triggerers_table(results)
    for design in designs:  # imports and connections, not measured
        measure(airflow, jobs, design, "trigger", WARM_UP, 5.0)
    for tasks in sizes:
        for mode in args.modes.split(","):
            lead = 30.0
            for design in designs:
                result = run(design, mode, tasks, lead)
                # The floor's moment comes after its tasks have deferred.
                lead = result.to_all_deferred_s * 1.5 + 20
                results.append(result)
    return results, table(results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--study", choices=("designs", "memory", "triggerers"), default="designs")
    parser.add_argument("--sizes", default="100,300")
    parser.add_argument("--modes", default="worker,end,trigger")
    parser.add_argument("--designs", default="flux,datetime")
    parser.add_argument("--profile", type=Path, help="py-spy the trigger runner into this folder")
    parser.add_argument("--summarize", type=Path, help="summarize one py-spy profile, and exit")
    args = parser.parse_args()
    if args.summarize:
        print(summarize(args.summarize))
        return
    sizes = [int(size) for size in args.sizes.split(",")]
    with ExitStack() as stack:
        if shutil.which("flux"):
            flux: LocalFluxInstance | None = stack.enter_context(LocalFluxInstance())
            sim = None
            uri, instance = flux.uri, f"real Flux {flux.version()}"  # type: ignore[union-attr]
        else:
            flux, sim = None, stack.enter_context(SimulatedFlux())
            uri, instance = sim.uri, "simulated Flux (flux is not on PATH)"
        use_flux_connection(uri, CONN_ID)
        database = stack.enter_context(PostgresServer())
        airflow = stack.enter_context(
            AirflowDeployment(
                DAGS, database.url, parallelism=8,
                home=tempfile.mkdtemp(prefix="airflow-bench-"),
                connections={CONN_ID: {"conn_type": "flux", "host": uri}},
                env={"FLUX_BENCH_SIZES": ",".join(map(str, [WARM_UP, *sizes]))},
            )
        )  # fmt: skip
        jobs = Jobs(flux, sim)
        print(f"# {machine()}; {instance}; Airflow {airflow.airflow('version').strip()}")
        results, summary = run_study(args.study, airflow, jobs, args)
    payload = {
        "machine": machine(), "instance": instance, "study": args.study,
        "results": [asdict(r) for r in results],
    }  # fmt: skip
    path = (
        RESULTS
        if args.study == "designs"
        else RESULTS.with_name(f"deployment_{args.study}_results.json")
    )
    path.write_text(json.dumps(payload, indent=2) + "\n")
    print(summary)


if __name__ == "__main__":
    main()
