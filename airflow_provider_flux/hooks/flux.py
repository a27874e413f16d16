"""The ``flux`` connection type and the hook that opens Flux handles."""

from __future__ import annotations

import errno
import json
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

from airflow_provider_flux.aio.errors import ENDED_JOB_ERRNOS
from airflow_provider_flux.flux_bindings import FluxBindings, effective_uri, load_bindings
from airflow_provider_flux.flux_uri import CONNECTION_FORM, normalize_flux_uri
from airflow_provider_flux.job.event import JobEvent, parse_eventlog
from airflow_provider_flux.job.jobid import format_jobid
from airflow_provider_flux.job.output import OUTPUT_EVENTLOG, format_output
from airflow_provider_flux.version_compat import AirflowNotFoundException, BaseHook

# Requests in flight at once on one handle. With thousands of synchronous futures
# outstanding, flux-core 0.88.0's reactor was seen to abort ("libev: I/O watcher with
# invalid fd found in epoll_ctl", about one run in two at 10,000 on real Flux).
IN_FLIGHT = 512
# job-info's eventlog-watch flag: an empty response once what is there was sent.
INITIAL_SENTINEL = 2

T = TypeVar("T")


def windows(items: Sequence[T]) -> Iterator[Sequence[T]]:
    """``items`` in slices of at most ``IN_FLIGHT``."""
    for start in range(0, len(items), IN_FLIGHT):
        yield items[start : start + IN_FLIGHT]


class FluxHook(BaseHook):
    """Connects to a Flux instance named by an Airflow connection of type ``flux``.

    The connection's host holds the instance URI: ``local:///path/to/socket``,
    ``ssh://[user@]host[:port]/path``, ``sim:///path`` (a simulated instance) or
    nothing, which means ``FLUX_URI`` from the environment, else the system instance.
    A URI is checked before any handle is opened
    (:func:`~airflow_provider_flux.flux_uri.normalize_flux_uri`): an ssh host, user or
    path that ssh or the remote shell could take for something else is refused. When the connection
    is ``flux_default`` and it does not exist, the default instance is used. A URI that
    flux-core resolves (``jobid:ƒA`` for a job's nested instance, ``pid:``, ``slurm:``,
    ``lsf:``) is resolved each time a handle is opened.

    :param flux_conn_id: the Airflow connection ID of the Flux instance.
    :param flux_uri: the instance's URI, in any of the connection's forms, instead of
        the connection's (then the connection is not read): for an instance known only
        when the task runs, such as a batch job's nested instance (``jobid:ƒA``).
    """

    conn_name_attr = "flux_conn_id"
    default_conn_name = "flux_default"
    conn_type = "flux"
    hook_name = "Flux"

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """The connection form (Airflow 3.1 reads it here, not from the provider info)."""
        return CONNECTION_FORM

    def __init__(self, flux_conn_id: str = default_conn_name, flux_uri: str | None = None) -> None:
        super().__init__()
        self.flux_conn_id = flux_conn_id
        self.flux_uri = flux_uri

    def get_uri(self) -> str | None:
        """The instance URI: ``flux_uri``, else the connection's (``None``: the
        default instance)."""
        if self.flux_uri is not None:
            return _given_uri(self.flux_uri)
        try:
            conn = self.get_connection(self.flux_conn_id)
        except AirflowNotFoundException:
            if self.flux_conn_id != self.default_conn_name:
                raise
            return None
        return normalize_flux_uri(conn.host)

    async def aget_uri(self) -> str | None:
        """Async :meth:`get_uri`, for triggers."""
        if self.flux_uri is not None:
            return _given_uri(self.flux_uri)
        try:
            conn = await self.aget_connection(self.flux_conn_id)
        except AirflowNotFoundException:
            if self.flux_conn_id != self.default_conn_name:
                raise
            return None
        return normalize_flux_uri(conn.host)

    def get_bindings(self) -> FluxBindings:
        """The bindings that serve this connection (flux-core's or the simulator's)."""
        return load_bindings(self.get_uri())

    def get_conn(self) -> Any:
        """Open a ``flux.Flux`` handle to the instance (blocking)."""
        uri = self.get_uri()
        return load_bindings(uri).open(uri)

    def read_eventlog(self, jobid: int, eventlog: str = "eventlog") -> tuple[list[JobEvent], bool]:
        """Read a job eventlog as it stands, in one lookup (blocking).

        Returns the events and whether the eventlog is complete (the job is inactive).
        A guest eventlog is readable this way once the job has released its resources
        (Flux copies it to the main namespace then); before that it reads as empty.

        :raises FileNotFoundError: no such job (or eventlog, once the job is inactive).
        :raises PermissionError: the job belongs to another user.
        """
        (read,) = self.read_eventlogs([jobid], eventlog)
        if isinstance(read, OSError):
            raise read
        return read

    def read_output_so_far(
        self, jobid: int, limit: int = 1 << 20, timeout: float = 10.0
    ) -> tuple[str, bool]:
        """A job's stdout and stderr as they stand, running or not (its ``guest.output``
        replayed up to now, not followed), stream by stream, cut at ``limit`` bytes
        (blocking, for at most ``timeout`` seconds).

        Returns the text and whether it is all the job wrote so far (nothing, for a
        job that has not started).
        """
        uri = self.get_uri()
        bindings = load_bindings(uri)
        handle = bindings.open(uri)
        payload = {"id": int(jobid), "path": OUTPUT_EVENTLOG, "flags": INITIAL_SENTINEL}
        future = handle.rpc(
            "job-info.eventlog-watch", payload, 0, bindings.constant("RPC_STREAMING")
        )
        deadline = time.monotonic() + timeout
        events: list[JobEvent] = []
        size, complete = 0, True
        try:
            while size <= limit:
                try:
                    response = future.wait_for(max(0.0, deadline - time.monotonic())).get()
                except OSError as err:
                    # ENODATA: the job is over, that was all of it. ENOENT: its shell
                    # has not made the output eventlog yet (a job that just started).
                    if err.errno in (errno.ENODATA, errno.ENOENT):
                        break
                    if err.errno != errno.ETIMEDOUT:
                        raise _lookup_error(jobid, OUTPUT_EVENTLOG, err, _where(uri)) from err
                    complete = False
                    break
                if not response or "event" not in response:
                    break  # the sentinel
                event = JobEvent.from_json(str(response["event"]))
                events.append(event)
                size += len(str(event.context.get("data", "")))
                future.reset()
        finally:
            cancel = {"matchtag": bindings.rpc_matchtag(future)}
            handle.rpc(
                "job-info.eventlog-watch-cancel", cancel, 0, bindings.constant("RPC_NORESPONSE")
            )
        text, left_out = format_output(events, limit)
        return text, complete and size <= limit and not left_out

    def read_eventlogs(
        self, jobids: Sequence[int], eventlog: str = "eventlog"
    ) -> list[tuple[list[JobEvent], bool] | OSError]:
        """Read the eventlogs of many jobs as :meth:`read_eventlog` reads one, on one
        handle with many lookups in flight (blocking); each job's events and whether
        they are complete, in order, or the error (as :meth:`read_eventlog` raises it)
        that reading it met."""
        uri = self.get_uri()
        bindings = load_bindings(uri)
        handle = bindings.open(uri)
        instance = _where(uri)
        mains = _lookup_many(bindings, handle, jobids, "eventlog", instance, _eventlog)
        results: list[tuple[list[JobEvent], bool] | OSError] = [
            main if isinstance(main, OSError) else (main, any(e.name == "clean" for e in main))
            for main in mains
        ]
        if eventlog == "eventlog":
            return results
        # A guest eventlog reaches the main namespace when the job releases: until
        # then it reads as empty.
        released = [
            index
            for index, main in enumerate(mains)
            if not isinstance(main, OSError)
            and (not eventlog.startswith("guest.") or any(e.name == "release" for e in main))
        ]
        wanted = [jobids[i] for i in released]
        lookups = _lookup_many(bindings, handle, wanted, eventlog, instance, _eventlog)
        guests = dict(zip(released, lookups, strict=True))
        read: list[tuple[list[JobEvent], bool] | OSError] = []
        for index, result in enumerate(results):
            guest = guests.get(index, [])
            if isinstance(result, OSError):
                read.append(result)
            elif isinstance(guest, OSError):
                read.append(guest)
            else:
                read.append((guest, result[1]))
        return read

    def submit(self, jobspec: Mapping[str, Any] | str, urgency: int = 16) -> int:
        """Submit a jobspec (a dict, or its JSON/YAML text); returns the job ID (blocking).

        Build one with :func:`airflow_provider_flux.jobspec.jobspec_from_command`.
        """
        uri = self.get_uri()
        bindings = load_bindings(uri)
        text = jobspec if isinstance(jobspec, str) else json.dumps(jobspec)
        return int(bindings.job.submit(bindings.open(uri), text, urgency=urgency))

    def submit_many(
        self, jobspecs: Sequence[Mapping[str, Any] | str], urgency: int = 16
    ) -> list[int]:
        """Submit many jobspecs on one handle, many requests in flight at once, as
        ``flux submit --cc`` does; their job IDs in order (blocking).

        :raises OSError: the first rejection; the jobs that were accepted are cancelled.
        """
        uri = self.get_uri()
        bindings = load_bindings(uri)
        handle = bindings.open(uri)
        jobids: list[int] = []
        refused: OSError | None = None
        for window in windows(jobspecs):
            futures = [
                bindings.job.submit_async(
                    handle, spec if isinstance(spec, str) else json.dumps(spec), urgency=urgency
                )
                for spec in window
            ]
            for future in futures:
                try:
                    jobids.append(int(future.get_id()))
                except OSError as err:
                    refused = refused or err
        if refused is not None:
            # All or none: a half-submitted array would run with nobody waiting on it.
            if not jobids:
                raise refused
            self.cancel_many(jobids, f"another job of its array was rejected: {refused}")
            accepted = ", ".join(format_jobid(jobid) for jobid in jobids)
            raise OSError(
                refused.errno,
                f"{refused.strerror or refused}; the {len(jobids)} jobs accepted were "
                f"cancelled: {accepted}",
            ) from refused
        return jobids

    def find_jobs(
        self, names: Sequence[str], attrs: Sequence[str], userid: int | None = None
    ) -> list[dict[str, Any]]:
        """Jobs named one of ``names``, with ``attrs`` (job-list), as a list of dicts
        with ``id`` (blocking).

        :param userid: only this user's jobs (None: any user's).
        """
        uri = self.get_uri()
        bindings = load_bindings(uri)
        if userid is None:
            userid = bindings.constant("USERID_UNKNOWN", 0xFFFFFFFF)
        future = bindings.job.job_list(
            bindings.open(uri), max_entries=0, attrs=list(attrs), userid=userid,
            constraint={"name": list(names)},
        )  # fmt: skip
        return [dict(job) for job in future.get_jobs()]

    def read_jobspecs(self, jobids: Sequence[int]) -> dict[int, dict[str, Any]]:
        """The jobspecs of jobs, as submitted, on one handle (blocking); jobs that
        cannot be read (gone, or another user's) are left out."""
        uri = self.get_uri()
        bindings = load_bindings(uri)
        instance = _where(uri)
        found = _lookup_many(bindings, bindings.open(uri), jobids, "jobspec", instance, _jobspec)
        return {
            jobid: jobspec
            for jobid, jobspec in zip(jobids, found, strict=True)
            if not isinstance(jobspec, OSError)
        }

    def instance_uri(self) -> str:
        """The URI of the instance this hook connects to, as ``flux proxy`` takes it."""
        uri = effective_uri(self.get_uri())
        if uri is not None:
            return uri
        return str(self.get_conn().attr_get("local-uri"))

    def cancel(self, jobid: int, reason: str | None = None) -> None:
        """Cancel a job, as ``flux cancel --message=REASON`` does (blocking)."""
        uri = self.get_uri()
        bindings = load_bindings(uri)
        bindings.job.cancel_async(bindings.open(uri), jobid, reason).get()

    def cancel_many(self, jobids: Sequence[int], reason: str | None = None) -> None:
        """Cancel jobs on one handle (blocking). Jobs already inactive are skipped.

        :raises OSError: the first other refusal.
        """
        uri = self.get_uri()
        bindings = load_bindings(uri)
        handle = bindings.open(uri)
        for window in windows(jobids):
            futures = [bindings.job.cancel_async(handle, jobid, reason) for jobid in window]
            for future in futures:
                try:
                    future.get()
                except OSError as err:
                    if err.errno not in ENDED_JOB_ERRNOS:
                        raise

    def describe(self) -> str:
        """Where this hook connects, for log lines."""
        return _where(self.get_uri())

    def test_connection(self) -> tuple[bool, str]:
        """Open a handle and read the instance size, as the UI's *Test* button does."""
        try:
            uri = self.get_uri()
        except ValueError as err:  # refused before anything is run
            return False, f"Flux connection {self.flux_conn_id!r}: {err}"
        where = self.describe()
        try:
            bindings = load_bindings(uri)
            address = bindings.resolve(uri)
            if address != uri:
                where = f"{where} (resolved to {address})"
            size = bindings.open(address).attr_get("size")
        except Exception as err:
            return False, f"cannot connect to Flux at {where}: {err}"
        return True, f"connected to Flux at {where} (size {size})"


def _given_uri(value: str) -> str:
    """A task's own ``flux_uri``: never empty, as a template that rendered to nothing
    would be (falling back to the connection would watch the wrong instance's jobs)."""
    uri = normalize_flux_uri(value)
    if uri is None:
        raise ValueError("flux_uri is empty: give an instance URI, or None for the connection's")
    return uri


def _where(uri: str | None) -> str:
    """The instance a handle opened with ``uri`` connects to, for messages."""
    return effective_uri(uri) or "the system instance"


def _lookup_many(
    bindings: FluxBindings,
    handle: Any,
    jobids: Sequence[int],
    key: str,
    instance: str,
    parse: Callable[[Any], T],
) -> list[T | OSError]:
    """``key`` of each job, ``parse``d, in windows of lookups in flight on one handle;
    a job that cannot be read gives its error instead."""
    found: list[T | OSError] = []
    for window in windows(jobids):
        futures = [
            (jobid, bindings.job.job_info_lookup(handle, jobid, keys=[key])) for jobid in window
        ]
        for jobid, future in futures:
            try:
                value = future.get()[key]
            except OSError as err:
                found.append(_lookup_error(jobid, key, err, instance))
                continue
            found.append(parse(value))
    return found


def _eventlog(value: Any) -> list[JobEvent]:
    return parse_eventlog(str(value))


def _jobspec(value: Any) -> dict[str, Any]:
    jobspec: dict[str, Any] = json.loads(value) if isinstance(value, str) else value
    return jobspec


def _lookup_error(jobid: int, key: str, err: OSError, instance: str) -> OSError:
    where = f"job {format_jobid(jobid)} on {instance}"
    error: OSError
    if err.errno == errno.ENOENT:
        error = FileNotFoundError(err.errno, f"{where}: no such job, or no eventlog {key!r}")
    elif err.errno == errno.EPERM:
        error = PermissionError(err.errno, f"{where}: not allowed to read {key!r}")
    else:
        error = OSError(err.errno, f"{where}: reading {key!r} failed: {err.strerror}")
    error.__cause__ = err
    return error
