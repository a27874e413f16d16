"""Lists of job IDs: parsed from what a DAG author or an upstream XCom gives, and packed
small enough for one row of Airflow's trigger table at 10,000 jobs."""

from __future__ import annotations

import ast
import base64
import json
import re
import zlib
from collections.abc import Iterable, Sequence
from typing import Any

from airflow_provider_flux.job.jobid import parse_jobid

# Marks a packed list (see pack_jobids).
PACKED_PREFIX = "zdelta:"


def parse_jobids(value: Any) -> list[int]:
    """Job IDs from a list or tuple of IDs in any Flux encoding, or from text: a list as
    JSON or as Python prints it (an XCom rendered into a template), or IDs separated by
    commas or white space.

    :raises ValueError: empty, a bad ID (named with its position), or a duplicate.
    """
    if isinstance(value, str):
        text = value.strip()
        if text.startswith(PACKED_PREFIX):
            return unpack_jobids(text)
        if text.startswith(("[", "(")):
            value = _literal_list(text)
        else:
            value = [part for part in re.split(r"[\s,]+", text) if part]
    elif isinstance(value, int) or not isinstance(value, Iterable):
        raise ValueError(f"jobids must be a list of job IDs, not {type(value).__name__}")
    jobids: list[int] = []
    seen: set[int] = set()
    for position, item in enumerate(value):
        try:
            jobid = parse_jobid(item)
        except (TypeError, ValueError) as err:
            raise ValueError(f"jobids[{position}]: {err}") from err
        if jobid in seen:
            raise ValueError(f"jobids[{position}]: job {item!r} is listed twice")
        seen.add(jobid)
        jobids.append(jobid)
    if not jobids:
        raise ValueError("jobids is empty: give at least one job ID")
    return jobids


def _literal_list(text: str) -> Any:
    """A list written as JSON, or as Python prints one (a template renders an XCom
    list with ``str()``: ``['ƒ2', 'ƒ3']``)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError) as err:
        raise ValueError(f"jobids {text[:60]!r} is not a list: {err}") from err
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"jobids {text[:60]!r} is not a list")
    return value


def pack_jobids(jobids: Sequence[int]) -> str:
    """A compact text form: the differences between consecutive IDs as zigzag varints,
    compressed. Jobs submitted together (``flux submit --cc``, ``bulksubmit``) have
    nearby IDs, so 10,000 of them pack into a few kilobytes."""
    out = bytearray()
    previous = 0
    for jobid in jobids:
        delta = jobid - previous
        previous = jobid
        zigzag = delta * 2 if delta >= 0 else -delta * 2 - 1
        while zigzag >= 0x80:
            out.append((zigzag & 0x7F) | 0x80)
            zigzag >>= 7
        out.append(zigzag)
    return PACKED_PREFIX + base64.b64encode(zlib.compress(bytes(out), 9)).decode("ascii")


def unpack_jobids(packed: str) -> list[int]:
    """The list :func:`pack_jobids` packed."""
    try:
        data = zlib.decompress(base64.b64decode(packed[len(PACKED_PREFIX) :], validate=True))
    except (ValueError, zlib.error) as err:
        raise ValueError(f"not a packed job ID list: {err}") from err
    jobids: list[int] = []
    previous = zigzag = shift = 0
    for byte in data:
        zigzag |= (byte & 0x7F) << shift
        if byte & 0x80:
            shift += 7
            continue
        delta = zigzag // 2 if zigzag % 2 == 0 else -(zigzag + 1) // 2
        previous += delta
        jobids.append(previous)
        zigzag = shift = 0
    if shift:
        raise ValueError("not a packed job ID list: it ends inside a number")
    return jobids
