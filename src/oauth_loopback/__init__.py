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

__version__ = "0.1.0"

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
]

# Tracebacks and docs show the public path (as httpcore does).
for _name in __all__:
    _obj = globals()[_name]
    if hasattr(_obj, "__module__") and not isinstance(_obj, int):
        _obj.__module__ = "oauth_loopback"
del _name, _obj
