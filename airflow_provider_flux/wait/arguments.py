"""The arguments of a wait for a job event: declared, documented and checked here,
taken by the sensors and serialized by the triggers."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_flux.config import limits
from airflow_provider_flux.job.limits import shorten
from airflow_provider_flux.wait.spec import EventWaitSpec, resolve_eventlog


@dataclass(frozen=True)
class WaitArguments:
    """What a wait for an event of a job is told.

    :param event: the event to wait for: ``alloc``, ``start``, ``finish``, ``clean``,
        ``exception``; in ``guest.exec.eventlog``: ``shell.start``, ``complete``.
    :param eventlog: ``eventlog`` (default), a guest eventlog path such as
        ``guest.exec.eventlog``, or a short name as ``flux job wait-event -p`` takes:
        ``exec``, ``output``, ``input``.
    :param match_context: key/values the event's context must contain
        (``flux job wait-event --match-context``).
    :param raise_on_exception: fail on a fatal job exception before the event.
    :param count: wait for the ``count``-th matching event (``flux job wait-event --count``).
    :param waitcreate: wait for a guest eventlog that does not exist yet
        (``flux job wait-event --waitcreate``).
    """

    event: Any
    eventlog: Any = "eventlog"
    match_context: Any = field(default_factory=dict)
    raise_on_exception: bool = True
    count: int = 1
    waitcreate: bool = False

    def resolve(self) -> tuple[EventWaitSpec, str]:
        """The wait these arguments describe, and the path of its eventlog.

        :raises ValueError: they do not describe a wait Flux can serve, or one longer
            than the configured limits (``[flux] max_name_length``,
            ``max_match_context_bytes``).
        """
        bounds = limits()
        for what, value in (("event", self.event), ("eventlog", self.eventlog)):
            if isinstance(value, str) and len(value) > bounds.max_name_length:
                raise ValueError(
                    f"{what} {shorten(value)!r} is longer than the {bounds.max_name_length} "
                    "characters allowed"
                )
        if isinstance(self.match_context, Mapping):
            try:
                size = len(json.dumps(self.match_context).encode())
            except (TypeError, ValueError) as err:
                raise ValueError(
                    f"match_context holds a value JSON has no type for: {err}"
                ) from err
            if size > bounds.max_match_context_bytes:
                raise ValueError(
                    f"match_context is {size} bytes as JSON: more than the "
                    f"{bounds.max_match_context_bytes} allowed"
                )
        spec = EventWaitSpec(self.event, self.match_context, self.raise_on_exception, self.count)
        return spec, resolve_eventlog(self.eventlog)

    def to_kwargs(self) -> dict[str, Any]:
        """As keyword arguments of a sensor or a trigger."""
        return {
            "event": self.event,
            "eventlog": self.eventlog,
            "match_context": self.match_context,
            "raise_on_exception": self.raise_on_exception,
            "count": self.count,
            "waitcreate": self.waitcreate,
        }
