"""Build RFC 25 (version 1) jobspecs in pure Python, as ``JobspecV1.from_command`` does.

Workers without flux-core's bindings can then build and validate a job request,
and the simulated instance gets the same jobspec real Flux would.
"""

from __future__ import annotations

import json
import math
import shlex
import stat
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

import yaml

from airflow_provider_flux.job.limits import MAX_JOBS, MAX_JOBSPEC_BYTES, shorten


def _positive(name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, not {value!r}")
    return value


def duration_seconds(duration: float | timedelta | str | None) -> float:
    """A time limit in seconds: a number, a timedelta, or Flux Standard Duration (``2h``)."""
    if duration is None or duration == "":
        return 0.0
    if isinstance(duration, timedelta):
        seconds = duration.total_seconds()
    elif isinstance(duration, str):
        text = duration.strip()
        units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
        unit = next((u for u in ("ms", "s", "m", "h", "d") if text.endswith(u)), "")
        try:
            seconds = float(text[: len(text) - len(unit)]) * units.get(unit, 1)
        except ValueError:
            raise ValueError(f"invalid Flux duration {duration!r}: use e.g. 30s, 5m, 2h") from None
    else:
        seconds = float(duration)
    if seconds < 0 or math.isnan(seconds) or math.isinf(seconds):
        raise ValueError(f"duration must be a finite number of seconds >= 0, not {duration!r}")
    return seconds


def set_attribute(jobspec: dict[str, Any], dotted_key: str, value: Any) -> None:
    """``flux submit --setattr``: set ``attributes.KEY`` (``system.`` prefix optional)."""
    keys = dotted_key.split(".")
    if keys[0] not in ("system", "user"):
        keys.insert(0, "system")
    node = jobspec.setdefault("attributes", {})
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    node[keys[-1]] = value


def jobspec_from_command(
    command: Sequence[str] | str,
    *,
    num_tasks: int = 1,
    cores_per_task: int = 1,
    gpus_per_task: int | None = None,
    num_nodes: int | None = None,
    exclusive: bool = False,
    duration: float | timedelta | str | None = None,
    environment: Mapping[str, str] | None = None,
    cwd: str | None = None,
    name: str | None = None,
    queue: str | None = None,
    attributes: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The minimal legal V1 jobspec for ``command`` (a list, or a string split like a shell).

    ``environment`` is the job's whole environment (default: empty, so a worker's
    environment and secrets do not leak into jobs). ``attributes`` are dotted keys,
    as ``flux submit --setattr`` takes them.
    """
    argv = shlex.split(command) if isinstance(command, str) else [str(arg) for arg in command]
    if not argv or not argv[0]:
        raise ValueError("command must not be empty")
    _positive("num_tasks", num_tasks)
    _positive("cores_per_task", cores_per_task)
    children: list[dict[str, Any]] = [{"type": "core", "count": cores_per_task}]
    if gpus_per_task:
        children.append({"type": "gpu", "count": _positive("gpus_per_task", gpus_per_task)})
    count: dict[str, int] = {"per_slot": 1}
    if num_nodes is None:
        if exclusive:
            raise ValueError("exclusive can only be set with num_nodes")
        resource: dict[str, Any] = {
            "type": "slot", "count": num_tasks, "label": "task", "with": children,
        }  # fmt: skip
    else:
        _positive("num_nodes", num_nodes)
        if num_nodes > num_tasks:
            raise ValueError("num_nodes must not be greater than num_tasks")
        if num_tasks % num_nodes:
            count = {"total": num_tasks}
        slot = {
            "type": "slot", "count": math.ceil(num_tasks / num_nodes), "label": "task",
            "with": children,
        }  # fmt: skip
        resource = {"type": "node", "count": num_nodes, "with": [slot]}
        if exclusive:
            resource["exclusive"] = True
    jobspec: dict[str, Any] = {
        "version": 1,
        "resources": [resource],
        "tasks": [{"command": argv, "slot": "task", "count": count}],
        "attributes": {"system": {"duration": duration_seconds(duration)}},
    }
    set_attribute(jobspec, "system.environment", dict(environment or {}))
    if cwd:
        set_attribute(jobspec, "system.cwd", cwd)
    if name:
        set_attribute(jobspec, "system.job.name", name)
    if queue:
        set_attribute(jobspec, "system.queue", queue)
    for key, value in (attributes or {}).items():
        set_attribute(jobspec, key, value)
    return jobspec


def jobspec_from_batch_script(
    script: str,
    *,
    args: Sequence[str] = (),
    num_slots: int = 1,
    cores_per_slot: int = 1,
    gpus_per_slot: int | None = None,
    num_nodes: int | None = None,
    exclusive: bool = False,
    **options: Any,
) -> dict[str, Any]:
    """A ``flux batch`` job: a nested Flux instance that runs ``script`` (which must
    start with ``#!``), as ``JobspecV1.from_batch_command`` builds it. ``options`` are
    those of :func:`jobspec_from_command`."""
    if not script.startswith("#!"):
        raise ValueError("a batch script must start with '#!'")
    jobspec = jobspec_from_command(
        ["flux", "broker", "{{tmpdir}}/script", *args],
        num_tasks=num_slots,
        cores_per_task=cores_per_slot,
        gpus_per_task=gpus_per_slot,
        num_nodes=num_nodes,
        exclusive=exclusive,
        **options,
    )
    for key, value in (("per-resource.type", "node"), ("mpi", "none"), ("exit-timeout", "none")):
        set_attribute(jobspec, f"system.shell.options.{key}", value)
    set_attribute(jobspec, "system.files", {
        "script": {"mode": 0o700 | stat.S_IFREG, "data": script, "encoding": "utf-8"},
    })  # fmt: skip
    return jobspec


def add_dependencies(jobspec: dict[str, Any], after_ok: Sequence[int]) -> None:
    """Start only after these jobs complete successfully (RFC 26 ``afterok``)."""
    system = jobspec.setdefault("attributes", {}).setdefault("system", {})
    system.setdefault("dependencies", []).extend(
        {"scheme": "afterok", "value": str(jobid)} for jobid in after_ok
    )


def array_indices(array: int | str, max_jobs: int = MAX_JOBS) -> list[int]:
    """The indices of a job array: a count N (0 to N-1, as AWS Batch and Kubernetes
    number them), or a Flux idset as ``flux submit --cc`` takes (``1-100``,
    ``0,2,4-7``, ``[1-3]``), in increasing order.

    :param max_jobs: the most indices accepted; the size of an idset is counted from
        its ranges before it is listed, and a larger one refused.
    """
    if isinstance(array, bool):
        raise ValueError(f"array must be a count or an idset such as '1-100', not {array!r}")
    if isinstance(array, int):
        count = _positive("array", array)
        if count > max_jobs:
            raise ValueError(f"array={count}: more than the {max_jobs} jobs a task may submit")
        return list(range(count))
    if not isinstance(array, str):
        raise ValueError(
            f"array must be a count or an idset such as '1-100', not {shorten(repr(array))}"
        )
    text = array.strip()
    if text.isdigit():
        raise ValueError(
            f"array {shorten(array)!r} is text: as an idset it is the one index {shorten(text)}. "
            "Give a count as an int (a templated count needs render_template_as_native_obj=True), "
            f"or an idset such as '0-{max(int(text) - 1, 0)}'"
        )
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    ranges: list[tuple[int, int]] = []
    for part in text.split(","):
        low, dash, high = part.strip().partition("-")
        if not low.isdigit() or (dash and not high.isdigit()):
            raise ValueError(
                f"array {shorten(array)!r} is not an idset such as '1-100' or '0,2,4-7'"
            )
        first, last = int(low), int(high or low)
        if last < first:
            raise ValueError(
                f"array {shorten(array)!r}: the range {shorten(part.strip())!r} runs backwards"
            )
        ranges.append((first, last))
    # Counted before listed: "0-999999999" is a short text and a billion indices.
    most = sum(last - first + 1 for first, last in ranges)
    if most > max_jobs:
        joined = _merged(ranges)
        count = sum(last - first + 1 for first, last in joined)
        if count > max_jobs:
            raise ValueError(
                f"array {shorten(array)!r} has {count} indices: more than the {max_jobs} "
                "jobs a task may submit"
            )
        ranges = joined
    return sorted({index for first, last in ranges for index in range(first, last + 1)})


def _merged(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Overlapping or adjacent ranges joined (so that an index counts once)."""
    joined: list[tuple[int, int]] = []
    for first, last in sorted(ranges):
        if joined and first <= joined[-1][1] + 1:
            joined[-1] = (joined[-1][0], max(joined[-1][1], last))
        else:
            joined.append((first, last))
    return joined


def substitute_index(value: str, index: int) -> str:
    """``{cc}`` replaced by a job's index in its array, as ``flux submit --cc`` does."""
    return value.replace("{cc}", str(index))


def job_name(jobspec: Mapping[str, Any]) -> str | None:
    """A job's name as job-list and ``flux jobs`` give it: ``attributes.system.job.name``,
    else the basename of its first task's command."""
    system = jobspec.get("attributes", {}).get("system", {})
    name = system.get("job", {}).get("name")
    if name is not None:
        return str(name)
    tasks = jobspec.get("tasks") or []
    if tasks and tasks[0].get("command"):
        return str(tasks[0]["command"][0]).rsplit("/", 1)[-1]
    return None


def job_queue(jobspec: Mapping[str, Any]) -> str | None:
    """The queue a job was submitted to (``attributes.system.queue``), if it names one."""
    queue = jobspec.get("attributes", {}).get("system", {}).get("queue")
    return None if queue is None else str(queue)


def parse_jobspec(
    jobspec: Mapping[str, Any] | str, max_bytes: int = MAX_JOBSPEC_BYTES
) -> dict[str, Any]:
    """A jobspec given as a mapping, or as its JSON or YAML text, as a JSON-clean dict
    of its own (a deep copy).

    YAML is read without aliases (an alias repeats a node wherever it is used, so a
    few hundred characters can stand for gigabytes) and must hold only what JSON
    holds (no dates, binary or sets).

    :raises ValueError: neither JSON nor YAML, an alias, a value JSON has no type for,
        more than ``max_bytes``, or not a mapping.
    """
    if isinstance(jobspec, str):
        if len(jobspec.encode()) > max_bytes:
            raise ValueError(
                f"jobspec is {len(jobspec.encode())} bytes long: more than the {max_bytes} allowed"
            )
        try:
            parsed = yaml.load(jobspec, Loader=_JobspecLoader)  # JSON is YAML too
        except yaml.YAMLError as err:
            raise ValueError(f"jobspec is neither JSON nor YAML: {err}") from err
    else:
        parsed = jobspec
    if not isinstance(parsed, Mapping):
        raise ValueError(f"jobspec must be a mapping, not {type(parsed).__name__}")
    return json_clean(parsed, max_bytes)


def json_clean(jobspec: Mapping[str, Any], max_bytes: int = MAX_JOBSPEC_BYTES) -> dict[str, Any]:
    """``jobspec`` through JSON and back: the copy Flux will get, checked on the way.

    :raises ValueError: a value JSON has no type for (a date, bytes, NaN), or more than
        ``max_bytes`` as JSON.
    """
    try:
        text = json.dumps(jobspec, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as err:
        raise ValueError(f"jobspec holds a value JSON has no type for: {err}") from err
    if len(text.encode()) > max_bytes:
        raise ValueError(
            f"jobspec is {len(text.encode())} bytes as JSON: more than the {max_bytes} allowed"
        )
    clean: dict[str, Any] = json.loads(text)
    return clean


class _JobspecLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing aliases (each is a copy once the jobspec is
    serialized: ten of ten of ten ... is a bomb)."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            line = self.peek_event().start_mark.line + 1  # type: ignore[no-untyped-call]
            raise ValueError(
                f"jobspec: YAML aliases (*name) are not allowed (line {line}): each is a "
                "copy of what it names"
            )
        return super().compose_node(parent, index)
