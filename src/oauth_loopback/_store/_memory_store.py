"""``MemoryTokenStore``: the same semantics as the file store, in this process's memory."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from ._locks import KeyLocks
from ._logs import LazyLogger
from ._protocol import encode_login
from ._records import LoginKey, StoredLogin

__all__ = ["MemoryTokenStore"]

logger = LazyLogger(__name__)


async def _checkpoint() -> None:
    # anyio on first use: ``sync.get_token()`` reads this store without any event loop.
    import anyio.lowlevel

    await anyio.lowlevel.checkpoint()


class MemoryTokenStore:
    """Logins kept in memory, for tests and short-lived tools; gone when the process ends.

    Each login is kept in its JSON form, exactly as the file store writes it, so what you get
    back from ``load`` is a fresh copy that went through the same validation. ``lock(key)``
    serialises the tasks of this process only (an :class:`anyio.Lock` per key): there is
    nothing for another process to share.
    """

    def __init__(self) -> None:
        self._logins: dict[LoginKey, str] = {}
        self._locks = KeyLocks()

    def __repr__(self) -> str:
        return f"MemoryTokenStore(<{len(self._logins)} logins>)"

    async def load(self, key: LoginKey) -> StoredLogin | None:
        """The login stored under ``key``, or None."""
        await _checkpoint()
        return self._load_sync(key)

    def _load_sync(self, key: LoginKey) -> StoredLogin | None:
        """``load`` without the checkpoint: what ``sync.get_token()`` reads without a loop."""
        text = self._logins.get(key)
        if text is None:
            return None
        return StoredLogin.from_dict(json.loads(text))

    async def save(self, login: StoredLogin) -> StoredLogin:
        """Store ``login`` under ``login.key``; returns it as stored (``updated_at`` set)."""
        await _checkpoint()
        stamped = dataclasses.replace(login, updated_at=time.time())
        self._logins[stamped.key] = encode_login(stamped)
        logger.debug("Saved the login for %s in memory", stamped.issuer)
        return stamped

    async def delete(self, key: LoginKey) -> bool:
        """Forget the login under ``key``; False if there was none."""
        await _checkpoint()
        return self._logins.pop(key, None) is not None

    async def logins(self) -> list[StoredLogin]:
        """Every stored login, sorted by issuer and resource."""
        await _checkpoint()
        found = [StoredLogin.from_dict(json.loads(text)) for text in self._logins.values()]
        found.sort(key=lambda login: (login.issuer, login.resource or ""))
        return found

    @asynccontextmanager
    async def lock(self, key: LoginKey) -> AsyncIterator[None]:
        """Exclusive for ``key`` among the tasks of this process."""
        async with self._locks.hold(key):
            yield
