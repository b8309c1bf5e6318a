"""Receive OAuth 2.0 authorization responses on a loopback redirect URI.

Ephemeral port by default (RFC 8252 §7.3), the legacy fixed port only on request and loud
when busy, on asyncio and trio through anyio::

    import oauth_loopback as ol

    async with ol.open_receiver() as receiver:
        pending = receiver.expect()
        ...  # send the user to the authorization URL with receiver.redirect_uri, pending.state
        response = await pending.wait()
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._config import LEGACY_CALLBACK_PORT, CallbackConfig
from ._core import AuthorizationResponse
from ._errors import (
    AuthorizationDenied,
    AuthorizationError,
    CallbackPortInUse,
    CallbackRejected,
    CallbackTimeout,
    InvalidCallbackConfig,
    IssuerMismatch,
    OAuthLoopbackError,
    ReceiverClosed,
)
from ._server import CallbackReceiver, PendingCallback, open_receiver

if TYPE_CHECKING:
    from ._browser import UnsafeBrowserURL
    from ._oauth import (
        BrowserUnavailable,
        DiscoveryError,
        RegistrationError,
        ServerUnreachable,
        Token,
        TokenError,
        UnsupportedServer,
        authorize,
    )

__version__ = "0.1.0"

# The login flow needs authlib and httpx2, which take a while to import; it is loaded on
# first use so that ``import oauth_loopback`` and ``oauth-loopback --help`` stay fast.
_LAZY = {
    "BrowserUnavailable": "._oauth",
    "DiscoveryError": "._oauth",
    "RegistrationError": "._oauth",
    "ServerUnreachable": "._oauth",
    "Token": "._oauth",
    "TokenError": "._oauth",
    "UnsafeBrowserURL": "._browser",
    "UnsupportedServer": "._oauth",
    "authorize": "._oauth",
}

__all__ = [
    "LEGACY_CALLBACK_PORT",
    "AuthorizationDenied",
    "AuthorizationError",
    "AuthorizationResponse",
    "CallbackConfig",
    "CallbackPortInUse",
    "CallbackReceiver",
    "CallbackRejected",
    "CallbackTimeout",
    "InvalidCallbackConfig",
    "IssuerMismatch",
    "OAuthLoopbackError",
    "PendingCallback",
    "ReceiverClosed",
    "open_receiver",
    # Loaded lazily (see _LAZY):
    "BrowserUnavailable",
    "DiscoveryError",
    "RegistrationError",
    "ServerUnreachable",
    "Token",
    "TokenError",
    "UnsafeBrowserURL",
    "UnsupportedServer",
    "authorize",
]

# Tracebacks and docs show the public path (as httpcore does).
for _name in __all__:
    if _name in _LAZY:
        continue
    _obj = globals()[_name]
    if hasattr(_obj, "__module__") and not isinstance(_obj, int):
        _obj.__module__ = "oauth_loopback"
del _name, _obj


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        msg = f"module {__name__!r} has no attribute {name!r}"
        raise AttributeError(msg)
    import importlib

    value = getattr(importlib.import_module(module, __name__), name)
    if name == "UnsafeBrowserURL":
        value.__module__ = "oauth_loopback"
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
