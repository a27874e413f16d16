"""A job's stdout and stderr, from its ``guest.output`` eventlog, within a byte budget.

Flux writes a job's output to ``guest.output`` (RFC 24): a ``header``, then ``data``
events (``stream``, ``rank``, ``data``, maybe ``encoding`` and ``repeat``, and ``eof``),
``redirect`` events for streams sent to files, ``log`` events of the job shell.
:class:`OutputLines` turns them into log lines as they come (the engine's
``OutputFollower`` feeds it live); :func:`format_output` shows a whole output read
once the job is over.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from airflow_provider_flux.job.event import JobEvent
from airflow_provider_flux.job.limits import shorten

# Bytes of a job's output copied into the task log, by default.
DEFAULT_OUTPUT_LIMIT = 64 * 1024
# The eventlog a job's output is in.
OUTPUT_EVENTLOG = "guest.output"

CUT_MARK = " [cut]"
# What a job writes from this mark to the end of a line is for the provider, not for
# the task log: a ``@task.flux`` function's return value (``function_job``).
RESULT_MARK = "\x1eairflow-flux:"


def without_result(line: str) -> str | None:
    """``line`` as the task log shows it: the part before :data:`RESULT_MARK`, or
    None for a line that carries nothing else."""
    head, mark, _ = line.partition(RESULT_MARK)
    return None if mark and not head else head


@dataclass(frozen=True)
class OutputProgress:
    """How far a job's output was followed.

    :ivar events: ``guest.output`` events read (a re-created follower skips them).
    :ivar shown: bytes of output logged.
    :ivar cut: bytes left out at the limit.
    """

    events: int = 0
    shown: int = 0
    cut: int = 0

    def to_dict(self) -> dict[str, int]:
        return {"events": self.events, "shown": self.shown, "cut": self.cut}

    @classmethod
    def from_dict(cls, value: Any) -> OutputProgress | None:
        """From :meth:`to_dict`; None for anything else (an XCom nobody else writes)."""
        if not isinstance(value, Mapping):
            return None
        try:
            return cls(int(value["events"]), int(value["shown"]), int(value["cut"]))
        except (KeyError, TypeError, ValueError):
            return None


class MalformedOutputError(ValueError):
    """A ``data`` event that is not what RFC 24 says one is."""


def decoded_data(context: Mapping[str, Any]) -> tuple[str, int]:
    """A ``data`` event's text (base64 decoded when so encoded) and its ``repeat``.

    :raises MalformedOutputError: bad base64, or a ``repeat`` that is not a count.
    """
    data = context.get("data", "")
    repeat = context.get("repeat", 1)
    if not isinstance(data, str) or isinstance(repeat, bool) or not isinstance(repeat, int):
        raise MalformedOutputError(f"data {type(data).__name__}, repeat {shorten(repr(repeat))}")
    if repeat < 1:
        raise MalformedOutputError(f"repeat {repeat}")
    if context.get("encoding") == "base64":
        try:
            data = base64.b64decode(data, validate=True).decode("utf-8", errors="replace")
        except ValueError as err:
            raise MalformedOutputError(f"bad base64: {err}") from err
    return data, repeat


class OutputLines:
    """Turns ``guest.output`` events into log lines, ``limit`` bytes of them at most.

    Memory stays within the limit whatever the job writes: a line waits for its end
    only while it fits in what is left; past the limit data is only counted.

    :param limit: bytes of output (UTF-8) to show, in all.
    :param shown: bytes already shown (a re-created follower goes on from there).
    :param cut: bytes already left out.
    """

    def __init__(self, limit: int, shown: int = 0, cut: int = 0) -> None:
        self.limit = limit
        self.shown = shown
        self.cut = cut
        self._partial: dict[tuple[str, str], str] = {}
        self._ranks_labelled = False
        self.malformed = 0  # data events skipped (told once)

    @property
    def exhausted(self) -> bool:
        return self.shown >= self.limit

    def feed(self, event: JobEvent) -> list[str]:
        """The lines ``event`` completes (labelled ``stdout: ...``), in order."""
        context = event.context
        if event.name == "header":
            counts = context.get("count") or {}
            self._ranks_labelled = any(int(n) > 1 for n in counts.values())
            return []
        if event.name == "redirect":
            label = self._label(str(context.get("stream")), str(context.get("rank")))
            return [f"{label}: redirected to {context.get('path')}"]
        if event.name == "log":
            message = str(context.get("message", ""))
            return self._show("flux-shell", message, message)
        if event.name != "data":
            return []
        key = (str(context.get("stream")), str(context.get("rank")))
        lines: list[str] = []
        if "data" in context:
            try:
                data, repeat = decoded_data(context)
            except MalformedOutputError as err:
                self.malformed += 1
                if self.malformed == 1:
                    lines = [f"flux-shell: a malformed output event was skipped ({err}); "
                             "any more are skipped without a word"]  # fmt: skip
            else:
                lines = self._take(key, data, repeat)
        if context.get("eof"):
            lines += self.flush(key)
        return lines

    def flush(self, key: tuple[str, str] | None = None) -> list[str]:
        """The unterminated last line of one stream (or of all), as a line."""
        keys = [key] if key is not None else list(self._partial)
        lines: list[str] = []
        for each in keys:
            rest = without_result(self._partial.pop(each, ""))
            if rest:
                lines += self._show(self._label(*each), rest, rest)
        return lines

    def _label(self, stream: str, rank: str) -> str:
        return f"{stream}[{rank}]" if self._ranks_labelled else stream

    def _take(self, key: tuple[str, str], data: str, repeat: int) -> list[str]:
        if self.exhausted:
            self.cut += len(data.encode()) * repeat
            return []
        if repeat > 1:
            # Flux sends repeated output once, with a count: expand only what can show.
            fits = (self.limit - self.shown) // max(1, len(data.encode())) + 1
            self.cut += len(data.encode()) * max(0, repeat - fits)
            data *= min(repeat, fits)
        text = self._partial.pop(key, "") + data
        *complete, rest = text.split("\n")
        lines: list[str] = []
        label = self._label(*key)
        for line in complete:
            shown = without_result(line)
            if shown is not None:
                lines += self._show(label, shown, shown + "\n")
        if rest:
            if self.exhausted:
                self.cut += len(rest.encode())
            elif len(rest.encode()) >= self.limit - self.shown:
                shown = without_result(rest)  # one line past the limit
                lines += self._show(label, shown, shown) if shown else []
            else:
                self._partial[key] = rest
        return lines

    def _show(self, label: str, text: str, output: str) -> list[str]:
        """``text`` as a line if ``output`` (what the job wrote for it: its bytes are
        charged) fits, its first bytes if only they fit, or nothing."""
        size = len(output.encode())
        left = self.limit - self.shown
        if left <= 0:
            self.cut += size
            return []
        if size <= left:
            self.shown += size
            return [f"{label}: {text}"]
        self.shown = self.limit
        self.cut += size - left
        kept = output.encode()[:left].decode(errors="ignore").rstrip("\n")
        self._partial.clear()  # nothing more will show
        return [f"{label}: {kept}{CUT_MARK}"]


def format_output(events: Sequence[JobEvent], limit: int) -> tuple[str, int]:
    """The job's stdout and stderr, stream by stream, cut at ``limit`` bytes.

    Returns the text and the number of bytes left out. Repeated data (``repeat``) is
    expanded only as far as it can show; malformed data events are skipped, as when
    the output is followed live.
    """
    streams: dict[str, list[str]] = {}
    sizes: dict[str, int] = {}
    left_out = 0
    for event in events:
        if event.name == "data" and "data" in event.context:
            try:
                data, repeat = decoded_data(event.context)
            except MalformedOutputError:
                continue
            stream = str(event.context.get("stream"))
        elif event.name == "log":
            data, repeat, stream = str(event.context.get("message", "")) + "\n", 1, "log"
        else:
            continue
        size = len(data.encode())
        fits = repeat if size == 0 else min(repeat, (limit - sizes.get(stream, 0)) // size + 1)
        fits = max(fits, 0)
        left_out += size * (repeat - fits)
        streams.setdefault(stream, []).append(data * fits)
        sizes[stream] = sizes.get(stream, 0) + size * fits
    text = "".join(
        f"--- {name} ---\n{_without_results(''.join(parts))}" for name, parts in streams.items()
    )
    encoded = text.encode()
    if len(encoded) <= limit:
        return text, left_out
    return encoded[:limit].decode(errors="ignore"), len(encoded) - limit + left_out


def _without_results(text: str) -> str:
    if RESULT_MARK not in text:
        return text
    lines = (without_result(line) for line in text.split("\n"))
    return "\n".join(line for line in lines if line is not None)
