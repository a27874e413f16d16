"""What a ``@task.flux`` job carries: the runner, the function's source, and the call
(its name, serializer and arguments), as jobspec files (RFC 37, as ``flux submit
--add-file`` makes them), which the job shell writes into ``$FLUX_JOB_TMPDIR`` on
every node before the tasks start. Nothing is assumed of a shared filesystem."""

from __future__ import annotations

import base64
import importlib
import stat
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airflow_provider_flux.function_job import runner

SERIALIZERS = ("pickle", "cloudpickle", "dill")
RUNNER_FILE = "airflow_flux_call.py"
# A return value is refused past this many bytes, serialized, by default.
DEFAULT_MAX_RETURN_BYTES = 1 << 20
# The value travels in the job's output, base64 encoded; Flux keeps 10 MiB of a
# guest's job output (the shell's output.limit), so a larger value could be cut.
MAX_RETURN_BYTES = 6 << 20
_FILE_MODE = 0o600 | stat.S_IFREG  # as flux.util.Fileref makes it


class UnserializableError(ValueError):
    """The serializer cannot serialize the arguments (nothing was submitted)."""


def check_serializer(name: str) -> str:
    """``name`` if it names a serializer (``pickle``, ``cloudpickle``, ``dill``)."""
    if name not in SERIALIZERS:
        raise ValueError(f"serializer must be one of {', '.join(SERIALIZERS)}, not {name!r}")
    return name


def load_serializer(name: str) -> Any:
    """The serializer module.

    :raises ValueError: not a serializer's name, or one not installed here.
    """
    try:
        return importlib.import_module(check_serializer(name))
    except ImportError as err:
        raise ValueError(f"serializer {name!r} is not installed on this worker: {err}") from err


def check_max_return_bytes(value: int) -> int:
    """``value`` if it is a byte count the job's output can carry."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_RETURN_BYTES:
        raise ValueError(f"max_return_bytes must be an integer from 1 to {MAX_RETURN_BYTES}, "
                         f"not {value!r}")  # fmt: skip
    return value


@dataclass(frozen=True)
class FunctionCall:
    """A call of a function, by its source.

    :param source: the function's source (its decorator removed).
    :param function: its name in that source.
    :param serializer: ``pickle``, ``cloudpickle`` or ``dill``: for the arguments and
        the return value.
    :param max_return_bytes: the largest return value, serialized, the job may send.
    :param module: the module the function and the arguments come from (the DAG
        file's), which the compute node cannot import.
    """

    source: str
    function: str
    serializer: str
    max_return_bytes: int = DEFAULT_MAX_RETURN_BYTES
    module: str | None = None

    def files(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """The jobspec's ``attributes.system.files`` for a call with these arguments.

        :raises UnserializableError: the serializer cannot serialize them.
        """
        try:
            arguments = self._dumps((list(args), dict(kwargs)))
        except Exception as err:  # each serializer has its own errors
            raise UnserializableError(
                f"the arguments cannot be serialized with {self.serializer}: "
                f"{type(err).__name__}: {err}"
            ) from err
        call = {
            "function": self.function,
            "serializer": self.serializer,
            "max_return_bytes": self.max_return_bytes,
            "arguments": base64.b64encode(arguments).decode("ascii"),
        }
        return {
            RUNNER_FILE: _text_file(Path(runner.__file__).read_text(encoding="utf-8")),
            runner.FUNCTION_FILE: _text_file(self.source),
            runner.CALL_FILE: {"mode": _FILE_MODE, "data": call},
        }

    def _dumps(self, value: Any) -> bytes:
        """``value`` serialized for the node, which cannot import the DAG file: as if
        this worker could not either, so that what the file defines travels by value
        (dill, cloudpickle) or is refused here (pickle), never as a reference the node
        would fail to load."""
        serializer = load_serializer(self.serializer)
        options = {"recurse": True} if self.serializer == "dill" else {}  # only the globals used
        name = self.module or ""
        hidden = sys.modules.pop(name, None)
        try:
            return bytes(serializer.dumps(value, **options))
        finally:
            if hidden is not None:
                sys.modules[name] = hidden


def load_value(serializer: str, data: bytes) -> Any:
    """A return value from its bytes, as ``serializer`` serialized it."""
    return load_serializer(serializer).loads(data)


def runner_command(python: str) -> list[str]:
    """The job's command: ``python`` runs the runner from the job's files."""
    return [python, f"{{{{tmpdir}}}}/{RUNNER_FILE}"]


def _text_file(text: str) -> dict[str, Any]:
    return {"mode": _FILE_MODE, "data": text, "encoding": "utf-8"}
