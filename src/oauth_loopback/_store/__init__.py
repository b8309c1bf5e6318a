"""Token and registration stores: what a login leaves behind, kept between runs.

Nothing here is imported by ``import oauth_loopback``; the package root exports these names
lazily. The records are in :mod:`._records`, the protocol in :mod:`._protocol`, one module per
store, and the locks they share in :mod:`._locks`.
"""

from __future__ import annotations

from ._file_store import FileTokenStore
from ._keyring_store import KeyringTokenStore
from ._memory_store import MemoryTokenStore
from ._protocol import TokenStore
from ._records import (
    CachedMetadata,
    ClientRegistration,
    LoginKey,
    RegistrationKind,
    StoredLogin,
    StoredTokens,
)

__all__ = [
    "CachedMetadata",
    "ClientRegistration",
    "FileTokenStore",
    "KeyringTokenStore",
    "LoginKey",
    "MemoryTokenStore",
    "RegistrationKind",
    "StoredLogin",
    "StoredTokens",
    "TokenStore",
]
