"""Wire format between simulated Flux handles and the simulated broker.

One JSON object per line over a Unix stream socket. A request carries a
``topic``, a ``matchtag`` and a ``payload``; every response carries the matchtag
of its request and either a ``payload`` or an ``errnum`` (with an optional
``errstr``), as Flux RPC responses do.
"""

from __future__ import annotations

import json
from typing import Any

Message = dict[str, Any]


def encode(message: Message) -> bytes:
    """Serialize one message as a line."""
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


class LineDecoder:
    """Reassembles messages from the byte chunks a stream socket delivers."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> list[Message]:
        """Add received bytes; return the complete messages they finish."""
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        return [json.loads(line) for line in lines if line]


def response(matchtag: int, payload: Any = None) -> Message:
    """A successful response."""
    return {"matchtag": matchtag, "payload": payload}


def error_response(matchtag: int, errnum: int, errstr: str | None = None) -> Message:
    """An error response, like ``flux_respond_error``."""
    return {"matchtag": matchtag, "errnum": errnum, "errstr": errstr}
