"""A small HTTP/1.1 server on anyio + h11, for the embedded test authorization server.

The h11 plumbing is the receiver's own (``oauth_loopback._receiver._http``: the connection
table and its cap, the per-connection guard, reads, response bytes); what is here is generic: a
synchronous handler maps one :class:`HttpRequest` to one :class:`HttpResponse`. Unlike the
callback receiver it reads request bodies (token and registration requests are POSTs) and keeps
connections alive, because httpx and browsers reuse them. No threads; the handler never blocks.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import anyio
import h11
from anyio.abc import SocketListener, SocketStream, TaskGroup

from .._receiver._http import Connections, Slot, guard_connection, reason, receive, response_bytes

logger = logging.getLogger("oauth_loopback.testing")

# Request line + headers: h11's default is 16 KiB; 8 KiB is ample for an authorization URL
# (a PKCE challenge, a state, a redirect URI and some scopes) plus a browser's headers.
MAX_REQUEST_HEAD = 8 * 1024
# A token request is a few hundred bytes, a registration request a few KiB.
MAX_REQUEST_BODY = 64 * 1024
_BACKLOG = 64


class Headers(Mapping[str, str]):
    """Request headers, looked up case-insensitively (authlib asks for ``Authorization``)."""

    __slots__ = ("_items",)

    def __init__(self, items: dict[str, str]) -> None:
        self._items = items

    def __getitem__(self, key: str) -> str:
        return self._items[key.lower()]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)


@dataclass(frozen=True)
class HttpRequest:
    """One parsed request: what the handler sees."""

    method: str
    target: str
    headers: Headers
    body: bytes = b""

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    @property
    def query(self) -> str:
        return urlsplit(self.target).query


@dataclass
class HttpResponse:
    """What the handler answers. ``location`` is mutable: authlib's RFC 9207 hook edits it."""

    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)

    @property
    def location(self) -> str | None:
        for name, value in self.headers:
            if name.lower() == "location":
                return value
        return None

    @location.setter
    def location(self, value: str) -> None:
        self.headers = [(n, v) for n, v in self.headers if n.lower() != "location"]
        self.headers.append(("Location", value))


Handler = Callable[[HttpRequest], HttpResponse]


class _TooLarge(Exception):
    """The request body is over :data:`MAX_REQUEST_BODY`."""


class _HeadTooLarge(Exception):
    """The request line and headers are over :data:`MAX_REQUEST_HEAD`."""


class _BadHeaders(Exception):
    """A header that must appear once appeared twice."""


# Headers whose repetition would make the request ambiguous: answer 400 (RFC 9110 §5.3).
_SINGLE_HEADERS = frozenset({"host", "authorization", "content-type", "origin"})


def _headers(raw: list[tuple[bytes, bytes]]) -> Headers:
    items: dict[str, str] = {}
    for name_b, value_b in raw:
        name = name_b.decode("ascii").lower()
        value = value_b.decode("latin-1")
        if name in items:
            if name in _SINGLE_HEADERS:
                raise _BadHeaders(name)
            items[name] = f"{items[name]}, {value}"
        else:
            items[name] = value
    return Headers(items)


class HttpServer:
    """Serve ``handler`` on a listener until the surrounding task group is cancelled."""

    def __init__(
        self,
        handler: Handler,
        *,
        read_timeout: float = 10.0,
        max_connections: int = 32,
    ) -> None:
        self._handler = handler
        self._read_timeout = read_timeout
        self._connections = Connections(max_connections, logger)

    async def accept_loop(self, listener: SocketListener, tg: TaskGroup) -> None:
        async with listener:
            while True:
                try:
                    stream = await listener.accept()
                except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                    return
                except OSError as exc:
                    logger.warning("accept() failed (%s); retrying shortly", exc)
                    await anyio.sleep(0.05)
                    continue
                slot = self._connections.open()  # at the cap, the idlest connection goes
                tg.start_soon(self._serve_connection, stream, slot)

    async def _serve_connection(self, stream: SocketStream, slot: Slot) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_REQUEST_HEAD)
        async with guard_connection(stream, slot, self._connections, logger):
            while True:
                answer = await self._next_response(conn, stream, slot)
                if answer is None:
                    return
                method, response = answer
                with anyio.move_on_after(self._read_timeout):
                    await self._send(conn, stream, response, head=method == "HEAD")
                if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                    return
                conn.start_next_cycle()  # keep-alive: httpx and browsers reuse connections

    async def _next_response(
        self, conn: h11.Connection, stream: SocketStream, slot: Slot
    ) -> tuple[str, HttpResponse] | None:
        """The next request's method and its response; None when the connection is done."""
        status = 408  # what the peer gets if the deadline passes mid-request
        with anyio.move_on_after(self._read_timeout):
            try:
                request = await self._read_request(conn, stream, slot)
            except h11.RemoteProtocolError as exc:
                status = exc.error_status_hint
            except _TooLarge:
                status = 413
            except _HeadTooLarge:
                status = 431
            except _BadHeaders:
                status = 400
            else:
                if request is None:
                    return None
                return request.method, self._handler(request)
        if conn.our_state is not h11.IDLE and conn.our_state is not h11.SEND_RESPONSE:
            return None
        if conn.their_state is h11.IDLE and status == 408:
            return None  # an idle keep-alive connection timed out: just close it
        return "", HttpResponse(status, reason(status), [("Connection", "close")])

    async def _read_request(
        self, conn: h11.Connection, stream: SocketStream, slot: Slot
    ) -> HttpRequest | None:
        head: h11.Request | None = None
        body = bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await receive(stream, slot))
            elif isinstance(event, h11.Request):
                head = event
                # h11 caps only a head that arrives incomplete; a complete one that is too
                # big (one large write) is refused here, so the cap holds either way.
                size = len(event.target) + sum(len(n) + len(v) + 4 for n, v in event.headers)
                if size > MAX_REQUEST_HEAD:
                    raise _HeadTooLarge
                length = dict(event.headers).get(b"content-length")
                if length is not None and int(length) > MAX_REQUEST_BODY:
                    raise _TooLarge
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > MAX_REQUEST_BODY:
                    raise _TooLarge
            elif isinstance(event, h11.EndOfMessage):
                if head is None:  # h11 always sends Request first; never trust that blindly
                    return None
                try:  # h11 lets obs-text through in the target; we accept ASCII only
                    target = head.target.decode("ascii")
                except UnicodeDecodeError:
                    raise _BadHeaders from None
                return HttpRequest(
                    method=head.method.decode("ascii"),
                    target=target,
                    headers=_headers(list(head.headers)),
                    body=bytes(body),
                )
            else:
                return None  # ConnectionClosed, or PAUSED after a request we answered

    async def _send(
        self, conn: h11.Connection, stream: SocketStream, response: HttpResponse, *, head: bool
    ) -> None:
        headers = [(n.encode("latin-1"), v.encode("latin-1")) for n, v in response.headers]
        await stream.send(response_bytes(conn, response.status, headers, response.body, head=head))


def bind_loopback() -> socket.socket:
    """A listening, non-blocking socket on 127.0.0.1 with a port the OS picks (never wider)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", 0))
        sock.listen(_BACKLOG)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock
