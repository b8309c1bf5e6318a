"""The public receiver: ``open_receiver()``, ``CallbackReceiver`` and ``PendingCallback``.

One task group per receiver, no threads, no backend-specific imports: the same code runs on
asyncio and on trio. Binding is ``_binding``'s job, connections are ``_serving``'s, decisions
the core's.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, NamedTuple

import anyio

from .._config import CallbackConfig
from .._errors import CallbackRejected, CallbackTimeout, OAuthLoopbackError, ReceiverClosed
from ._registry import AuthorizationResponse, Outcome, StateRegistry
from ._routing import allowed_host_headers, forwarded_host_headers, split_target

if TYPE_CHECKING:
    import socket
    from types import TracebackType

    from anyio.abc import TaskGroup

    from ._serving import ConnectionServer

__all__ = ["PAGE_HOLD", "CallbackReceiver", "PendingCallback", "open_receiver"]

logger = logging.getLogger("oauth_loopback.server")

# 32 bytes = 256 bits from the OS CSPRNG (SECURITY.md: at least 128).
_STATE_BYTES = 32
#: Seconds ``expect(hold_page=True)`` holds the browser's page for :meth:`PendingCallback.finish`:
#: a token exchange takes well under a second; a few more cover a slow server and its JWKS.
PAGE_HOLD = 5.0
# The longest hold a caller may ask for: a browser shows a spinner meanwhile.
_MAX_PAGE_HOLD = 60.0


# open_receiver() without a config: frozen, so one instance serves every call (building and
# validating a CallbackConfig is a sixth of the bind latency).
_DEFAULT_CONFIG = CallbackConfig()


class PendingCallback:
    """One login waiting on a receiver for the authorization response with its ``state``.

    Await :meth:`wait` once. When it returns, raises, times out or is cancelled, the state is
    forgotten: a later callback for it gets a 4xx page.
    """

    __slots__ = (
        "_awaited",
        "_event",
        "_outcome",
        "_page_event",
        "_receiver",
        "_verdict",
        "hold_page",
        "issuer",
        "require_iss",
        "state",
    )

    def __init__(
        self,
        receiver: CallbackReceiver,
        state: str,
        issuer: str | None,
        require_iss: bool = True,
        hold_page: float = 0.0,
    ) -> None:
        self._receiver = receiver
        #: The OAuth ``state`` to put in the authorization URL.
        self.state = state
        #: The RFC 9207 issuer a present ``iss`` must equal, or None.
        self.issuer = issuer
        #: With ``issuer``: whether a response without ``iss`` is refused too.
        self.require_iss = require_iss
        #: Seconds the browser's page waits for :meth:`finish` once a code arrived (0: none).
        self.hold_page = hold_page
        self._outcome: Outcome | None = None
        self._event: anyio.Event | None = None
        self._awaited = False
        self._verdict: tuple[bool, str | None] | None = None
        self._page_event: anyio.Event | None = None

    def __repr__(self) -> str:
        return f"<PendingCallback state=<redacted> issuer={self.issuer!r} done={self.done}>"

    @property
    def done(self) -> bool:
        """True once a response (or an error, or the receiver's close) has arrived."""
        return self._outcome is not None

    def cancel(self, error: OAuthLoopbackError | None = None) -> None:
        """Forget this login now: a callback for its state gets a 4xx page from here on.

        For a login abandoned before its response arrived (the caller gave up, the user's
        input ended, or another way of logging in won). A waiter in :meth:`wait` is woken with
        ``error`` (default :class:`ReceiverClosed`). Calling it again, or after the login
        finished, does nothing.
        """
        self._receiver._forget(self, "cancelled")
        if error is None:
            error = ReceiverClosed(
                "This login was cancelled (PendingCallback.cancel()) before its authorization "
                "response arrived. Call receiver.expect() to start another."
            )
        self._resolve(error)

    def finish(self, ok: bool, message: str | None = None) -> None:
        """Tell the browser's held page how the login ended (``expect(hold_page=...)``).

        Call it once the code has been exchanged: ``ok=True`` once a token arrived (the page
        says "Signed in"), ``ok=False`` with a ``message`` giving the reason and what to do
        (the page says "Sign-in failed" and shows it, escaped). A page still waiting is
        answered at once; a page whose hold already ran out said the application was
        finishing. The first call counts; later ones do nothing.

        :raises RuntimeError: the login was registered without ``hold_page``.
        """
        if not self.hold_page:
            msg = (
                "finish() answers a held browser page, and this login was registered without "
                "one: call receiver.expect(..., hold_page=True) to hold the page until finish()."
            )
            raise RuntimeError(msg)
        if not isinstance(ok, bool):
            msg = f"finish(ok=...) takes True or False, not {ok!r}."
            raise TypeError(msg)
        if message is not None and not isinstance(message, str):
            msg = f"finish(message=...) takes a string (shown escaped) or None, not {message!r}."
            raise TypeError(msg)
        if self._verdict is None:
            self._verdict = (ok, message)
            if self._page_event is not None:
                self._page_event.set()

    def _page_ready(self) -> anyio.Event:
        """The event a held page waits on: set by :meth:`finish` (or the receiver closing)."""
        if self._page_event is None:
            self._page_event = anyio.Event()
            if self._verdict is not None:
                self._page_event.set()
        return self._page_event

    def _resolve(self, outcome: Outcome) -> None:
        if self._outcome is None:
            self._outcome = outcome
            if self._event is not None:
                self._event.set()

    # The one deliberate timeout= parameter (README, 'Decisions we made'): a login must not hang forever by
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
        # Every argument is checked before anything changes: a wait() that raises here
        # leaves the login pending, and wait() may be called again with a valid timeout.
        if timeout is None:
            timeout = self._receiver.config.timeout
        elif isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
            msg = (
                f"wait(timeout=...) must be a positive number of seconds (math.inf waits "
                f"forever, None uses CallbackConfig.timeout), not {timeout!r}."
            )
            raise ValueError(msg)
        if self._awaited:
            msg = (
                "wait() was already called for this login. A PendingCallback is awaited "
                "once; call receiver.expect() again to start another login."
            )
            raise RuntimeError(msg)
        self._awaited = True
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
        if config.public_redirect_uri is not None:
            # Forwarded (Codespaces, ssh -L, a proxy): the browser's address, port filled in.
            self.redirect_uri = config.public_redirect_uri.replace("{port}", str(port))
        self._registry: StateRegistry[PendingCallback] = StateRegistry()
        self._allowed_hosts = allowed_host_headers(bound_host, port)
        if config.public_redirect_uri is not None:
            self._allowed_hosts |= forwarded_host_headers(self.redirect_uri)
        self._closed = False
        self._server = _shell().ConnectionServer(config, self._registry, self._allowed_hosts)

    def __repr__(self) -> str:
        return f"<CallbackReceiver {self.redirect_uri} pending={len(self._registry)}>"

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def pending_count(self) -> int:
        """How many logins are waiting."""
        return len(self._registry)

    def expect(
        self,
        state: str | None = None,
        *,
        issuer: str | None = None,
        require_iss: bool = True,
        hold_page: bool | float = False,
    ) -> PendingCallback:
        """Register a login and return its :class:`PendingCallback`.

        :param state: your own ``state``; by default a fresh one with 256 random bits from
            :mod:`secrets`. States are single-use; one already pending raises ``ValueError``.
        :param issuer: RFC 9207: the response must carry exactly this ``iss``, or the waiter
            gets :class:`IssuerMismatch` and the browser a 400 page.
        :param require_iss: with ``issuer``, whether a response *without* ``iss`` is refused
            too (the default, for servers that advertise
            ``authorization_response_iss_parameter_supported``). ``False`` accepts a missing
            ``iss`` and still refuses a different one (RFC 9207 §2.4: a present ``iss`` must
            match, whatever the server advertises).
        :param hold_page: hold the browser's page, once a code arrived, until
            :meth:`PendingCallback.finish` says whether the login worked, so it never says
            "Signed in" before a token did arrive. ``True`` holds up to :data:`PAGE_HOLD`
            (5 s), a number up to that many seconds (at most 60); past it the page says the
            application is finishing. By default the page is answered at once.
        """
        # Every argument is checked before anything changes.
        if not isinstance(require_iss, bool):
            msg = f"require_iss must be True or False, not {require_iss!r}."
            raise TypeError(msg)
        hold = _hold_seconds(hold_page)
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
        pending = PendingCallback(self, state, issuer, require_iss, hold)
        self._registry.add(state, pending)
        return pending

    def deliver(self, url_or_query: str) -> None:
        """Feed a pasted redirect URL (or its query) through the same checks as a request.

        For sessions where the browser cannot reach this machine's loopback (SSH,
        containers): the user copies the address the browser failed to load, and it wakes
        the waiting login exactly as a real callback would.

        :raises CallbackRejected: the URL is not a response this receiver can accept (wrong
            path, malformed, unknown or used state, ...); its message says why. Nothing is
            consumed, and every login is still waiting.
        :raises TypeError: ``url_or_query`` is not a string.
        """
        if not isinstance(url_or_query, str):
            msg = f"deliver() takes the pasted address as a str, not {type(url_or_query).__name__}."
            raise TypeError(msg)
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
        # Pages held for finish(): answer them now (each says the application is finishing,
        # or what finish() said), within the page write's grace, instead of cutting them off.
        self._server.release_held()


def _hold_seconds(hold_page: bool | float) -> float:
    if hold_page is True:
        return PAGE_HOLD
    if hold_page is False:
        return 0.0
    if (
        not isinstance(hold_page, (int, float))
        or not 0 < hold_page <= _MAX_PAGE_HOLD  # NaN fails this too
    ):
        msg = (
            f"hold_page must be True, False or a number of seconds above 0 and at most "
            f"{_MAX_PAGE_HOLD:g} (the browser waits that long at most), not {hold_page!r}."
        )
        raise ValueError(msg)
    return float(hold_page)


class _Shell(NamedTuple):
    """The serving half of the receiver, loaded by the first ``open_receiver()``."""

    bind: Callable[[CallbackConfig], tuple[list[socket.socket], str, int]]
    ConnectionServer: type[ConnectionServer]


_SHELL: _Shell | None = None


def _shell() -> _Shell:
    """Load the serving shell (h11, connections, binding) and what it imports lazily.

    None of it is in ``import oauth_loopback`` (start-up time, docs/benchmarks.md: a program
    that only reads its settings pays nothing for h11). It is loaded before the first socket
    is bound, never while a request is served: with the process out of file descriptors an
    import cannot open its file, and the browser would get nothing. After the first receiver
    this is one global lookup.
    """
    global _SHELL  # a load-once cache
    if _SHELL is None:
        import importlib

        for module in ("html", "secrets", "urllib.parse", "anyio.lowlevel"):
            importlib.import_module(module)  # the serving path imports these lazily
        from ._binding import bind
        from ._serving import ConnectionServer

        _SHELL = _Shell(bind, ConnectionServer)
    return _SHELL


def open_receiver(
    config: CallbackConfig | None = None,
) -> AbstractAsyncContextManager[CallbackReceiver]:
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
    return _ReceiverBlock(config)


class _ReceiverBlock:
    """``async with open_receiver(...)``: bind on entry; on exit close, cancel and wait.

    A class rather than ``@asynccontextmanager`` around ``_tasks.background()``: the two
    generator-based context managers were a tenth of the bind latency (docs/benchmarks.md).
    Same behaviour: nothing happens until the block is entered, one task group per
    receiver, and the block's own exception leaves as itself, never in an ExceptionGroup
    (the task group is exited without it, then it propagates).
    """

    __slots__ = ("_config", "_entered", "_receiver", "_tg")

    def __init__(self, config: CallbackConfig | None) -> None:
        self._config = config
        self._entered = False
        self._receiver: CallbackReceiver | None = None
        self._tg: TaskGroup | None = None

    async def __aenter__(self) -> CallbackReceiver:
        if self._entered:
            msg = "This open_receiver() block was already entered; call open_receiver() again."
            raise RuntimeError(msg)
        self._entered = True
        config = self._config
        if config is None:
            config = _DEFAULT_CONFIG
        elif not isinstance(config, CallbackConfig):
            msg = (
                f"open_receiver() takes a CallbackConfig, not {type(config).__name__}; for a "
                f"mapping of settings use CallbackConfig.from_mapping(...)."
            )
            raise TypeError(msg)
        shell = _SHELL or _shell()
        sockets, host, port = shell.bind(config)
        try:
            receiver = CallbackReceiver(config, host, port)
            tg = anyio.create_task_group()
            await tg.__aenter__()
        except BaseException:
            for sock in sockets:
                sock.close()
            raise
        try:
            for sock in sockets:
                # Each accept loop owns (and closes) its socket from its first step on.
                tg.start_soon(receiver._server.accept_loop, sock, tg)
        except BaseException as exc:
            for sock in sockets:
                sock.close()
            tg.cancel_scope.cancel()
            await tg.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        logger.debug("listening for authorization responses on %s", receiver.redirect_uri)
        self._receiver, self._tg = receiver, tg
        return receiver

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        receiver, tg = self._receiver, self._tg
        self._receiver = self._tg = None
        if receiver is None or tg is None:
            return
        try:
            receiver._close()
        finally:
            tg.cancel_scope.cancel()
            # Exited without the block's exception, which then propagates as itself.
            await tg.__aexit__(None, None, None)
