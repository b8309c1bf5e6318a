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
from ._heads import MAX_REQUEST_HEAD, HeadFilter
from ._http import RECEIVE_SIZE, Connections, Slot, guard_connection, receive, response_bytes
from ._pages import (
    PAGE_HEADERS,
    page_for,
    page_for_finished,
    page_for_protocol_error,
    page_for_rejection,
)
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

_ALLOW_GET = ((b"Allow", b"GET"),)
# Longest a page write may outlive the receiver's close (a page is ~1 KiB: it normally
# fits the socket buffer at once; this bounds a peer that stops reading).
_WRITE_GRACE = 2.0
# accept() errors that concern one connection only (it was reset or aborted while queued):
# take the next one at once (Linux reports most of these on the accepted socket instead).
_ACCEPT_GONE = frozenset(
    {errno.ECONNABORTED, errno.ECONNRESET, errno.EPROTO, errno.EPERM, errno.EINTR}
)


def _new_conn() -> h11.Connection:
    # h11 checks its limit only while an event is incomplete; HeadFilter enforces the exact
    # cap on what it passes on, and h11's limit stays as a second fence at the same size.
    return h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_REQUEST_HEAD - 1)


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
        # The events of pages held for PendingCallback.finish(); set all at once on close.
        self._held: set[anyio.Event] = set()
        self._released = False

    def release_held(self) -> None:
        """Answer every held page now, and hold none from here on (the receiver is closing)."""
        self._released = True
        for event in list(self._held):
            event.set()

    async def accept_loop(self, sock: socket.socket, tg: TaskGroup) -> None:
        # Accepts on the raw non-blocking socket. A browser sends its request with the
        # handshake, so the whole head is nearly always in the kernel's buffer when accept()
        # returns: such a request is answered right here, with no transport, no task and no
        # read deadline (nothing is waited for). Anything else -- no data yet, a partial head
        # -- becomes an anyio stream served by its own task with the bytes already read.
        # (This is what puts dispatch below the bare anyio + h11 floor: docs/benchmarks.md.)
        with sock:
            while True:
                await anyio.wait_readable(sock)
                try:
                    client, _addr = sock.accept()
                except BlockingIOError:
                    continue  # another process or a reset connection took it
                except OSError as exc:
                    if exc.errno in _ACCEPT_GONE:
                        continue
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
                try:
                    await self._accepted(client, tg)
                except Exception:
                    # The per-connection guard of the accept path (STYLE §3.6: the one broad
                    # handler, like guard_connection): whatever one connection does, the
                    # receiver keeps serving. Peer behaviour never lands here; a bug does.
                    client.close()
                    logger.exception(
                        "bug in oauth-loopback while serving a connection; please report it"
                    )

    async def _accepted(self, client: socket.socket, tg: TaskGroup) -> None:
        """Answer ``client`` at once if its head is here, else hand it to its own task.

        A peer may reset the connection at any point of this (even before accept() ran:
        the kernel still hands us the socket); every such failure costs this socket only.
        """
        import socket

        heads = HeadFilter(self.config.app_name)
        head = b""
        try:
            client.setblocking(False)
            try:
                initial = client.recv(MAX_REQUEST_HEAD)
            except BlockingIOError:
                initial = None
            if initial == b"":  # connected and left without asking anything
                client.close()
                return
            if initial is not None:
                try:
                    head = heads.feed(initial)
                except CallbackRejected as exc:
                    await self._refuse_now(client, exc, tg)
                    return
                if heads.done and await self._answer_now(client, head, tg):
                    return
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError as exc:  # reset (or aborted) before or while we read: nothing to answer
            logger.debug("connection ended: %s", type(exc).__name__)
            client.close()
            return
        except BaseException:
            client.close()
            raise
        stream = await self._stream(client)
        if stream is None:
            return
        slot = self._connections.open()
        tg.start_soon(self._serve_connection, stream, slot, heads, head)

    @staticmethod
    async def _stream(client: socket.socket) -> SocketStream | None:
        """``client`` as an anyio stream, or None (and closed) if the peer already left."""
        from anyio.abc import SocketStream

        try:
            return await SocketStream.from_socket(client)
        except (OSError, ValueError) as exc:
            # anyio checks the socket is connected (getpeername()) and says ValueError when
            # a reset got there first: the peer is gone, so is this connection.
            logger.debug("connection ended before it was set up: %s", type(exc).__name__)
            client.close()
            return None
        except BaseException:
            client.close()
            raise

    async def _answer_now(self, client: socket.socket, head: bytes, tg: TaskGroup) -> bool:
        """Answer a request whose whole head arrived with the connection; False if it did not.

        The same h11 parsing, checks and page as ``_serve_connection``; a head that is
        malformed is left to it (it gets the same bytes and answers the error).
        """
        conn = _new_conn()
        conn.receive_data(head)
        try:
            request = conn.next_event()
        except h11.RemoteProtocolError:
            return False
        if not isinstance(request, h11.Request):
            return False
        decided = self._dispatch(request)
        if not isinstance(decided, _Delivered):
            status, body, extra = decided
        else:
            waiter, outcome = decided.waiter, decided.outcome
            if _holds(waiter, outcome):
                # The page waits for finish(): never here, in the accept loop.
                stream = await self._stream(client)
                if stream is not None:
                    tg.start_soon(self._answer_held, stream, conn, waiter, request.method)
                return True
            status, body, extra = await self._delivered(waiter, outcome)
        try:
            data = response_bytes(
                conn, status, (*PAGE_HEADERS, *extra), body, head=request.method == b"HEAD"
            )
        except h11.LocalProtocolError as exc:  # e.g. an HTTP/1.0 peer h11 cannot answer so
            logger.debug("connection ended: %s", type(exc).__name__)
            client.close()
            return True
        await self._send_now(client, data, tg)
        return True

    async def _refuse_now(
        self, client: socket.socket, exc: CallbackRejected, tg: TaskGroup
    ) -> None:
        """Answer a head refused before it was parsed (too large) with its 4xx page."""
        logger.info("refused a request: %s (HTTP %d)", exc.title, exc.status_hint)
        status, body = page_for_rejection(exc)
        await self._send_now(client, response_bytes(_new_conn(), status, PAGE_HEADERS, body), tg)

    async def _send_now(self, client: socket.socket, data: bytes, tg: TaskGroup) -> None:
        """Write ``data`` and close; what the socket buffer cannot take goes to a task."""
        try:
            sent = client.send(data)
        except BlockingIOError:
            sent = 0
        except OSError as exc:  # reset or closed by the peer before the page went out
            logger.debug("connection ended: %s", type(exc).__name__)
            client.close()
            return
        if sent < len(data):  # the socket buffer was full (a page is ~2 KiB): finish later
            stream = await self._stream(client)
            if stream is not None:
                tg.start_soon(self._finish_write, stream, data[sent:])
            return
        client.close()

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
        self, stream: SocketStream, slot: Slot, heads: HeadFilter, head: bytes = b""
    ) -> None:
        # ``heads`` and ``head``: the filter _accepted started and what it passed on so far.
        conn = _new_conn()
        if head:
            conn.receive_data(head)
        deadline = self.config.read_timeout
        async with guard_connection(stream, slot, self._connections, logger):
            request: h11.Request | None = None
            refusal: CallbackRejected | None = None
            status = 408  # what the peer gets if the deadline passes first
            with anyio.move_on_after(deadline):
                try:
                    request = await self._read_request(conn, stream, slot, heads)
                except h11.RemoteProtocolError as exc:
                    status = exc.error_status_hint
                except CallbackRejected as exc:  # HeadFilter: too large
                    refusal = exc
            if request is not None:
                status, body, extra = await self._answer(request)
            elif refusal is not None:
                logger.info("refused a request: %s (HTTP %d)", refusal.title, refusal.status_hint)
                (status, body), extra = page_for_rejection(refusal), ()
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
                head_only = request is not None and request.method == b"HEAD"
                data = response_bytes(conn, status, (*PAGE_HEADERS, *extra), body, head=head_only)
                await stream.send(data)

    async def _read_request(
        self, conn: h11.Connection, stream: SocketStream, slot: Slot, heads: HeadFilter
    ) -> h11.Request | None:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                if heads.done:  # the head ended where h11 sees no end: never read past it
                    msg = "malformed request head"
                    raise h11.RemoteProtocolError(msg, error_status_hint=400)
                data = await receive(stream, slot, RECEIVE_SIZE)
                if not data:
                    conn.receive_data(b"")  # the peer's end of stream
                    continue
                passed = heads.feed(data)  # raises CallbackRejected (431) past a cap
                if passed:  # b"" would tell h11 the stream ended
                    conn.receive_data(passed)
            elif isinstance(event, h11.Request):
                return event
            else:
                return None  # ConnectionClosed (PAUSED cannot come before a request)

    async def _answer(
        self, request: h11.Request
    ) -> tuple[int, bytes, Iterable[tuple[bytes, bytes]]]:
        """Decide on ``request`` and return the (status, page, extra headers) to send."""
        decided = self._dispatch(request)
        if not isinstance(decided, _Delivered):
            return decided
        return await self._delivered(decided.waiter, decided.outcome)

    async def _delivered(
        self, waiter: PendingCallback, outcome: Outcome
    ) -> tuple[int, bytes, Iterable[tuple[bytes, bytes]]]:
        """The page for a delivered response, once the woken login had its turn."""
        # Let the woken login run before the page is rendered and written (the caller can
        # start its token exchange at once), then answer the browser.
        from anyio.lowlevel import cancel_shielded_checkpoint

        await cancel_shielded_checkpoint()
        if _holds(waiter, outcome):
            await self._hold(waiter)
            status, body = page_for_finished(waiter._verdict, self.config.app_name)
        else:
            status, body = page_for(outcome, self.config.app_name)
        return status, body, ()

    async def _hold(self, waiter: PendingCallback) -> None:
        """Wait, up to ``waiter.hold_page`` seconds, for ``finish()`` or the receiver's close.

        Shielded: the page of a login that finishes and leaves the receiver at once must
        still be answered (its close sets the event, so this ends at once then).
        """
        if self._released:
            return
        event = waiter._page_ready()
        self._held.add(event)
        try:
            with anyio.CancelScope(shield=True) as hold:
                hold.deadline = anyio.current_time() + waiter.hold_page
                await event.wait()
        finally:
            self._held.discard(event)

    async def _answer_held(
        self, stream: SocketStream, conn: h11.Connection, waiter: PendingCallback, method: bytes
    ) -> None:
        """The accept path's held page: wait for finish(), then write it like any page."""
        try:
            await self._hold(waiter)
            status, body = page_for_finished(waiter._verdict, self.config.app_name)
            data = response_bytes(conn, status, PAGE_HEADERS, body, head=method == b"HEAD")
        except BaseException:
            await anyio.aclose_forcefully(stream)
            raise
        await self._finish_write(stream, data)

    def _dispatch(
        self, request: h11.Request
    ) -> tuple[int, bytes, Iterable[tuple[bytes, bytes]]] | _Delivered:
        """Refused: the (status, page, extra headers) to send. Delivered: waiter and outcome."""
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
        return _Delivered(waiter, outcome)


class _Delivered:
    """A response that reached its login: the waiter (already woken) and its outcome."""

    __slots__ = ("outcome", "waiter")

    def __init__(self, waiter: PendingCallback, outcome: Outcome) -> None:
        self.waiter = waiter
        self.outcome = outcome


def _holds(waiter: PendingCallback, outcome: Outcome) -> bool:
    """Whether this page waits for ``finish()``: a code arrived for a login that holds."""
    return bool(waiter.hold_page) and isinstance(outcome, AuthorizationResponse)
