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

from ._errors import (
    AuthorizationDenied,
    AuthorizationError,
    BrowserUnavailable,
    CallbackPortInUse,
    CallbackRejected,
    CallbackTimeout,
    ClientRejected,
    DeviceCodeExpired,
    DiscoveryError,
    DPoPError,
    DPoPKeyInvalid,
    DPoPProofRejected,
    IDTokenError,
    InputEnded,
    InsufficientScope,
    InvalidCallbackConfig,
    IssuerMismatch,
    OAuthLoopbackError,
    PushedAuthorizationError,
    ReceiverClosed,
    RegistrationError,
    ResourceDiscoveryError,
    ServerUnreachable,
    TokenError,
    TokenStoreError,
    UnsafeBrowserURL,
    UnsupportedServer,
)

if TYPE_CHECKING:
    from ._config import LEGACY_CALLBACK_PORT, CallbackConfig
    from ._login._auth import TokenAuth
    from ._login._authorize import authorize
    from ._login._get_token import get_token
    from ._login._token import Token
    from ._receiver._receiver import CallbackReceiver, PendingCallback, open_receiver
    from ._receiver._registry import AuthorizationResponse
    from ._store import (
        CachedMetadata,
        ClientRegistration,
        FileTokenStore,
        KeyringTokenStore,
        LoginKey,
        MemoryTokenStore,
        StoredLogin,
        StoredTokens,
        TokenStore,
    )

__version__ = "0.1.0"

# Loaded on first use, so that ``import oauth_loopback`` stays fast and imports no event loop
# library: the receiver needs anyio and h11, the login flow authlib and httpx2, and a process
# that only reads a stored token (``oauth-loopback token``, ``sync.get_token()``) needs none
# of them. ``dir()``, ``__all__`` and ``from oauth_loopback import *`` still give every name.
_LAZY = {
    # The receiver's configuration (a process reading a stored token needs none).
    "LEGACY_CALLBACK_PORT": "._config",
    "CallbackConfig": "._config",
    # The receiver: anyio and h11.
    "CallbackReceiver": "._receiver._receiver",
    "PendingCallback": "._receiver._receiver",
    "open_receiver": "._receiver._receiver",
    "AuthorizationResponse": "._receiver._registry",
    # The login flow: authlib and httpx2 (Token itself needs neither).
    "Token": "._login._token",
    "authorize": "._login._authorize",
    # Staying logged in. The stores need no authlib; get_token loads it only to refresh or
    # log in; TokenAuth is an httpx2.Auth and so loads httpx2.
    "get_token": "._login._get_token",
    "TokenAuth": "._login._auth",
    "CachedMetadata": "._store",
    "ClientRegistration": "._store",
    "FileTokenStore": "._store",
    "KeyringTokenStore": "._store",
    "LoginKey": "._store",
    "MemoryTokenStore": "._store",
    "StoredLogin": "._store",
    "StoredTokens": "._store",
    "TokenStore": "._store",
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
    "DeviceCodeExpired",
    "DiscoveryError",
    "IDTokenError",
    "InputEnded",
    "InsufficientScope",
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
__all__ += [
    "ClientRejected",
    "TokenStoreError",
    # Loaded lazily (see _LAZY):
    "CachedMetadata",
    "ClientRegistration",
    "FileTokenStore",
    "KeyringTokenStore",
    "LoginKey",
    "MemoryTokenStore",
    "StoredLogin",
    "StoredTokens",
    "TokenAuth",
    "TokenStore",
    "get_token",
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
