"""Serving connections: accept, move bytes through h11, decide with the core, answer.

Every decision is made by the sans-I/O core (``_routing``, ``_registry``, ``_pages``); this
module only does I/O, and every per-connection failure stays in its connection (SECURITY.md).
:class:`ConnectionServer` serves the listening sockets of one receiver; the public
:class:`~oauth_loopback.CallbackReceiver` owns it and the state registry it dispatches to.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

import anyio
import h11

from .._errors import CallbackRejected
from ._http import RECEIVE_SIZE, Connections, Slot, guard_connection, receive, response_bytes
from ._pages import PAGE_HEADERS, page_for, page_for_protocol_error, page_for_rejection
from ._registry import AuthorizationResponse, Outcome, StateRegistry
from ._routing import route

if TYPE_CHECKING:
    # Imported where used instead: anyio.abc and socket cost ~4 ms of `import oauth_loopback`
    # (docs/benchmarks.md), and the event loop imports both anyway once it runs.
    import socket

    from anyio.abc import SocketStream, TaskGroup

    from .._config import CallbackConfig
    from ._receiver import PendingCallback

__all__ = ["MAX_REQUEST_HEAD", "ConnectionServer"]

logger = logging.getLogger("oauth_loopback.server")

# Request line + headers. h11's default is 16 KiB (node.js uses 80 KiB); a callback is one
# short line plus a browser's ~1 KiB of headers, so 8 KiB is ample and keeps floods cheap.
MAX_REQUEST_HEAD = 8 * 1024
_ALLOW_GET = ((b"Allow", b"GET"),)
# Longest a page write may outlive the receiver's close (a page is ~1 KiB: it normally
# fits the socket buffer at once; this bounds a peer that stops reading).
_WRITE_GRACE = 2.0


class ConnectionServer:
    """Accepts and answers the connections of one receiver; one task per slow connection."""

    def __init__(
        self,
        config: CallbackConfig,
        registry: StateRegistry[PendingCallback],
        allowed_hosts: frozenset[bytes],
    ) -> None:
        self.config = config
        self._registry = registry
        self._allowed_hosts = allowed_hosts
        self._connections = Connections(config.max_connections, logger)

    async def accept_loop(self, sock: socket.socket, tg: TaskGroup) -> None:
        # Accepts on the raw non-blocking socket. A browser sends its request with the
        # handshake, so the whole head is nearly always in the kernel's buffer when accept()
        # returns: such a request is answered right here, with no transport, no task and no
        # read deadline (nothing is waited for). Anything else -- no data yet, a partial head
        # -- becomes an anyio stream served by its own task with the bytes already read.
        # (docs/benchmarks.md: this is what puts dispatch below the bare anyio + h11 floor.)
        with sock:
            while True:
                await anyio.wait_readable(sock)
                try:
                    client, _addr = sock.accept()
                except BlockingIOError:
                    continue  # another process or a reset connection took it
                except OSError as exc:
                    if exc.errno in (errno.EMFILE, errno.ENFILE) and self._connections:
                        # Out of file descriptors before reaching max_connections: make room
                        # as the cap does (the connection idle longest goes), or idle sockets
                        # would keep the browser queued in the kernel until their deadlines.
                        self._connections.evict_idlest()
                        from anyio.lowlevel import checkpoint

                        await checkpoint()
                        continue
                    # EMFILE and friends: back off instead of spinning; keep serving.
                    logger.warning("accept() failed (%s); retrying shortly", exc)
                    await anyio.sleep(0.05)
                    continue
                await self._accepted(client, tg)

    async def _accepted(self, client: socket.socket, tg: TaskGroup) -> None:
        import socket

        from anyio.abc import SocketStream

        try:
            client.setblocking(False)
            try:
                initial = client.recv(MAX_REQUEST_HEAD)
            except BlockingIOError:
                initial = None
            except OSError as exc:  # reset before we read: nothing to answer
                logger.debug("connection ended: %s", type(exc).__name__)
                client.close()
                return
            if initial == b"":  # connected and left without asking anything
                client.close()
                return
            if initial is not None and await self._answer_now(client, initial, tg):
                return
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            stream = await SocketStream.from_socket(client)
        except BaseException:
            client.close()
            raise
        slot = self._connections.open()
        tg.start_soon(self._serve_connection, stream, slot, initial or b"")

    async def _answer_now(self, client: socket.socket, initial: bytes, tg: TaskGroup) -> bool:
        """Answer a request whose whole head arrived with the connection; False if it did not.

        The same h11 parsing, checks and page as ``_serve_connection``; a head that is
        incomplete or malformed is left to it (it gets the same bytes and answers the error).
        """
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_REQUEST_HEAD - 1)
        conn.receive_data(initial)
        try:
            request = conn.next_event()
        except h11.RemoteProtocolError:
            return False
        if not isinstance(request, h11.Request):
            return False
        try:
            status, body, extra = await self._answer(request)
            data = response_bytes(
                conn, status, (*PAGE_HEADERS, *extra), body, head=request.method == b"HEAD"
            )
            try:
                sent = client.send(data)
            except BlockingIOError:
                sent = 0
        except (OSError, h11.LocalProtocolError) as exc:
            logger.debug("connection ended: %s", type(exc).__name__)
        except Exception:
            # The per-connection guard of _serve_connection, for this connection.
            logger.exception("bug in oauth-loopback while serving a connection; please report it")
        else:
            if sent < len(data):  # the socket buffer was full (a page is ~2 KiB): finish later
                from anyio.abc import SocketStream

                stream = await SocketStream.from_socket(client)
                tg.start_soon(self._finish_write, stream, data[sent:])
                return True
        client.close()
        return True

    async def _finish_write(self, stream: SocketStream, data: bytes) -> None:
        # Bounded like _serve_connection's page write: a peer that stops reading is dropped.
        with anyio.CancelScope(shield=True) as write_scope:
            write_scope.deadline = anyio.current_time() + min(
                self.config.read_timeout, _WRITE_GRACE
            )
            try:
                await stream.send(data)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
                logger.debug("connection ended: %s", type(exc).__name__)
            finally:
                await anyio.aclose_forcefully(stream)

    async def _serve_connection(
        self, stream: SocketStream, slot: Slot, initial: bytes = b""
    ) -> None:
        # h11 checks its limit only while an event is incomplete, so a head that completes
        # inside the read that crosses the limit would slip through: _read_request never
        # reads past MAX_REQUEST_HEAD, and h11 refuses a buffer of that size still incomplete.
        # ``initial``: what _accepted already read (at most MAX_REQUEST_HEAD bytes).
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_REQUEST_HEAD - 1)
        if initial:
            conn.receive_data(initial)
        deadline = self.config.read_timeout
        async with guard_connection(stream, slot, self._connections, logger):
            request: h11.Request | None = None
            status = 408  # what the peer gets if the deadline passes first
            with anyio.move_on_after(deadline):
                try:
                    request = await self._read_request(conn, stream, slot, len(initial))
                except h11.RemoteProtocolError as exc:
                    status = exc.error_status_hint
            if request is not None:
                status, body, extra = await self._answer(request)
            elif conn.their_state is h11.CLOSED or conn.our_state not in (
                h11.IDLE,
                h11.SEND_RESPONSE,
            ):
                return  # the peer left without asking anything
            else:
                body, extra = page_for_protocol_error(status), ()
            # Shielded but bounded: a login that completes and leaves the receiver at once
            # must not cut its own browser page off mid-write.
            with anyio.CancelScope(shield=True) as write_scope:
                write_scope.deadline = anyio.current_time() + min(deadline, _WRITE_GRACE)
                head = request is not None and request.method == b"HEAD"
                data = response_bytes(conn, status, (*PAGE_HEADERS, *extra), body, head=head)
                await stream.send(data)

    async def _read_request(
        self, conn: h11.Connection, stream: SocketStream, slot: Slot, received: int = 0
    ) -> h11.Request | None:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                room = MAX_REQUEST_HEAD - received
                if room <= 0:  # h11 skipped some bytes (blank lines) and still has no request
                    msg = "request head too large"
                    raise h11.RemoteProtocolError(msg, error_status_hint=431)
                data = await receive(stream, slot, min(RECEIVE_SIZE, room))
                received += len(data)
                conn.receive_data(data)
            elif isinstance(event, h11.Request):
                return event
            else:
                return None  # ConnectionClosed (PAUSED cannot come before a request)

    async def _answer(
        self, request: h11.Request
    ) -> tuple[int, bytes, Iterable[tuple[bytes, bytes]]]:
        """Decide on ``request`` and return the (status, page, extra headers) to send."""
        decided = self._dispatch(request)
        if isinstance(decided, tuple):
            return decided
        # Delivered. Let the woken login run before the page is rendered and written
        # (the caller can start its token exchange at once), then answer the browser.
        from anyio.lowlevel import cancel_shielded_checkpoint

        await cancel_shielded_checkpoint()
        status, body = page_for(decided, self.config.app_name)
        return status, body, ()

    def _dispatch(
        self, request: h11.Request
    ) -> tuple[int, bytes, Iterable[tuple[bytes, bytes]]] | Outcome:
        """Refused: the (status, page, extra headers) to send. Delivered: the outcome."""
        host: bytes | None = None
        for name, value in request.headers:
            if name == b"host":
                if host is not None:  # two Host headers: RFC 9112 §3.2 says 400
                    host = None
                    break
                host = value
        config = self.config
        try:
            query = route(
                request.method,
                request.target,
                host,
                path=config.path,
                allowed_hosts=self._allowed_hosts,
                app_name=config.app_name,
            )
            waiter, outcome = self._registry.match(query, config.app_name)
        except CallbackRejected as exc:
            # Log the kind of refusal only: the query may hold a code or a state.
            logger.info("refused a request: %s (HTTP %d)", exc.title, exc.status_hint)
            status, body = page_for_rejection(exc)
            return status, body, _ALLOW_GET if status == 405 else ()
        # Wake the waiter first: the caller can start its token exchange while the browser
        # is still being answered.
        waiter._resolve(outcome)
        logger.info(
            "authorization response delivered (%s)",
            "code" if isinstance(outcome, AuthorizationResponse) else type(outcome).__name__,
        )
        return outcome
