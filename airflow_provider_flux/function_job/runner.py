"""Runs a ``@task.flux`` function inside its Flux job.

This file is not imported by the provider: it is shipped in the jobspec (RFC 37 files,
as ``flux submit --add-file`` does) and run by the job's own Python on the compute
node, which may not have Airflow or this provider. So it uses the standard library
only, and the syntax of Python 3.8.

Every task of the job runs the function. What it writes to stdout from
``RESULT_MARK`` to the end of a line is for the provider, never for the task log:

- ``value <base64>`` lines, then ``end <bytes> <sha256>``: task 0's return value,
  serialized;
- ``raised <json>``: the function raised (its traceback went to stderr);
- ``error <json>``: the call could not be made or returned (``kind`` says why).
"""

from __future__ import annotations

import base64
import hashlib
import importlib
import io
import json
import os
import sys
import traceback
import types
from typing import Any

RESULT_MARK = "\x1eairflow-flux:"  # = airflow_provider_flux.job.output.RESULT_MARK
CALL_FILE = "airflow_flux_call.json"
FUNCTION_FILE = "airflow_flux_function.py"
FUNCTION_MODULE = "airflow_flux_function"
# Base64 characters per line: a line and its mark fit one pipe write (PIPE_BUF), so
# the job shell reads each whole and never splits it across output events.
VALUE_LINE = 3072
EXIT_RAISED = 1
EXIT_ERROR = 3


def report(kind: str, text: str) -> None:
    sys.stdout.write(f"{RESULT_MARK}{kind} {text}\n")


def fail(kind: str, message: str) -> int:
    report("error", json.dumps({"kind": kind, "message": message}))
    return EXIT_ERROR


def main() -> int:
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(line_buffering=True)  # each print() a line of the log
    here = os.environ.get("FLUX_JOB_TMPDIR") or os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, CALL_FILE), encoding="utf-8") as file:
        call = json.load(file)
    python = f"{sys.executable} (Python {sys.version.split()[0]})"
    try:
        serializer: Any = importlib.import_module(call["serializer"])
    except Exception as err:
        return fail("serializer", f"{python} cannot import {call['serializer']}: {err}")
    try:
        args, kwargs = serializer.loads(base64.b64decode(call["arguments"]))
    except Exception as err:
        return fail("arguments", f"{python} cannot load the arguments: {type(err).__name__}: {err}")
    path = os.path.join(here, FUNCTION_FILE)
    module = types.ModuleType(FUNCTION_MODULE)
    module.__file__ = path
    sys.modules[FUNCTION_MODULE] = module
    rank = int(os.environ.get("FLUX_TASK_RANK", "0"))
    try:
        with open(path, encoding="utf-8") as file:
            exec(compile(file.read(), path, "exec"), module.__dict__)
        value = getattr(module, call["function"])(*args, **kwargs)
    except BaseException as err:  # SystemExit too: the function did not return
        if isinstance(err, SystemExit) and err.code in (None, 0):
            value = None
        else:
            trace = err.__traceback__
            traceback.print_exception(type(err), err, trace.tb_next if trace else None)
            what = {"type": type(err).__qualname__, "message": str(err)[:1000], "rank": rank}
            report("raised", json.dumps(what))
            return EXIT_RAISED
    if rank != 0:
        return 0  # task 0's return value is the task's
    try:
        data = serializer.dumps(value)
    except Exception as err:
        return fail("value", f"{call['serializer']} cannot serialize the return value: {err}")
    if len(data) > call["max_return_bytes"]:
        return fail(
            "too-large",
            f"the return value is {len(data)} bytes serialized; "
            f"max_return_bytes is {call['max_return_bytes']}",
        )
    text = base64.b64encode(data).decode("ascii")
    for start in range(0, len(text), VALUE_LINE):
        report("value", text[start : start + VALUE_LINE])
    report("end", f"{len(data)} {hashlib.sha256(data).hexdigest()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
