"""The anyio shell: bind, accept, move bytes through h11, wake the waiting login.

Every decision is made by ``_core``; this module only does I/O. One task group per receiver,
no threads, no backend-specific imports: the same code runs on asyncio and on trio.

Why port 0 needs no retry loop (after trio's ``serve_tcp``): the kernel picks a free port at
``bind()``, we keep that very socket listening, and we read the port back from it. Nothing is
probed and re-bound later, so nothing can race us for it.
"""

from __future__ import annotations

import errno
import logging
import math
import sys
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import anyio
import h11

from ._config import CallbackConfig
from ._core import (
    PAGE_HEADERS,
    AuthorizationResponse,
    Outcome,
    StateRegistry,
    allowed_host_headers,
    page_for,
    page_for_protocol_error,
    page_for_rejection,
    route,
    split_target,
)
from ._errors import (
    CallbackPortInUse,
    CallbackRejected,
    CallbackTimeout,
    OAuthLoopbackError,
    ReceiverClosed,
)
from ._portowner import describe_port_holder

if TYPE_CHECKING:
    # Imported where used instead: anyio.abc and socket cost ~4 ms of `import oauth_loopback`
    # (docs/benchmarks.md), and the event loop imports both anyway once it runs.
    import socket

    from anyio.abc import SocketStream, TaskGroup

__all__ = ["CallbackReceiver", "PendingCallback", "open_receiver"]

logger = logging.getLogger("oauth_loopback.server")

# Request line + headers. h11's default is 16 KiB (node.js uses 80 KiB); a callback is one
# short line plus a browser's ~1 KiB of headers, so 8 KiB is ample and keeps floods cheap.
MAX_REQUEST_HEAD = 8 * 1024
_RECEIVE_SIZE = 4096
# listen() backlog (the kernel caps it at net.core.somaxconn). When the accept queue is full,
# Linux drops the SYN and the client retries only after 1 s: 500 callbacks arriving at once
# (benchmarks/receiver.py burst) took 1.5 s with 128 and take milliseconds with this.
_BACKLOG = 1024
# 32 bytes = 256 bits from the OS CSPRNG (DESIGN §5 asks for at least 128).
_STATE_BYTES = 32
# localhost mode: times to retry when the IPv6 side of an ephemeral port is taken.
_DUAL_STACK_TRIES = 8
_ALLOW_GET = ((b"Allow", b"GET"),)
# Longest a page write may outlive the receiver's close (a page is ~1 KiB: it normally
# fits the socket buffer at once; this bounds a peer that stops reading).
_WRITE_GRACE = 2.0
# The reason phrases of the statuses we send (RFC 9110 §15); others are looked up in
# http.HTTPStatus on first use, so importing the receiver does not build that enum.
_REASONS = {
    200: b"OK",
    400: b"Bad Request",
    404: b"Not Found",
    405: b"Method Not Allowed",
    408: b"Request Timeout",
    413: b"Content Too Large",
    421: b"Misdirected Request",
    431: b"Request Header Fields Too Large",
    501: b"Not Implemented",
    505: b"HTTP Version Not Supported",
}


def _reason(status: int) -> bytes:
    reason = _REASONS.get(status)
    if reason is None:
        from http import HTTPStatus

        try:
            reason = HTTPStatus(status).phrase.encode()
        except ValueError:
            reason = b""
        _REASONS[status] = reason
    return reason
# open_receiver() without a config: frozen, so one instance serves every call (building and
# validating a CallbackConfig is a sixth of the bind latency).
_DEFAULT_CONFIG = CallbackConfig()


class PendingCallback:
    """One login waiting on a receiver for the authorization response with its ``state``.

    Await :meth:`wait` once. When it returns, raises, times out or is cancelled, the state is
    forgotten: a later callback for it gets a 4xx page.
    """

    __slots__ = ("_awaited", "_event", "_outcome", "_receiver", "issuer", "state")

    def __init__(self, receiver: CallbackReceiver, state: str, issuer: str | None) -> None:
        self._receiver = receiver
        #: The OAuth ``state`` to put in the authorization URL.
        self.state = state
        #: The RFC 9207 issuer the response must name, or None.
        self.issuer = issuer
        self._outcome: Outcome | None = None
        self._event: anyio.Event | None = None
        self._awaited = False

    def __repr__(self) -> str:
        return f"<PendingCallback state=<redacted> issuer={self.issuer!r} done={self.done}>"

    @property
    def done(self) -> bool:
        """True once a response (or an error, or the receiver's close) has arrived."""
        return self._outcome is not None

    def _resolve(self, outcome: Outcome) -> None:
        if self._outcome is None:
            self._outcome = outcome
            if self._event is not None:
                self._event.set()

    # DESIGN §3's one deliberate timeout= parameter: a login must not hang forever by
    # default. It is implemented with a cancel scope.
    async def wait(self, timeout: float | None = None) -> AuthorizationResponse:  # noqa: ASYNC109
        """Wait for the authorization response and return it.

        :param timeout: seconds; ``None`` uses :attr:`CallbackConfig.timeout` (300 s by
            default; ``CallbackConfig(timeout=None)`` waits forever), ``math.inf`` waits forever.
        :raises AuthorizationDenied: the user or server denied access (``error=access_denied``).
        :raises AuthorizationError: the server answered with another ``error``.
        :raises IssuerMismatch: ``expect(issuer=...)`` was given and ``iss`` did not match.
        :raises CallbackTimeout: nothing arrived in time (a :class:`TimeoutError`).
        :raises ReceiverClosed: the receiver was closed first.
        :raises RuntimeError: ``wait()`` was already called for this login.
        """
        if self._awaited:
            msg = (
                "wait() was already called for this login. A PendingCallback is awaited "
                "once; call receiver.expect() again to start another login."
            )
            raise RuntimeError(msg)
        self._awaited = True
        if timeout is None:
            timeout = self._receiver.config.timeout
        elif isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
            msg = f"wait(timeout=...) must be a positive number of seconds, not {timeout!r}."
            raise ValueError(msg)
        receiver = self._receiver
        try:
            if self._outcome is None:
                self._event = event = anyio.Event()
                with anyio.move_on_after(math.inf if timeout is None else timeout):
                    await event.wait()
                outcome = self._outcome
                if outcome is None:
                    receiver._forget(self, "timeout")
                    raise CallbackTimeout(math.inf if timeout is None else timeout)
            else:
                from anyio.lowlevel import checkpoint

                await checkpoint()
                outcome = self._outcome
        finally:
            # Returned, raised, timed out or cancelled: this state is finished either way.
            receiver._forget(self, "cancelled")
        if isinstance(outcome, AuthorizationResponse):
            return outcome
        raise outcome


class CallbackReceiver:
    """A loopback HTTP listener that hands authorization responses to waiting logins.

    Get one from :func:`open_receiver`. ``expect()`` registers a login; many logins can wait
    on one receiver at once, each woken by its own ``state``.
    """

    def __init__(self, config: CallbackConfig, bound_host: str, port: int) -> None:
        self.config = config
        #: The port the OS assigned (or the fixed one you asked for).
        self.port = port
        #: Where the receiver listens: ``127.0.0.1``, ``::1`` or ``localhost``.
        self.host = bound_host
        uri_host = {"::1": "[::1]"}.get(bound_host, bound_host)
        #: ``http://127.0.0.1:<port>/callback``: register this with the authorization server.
        self.redirect_uri = f"http://{uri_host}:{port}{config.path}"
        self._registry: StateRegistry[PendingCallback] = StateRegistry()
        self._allowed_hosts = allowed_host_headers(bound_host, port)
        self._closed = False
        self._connections: dict[object, _Slot] = {}

    def __repr__(self) -> str:
        return f"<CallbackReceiver {self.redirect_uri} pending={len(self._registry)}>"

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def pending_count(self) -> int:
        """How many logins are waiting."""
        return len(self._registry)

    def expect(self, state: str | None = None, *, issuer: str | None = None) -> PendingCallback:
        """Register a login and return its :class:`PendingCallback`.

        :param state: your own ``state``; by default a fresh one with 256 random bits from
            :mod:`secrets`. States are single-use; one already pending raises ``ValueError``.
        :param issuer: RFC 9207: the response must carry exactly this ``iss``, or the waiter
            gets :class:`IssuerMismatch`.
        """
        if self._closed:
            msg = "This receiver is closed; open a new one with open_receiver() to log in again."
            raise ReceiverClosed(msg)
        if state is None:
            import secrets  # loaded on the first expect(), not at import

            state = secrets.token_urlsafe(_STATE_BYTES)
        elif not isinstance(state, str) or not state:
            msg = f"state must be a non-empty string (or None for a random one), not {state!r}."
            raise ValueError(msg)
        if issuer is not None and (not isinstance(issuer, str) or not issuer):
            msg = f"issuer must be a non-empty string such as 'https://as.example', not {issuer!r}."
            raise ValueError(msg)
        pending = PendingCallback(self, state, issuer)
        self._registry.add(state, pending)
        return pending

    def deliver(self, url_or_query: str) -> None:
        """Feed a pasted redirect URL (or its query) through the same checks as a request.

        For sessions where the browser cannot reach this machine's loopback (SSH,
        containers): the user copies the address the browser failed to load, and it wakes
        the waiting login exactly as a real callback would.

        :raises CallbackRejected: the URL is not a response this receiver can accept (wrong
            path, unknown or used state, ...); its message says why. Nothing is consumed.
        """
        text = url_or_query.strip()
        if "://" in text or text.startswith("/"):
            path, query = split_target(text)
            if path != self.config.path:
                msg = (
                    f"The pasted address does not end in {self.config.path}, so it is not "
                    f"this login's redirect. Copy the whole address from the browser's "
                    f"address bar after the sign-in."
                )
                raise CallbackRejected(msg, 404, title="Not this login's address")
        else:
            query = text.removeprefix("?")
        waiter, outcome = self._registry.match(query, self.config.app_name)
        waiter._resolve(outcome)

    def _forget(self, pending: PendingCallback, why: str) -> None:
        self._registry.forget(pending.state, pending, why)

    def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        waiters = self._registry.drain()
        if waiters:
            logger.debug("receiver closing with %d login(s) still waiting", len(waiters))
        for waiter in waiters:
            waiter._resolve(
                ReceiverClosed(
                    "The callback receiver was closed before the authorization response "
                    "arrived. Keep the 'async with open_receiver()' block open until wait() "
                    "returns."
                )
            )

    # --- serving ------------------------------------------------------------------------

    async def _accept_loop(self, sock: socket.socket, tg: TaskGroup) -> None:
        # Accepts on the raw non-blocking socket. A browser sends its request with the
        # handshake, so the whole head is nearly always in the kernel's buffer when accept()
        # returns: such a request is answered right here, with no transport, no task and no
        # read deadline (nothing is waited for). Anything else -- no data yet, a partial head
        # -- becomes an anyio stream served by its own task with the bytes already read.
        # (issue 4: this is what puts dispatch below the bare anyio + h11 floor.)
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
                        self._evict_idlest()
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
        slot = _Slot(anyio.current_time())
        if len(self._connections) >= self.config.max_connections:
            self._evict_idlest()
        self._connections[slot] = slot
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
            data = _response_bytes(conn, status, body, extra, head=request.method == b"HEAD")
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

    def _evict_idlest(self) -> None:
        victim = min(self._connections.values(), key=lambda s: s.last_activity)
        del self._connections[victim]
        victim.scope.cancel()
        logger.info(
            "connection limit (%d) reached; closed the connection idle longest",
            self.config.max_connections,
        )

    async def _serve_connection(
        self, stream: SocketStream, slot: _Slot, initial: bytes = b""
    ) -> None:
        # h11 checks its limit only while an event is incomplete, so a head that completes
        # inside the read that crosses the limit would slip through: _read_request never
        # reads past MAX_REQUEST_HEAD, and h11 refuses a buffer of that size still incomplete.
        # ``initial``: what _accepted already read (at most MAX_REQUEST_HEAD bytes).
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_REQUEST_HEAD - 1)
        if initial:
            conn.receive_data(initial)
        deadline = self.config.read_timeout
        try:
            with slot.scope:
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
                    await self._respond(conn, stream, status, body, extra, head=head)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream):
            pass  # the peer went away; nothing to answer
        except (OSError, h11.LocalProtocolError) as exc:
            logger.debug("connection ended: %s", type(exc).__name__)
        except Exception:
            # The one broad guard (STYLE §3.6): a bug must cost one connection, never the
            # receiver. Logged with its traceback, then the connection is closed below.
            logger.exception("bug in oauth-loopback while serving a connection; please report it")
        finally:
            self._connections.pop(slot, None)
            await anyio.aclose_forcefully(stream)

    async def _read_request(
        self, conn: h11.Connection, stream: SocketStream, slot: _Slot, received: int = 0
    ) -> h11.Request | None:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                room = MAX_REQUEST_HEAD - received
                if room <= 0:  # h11 skipped some bytes (blank lines) and still has no request
                    msg = "request head too large"
                    raise h11.RemoteProtocolError(msg, error_status_hint=431)
                try:
                    data = await stream.receive(min(_RECEIVE_SIZE, room))
                except anyio.EndOfStream:
                    data = b""
                received += len(data)
                slot.last_activity = anyio.current_time()
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
        # (DESIGN §3: wake the waiter first), then answer the browser.
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

    async def _respond(
        self,
        conn: h11.Connection,
        stream: SocketStream,
        status: int,
        body: bytes,
        extra: Iterable[tuple[bytes, bytes]],
        *,
        head: bool = False,
    ) -> None:
        await stream.send(_response_bytes(conn, status, body, extra, head=head))


def _response_bytes(
    conn: h11.Connection,
    status: int,
    body: bytes,
    extra: Iterable[tuple[bytes, bytes]],
    *,
    head: bool = False,
) -> bytes:
    headers = [*PAGE_HEADERS, *extra, (b"Content-Length", str(len(body)).encode())]
    reason = _reason(status)
    response = h11.Response(status_code=status, headers=headers, reason=reason)
    data = conn.send(response) or b""
    if not head:  # RFC 9110 §9.3.2: a HEAD response has GET's headers and no content
        data += conn.send(h11.Data(data=body)) or b""
    data += conn.send(h11.EndOfMessage()) or b""
    return data


class _Slot:
    """Book-keeping for one connection: when it last spoke, and how to end it."""

    __slots__ = ("last_activity", "scope")

    def __init__(self, now: float) -> None:
        self.last_activity = now
        self.scope = anyio.CancelScope()


def _bind(config: CallbackConfig) -> tuple[list[socket.socket], str, int]:
    """Bind and listen (synchronously: bind() and listen() never block).

    Returns the listening sockets, the host and the bound port. ``prefer_port`` (sticky
    port, ephemeral mode only) is tried first; busy, it falls back to an OS-chosen port.
    """
    if config.prefer_port is not None and config.port is None:
        try:
            bound = _bind_port(config, config.prefer_port, fixed=True)
        except (CallbackPortInUse, PermissionError) as exc:
            logger.info(
                "preferred callback port %d is unavailable (%s); listening on a port the OS "
                "picks instead, so the redirect URI changes",
                config.prefer_port,
                "in use" if isinstance(exc, CallbackPortInUse) else "permission denied",
            )
        else:
            logger.info("listening on the preferred callback port %d", config.prefer_port)
            return bound
    return _bind_port(config, config.port or 0, fixed=config.port is not None)


def _bind_port(
    config: CallbackConfig, port: int, *, fixed: bool
) -> tuple[list[socket.socket], str, int]:
    import socket

    host = config.host
    if host != "localhost":
        family = socket.AF_INET6 if host == "::1" else socket.AF_INET
        sock = _listen(family, host, port, fixed=fixed)
        return [sock], host, sock.getsockname()[1]
    # localhost mode: hold 127.0.0.1 and ::1 on one port, so no other process can answer the
    # browser on the family we did not bind (browsers try both for "localhost").
    for _ in range(_DUAL_STACK_TRIES):
        v4 = _listen(socket.AF_INET, "127.0.0.1", port, fixed=fixed)
        bound = v4.getsockname()[1]
        try:
            v6 = _listen(socket.AF_INET6, "::1", bound, fixed=True)
        except CallbackPortInUse as exc:
            v4.close()
            if fixed:
                # Look the holder up again now that our own 127.0.0.1 socket is closed: while
                # it was open, /proc named this very process as a holder of the port.
                holder = describe_port_holder(bound)
                raise CallbackPortInUse(bound, "::1", holder) from exc.__cause__
            continue  # ephemeral: another process has ::1 on this port; try another
        except OSError as exc:
            if exc.errno not in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):
                v4.close()
                raise
            logger.warning(
                "host='localhost': this machine has no IPv6 loopback (::1), so the receiver "
                "listens on 127.0.0.1 only"
            )
            return [v4], host, bound
        return [v4, v6], host, bound
    msg = (
        f"host='localhost' needs one port free on both 127.0.0.1 and ::1, and "
        f"{_DUAL_STACK_TRIES} ports offered by the OS were taken on ::1. Use host='127.0.0.1'."
    )
    raise OAuthLoopbackError(msg)


def _listen(family: socket.AddressFamily, host: str, port: int, *, fixed: bool) -> socket.socket:
    import socket

    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if fixed:
            # Let a fixed port be re-bound while old connections sit in TIME_WAIT. This never
            # lets us share a port with a live listener on Linux/macOS; Windows needs the
            # exclusive flag for that guarantee (as anyio does).
            if sys.platform == "win32":
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_EXCLUSIVEADDRUSE, 1)  # type: ignore[attr-defined]
            else:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE or (
                sys.platform == "win32" and exc.errno == errno.EACCES
            ):
                raise CallbackPortInUse(port, host, describe_port_holder(port)) from exc
            if exc.errno == errno.EACCES:
                msg = (
                    f"The operating system refused to let this process listen on port {port} "
                    f"of {host} (ports below 1024 usually need privileges). Use an ephemeral "
                    f"port (port=None, no 'callbackPort') or a fixed port from 1024 up."
                )
                raise PermissionError(errno.EACCES, msg) from exc
            raise
        sock.listen(_BACKLOG)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


_LAZY_SERVING_IMPORTS = ("html", "secrets", "urllib.parse", "anyio.lowlevel")


def _preload_serving_imports() -> None:
    """Load what the serving path imports lazily, before the first request arrives.

    They stay out of ``import oauth_loopback`` (start-up time, issue 4), but must not be
    imported while a request is served: with the process out of file descriptors an import
    cannot open its file, and the browser would get nothing. After the first receiver these
    are dictionary lookups.
    """
    if all(module in sys.modules for module in _LAZY_SERVING_IMPORTS):
        return  # every receiver after the first: no import machinery on the bind path
    import importlib

    for module in _LAZY_SERVING_IMPORTS:
        importlib.import_module(module)


@asynccontextmanager
async def open_receiver(config: CallbackConfig | None = None) -> AsyncIterator[CallbackReceiver]:
    """Bind a loopback callback receiver and serve it for the duration of the block.

    The socket is bound and listening before this returns, so ``receiver.redirect_uri`` can
    be handed to the authorization server at once. By default the OS picks the port
    (RFC 8252 §7.3); a fixed port that is busy raises :class:`CallbackPortInUse` right away.
    Leaving the block wakes every waiting login with :class:`ReceiverClosed`.

    >>> async with open_receiver() as receiver:               # doctest: +SKIP
    ...     pending = receiver.expect()
    ...     url = build_authorization_url(receiver.redirect_uri, pending.state)
    ...     response = await pending.wait()
    """
    if config is None:
        config = _DEFAULT_CONFIG
    elif not isinstance(config, CallbackConfig):
        msg = (
            f"open_receiver() takes a CallbackConfig, not {type(config).__name__}; for a "
            f"mapping of settings use CallbackConfig.from_mapping(...)."
        )
        raise TypeError(msg)
    _preload_serving_imports()
    sockets, host, port = _bind(config)
    try:
        receiver = CallbackReceiver(config, host, port)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    logger.debug("listening for authorization responses on %s", receiver.redirect_uri)
    failure: BaseException | None = None
    async with anyio.create_task_group() as tg:
        for sock in sockets:
            tg.start_soon(receiver._accept_loop, sock, tg)
        try:
            yield receiver
        except BaseException as exc:  # noqa: BLE001  (re-raised below, never swallowed)
            # Re-raised below, outside the task group, so callers see their own exception
            # (``except AuthorizationDenied:``), never an ExceptionGroup of ours.
            failure = exc
        finally:
            receiver._close()
            tg.cancel_scope.cancel()
    if failure is not None:
        try:
            raise failure
        finally:
            failure = None
