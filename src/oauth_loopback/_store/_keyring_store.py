"""``KeyringTokenStore``: logins in the OS keyring (extra: ``oauth-loopback[keyring]``)."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from .._errors import TokenStoreError
from ._locks import KeyLocks, hold_file_lock, run_sync
from ._logs import LazyLogger
from ._protocol import APP_NAME, default_state_directory, encode_login
from ._records import LoginFormatError, LoginKey, StoredLogin
from ._safe_files import check_directory

if TYPE_CHECKING:
    from keyring.backend import KeyringBackend

__all__ = ["KeyringTokenStore"]

logger = LazyLogger(__name__)

_T = TypeVar("_T")

#: The keyring entry listing the stored keys (no secrets), so ``logins()`` can find them:
#: keyrings cannot be enumerated portably.
INDEX_USERNAME = "index"
_INDEX_FORMAT = "oauth-loopback/keyring-index"
# The in-process lock guarding index updates; no LoginKey equals a str.
_INDEX_LOCK = "index"


def _username(key: LoginKey) -> str:
    return f"login:{key.digest}"


class KeyringTokenStore:
    """Logins in the OS keyring (macOS Keychain, Windows Credential Locker, Secret Service).

    Each login is one keyring entry (service ``service``, username ``login:<hash of the key>``)
    holding the same JSON a :class:`FileTokenStore` file holds; an ``index`` entry lists the
    stored keys, without secrets, for :meth:`logins`. ``lock(key)`` is a file lock in
    ``lock_path`` (default: ``<state dir>/keyring-locks``, mode 0700), because keyrings have
    no locks of their own.

    ``backend`` picks a keyring backend object instead of keyring's configured default
    (``keyring.get_keyring()``). Keyring calls may block (D-Bus, an unlock prompt), so they run
    in a worker thread. Some backends limit the size of an entry (Windows: 2560 bytes); a save
    that does not fit raises :class:`TokenStoreError`; use :class:`FileTokenStore` there.

    Needs the ``keyring`` package: ``pip install 'oauth-loopback[keyring]'``.
    """

    def __init__(
        self,
        service: str = APP_NAME,
        *,
        backend: KeyringBackend | None = None,
        lock_path: str | os.PathLike[str] | None = None,
    ) -> None:
        try:
            import keyring  # noqa: F401  (fail now, with the fix, rather than on first use)
        except ImportError as exc:
            msg = (
                "KeyringTokenStore needs the keyring package, which is not installed. "
                "Install it with: pip install 'oauth-loopback[keyring]' (or use "
                "FileTokenStore())."
            )
            raise ImportError(msg, name="keyring") from exc
        if not isinstance(service, str) or not service:
            msg = f"KeyringTokenStore(service=...) must be a non-empty string, not {service!r}."
            raise ValueError(msg)
        self._service = service
        self._backend = backend
        if lock_path is None:
            self._lock_path = default_state_directory() / "keyring-locks"
        else:
            self._lock_path = Path(os.fspath(lock_path)).expanduser()
        self._locks = KeyLocks()

    @property
    def service(self) -> str:
        """The keyring service name every entry is stored under."""
        return self._service

    @property
    def lock_path(self) -> Path:
        """The directory of the lock files."""
        return self._lock_path

    def __repr__(self) -> str:
        return f"KeyringTokenStore(service={self._service!r})"

    # --- the TokenStore protocol ----------------------------------------------------------

    async def load(self, key: LoginKey) -> StoredLogin | None:
        """The login stored under ``key``, or None; raises :class:`TokenStoreError`."""
        return await run_sync(self._load_sync, key)

    async def save(self, login: StoredLogin) -> StoredLogin:
        """Store ``login`` in its keyring entry and list it in the index."""
        stamped = dataclasses.replace(login, updated_at=time.time())
        text = encode_login(stamped)
        key = stamped.key
        await run_sync(self._save_sync, key, text)
        async with self._index_lock():
            await run_sync(self._index_update, key, True)
        return stamped

    async def delete(self, key: LoginKey) -> bool:
        """Remove the entry for ``key`` (even an unreadable one); False if there was none."""
        deleted = await run_sync(self._delete_sync, key)
        async with self._index_lock():
            await run_sync(self._index_update, key, False)
        return deleted

    async def logins(self) -> list[StoredLogin]:
        """Every login the index lists (entries deleted behind our back are skipped)."""
        return await run_sync(self._logins_sync)

    @asynccontextmanager
    async def lock(self, key: LoginKey) -> AsyncIterator[None]:
        """Exclusive across tasks and processes for ``key``; waiting never blocks the loop."""
        async with self._locks.hold(key):
            await run_sync(self._ensure_lock_directory)
            async with hold_file_lock(self._lock_path / f"{key.digest}.lock"):
                yield

    @asynccontextmanager
    async def _index_lock(self) -> AsyncIterator[None]:
        async with self._locks.hold(_INDEX_LOCK):
            await run_sync(self._ensure_lock_directory)
            async with hold_file_lock(self._lock_path / "index.lock"):
                yield

    # --- in a worker thread ---------------------------------------------------------------

    def _ensure_lock_directory(self) -> None:
        check_directory(self._lock_path, create=True)

    def _call(self, what: str, function: Callable[..., _T], *args: str) -> _T:
        """Call the keyring, turning its errors into ours (the message names the fix)."""
        import keyring
        import keyring.errors

        backend = self._backend if self._backend is not None else keyring.get_keyring()
        try:
            return function(backend, *args)
        except keyring.errors.KeyringError as exc:
            msg = (
                f"The OS keyring could not {what} (service {self._service!r}): "
                f"{type(exc).__name__}: {exc}. Unlock or set up a keyring backend (`keyring "
                f"--list-backends` shows them), or use FileTokenStore() instead."
            )
            raise TokenStoreError(msg) from exc

    def _get(self, username: str) -> str | None:
        value: str | None = self._call(
            "read an entry", lambda backend, u: backend.get_password(self._service, u), username
        )
        return value

    def _entry_error(self, username: str, problem: str, issuer: str | None) -> TokenStoreError:
        fix = f"`oauth-loopback logout {issuer}` or " if issuer else ""
        msg = (
            f"The keyring entry service={self._service!r} username={username!r} {problem}. It "
            f"was left untouched. Delete it ({fix}`keyring del {self._service} {username}`) "
            f"and log in again."
        )
        return TokenStoreError(msg)

    def _parse(self, username: str, text: str) -> StoredLogin:
        try:
            document = json.loads(text)
        except ValueError as exc:
            raise self._entry_error(username, f"is not valid JSON ({exc})", None) from exc
        try:
            return StoredLogin.from_dict(document)
        except LoginFormatError as exc:
            problem = {
                "foreign": "is not an oauth-loopback login",
                "newer": "cannot be read by this version (upgrade oauth-loopback)",
                "damaged": "is damaged",
            }[exc.problem]
            raise self._entry_error(username, f"{problem}: {exc}", exc.issuer) from exc

    def _read(self, key: LoginKey) -> StoredLogin | None:
        username = _username(key)
        text = self._get(username)
        if text is None:
            return None
        login = self._parse(username, text)
        if login.key != key:
            raise self._entry_error(
                username,
                f"holds the login for issuer {login.issuer!r} (resource {login.resource!r}), "
                f"not for {key.issuer!r} (resource {key.resource!r}); a credential is never "
                f"used with another issuer",
                None,
            )
        return login

    def _load_sync(self, key: LoginKey) -> StoredLogin | None:
        login = self._read(key)
        logger.debug(
            "%s the login for %s in the keyring", "Loaded" if login else "Found no", key.issuer
        )
        return login

    def _save_sync(self, key: LoginKey, text: str) -> None:
        self._read(key)  # raises, before writing, on an entry we may not replace
        username = _username(key)
        self._call(
            "save an entry",
            lambda backend, u, t: backend.set_password(self._service, u, t),
            username,
            text,
        )
        logger.debug("Saved the login for %s in the keyring", key.issuer)

    def _delete_sync(self, key: LoginKey) -> bool:
        username = _username(key)
        if self._get(username) is None:
            return False
        self._call(
            "delete an entry",
            lambda backend, u: backend.delete_password(self._service, u),
            username,
        )
        logger.debug("Deleted the login for %s from the keyring", key.issuer)
        return True

    def _index_read(self) -> list[LoginKey]:
        text = self._get(INDEX_USERNAME)
        if text is None:
            return []
        try:
            document = json.loads(text)
            if not isinstance(document, dict) or document.get("format") != _INDEX_FORMAT:
                raise ValueError("no index format marker")  # noqa: EM101
            entries = document["logins"]
            return [LoginKey(entry["issuer"], entry.get("resource")) for entry in entries]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            msg = (
                f"The keyring entry service={self._service!r} username={INDEX_USERNAME!r} is "
                f"not an oauth-loopback index ({exc}). It was left untouched; the logins "
                f"themselves are intact. Delete it (`keyring del {self._service} "
                f"{INDEX_USERNAME}`) and save each login again (log in)."
            )
            raise TokenStoreError(msg) from exc

    def _index_update(self, key: LoginKey, present: bool) -> None:
        keys = self._index_read()
        if (key in keys) == present:
            return
        keys = [*keys, key] if present else [k for k in keys if k != key]
        text = json.dumps(
            {
                "format": _INDEX_FORMAT,
                "version": 1,
                "logins": [{"issuer": k.issuer, "resource": k.resource} for k in keys],
            }
        )
        self._call(
            "update the index",
            lambda backend, u, t: backend.set_password(self._service, u, t),
            INDEX_USERNAME,
            text,
        )

    def _logins_sync(self) -> list[StoredLogin]:
        found = [login for key in self._index_read() if (login := self._read(key)) is not None]
        found.sort(key=lambda login: (login.issuer, login.resource or ""))
        return found
