"""The blocking API, for synchronous programs (click, typer, argparse scripts).

The same functions, options and errors as the async API, run on an event loop of their own
in a worker thread (anyio's blocking portal), so no ``anyio.run`` glue is needed::

    import oauth_loopback.sync

    with oauth_loopback.sync.open_receiver() as receiver:
        pending = receiver.expect()
        ...  # send the user to the authorization URL with receiver.redirect_uri, pending.state
        response = pending.wait(timeout=300)

    token = oauth_loopback.sync.authorize("https://as.example.com")
    token = oauth_loopback.sync.get_token("https://as.example.com", store=FileTokenStore())

Ctrl-C while a call waits cancels the login on the event loop thread (the receiver closes,
nothing keeps running) and raises :class:`KeyboardInterrupt` in the calling thread. Each
call refuses to run on a thread that is running an event loop (it would block that loop):
there, ``await`` the async function instead, or call this one from a worker thread
(``anyio.to_thread.run_sync``).

**Decision:** every top-level call starts its own event loop thread and ends it before
returning (about a millisecond): nothing lingers between calls, and no global state is shared
between threads. ``open_receiver()`` keeps its loop for the ``with`` block.

**Decision:** ``get_token()`` with a valid stored token in one of the library's stores
(``FileTokenStore``, ``MemoryTokenStore``, ``KeyringTokenStore``) starts no event loop at all:
it checks the arguments, reads the store on the calling thread and returns the token, as the
async call would (the same checks and errors, the same ``Token``, DPoP key included). Only
when a refresh or a login is needed, or for a store of your own, does it start the loop
thread. A process that only reads a stored token so never imports asyncio, trio or anyio.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

if TYPE_CHECKING:
    from anyio.from_thread import BlockingPortal

    from ._config import CallbackConfig
    from ._login._token import Token
    from ._receiver._receiver import CallbackReceiver
    from ._receiver._receiver import PendingCallback as AsyncPendingCallback
    from ._receiver._registry import AuthorizationResponse

__all__ = ["Backend", "PendingCallback", "Receiver", "authorize", "get_token", "open_receiver"]

#: The event loop the blocking calls run on; ``trio`` needs ``pip install 'oauth-loopback[trio]'``.
Backend = Literal["asyncio", "trio"]

_T = TypeVar("_T")
# How long a cancelled call may take to clean up (close its receiver, answer the browser)
# after Ctrl-C before KeyboardInterrupt is raised anyway.
_CANCEL_GRACE = 5.0


def _refuse_inside_event_loop(name: str) -> None:
    if "asyncio" not in sys.modules and "trio" not in sys.modules:
        return  # no event loop can be running, and looking would import one (anyio, asyncio)
    from anyio.lowlevel import current_token

    try:
        current_token()
    except RuntimeError:
        return  # no event loop on this thread: blocking is fine
    msg = (
        f"oauth_loopback.sync.{name}() blocks, and was called on a thread that runs an event "
        f"loop, which it would freeze. Use 'await oauth_loopback.{name}(...)' there, or call "
        f"this from a worker thread (anyio.to_thread.run_sync)."
    )
    raise RuntimeError(msg)


def _check_backend(backend: object) -> None:
    if backend not in ("asyncio", "trio"):
        msg = f"backend must be 'asyncio' or 'trio', not {backend!r}."
        raise ValueError(msg)
    if backend == "trio":
        import importlib.util

        if importlib.util.find_spec("trio") is None:
            msg = "backend='trio' needs trio: pip install 'oauth-loopback[trio]'"
            raise ImportError(msg, name="trio")


@contextmanager
def _portal(backend: Backend) -> Iterator[BlockingPortal]:
    _check_backend(backend)
    from anyio.from_thread import start_blocking_portal

    with start_blocking_portal(backend, name="oauth-loopback") as portal:
        yield portal


@overload
def _call(portal: BlockingPortal, func: Callable[[], Awaitable[_T]]) -> _T: ...
@overload
def _call(portal: BlockingPortal, func: Callable[[], _T]) -> _T: ...
def _call(portal: BlockingPortal, func: Callable[[], Any]) -> Any:
    """Run ``func`` on the portal's loop and wait; on Ctrl-C cancel it there, then re-raise."""
    future = portal.start_task_soon(func)
    try:
        return future.result()
    except KeyboardInterrupt:
        import concurrent.futures

        future.cancel()
        concurrent.futures.wait([future], timeout=_CANCEL_GRACE)
        raise


class PendingCallback:
    """A login waiting on a :class:`Receiver`: the blocking :class:`oauth_loopback.PendingCallback`."""

    __slots__ = ("_pending", "_portal")

    def __init__(self, portal: BlockingPortal, pending: AsyncPendingCallback) -> None:
        self._portal = portal
        self._pending = pending

    def __repr__(self) -> str:
        return f"<sync.PendingCallback state=<redacted> issuer={self.issuer!r} done={self.done}>"

    @property
    def state(self) -> str:
        """The OAuth ``state`` to put in the authorization URL."""
        return self._pending.state

    @property
    def issuer(self) -> str | None:
        return self._pending.issuer

    @property
    def done(self) -> bool:
        return self._pending.done

    # The async API's one deliberate timeout= parameter, blocking.
    def wait(self, timeout: float | None = None) -> AuthorizationResponse:
        """Block until the authorization response arrives; the errors of the async ``wait()``."""
        return _call(self._portal, functools.partial(self._pending.wait, timeout))

    def cancel(self) -> None:
        """Forget this login now (see :meth:`oauth_loopback.PendingCallback.cancel`)."""
        _call(self._portal, self._pending.cancel)


class Receiver:
    """A receiver served on its own event loop thread: the blocking :class:`CallbackReceiver`."""

    __slots__ = ("_portal", "_receiver")

    def __init__(self, portal: BlockingPortal, receiver: CallbackReceiver) -> None:
        self._portal = portal
        self._receiver = receiver

    def __repr__(self) -> str:
        return f"<sync.Receiver {self.redirect_uri}>"

    @property
    def port(self) -> int:
        return self._receiver.port

    @property
    def redirect_uri(self) -> str:
        return self._receiver.redirect_uri

    @property
    def config(self) -> CallbackConfig:
        return self._receiver.config

    @property
    def pending_count(self) -> int:
        return self._receiver.pending_count

    def expect(self, state: str | None = None, *, issuer: str | None = None) -> PendingCallback:
        """Register a login (see :meth:`oauth_loopback.CallbackReceiver.expect`)."""
        expect = functools.partial(self._receiver.expect, state, issuer=issuer)
        return PendingCallback(self._portal, _call(self._portal, expect))

    def deliver(self, url_or_query: str) -> None:
        """Feed a pasted redirect URL through the receiver's checks (raises CallbackRejected)."""
        _call(self._portal, functools.partial(self._receiver.deliver, url_or_query))


@contextmanager
def open_receiver(
    config: CallbackConfig | None = None, *, backend: Backend = "asyncio"
) -> Iterator[Receiver]:
    """Bind a loopback receiver and serve it on an event loop thread for the ``with`` block.

    Bound before it returns, like :func:`oauth_loopback.open_receiver`, with the same config
    and errors (``CallbackPortInUse`` at once for a busy fixed port).
    """
    _refuse_inside_event_loop("open_receiver")
    from ._receiver._receiver import open_receiver as open_async

    with _portal(backend) as portal:
        with portal.wrap_async_context_manager(open_async(config)) as receiver:
            yield Receiver(portal, receiver)


def authorize(issuer: str, *, backend: Backend = "asyncio", **options: Any) -> Token:
    """:func:`oauth_loopback.authorize`, blocking: the same options and errors."""
    _refuse_inside_event_loop("authorize")
    from ._login._authorize import authorize as authorize_async

    with _portal(backend) as portal:
        return _call(portal, functools.partial(authorize_async, issuer, **options))


def get_token(issuer: str, *, backend: Backend = "asyncio", **options: Any) -> Token:
    """:func:`oauth_loopback.get_token`, blocking: stored, refreshed or logged in, same errors.

    A valid stored token in one of the library's stores is read on this thread, with no event
    loop (see the module's decisions); otherwise an event loop thread lives for this one call.
    """
    _refuse_inside_event_loop("get_token")
    _check_backend(backend)
    from ._login._get_token import get_token_now

    stored = get_token_now(issuer, options)
    if stored is not None:
        return stored
    from ._login._get_token import get_token as get_token_async

    with _portal(backend) as portal:
        return _call(portal, functools.partial(get_token_async, issuer, **options))
