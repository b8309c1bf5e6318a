"""Files only their owner can read, written atomically.

Plain synchronous functions: the stores run them in a worker thread
(``anyio.to_thread.run_sync``), never on the event loop. Errors are :class:`TokenStoreError`
naming the path and the fix; nothing here ever overwrites or deletes a file it refused.

On POSIX a directory must be owned by the current user with mode 0700 (no group or other
bits), and a file owned by the current user with no group or other bits (0600). On Windows the
mode bits mean little and there are no uids: the checks are skipped and the files rely on the
ACLs of the user's profile directory, where the default path lives.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path

from .._errors import TokenStoreError
from ._logs import LazyLogger

__all__ = ["MAX_FILE_SIZE", "check_directory", "read_private", "write_private"]

logger = LazyLogger(__name__)

#: A stored login is a few KiB; anything past this is not one of ours.
MAX_FILE_SIZE = 1 << 20

_POSIX = os.name == "posix"
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_BINARY = getattr(os, "O_BINARY", 0)  # Windows: no newline translation


def _uid() -> int | None:
    getuid = getattr(os, "getuid", None)
    return None if getuid is None else int(getuid())


def _check_owner_and_mode(path: Path, st: os.stat_result, *, what: str, fix_mode: str) -> None:
    if not _POSIX:
        return
    uid = _uid()
    if uid is not None and st.st_uid != uid:
        msg = (
            f"The token store {what} {path} belongs to uid {st.st_uid}, not to you (uid {uid}), "
            f"so oauth-loopback will not trust or overwrite it. It was left untouched. Check "
            f"where it came from, then remove it (rm -r {path}) or pass another FileTokenStore(path=...)."
        )
        raise TokenStoreError(msg, path=str(path))
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        msg = (
            f"The token store {what} {path} has mode {mode:04o}: other users may read or "
            f"change it. It was left untouched. Run `chmod {fix_mode} {path}`; if others may "
            f"have read its tokens, also run `oauth-loopback logout ISSUER` to revoke them."
        )
        raise TokenStoreError(msg, path=str(path))


def check_directory(path: Path, *, create: bool) -> bool:
    """Check (or create, with mode 0700) the store directory; False if absent and not created."""
    try:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            if not create:
                return False
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.mkdir(path, 0o700)
            except FileExistsError:
                pass  # another process made it first; checked below like any other
            else:
                # mkdir's mode passes through the umask; say exactly what we mean.
                os.chmod(path, 0o700)
                logger.debug("Created the token store directory %s", path)
            st = os.stat(path)
    except OSError as exc:
        msg = (
            f"Could not create the token store directory {path}: {exc.strerror or exc}. "
            f"Check that you may write there, or pass another FileTokenStore(path=...)."
        )
        raise TokenStoreError(msg, path=str(path)) from exc
    if not stat.S_ISDIR(st.st_mode):
        msg = (
            f"The token store path {path} is not a directory. Move it away, or pass another "
            f"FileTokenStore(path=...)."
        )
        raise TokenStoreError(msg, path=str(path))
    _check_owner_and_mode(path, st, what="directory", fix_mode="700")
    return True


def read_private(path: Path) -> bytes | None:
    """The contents of a private regular file, or None if it does not exist.

    Refuses symlinks (``O_NOFOLLOW``), non-regular files, a foreign owner, group/other mode bits
    and oversized files, checking the open descriptor (``fstat``) so nothing can be swapped
    in between the check and the read.
    """
    try:
        fd = os.open(path, os.O_RDONLY | _O_NOFOLLOW | _O_CLOEXEC | _O_BINARY)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            msg = (
                f"The token store file {path} is a symbolic link; oauth-loopback reads only "
                f"regular files it wrote itself. It was left untouched. Remove the link "
                f"(rm {path}) and log in again."
            )
        else:
            msg = (
                f"Could not read the token store file {path}: {exc.strerror or exc}. Check "
                f"its permissions (it should be yours, mode 600)."
            )
        raise TokenStoreError(msg, path=str(path)) from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            msg = (
                f"The token store file {path} is not a regular file. It was left untouched. "
                f"Remove it (rm {path}) and log in again."
            )
            raise TokenStoreError(msg, path=str(path))
        _check_owner_and_mode(path, st, what="file", fix_mode="600")
        if st.st_size > MAX_FILE_SIZE:
            msg = (
                f"The token store file {path} is {st.st_size} bytes, far more than a stored "
                f"login; it is not one of ours. It was left untouched. Remove it (rm {path}) "
                f"and log in again."
            )
            raise TokenStoreError(msg, path=str(path))
        chunks: list[bytes] = []
        size = 0
        while size <= MAX_FILE_SIZE:  # bounded even if the file grows while we read
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)
    except OSError as exc:
        msg = f"Could not read the token store file {path}: {exc.strerror or exc}."
        raise TokenStoreError(msg, path=str(path)) from exc
    finally:
        os.close(fd)


def _fsync_directory(path: Path) -> None:
    # POSIX: the rename is durable only once the directory entry is on disk. Windows cannot
    # open a directory this way, and its MoveFileEx replace is already journaled.
    if not _POSIX:
        return
    fd = os.open(path, os.O_RDONLY | _O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_private(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically, as a file only its owner can read.

    The data goes to a fresh temporary file in the same directory, created with
    ``O_CREAT | O_EXCL`` and mode 0600 (never through an existing file or a symlink), is
    fsynced, and then renamed over ``path`` with ``os.replace``: a reader, or a crash at any
    point, sees the old file or the new one, never a mix. On failure the temporary file is
    removed and the old file is untouched.
    """
    import secrets  # here, not above: reading a stored token should not pay for it

    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    try:
        fd = os.open(
            tmp,
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_NOFOLLOW | _O_CLOEXEC | _O_BINARY,
            0o600,
        )
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            msg = (
                f"Could not write the token store file {path}: {exc.strerror or exc}. The "
                f"previous file, if any, is unchanged. Free some space or fix the directory's "
                f"permissions, or pass another FileTokenStore(path=...)."
            )
            raise TokenStoreError(msg, path=str(path)) from exc
        raise
    try:
        _fsync_directory(path.parent)
    except OSError as exc:
        msg = (
            f"Wrote the token store file {path}, but could not flush its directory to disk: "
            f"{exc.strerror or exc}. A crash now could bring back the previous file; check the "
            f"file system, or pass another FileTokenStore(path=...)."
        )
        raise TokenStoreError(msg, path=str(path)) from exc
