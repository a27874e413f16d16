"""``FluxInstanceEventTrigger``: runs DAGs on events of any job of a Flux instance.

An event trigger for ``AssetWatcher``: each job event that matches its filter
becomes one trigger event, and so one asset event whose ``extra["payload"]``
carries the job ID, its name, queue, owner and the event.

The triggerer runs one stream per instance for all of them (Airflow's shared
streams): the job-manager journal for the instance owner, else job-list polled
every ``poll_interval`` seconds. Each trigger keeps how far it got in its asset's
state store and, after a triggerer restart, goes on from there, so events that
happened meanwhile still arrive.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Hashable, Iterable
from contextlib import aclosing, suppress
from dataclasses import dataclass
from typing import Any

from airflow_provider_flux.flux_bindings import own_userid
from airflow_provider_flux.hooks.flux import FluxHook
from airflow_provider_flux.instance_events.filter import ANY_USER, JobEventFilter
from airflow_provider_flux.instance_events.frontier import Frontier
from airflow_provider_flux.instance_events.model import EventBatch, InstanceEvent
from airflow_provider_flux.instance_events.sources import instance_events, instance_history
from airflow_provider_flux.job.limits import shorten
from airflow_provider_flux.triggers.base import log_off_loop
from airflow_provider_flux.version_compat import BaseEventTrigger, TriggerEvent

DEFAULT_POLL_INTERVAL = 5.0
# The asset state store key of how far a trigger got (a Frontier).
CHECKPOINT_KEY = "flux_frontier"
# How far a trigger got is saved once the events before were handed to the triggerer
# this long ago: the triggerer stores them in the database on its next sync (about
# every second), and an event it had not stored when it stopped is delivered again.
CHECKPOINT_DELAY = 5.0
CHECKPOINT_INTERVAL = 1.0
# Events handled in one go before the loop gets a turn (a few milliseconds' worth).
EVENTS_PER_TURN = 2000


@dataclass
class _Stream:
    """One shared stream of an instance's events, as its subscribers see it."""

    history_sent: bool = False


_streams: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Hashable, _Stream]] = (
    weakref.WeakKeyDictionary()
)


def _stream_key(kwargs: dict[str, Any]) -> tuple[str, str, float, int | None]:
    """Watchers share a stream per instance, poll interval and user scope (job-list is
    asked only for the jobs of the one user a scoped stream serves)."""
    scope = _scope(kwargs.get("userid"))
    return ("flux-instance-events", kwargs["flux_conn_id"], float(kwargs["poll_interval"]), scope)


def _scope(userid: int | str | None) -> int | None:
    """The user whose jobs a watcher sees: its own (``None``), every user's
    (:data:`ANY_USER`, as None), or the one named."""
    if userid is None:
        return own_userid()
    if userid == ANY_USER:
        return None
    if isinstance(userid, bool) or not isinstance(userid, int) or userid < 0:
        raise ValueError(
            f"userid must be a user ID >= 0, or {ANY_USER!r} for every user's jobs, "
            f"not {shorten(repr(userid))}"
        )
    return userid


class FluxInstanceEventTrigger(BaseEventTrigger):
    """Fires for each event of a job of a Flux instance that matches a filter.

    For ``AssetWatcher``: each matching event becomes an asset event, whose
    ``extra["payload"]`` has ``jobid`` (int), ``job`` (its f58 form), ``name``,
    ``queue``, ``userid``, ``event`` (``name``, ``timestamp``, ``context``) and
    ``source`` (``journal`` or ``job-list``).

    :param flux_conn_id: the Flux connection of the instance to watch.
    :param events: the event names that fire it (default ``finish``).
    :param job_name: only jobs whose name matches this shell-style pattern.
    :param queue: only jobs submitted to this queue.
    :param userid: only jobs of this user. By default, only jobs of the user the
        connection acts as (this process's, or ``FLUX_HANDLE_USERID``'s: over
        ``ssh://``, name the remote user's ID): on a shared instance every user's
        jobs show in job-list and the journal, and any of them could otherwise fire
        the DAG. ``"any"``: every user's jobs, on purpose. Either way the payload is
        what a job's submitter chose (its name, its exception notes): treat it as
        untrusted input in the DAG it starts.
    :param exit_codes: for ``finish``: only these exit codes (a task killed by
        signal N exits 128+N).
    :param exception_types: for ``exception``: only these types (``timeout``, ...).
    :param exception_severity: for ``exception``: only this severity or lower
        (0: fatal only).
    :param poll_interval: seconds between two job-list polls, the source used when
        the journal answers only the instance owner.
    """

    def __init__(
        self,
        *,
        flux_conn_id: str = FluxHook.default_conn_name,
        events: str | Iterable[str] = ("finish",),
        job_name: str | None = None,
        queue: str | None = None,
        userid: int | str | None = None,
        exit_codes: int | Iterable[int] | None = None,
        exception_types: str | Iterable[str] | None = None,
        exception_severity: int | None = None,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.flux_conn_id = flux_conn_id
        self.userid = userid  # as given: the user it stands for is resolved where it runs
        self.filter = JobEventFilter.from_arguments(
            events, job_name, queue, _scope(userid), exit_codes, exception_types,
            exception_severity,
        )  # fmt: skip
        if not isinstance(poll_interval, (int, float)) or poll_interval <= 0:
            raise ValueError(f"poll_interval must be seconds > 0, not {poll_interval!r}")
        self.poll_interval = float(poll_interval)
        self._frontier: Frontier | None = None
        # (when, newest timestamp) after each batch handled: when its events were
        # handed over, 0 for a batch with none (the frontier can be saved at once).
        self._handled: deque[tuple[float, float]] = deque()
        self._saved: dict[str, Any] | None = None
        self._store: Any = None

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "flux_conn_id": self.flux_conn_id,
                **self.filter.to_arguments(),
                "userid": self.userid,
                "poll_interval": self.poll_interval,
            },
        )

    def shared_stream_key(self) -> Hashable | None:
        """Watchers of one instance (poll interval, user scope) share one stream."""
        return _stream_key(self.serialize()[1])

    @classmethod
    async def open_shared_stream(cls, kwargs: dict[str, Any]) -> AsyncIterator[Any]:
        """The instance's job events, as :class:`EventBatch` es: history, then live."""
        key = _stream_key(kwargs)
        stream = _Stream()
        streams = _streams.setdefault(asyncio.get_running_loop(), {})
        streams[key] = stream
        try:
            async for batch in cls._batches(kwargs, stream):
                yield batch
        finally:
            if streams.get(key) is stream:
                del streams[key]

    @staticmethod
    async def _batches(kwargs: dict[str, Any], stream: _Stream) -> AsyncGenerator[EventBatch]:
        uri = await FluxHook(kwargs["flux_conn_id"]).aget_uri()
        poll_interval = float(kwargs["poll_interval"])
        scope = _scope(kwargs.get("userid"))
        events = instance_events(uri, poll_interval=poll_interval, userid=scope)
        async with aclosing(events) as batches:
            async for batch in batches:
                if batch.history:
                    # Set before the history goes out: a subscriber that finds it
                    # unset will get the history from the stream itself.
                    stream.history_sent = True
                yield batch

    async def filter_shared_stream(
        self, shared_stream: AsyncIterator[Any]
    ) -> AsyncIterator[TriggerEvent]:
        """This trigger's events, from the shared stream of its instance."""
        key = self.shared_stream_key()

        def stream() -> _Stream | None:
            return _streams.get(asyncio.get_running_loop(), {}).get(key)

        async for event in self._filter(shared_stream, stream):
            yield event

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """A stream of its own (a triggerer without shared streams, before Airflow 3.3)."""
        stream = _Stream()
        batches = self._batches(self.serialize()[1], stream)
        async with aclosing(batches):
            async for event in self._filter(batches, lambda: stream):
                yield event

    async def _filter(
        self, batches: AsyncIterator[Any], stream: Callable[[], _Stream | None]
    ) -> AsyncIterator[TriggerEvent]:
        self._frontier = await self._load_frontier()
        await log_off_loop(
            self, "info", "watching job events of %s (connection %s) %s",
            self.filter.describe(), self.flux_conn_id,
            "from now on" if self._frontier is None else f"after {self._frontier.newest}",
        )  # fmt: skip
        checkpoints = asyncio.create_task(self._save_frontier())
        try:
            joined = stream()
            if joined is not None and joined.history_sent:
                # The stream began before this trigger: what happened in between (and
                # since it last stopped) comes from a look of its own.
                uri = await FluxHook(self.flux_conn_id).aget_uri()
                history = await instance_history(uri, self._frontier, self.filter.userid)
                async for event in self._handle(history):
                    yield event
            async for batch in batches:
                async for event in self._handle(batch):
                    yield event
        finally:
            checkpoints.cancel()
            with suppress(asyncio.CancelledError):
                await checkpoints

    async def _handle(self, batch: EventBatch) -> AsyncIterator[TriggerEvent]:
        matched = await self._take(batch)
        assert self._frontier is not None
        if batch.history:
            await log_off_loop(
                self, "info", "read the instance's history (%d events) from the %s: up to %s",
                len(batch.events), batch.events[0].source if batch.events else "instance",
                self._frontier.newest,
            )  # fmt: skip
        for item in matched:
            yield TriggerEvent(item.to_payload())
            self._frontier.recent[item.key] = time.monotonic()  # the triggerer has it
        self._handled.append((time.monotonic() if matched else 0.0, self._frontier.newest))

    async def _take(self, batch: EventBatch) -> list[InstanceEvent]:
        """The events of ``batch`` this trigger fires for, each once; its frontier moves
        past them.

        A trigger with no frontier (its first start) begins after the history: it
        fires for what happens from then on.
        """
        if self._frontier is None:
            self._frontier = Frontier()
            if batch.history:
                for count, item in enumerate(batch.events, 1):
                    self._frontier.advance(item, keep=self.filter.matches(item))
                    if count % EVENTS_PER_TURN == 0:
                        await asyncio.sleep(0)
                self._frontier.prune()
                return []
        matched = []
        for count, item in enumerate(batch.events, 1):
            if count % EVENTS_PER_TURN == 0:
                await asyncio.sleep(0)  # the history of a big instance: let others run
            if not self._frontier.is_new(item):
                continue  # seen before: history repeats what a trigger already had
            wanted = self.filter.matches(item)
            # Kept at infinity until handed over (then at that time): not saved before.
            self._frontier.advance(item, keep=wanted, when=float("inf"))
            if wanted:
                matched.append(item)
        self._frontier.prune()
        return matched

    async def _load_frontier(self) -> Frontier | None:
        """The saved frontier; ``None`` on a first start, or with nowhere to save it."""
        store = getattr(self, "asset_state_store", None)
        if store is None:  # not run by a triggerer for an asset (or before Airflow 3.3)
            return None
        try:
            saved = await store.aget(CHECKPOINT_KEY)
        except ValueError:
            # Several assets watch through this one trigger (same arguments): there is
            # no single place for its frontier, and it starts afresh after a restart.
            await log_off_loop(
                self, "warning",
                "several assets share this watcher's trigger: it cannot save how far it "
                "got, and events that happen while the triggerer is down will not reach them",
            )  # fmt: skip
            return None
        self._store = store
        if isinstance(saved, dict) and "newest" in saved:
            self._saved = saved
            return Frontier.from_json(saved)
        return None

    async def _save_frontier(self) -> None:
        """Every second, save the frontier as it was after the events handed over long
        enough ago."""
        while True:
            due = None
            horizon = time.monotonic() - CHECKPOINT_DELAY
            while self._handled and self._handled[0][0] <= horizon:
                due = self._handled.popleft()[1]
            if self._store is not None and self._frontier is not None and due is not None:
                value = self._frontier.to_json(newest=due, kept_by=horizon)
                if value != self._saved:
                    await self._store.aset(CHECKPOINT_KEY, value)
                    self._saved = value
            await asyncio.sleep(CHECKPOINT_INTERVAL)
