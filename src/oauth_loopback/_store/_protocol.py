"""The :class:`TokenStore` protocol every store implements, and what the stores share."""

from __future__ import annotations

import json
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Protocol, runtime_checkable

from ._records import LoginKey, StoredLogin

__all__ = ["APP_NAME", "TokenStore", "default_state_directory", "encode_login"]

#: The platformdirs application name: the state directory is named after it.
APP_NAME = "oauth-loopback"


@runtime_checkable
class TokenStore(Protocol):
    """Where logins are kept between runs. All methods are async; none blocks the event loop.

    ``save`` replaces the whole record atomically: a concurrent ``load`` sees the old login or
    the new one. For a read-modify-write (refreshing tokens) hold ``lock(key)`` around it and
    ``load`` again *inside* the lock, since another process may have refreshed meanwhile::

        async with store.lock(key):
            login = await store.load(key)         # re-read: the other process may have won
            if login and login.tokens and not login.tokens.is_valid():
                login = dataclasses.replace(login, tokens=await refresh(login))
                await store.save(login)

    A store never hands out a login for another key: ``load(key)`` returns a login whose
    ``issuer`` and ``resource`` equal the key's exactly, or None, or raises
    :class:`~oauth_loopback.TokenStoreError`.
    """

    async def load(self, key: LoginKey) -> StoredLogin | None:
        """The login stored under ``key``, or None."""
        ...

    async def save(self, login: StoredLogin) -> StoredLogin:
        """Store ``login`` under ``login.key``; returns it as stored (``updated_at`` set)."""
        ...

    async def delete(self, key: LoginKey) -> bool:
        """Forget the login under ``key``; False if there was none."""
        ...

    async def logins(self) -> list[StoredLogin]:
        """Every stored login, sorted by issuer and resource (e.g. for a ``status`` listing)."""
        ...

    def lock(self, key: LoginKey) -> AbstractAsyncContextManager[None]:
        """An exclusive lock for ``key``: ``async with store.lock(key): ...``.

        Not reentrant: taking it again inside itself raises or waits forever. Waiting is
        cancellable (wrap it in ``anyio.fail_after`` to bound it).
        """
        ...


def encode_login(login: StoredLogin) -> str:
    """The JSON text the stores write for ``login``."""
    return json.dumps(login.to_dict(), indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def default_state_directory() -> Path:
    """The user's state directory for oauth-loopback (platformdirs), e.g. ~/.local/state/...

    Imported here, not at module level, so that merely importing a store stays cheap.
    """
    from platformdirs import user_state_path

    return user_state_path(APP_NAME, appauthor=False)
