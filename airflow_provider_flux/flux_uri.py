"""What a ``flux`` connection may name as its instance: a Flux URI, checked per scheme.

flux-core's ssh connector (``src/connectors/ssh/ssh.c``) runs ``ssh [-p PORT]
[USER@]HOST ... flux relay /PATH``: the host comes right after ``ssh`` with no ``--``,
so a host that starts with ``-`` is an ssh option (``-oProxyCommand=CMD`` runs CMD
wherever a handle is opened: workers, the triggerer, the api-server testing the
connection), and the remote side runs the rest through its shell. So a host, a user
and a path are held to the characters such names have.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from airflow_provider_flux.job.limits import shorten

# The connection form: one field, the URI. Airflow 3.2 and newer read it from the
# provider info; 3.1 only from the hook's ``get_ui_field_behaviour``: both give this.
CONNECTION_FORM: dict[str, Any] = {
    "hidden-fields": ["port", "login", "password", "schema", "extra"],
    "relabeling": {"host": "Flux URI"},
    "placeholders": {
        "host": "local:///run/flux/local, ssh://[user@]host[:port]/path, "
        "or empty for $FLUX_URI / the system instance",
    },
}

SCHEMES = ("local", "ssh", "sim")
# A host name (RFC 1123 labels), an IPv4 address, or an IPv6 address in brackets.
HOST = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,62})(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}))*\.?")
IPV6 = re.compile(r"\[[0-9A-Fa-f:.]+\]")
USER = re.compile(r"[A-Za-z0-9_.][A-Za-z0-9_.-]{0,63}")
# A socket path: no white space, no quote, no shell metacharacter.
PATH = re.compile(r"/[A-Za-z0-9_./+,:=@%~-]*")
FORMS = (
    "local:///path/to/socket, ssh://[user@]host[:port]/path/to/socket, sim:///path "
    "(a simulated instance), a socket path, or nothing for the default instance"
)


def normalize_flux_uri(value: str | None) -> str | None:
    """Turn what a connection holds into a Flux URI; ``None`` means the default instance.

    Accepts a full URI of a scheme in :data:`SCHEMES` or a bare socket path, which
    means ``local://`` + path.

    :raises ValueError: not a URI of those forms, or one whose host, user or path
        could be taken for something else (the message says the rule).
    """
    value = (value or "").strip()
    if not value:
        return None
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


def _check_path(value: str, path: str) -> None:
    if not PATH.fullmatch(path) or path == "/":
        raise ValueError(
            f"{shorten(value)!r}: the socket path must be absolute, of letters, digits "
            "and '_./+,:=@%~-' (no white space, quotes or shell characters)"
        )
