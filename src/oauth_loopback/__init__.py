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
from ._errors import (
    AuthorizationDenied,
    AuthorizationError,
    BrowserUnavailable,
    CallbackPortInUse,
    CallbackRejected,
    CallbackTimeout,
    ClientRejected,
    DiscoveryError,
    DPoPError,
    DPoPKeyInvalid,
    DPoPProofRejected,
    IDTokenError,
    InputEnded,
    InvalidCallbackConfig,
    IssuerMismatch,
    OAuthLoopbackError,
    PushedAuthorizationError,
    ReceiverClosed,
    RegistrationError,
    ResourceDiscoveryError,
    ServerUnreachable,
    TokenError,
    UnsafeBrowserURL,
    UnsupportedServer,
)
from ._receiver._receiver import CallbackReceiver, PendingCallback, open_receiver
from ._receiver._registry import AuthorizationResponse

if TYPE_CHECKING:
    from ._login._authorize import authorize
    from ._login._token import Token

__version__ = "0.1.0"

# The login flow needs authlib and httpx2, which take a while to import; it is loaded on
# first use so that ``import oauth_loopback`` and ``oauth-loopback --help`` stay fast.
_LAZY = {
    "Token": "._login._token",
    "authorize": "._login._authorize",
}

__all__ = [
    "LEGACY_CALLBACK_PORT",
    "AuthorizationDenied",
    "AuthorizationError",
    "AuthorizationResponse",
    "BrowserUnavailable",
    "CallbackConfig",
    "CallbackPortInUse",
    "CallbackReceiver",
    "CallbackRejected",
    "CallbackTimeout",
    "ClientRejected",
    "DPoPError",
    "DPoPKeyInvalid",
    "DPoPProofRejected",
    "DiscoveryError",
    "IDTokenError",
    "InputEnded",
    "InvalidCallbackConfig",
    "IssuerMismatch",
    "OAuthLoopbackError",
    "PendingCallback",
    "PushedAuthorizationError",
    "ReceiverClosed",
    "RegistrationError",
    "ResourceDiscoveryError",
    "ServerUnreachable",
    "TokenError",
    "UnsafeBrowserURL",
    "UnsupportedServer",
    "open_receiver",
    # Loaded lazily (see _LAZY):
    "Token",
    "authorize",
]


def _public(obj: object) -> object:
    """Tracebacks and docs show the public path (as httpcore does): the one place it is set."""
    if isinstance(obj, type) or callable(obj):
        obj.__module__ = "oauth_loopback"
    return obj


for _name in __all__:
    if _name not in _LAZY:
        _public(globals()[_name])
del _name


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        msg = f"module {__name__!r} has no attribute {name!r}"
        raise AttributeError(msg)
    import importlib

    value = _public(getattr(importlib.import_module(module, __name__), name))
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
