"""h11 plumbing shared by the callback receiver and the embedded authorization server.

One home for what both HTTP servers do the same way: the connection table with its cap
(when full, the connection idle longest goes, so idle sockets never lock a browser out), the
per-connection guard (a failure costs that connection, never the server), reading from a
stream with the slot's activity clock, and the response bytes. What differs stays with each
server: the receiver answers one request per connection and reads no body; the embedded
server (``oauth_loopback.testing._http``) keeps connections alive and reads bodies.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import anyio
import h11

if TYPE_CHECKING:
    from anyio.abc import ByteStream

__all__ = ["Connections", "Slot", "guard_connection", "reason", "receive", "response_bytes"]

RECEIVE_SIZE = 4096
# The reason phrases of the statuses we send (RFC 9110 §15); others are looked up in
# http.HTTPStatus on first use, so importing the receiver does not build that enum.
_REASONS = {
    200: b"OK",
    302: b"Found",
    303: b"See Other",
    400: b"Bad Request",
    401: b"Unauthorized",
    403: b"Forbidden",
    404: b"Not Found",
    405: b"Method Not Allowed",
    408: b"Request Timeout",
    413: b"Content Too Large",
    421: b"Misdirected Request",
    429: b"Too Many Requests",
    431: b"Request Header Fields Too Large",
    501: b"Not Implemented",
    505: b"HTTP Version Not Supported",
}


def reason(status: int) -> bytes:
    """The reason phrase for ``status`` (empty for an unknown code, as RFC 9112 §4 allows)."""
    phrase = _REASONS.get(status)
    if phrase is None:
        from http import HTTPStatus

        try:
            phrase = HTTPStatus(status).phrase.encode()
        except ValueError:
            phrase = b""
        _REASONS[status] = phrase
    return phrase


def response_bytes(
    conn: h11.Connection,
    status: int,
    headers: Iterable[tuple[bytes, bytes]],
    body: bytes,
    *,
    head: bool = False,
) -> bytes:
    """One whole response (head, body, end) as bytes, with ``Content-Length`` added."""
    all_headers = [*headers, (b"Content-Length", str(len(body)).encode())]
    response = h11.Response(status_code=status, headers=all_headers, reason=reason(status))
    data = conn.send(response) or b""
    if not head:  # RFC 9110 §9.3.2: a HEAD response has GET's headers and no content
        data += conn.send(h11.Data(data=body)) or b""
    data += conn.send(h11.EndOfMessage()) or b""
    return data


class Slot:
    """Book-keeping for one connection: when it last spoke, and how to end it."""

    __slots__ = ("last_activity", "scope")

    def __init__(self, now: float) -> None:
        self.last_activity = now
        self.scope = anyio.CancelScope()


class Connections:
    """The open connections of one server, capped: at the cap the idlest is closed."""

    __slots__ = ("_limit", "_logger", "_slots")

    def __init__(self, limit: int, logger: logging.Logger) -> None:
        self._limit = limit
        self._logger = logger
        self._slots: dict[Slot, None] = {}

    def __len__(self) -> int:
        return len(self._slots)

    def open(self) -> Slot:
        """A slot for a new connection, closing the idlest one first when at the cap."""
        if len(self._slots) >= self._limit:
            self.evict_idlest()
        slot = Slot(anyio.current_time())
        self._slots[slot] = None
        return slot

    def close(self, slot: Slot) -> None:
        self._slots.pop(slot, None)

    def evict_idlest(self) -> None:
        """Close the connection that has been idle longest (a no-op with none open)."""
        if not self._slots:
            return
        victim = min(self._slots, key=lambda s: s.last_activity)
        del self._slots[victim]
        victim.scope.cancel()
        self._logger.info(
            "connection limit (%d) reached; closed the connection idle longest", self._limit
        )


async def receive(stream: ByteStream, slot: Slot, max_bytes: int = RECEIVE_SIZE) -> bytes:
    """Read what the peer sent (``b""`` at its end) and note the activity on ``slot``."""
    try:
        data = await stream.receive(max_bytes)
    except anyio.EndOfStream:
        data = b""
    slot.last_activity = anyio.current_time()
    return data


@asynccontextmanager
async def guard_connection(
    stream: ByteStream, slot: Slot, connections: Connections, logger: logging.Logger
) -> AsyncIterator[None]:
    """Serve one connection inside this block; whatever happens, it costs that connection only.

    A peer that leaves, resets or breaks the protocol ends its connection quietly (DEBUG); any
    other exception is a bug of ours, logged with its traceback (the one broad
    guard), and the connection is closed. Cancellation (the server closing) passes through.
    """
    try:
        with slot.scope:
            yield
    except (anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream):
        pass  # the peer went away; nothing to answer
    except (OSError, h11.ProtocolError) as exc:
        logger.debug("connection ended: %s", type(exc).__name__)
    except Exception:
        logger.exception("bug in oauth-loopback while serving a connection; please report it")
    finally:
        connections.close(slot)
        await anyio.aclose_forcefully(stream)
