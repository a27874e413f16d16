"""Lists of job IDs: parsed from what a DAG author or an upstream XCom gives, and packed
small enough for one row of Airflow's trigger table at 10,000 jobs."""

from __future__ import annotations

import ast
import base64
import json
import re
import zlib
from collections.abc import Iterable, Sequence, Sized
from typing import Any

from airflow_provider_flux.job.jobid import parse_jobid
from airflow_provider_flux.job.limits import MAX_JOBS, MAX_NAME_LENGTH, shorten

# Marks a packed list (see pack_jobids).
PACKED_PREFIX = "zdelta:"
# The most bytes a packed ID takes (a 64-bit difference, zigzagged: 65 bits, 7 a byte).
PACKED_ID_BYTES = 10


def parse_jobids(value: Any, max_jobs: int = MAX_JOBS) -> list[int]:
    """Job IDs from a list or tuple of IDs in any Flux encoding, or from text: a list as
    JSON or as Python prints it (an XCom rendered into a template), IDs separated by
    commas or white space, or a packed list (:func:`pack_jobids`).

    :param max_jobs: the most IDs accepted; more are refused before they are read
        (text longer than that many IDs could be, a packed list that unpacks to more).
    :raises ValueError: empty, more than ``max_jobs``, a bad ID (named with its
        position), or a duplicate.
    """
    if isinstance(value, str):
        text = value.strip()
        if len(text) > max_jobs * (MAX_NAME_LENGTH + 2):
            raise ValueError(f"jobids is {len(text)} characters long: more than {max_jobs} job IDs")
        if text.startswith(PACKED_PREFIX):
            value = unpack_jobids(text, max_jobs)
        elif text.startswith(("[", "(")):
            value = _literal_list(text)
        else:
            value = [part for part in re.split(r"[\s,]+", text) if part]
    elif isinstance(value, int) or not isinstance(value, Iterable):
        raise ValueError(f"jobids must be a list of job IDs, not {type(value).__name__}")
    if isinstance(value, Sized) and len(value) > max_jobs:
        raise ValueError(f"jobids lists {len(value)} jobs: more than the {max_jobs} allowed")
    jobids: list[int] = []
    seen: set[int] = set()
    for position, item in enumerate(value):
        if position >= max_jobs:
            raise ValueError(f"jobids lists more than the {max_jobs} jobs allowed")
        try:
            jobid = parse_jobid(item)
        except (TypeError, ValueError) as err:
            raise ValueError(f"jobids[{position}]: {err}") from err
        if jobid in seen:
            raise ValueError(f"jobids[{position}]: job {shorten(repr(item))} is listed twice")
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
        raise ValueError(f"jobids {shorten(text)!r} is not a list: {err}") from err
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"jobids {shorten(text)!r} is not a list")
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


def unpack_jobids(packed: str, max_jobs: int = MAX_JOBS) -> list[int]:
    """The list :func:`pack_jobids` packed; one that unpacks to more than ``max_jobs``
    IDs is refused before it is unpacked whole (its bytes are counted as they come)."""
    most = max_jobs * PACKED_ID_BYTES
    try:
        inflate = zlib.decompressobj()
        data = inflate.decompress(
            base64.b64decode(packed[len(PACKED_PREFIX) :], validate=True), most
        )
        complete = inflate.eof and not inflate.unconsumed_tail
    except (ValueError, zlib.error) as err:
        raise ValueError(f"not a packed job ID list: {err}") from err
    if not complete:
        if len(data) >= most:
            raise ValueError(f"a packed job ID list of more than the {max_jobs} jobs allowed")
        raise ValueError("not a packed job ID list: its data ends early")
    jobids: list[int] = []
    previous = zigzag = shift = 0
    for byte in data:
        zigzag |= (byte & 0x7F) << shift
        if byte & 0x80:
            shift += 7
            if shift >= PACKED_ID_BYTES * 7:
                raise ValueError("not a packed job ID list: a number runs past 64 bits")
            continue
        delta = zigzag // 2 if zigzag % 2 == 0 else -(zigzag + 1) // 2
        previous += delta
        jobids.append(previous)
        if len(jobids) > max_jobs:
            raise ValueError(f"a packed job ID list of more than the {max_jobs} jobs allowed")
        zigzag = shift = 0
    if shift:
        raise ValueError("not a packed job ID list: it ends inside a number")
    return jobids
