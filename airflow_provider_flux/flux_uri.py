"""What a ``flux`` connection may name as its instance: a Flux URI, checked per scheme.

flux-core's ssh connector (``src/connectors/ssh/ssh.c``) runs ``ssh [-p PORT]
[USER@]HOST ... flux relay /PATH``: the host comes right after ``ssh`` with no ``--``,
so a host that starts with ``-`` is an ssh option (``-oProxyCommand=CMD`` runs CMD
wherever a handle is opened: workers, the triggerer, the api-server testing the
connection), and the remote side runs the rest through its shell. So a host, a user
and a path are held to the characters such names have.

A connection may also name an instance the way ``flux uri`` takes it: ``jobid:``
(a job's nested instance, ``jobid:ƒA/ƒB`` for one nested deeper), ``pid:``,
``slurm:`` and ``lsf:``. flux-core's resolver (``flux.uri``) turns those into an
address when a handle is opened (:meth:`FluxBindings.resolve
<airflow_provider_flux.flux_bindings.FluxBindings.resolve>`). Its plugins pass the
argument to ``scontrol``, ``squeue``, ``srun`` and IBM CSM's allocation query and
read ``/proc``, so it is held to what such IDs are; the address it resolves to is checked as a
connection's own would be, since a job's ``uri`` memo is the job's to write.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from airflow_provider_flux.job.jobid import parse_jobid
from airflow_provider_flux.job.limits import shorten

# The connection form: one field, the URI. Airflow 3.2 and newer read it from the
# provider info; 3.1 only from the hook's ``get_ui_field_behaviour``: both give this.
CONNECTION_FORM: dict[str, Any] = {
    "hidden-fields": ["port", "login", "password", "schema", "extra"],
    "relabeling": {"host": "Flux URI"},
    "placeholders": {
        "host": "local:///run/flux/local, ssh://[user@]host[:port]/path, jobid:ƒA, "
        "pid:PID, or empty for $FLUX_URI / the system instance",
    },
}

SCHEMES = ("local", "ssh", "sim")
# Schemes flux-core's resolver turns into a local:// or ssh:// address.
RESOLVED_SCHEMES = ("jobid", "pid", "slurm", "lsf")
# What each of those takes: a job ID path, a process ID, a Slurm job ID (an array
# task ``ID_N`` or a heterogeneous component ``ID+N``), an LSF job ID.
PID = re.compile(r"[1-9][0-9]{0,9}")
SLURM_JOBID = re.compile(r"[1-9][0-9]{0,19}(?:[_+][0-9]{1,10})?")
LSF_JOBID = re.compile(r"[1-9][0-9]{0,19}")
# The jobid resolver's options: the address in local:// or ssh:// form. Its ``wait``
# (block until the job posts its URI) is not taken: a resolution runs in a thread
# of the triggerer's pool, and one that waits for a job that never starts would
# hold that thread for good.
JOBID_QUERIES = ("local", "remote")
# A host name (RFC 1123 labels), an IPv4 address, or an IPv6 address in brackets.
HOST = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,62})(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}))*\.?")
IPV6 = re.compile(r"\[[0-9A-Fa-f:.]+\]")
USER = re.compile(r"[A-Za-z0-9_.][A-Za-z0-9_.-]{0,63}")
# A socket path: no white space, no quote, no shell metacharacter.
PATH = re.compile(r"/[A-Za-z0-9_./+,:=@%~-]*")
FORMS = (
    "local:///socket, ssh://[user@]host[:port]/socket, jobid:ID[/ID...], pid:PID, "
    "slurm:ID, lsf:ID, sim:///socket (simulated), a socket path, or nothing (the default)"
)


def normalize_flux_uri(value: str | None) -> str | None:
    """Turn what a connection holds into a Flux URI; ``None`` means the default instance.

    Accepts a full URI of a scheme in :data:`SCHEMES`, a bare socket path, which
    means ``local://`` + path, and a URI for flux-core's resolver (a scheme in
    :data:`RESOLVED_SCHEMES`), which is returned as written.

    :raises ValueError: not a URI of those forms, or one whose host, user, path or
        ID could be taken for something else (the message says the rule).
    """
    value = (value or "").strip()
    if not value:
        return None
    scheme = value.split(":", 1)[0]
    if scheme in RESOLVED_SCHEMES and not value.startswith(f"{scheme}://"):
        _check_resolvable(value, scheme, value[len(scheme) + 1 :])
        return value
    if "://" not in value:
        if value.startswith("/"):
            _check_path(value, value)
            return f"local://{value}"
        raise ValueError(f"{shorten(value)!r} is not a Flux URI: expected {FORMS}")
    scheme = value.split("://", 1)[0]
    if scheme not in SCHEMES:
        raise ValueError(
            f"{shorten(value)!r}: the scheme {shorten(scheme)!r} is not one a connection "
            f"may use: expected {FORMS}"
        )
    if any(mark in value for mark in "?#") or any(c.isspace() for c in value):
        raise ValueError(f"{shorten(value)!r}: a Flux URI has no query, fragment or white space")
    parts = urlsplit(value)
    if scheme == "ssh":
        _check_ssh(value, parts.netloc)
    elif parts.netloc:
        raise ValueError(
            f"{shorten(value)!r}: a {scheme}:// URI names a path on this machine "
            f"({scheme}:///path), not a host"
        )
    _check_path(value, parts.path)
    return value


def _check_ssh(value: str, netloc: str) -> None:
    user, at, hostport = netloc.rpartition("@")
    if at and (not USER.fullmatch(user)):
        raise ValueError(
            f"{shorten(value)!r}: an ssh:// user must be a user name (letters, digits, "
            "'.', '_' and '-', not starting with '-')"
        )
    host, colon, port = hostport, "", ""
    if not hostport.startswith("["):
        host, colon, port = hostport.partition(":")
    elif "]:" in hostport:
        host, _, port = hostport.partition("]:")
        host, colon = host + "]", ":"
    if not (HOST.fullmatch(host) or IPV6.fullmatch(host)):
        raise ValueError(
            f"{shorten(value)!r}: an ssh:// host must be a host name or an address "
            "(letters, digits, '.' and '-', not starting with '-')"
        )
    if colon and not (port.isdigit() and 0 < int(port) < 65536):
        raise ValueError(f"{shorten(value)!r}: an ssh:// port must be a number from 1 to 65535")


def needs_resolving(uri: str | None) -> bool:
    """True when ``uri`` is one flux-core's resolver turns into an address."""
    return bool(uri) and str(uri).split(":", 1)[0] in RESOLVED_SCHEMES


def _check_resolvable(value: str, scheme: str, argument: str) -> None:
    if any(c.isspace() for c in argument) or "#" in argument:
        raise ValueError(f"{shorten(value)!r}: a Flux URI has no fragment or white space")
    argument, question, query = argument.partition("?")
    if scheme == "jobid":
        _check_jobid_path(value, argument)
        if question and query not in JOBID_QUERIES:
            raise ValueError(
                f"{shorten(value)!r}: a jobid: URI takes ?local or ?remote, no other query"
            )
        return
    if question:
        raise ValueError(f"{shorten(value)!r}: a {scheme}: URI takes no query")
    rule = {"pid": PID, "slurm": SLURM_JOBID, "lsf": LSF_JOBID}[scheme]
    if not rule.fullmatch(argument):
        what = {"pid": "a process ID", "slurm": "a Slurm job ID", "lsf": "an LSF job ID"}
        raise ValueError(f"{shorten(value)!r}: a {scheme}: URI names {what[scheme]} (digits)")


def _check_jobid_path(value: str, path: str) -> None:
    """A path of job IDs, each in an encoding Flux reads: ``ƒA/ƒB``; the resolver's
    ``/`` (the root instance) may lead it and ``..`` (the parent) stand for one."""
    rule = f"{shorten(value)!r}: a jobid: URI names a job, or a path of them (jobid:ƒA/ƒB)"
    steps = path.removeprefix("/").split("/")
    if not path or any(not step for step in steps):
        raise ValueError(rule)
    for step in steps:
        if step == "..":
            continue
        try:
            parse_jobid(step)
        except ValueError as err:
            raise ValueError(f"{rule}: {err}") from None


def _check_path(value: str, path: str) -> None:
    if not PATH.fullmatch(path) or path == "/":
        raise ValueError(
            f"{shorten(value)!r}: the socket path must be absolute, of letters, digits "
            "and '_./+,:=@%~-' (no white space, quotes or shell characters)"
        )
