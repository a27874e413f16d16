"""What a ``@task.flux`` job's output says of its call: the return value (task 0's),
or the exception the function raised, or why the call could not be made.

The runner writes it to stdout after :data:`~airflow_provider_flux.job.output.RESULT_MARK`
(see :mod:`~airflow_provider_flux.function_job.runner`); the lines arrive here as
``(rank, text from the mark on)``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from airflow_provider_flux.job.output import RESULT_MARK


@dataclass(frozen=True)
class CallResult:
    """How the call ended, as the job reported it.

    :ivar value: task 0's return value, serialized, whole and checked.
    :ivar raised: what a task's function raised (``type``, ``message``, ``rank``).
    :ivar error: why the call could not be made or returned (``kind``, ``message``).
    :ivar cut: part of the value came but not all (the output was cut short).
    """

    value: bytes | None = None
    raised: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    cut: bool = False


def parse_result(lines: Iterable[tuple[str, str]]) -> CallResult:
    """The result the marked lines report (``(rank, line)``, in the job's order)."""
    chunks: list[str] = []
    value = raised = error = None
    for rank, line in lines:
        if not line.startswith(RESULT_MARK):
            continue
        kind, _, text = line[len(RESULT_MARK) :].partition(" ")
        if kind == "value" and rank == "0":
            chunks.append(text)
        elif kind == "end" and rank == "0":
            value = _checked("".join(chunks), text)
        elif kind == "raised" and raised is None:
            raised = _json(text) or {"type": "?", "message": text}
        elif kind == "error" and error is None:
            error = _json(text) or {"kind": "?", "message": text}
    return CallResult(value, raised, error, cut=bool(chunks) and value is None)


def _checked(text: str, end: str) -> bytes | None:
    size, _, digest = end.partition(" ")
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    if str(len(data)) != size or hashlib.sha256(data).hexdigest() != digest:
        return None
    return data


def _json(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
