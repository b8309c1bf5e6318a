"""The locks behind ``TokenStore.lock(key)``: per key, in-process and across processes.

``KeyLocks`` serialises the tasks of one store object by key (an :class:`anyio.Lock` each,
dropped when nobody holds or waits for it). ``hold_file_lock`` adds the cross-process part: an
exclusive ``filelock`` on a sibling ``.lock`` file (mode 0600).

Waiting for the file lock must neither block the event loop nor poll in it, so the blocking
acquire runs in a worker thread (``anyio.to_thread.run_sync``). filelock itself waits by
retrying every ``POLL_INTERVAL`` seconds *in that thread*; a lock released by another process
is therefore taken up to that long after. Cancelling the waiting task returns at once (the
thread is abandoned) and the thread stops within one poll interval; a lock it obtains after
the task was cancelled is released at once, so a cancelled waiter never ends up holding it.

anyio is imported when a lock is first taken or a worker thread first started, not with this
module: the stores are imported by ``import oauth_loopback`` and read synchronously by
``oauth-loopback token`` and ``sync.get_token()`` when a stored token is valid, which then
load no anyio (nor asyncio or trio) at all.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Hashable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from .._errors import TokenStoreError
from ._logs import LazyLogger

if TYPE_CHECKING:
    import anyio
    import filelock

__all__ = ["POLL_INTERVAL", "KeyLocks", "hold_file_lock", "run_sync"]

_T = TypeVar("_T")

logger = LazyLogger(__name__)

#: How often the worker thread retries a contended file lock (filelock's default).
POLL_INTERVAL = 0.05
# filelock 4 refuses an *unbounded* blocking acquire while another lock object of this
# process holds the same file (it assumes a same-thread deadlock). Two store objects on one
# directory are legitimate, so the thread waits in bounded slices and starts a new slice when
# one runs out; a slice only bounds one call, not how long the caller waits in total.
_WAIT_SLICE = 60.0


async def run_sync(function: Callable[..., _T], *args: object) -> _T:
    """``function(*args)`` in a worker thread (``anyio.to_thread.run_sync``): the stores' blocking
    I/O never runs on the event loop. anyio is imported here, on first use (see above)."""
    import anyio.to_thread

    return await anyio.to_thread.run_sync(function, *args)


class KeyLocks:
    """One :class:`anyio.Lock` per key, kept only while someone holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[Hashable, tuple[anyio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, key: Hashable) -> AsyncIterator[None]:
        import anyio

        lock, users = self._locks.get(key) or (anyio.Lock(), 0)
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


class _Attempt:
    """One acquisition of a file lock by a worker thread, which the event loop may abandon.

    A mutex decides the race between "the thread got the lock" and "the task was cancelled":
    whichever comes second releases the lock, so it is never left held by nobody.
    """

    def __init__(self, lock: filelock.BaseFileLock) -> None:
        import threading  # backend-specific: a mutex between a worker thread and the loop, not a loop lock

        self._lock = lock
        self._mutex = threading.Lock()
        self._abandoned = False
        self._held = False

    def _is_abandoned(self) -> bool:
        return self._abandoned

    def run(self) -> bool:
        """In the worker thread: wait for the lock; False if abandoned meanwhile."""
        import filelock

        while not self._abandoned:
            try:
                self._lock.acquire(
                    timeout=_WAIT_SLICE,
                    poll_interval=POLL_INTERVAL,
                    cancel_check=self._is_abandoned,
                )
            except filelock.Timeout:
                continue  # a slice ran out, or we were abandoned: the loop condition decides
            with self._mutex:
                if self._abandoned:
                    self._lock.release()
                    return False
                self._held = True
                return True
        return False

    def abandon(self) -> None:
        """On the event loop, when the waiting task is cancelled: give back what we got."""
        with self._mutex:
            self._abandoned = True
            if self._held:
                self._held = False
                self._lock.release()


@asynccontextmanager
async def hold_file_lock(path: Path) -> AsyncIterator[None]:
    """Hold an exclusive lock on ``path`` (created 0600) against every other process."""
    import anyio
    import anyio.to_thread
    import filelock

    # thread_local=False: acquired in one worker thread, released from another.
    lock = filelock.FileLock(str(path), mode=0o600, thread_local=False)
    attempt = _Attempt(lock)
    try:
        acquired = await anyio.to_thread.run_sync(attempt.run, abandon_on_cancel=True)
    except OSError as exc:
        attempt.abandon()
        msg = (
            f"Could not take the token store lock {path}: {exc.strerror or exc}. Check that "
            f"the directory is yours and writable (mode 700)."
        )
        raise TokenStoreError(msg, path=str(path)) from exc
    except BaseException:
        attempt.abandon()
        raise
    if not acquired:  # pragma: no cover - only an abandoned attempt returns False
        msg = "the file lock attempt was abandoned without a cancellation"
        raise RuntimeError(msg)
    logger.debug("Took the store lock %s", path)
    try:
        yield
    finally:
        # Shielded: a cancelled body must still give the lock back before it unwinds.
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(lock.release)
        logger.debug("Released the store lock %s", path)
