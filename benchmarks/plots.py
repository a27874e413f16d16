"""The plots of docs/benchmarks.md, drawn from the benchmarks' result files
(``scripts/benchmark-plots``; needs matplotlib). The SVGs are committed: the docs
build draws nothing.

- ``deployment_lag.svg``: the lag from a job's event to the task's end, p50 and
  p95, for the Flux sensor against Airflow's own ``DateTimeSensorAsync``, in the
  last deployment benchmark run with every change;
- ``engine_latency.svg``: event latency p50 and p99 on real Flux for 100 to 10,000
  watches: the engine against flux-core's bindings alone and one thread per watch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("svg")
import matplotlib.pyplot as plt

ROOT = Path(__file__).parents[1]
OUT = ROOT / "docs" / "_static"
DESIGNS = {"flux": "Flux sensor", "datetime": "DateTimeSensorAsync (floor)"}
MODES = {"end": "ends in the triggerer", "trigger": "starts in the triggerer"}
ENGINE = {"engine": "engine", "bindings": "bindings alone", "naive": "naive to_thread"}


def bars(axis: Any, groups: list[str], series: dict[str, list[float]], unit: str) -> None:
    width = 0.8 / len(series)
    for offset, (label, values) in enumerate(series.items()):
        positions = [i + (offset - (len(series) - 1) / 2) * width for i in range(len(groups))]
        axis.bar(positions, values, width, label=label)
    axis.set_xticks(range(len(groups)), groups)
    axis.set_ylabel(unit)
    axis.legend(fontsize="small")


def deployment_lag() -> None:
    runs = json.loads((ROOT / "benchmarks" / "deployment_results.json").read_text())["runs"]
    rows = runs[-1]["results"]
    groups = [MODES[mode] for mode in MODES]
    series = {
        f"{DESIGNS[design]} {stat}": [
            next(r[f"lag_{stat}_s"] for r in rows if r["design"] == design and r["mode"] == mode)
            for mode in MODES
        ]
        for design in DESIGNS
        for stat in ("p50", "p95")
    }
    figure, axis = plt.subplots(figsize=(7, 3.6))
    bars(axis, groups, series, "lag, s")
    axis.set_title(f"Event to task end, {rows[0]['tasks']} sensors released together")
    figure.tight_layout()
    figure.savefig(OUT / "deployment_lag.svg")


def engine_latency() -> None:
    results = json.loads((ROOT / "benchmarks" / "results.json").read_text())["results"]
    real = [r for r in results if r["instance"] == "real"]
    sizes = sorted({r["watches"] for r in real})
    figure, axes = plt.subplots(1, 2, figsize=(8, 3.6), sharey=False)
    for axis, stat in zip(axes, ("p50", "p99"), strict=True):
        series = {
            label: [
                next(r[f"latency_{stat}_ms"] for r in real
                     if r["design"].startswith(key) and r["watches"] == n)
                for n in sizes
            ]
            for key, label in ENGINE.items()
        }  # fmt: skip
        bars(axis, [f"{n:,}" for n in sizes], series, f"latency {stat}, ms (log)")
        axis.set_yscale("log")
        axis.set_xlabel("watches")
    figure.suptitle("Event latency on real Flux, one process")
    figure.tight_layout()
    figure.savefig(OUT / "engine_latency.svg")


def main() -> None:
    OUT.mkdir(exist_ok=True)
    deployment_lag()
    engine_latency()
    print(f"wrote {OUT / 'deployment_lag.svg'} and {OUT / 'engine_latency.svg'}")


if __name__ == "__main__":
    main()
