"""``FileTokenStore``: one private JSON file per login in the user's state directory."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from .._errors import TokenStoreError
from ._locks import KeyLocks, hold_file_lock, run_sync
from ._logs import LazyLogger
from ._protocol import default_state_directory, encode_login
from ._records import LoginFormatError, LoginKey, StoredLogin
from ._safe_files import check_directory, read_private, write_private

__all__ = ["FileTokenStore"]

logger = LazyLogger(__name__)

_LOGIN_FILE = re.compile(r"[0-9a-f]{32}\.json")


def _format_error(path: Path, exc: LoginFormatError) -> TokenStoreError:
    if exc.problem == "foreign":
        msg = (
            f"The token store file {path} is not an oauth-loopback login: {exc}. It was left "
            f"untouched. Move it out of {path.parent}, or delete it (rm {path})."
        )
    elif exc.problem == "newer":
        logout = f"`oauth-loopback logout {exc.issuer}` or " if exc.issuer else ""
        msg = (
            f"The token store file {path} cannot be read by this version: {exc}. It was left "
            f"untouched. Upgrade oauth-loopback, or delete it ({logout}rm {path}) to log in "
            f"again with this version."
        )
    else:
        logout = (
            f"`oauth-loopback logout {exc.issuer}` (or rm {path})" if exc.issuer else f"rm {path}"
        )
        msg = (
            f"The token store file {path} is damaged: {exc}. It was left untouched. Delete it "
            f"with {logout} and log in again."
        )
    return TokenStoreError(msg, path=str(path))


def _mismatch_error(path: Path, found: LoginKey, expected: LoginKey) -> TokenStoreError:
    msg = (
        f"The token store file {path} holds the login for issuer {found.issuer!r} (resource "
        f"{found.resource!r}) but is named for issuer {expected.issuer!r} (resource "
        f"{expected.resource!r}): it was renamed or copied, and a credential is never used "
        f"with another issuer. It was left untouched. Delete it (rm {path}) and log in again."
    )
    return TokenStoreError(msg, path=str(path))


class FileTokenStore:
    """Logins as JSON files only you can read, in the user's state directory.

    ``path`` is the directory (default: ``<platformdirs user_state_path("oauth-loopback")>/
    logins``, e.g. ``~/.local/state/oauth-loopback/logins`` on Linux). It is created with mode
    0700; each login is one file named after a hash of its key, mode 0600, replaced atomically
    on every save. ``lock(key)`` is held across processes through a sibling ``.lock`` file.

    A file this store cannot trust (not JSON, not ours, a newer format, renamed from another
    key, a symlink, group/other-readable, someone else's) raises :class:`TokenStoreError`
    naming the file and the fix, on load *and* on save: it is never silently overwritten.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        if path is None:
            directory = default_state_directory() / "logins"
        else:
            directory = Path(os.fspath(path)).expanduser()
        self._path = directory
        self._locks = KeyLocks()

    @property
    def path(self) -> Path:
        """The directory holding the login files."""
        return self._path

    def path_for(self, key: LoginKey) -> Path:
        """The file that holds (or would hold) the login under ``key``."""
        return self._path / f"{key.digest}.json"

    def __repr__(self) -> str:
        return f"FileTokenStore(path={str(self._path)!r})"

    # --- the TokenStore protocol ----------------------------------------------------------

    async def load(self, key: LoginKey) -> StoredLogin | None:
        """The login stored under ``key``, or None; raises :class:`TokenStoreError`."""
        return await run_sync(self._load_sync, key)

    async def save(self, login: StoredLogin) -> StoredLogin:
        """Atomically replace the file for ``login.key``; returns the login as stored."""
        stamped = dataclasses.replace(login, updated_at=time.time())
        data = encode_login(stamped).encode("utf-8")
        await run_sync(self._save_sync, stamped.key, data)
        return stamped

    async def delete(self, key: LoginKey) -> bool:
        """Remove the file for ``key`` (even an unreadable one); False if there was none."""
        return await run_sync(self._delete_sync, key)

    async def logins(self) -> list[StoredLogin]:
        """Every login in the directory; an untrusted file raises :class:`TokenStoreError`."""
        return await run_sync(self._logins_sync)

    @asynccontextmanager
    async def lock(self, key: LoginKey) -> AsyncIterator[None]:
        """Exclusive across tasks and processes for ``key``; waiting never blocks the loop."""
        async with self._locks.hold(key):
            await run_sync(self._ensure_directory)
            async with hold_file_lock(self._path / f"{key.digest}.lock"):
                yield

    # --- in a worker thread ---------------------------------------------------------------

    def _ensure_directory(self) -> None:
        check_directory(self._path, create=True)

    def _read(self, path: Path) -> StoredLogin | None:
        data = read_private(path)
        if data is None:
            return None
        try:
            document = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            msg = (
                f"The token store file {path} is not valid JSON ({exc}); it may have been cut "
                f"short or edited by hand. It was left untouched. Delete it (rm {path}) and "
                f"log in again."
            )
            raise TokenStoreError(msg, path=str(path)) from exc
        try:
            return StoredLogin.from_dict(document)
        except LoginFormatError as exc:
            raise _format_error(path, exc) from exc

    def _load_sync(self, key: LoginKey) -> StoredLogin | None:
        if not check_directory(self._path, create=False):
            return None
        path = self.path_for(key)
        login = self._read(path)
        if login is None:
            logger.debug("No stored login for %s in %s", key.issuer, self._path)
            return None
        if login.key != key:
            raise _mismatch_error(path, login.key, key)
        logger.debug("Loaded the login for %s from %s", key.issuer, path)
        return login

    def _save_sync(self, key: LoginKey, data: bytes) -> None:
        check_directory(self._path, create=True)
        path = self.path_for(key)
        existing = self._read(path)  # raises, before writing, on a file we may not replace
        if existing is not None and existing.key != key:
            raise _mismatch_error(path, existing.key, key)
        write_private(path, data)
        logger.debug("Saved the login for %s to %s", key.issuer, path)

    def _delete_sync(self, key: LoginKey) -> bool:
        if not check_directory(self._path, create=False):
            return False
        path = self.path_for(key)
        try:
            os.unlink(path)
        except FileNotFoundError:
            return False
        except OSError as exc:
            msg = f"Could not delete the token store file {path}: {exc.strerror or exc}."
            raise TokenStoreError(msg, path=str(path)) from exc
        # The .lock file stays: removing it could let two processes lock two different files.
        logger.debug("Deleted the login for %s (%s)", key.issuer, path)
        return True

    def _logins_sync(self) -> list[StoredLogin]:
        if not check_directory(self._path, create=False):
            return []
        found: list[StoredLogin] = []
        for name in sorted(os.listdir(self._path)):
            if not _LOGIN_FILE.fullmatch(name):
                continue  # lock files, temporary files of an interrupted save, strangers
            path = self._path / name
            login = self._read(path)
            if login is None:
                continue  # deleted since we listed the directory
            if login.key.digest != name.removesuffix(".json"):
                msg = (
                    f"The token store file {path} holds the login for issuer "
                    f"{login.issuer!r}, but its name belongs to another key: it was renamed "
                    f"or copied. It was left untouched. Delete it (rm {path}) and log in again."
                )
                raise TokenStoreError(msg, path=str(path))
            found.append(login)
        found.sort(key=lambda login: (login.issuer, login.resource or ""))
        return found
