"""The cross-process lock: real processes are serialised, and waiting never stalls the loop."""

from __future__ import annotations

import sys
import textwrap
import threading
from pathlib import Path
from typing import cast

import anyio
import filelock
import pytest
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream

from oauth_loopback._store import FileTokenStore, KeyringTokenStore, LoginKey
from oauth_loopback._store._locks import _Attempt

from ._helpers import ISSUER, DictKeyring

pytestmark = pytest.mark.anyio

KEY = LoginKey(ISSUER)
ROOT = str(Path(__file__).resolve().parent.parent)

# A process that appends "<tag> start" / "<tag> end" around a read-increment-write of a
# counter file, `rounds` times, each time holding store.lock(KEY). It starts when told "go".
WORKER = textwrap.dedent(
    """
    import sys
    import anyio
    from oauth_loopback._store import FileTokenStore, LoginKey

    store_path, log, counter, rounds, tag = sys.argv[1:6]

    async def main():
        store = FileTokenStore(store_path)
        print("ready", flush=True)
        sys.stdin.readline()
        for _ in range(int(rounds)):
            async with store.lock(LoginKey("https://as.example")):
                with open(log, "a") as f:
                    f.write(tag + " start\\n")
                with open(counter) as f:
                    value = int(f.read())
                await anyio.sleep(0.002)  # the window a missing lock would lose updates in
                with open(counter, "w") as f:
                    f.write(str(value + 1))
                with open(log, "a") as f:
                    f.write(tag + " end\\n")

    anyio.run(main)
    """
)

# A process that takes store.lock(KEY), says "held", and lets go on "release" (or after 20 s,
# so a broken test cannot leave it behind).
HOLDER = textwrap.dedent(
    """
    import select, sys
    import anyio
    from oauth_loopback._store import FileTokenStore, LoginKey

    async def main():
        store = FileTokenStore(sys.argv[1])
        async with store.lock(LoginKey("https://as.example")):
            print("held", flush=True)
            select.select([sys.stdin], [], [], 20)
        print("released", flush=True)

    anyio.run(main)
    """
)


async def _line(reader: BufferedByteReceiveStream) -> bytes:
    with anyio.fail_after(30):
        return await reader.receive_until(b"\n", 1024)


def _stdout(process: Process) -> BufferedByteReceiveStream:
    assert process.stdout is not None
    return BufferedByteReceiveStream(process.stdout)


async def test_two_processes_are_serialised(tmp_path: Path) -> None:
    """Two processes using lock(key) on one FileTokenStore never overlap and lose no update."""
    store_path, log, counter = tmp_path / "logins", tmp_path / "log", tmp_path / "counter"
    counter.write_text("0")
    log.write_text("")
    rounds = 15
    processes: list[Process] = []
    try:
        for tag in ("A", "B"):
            argv = [sys.executable, "-c", WORKER, str(store_path), str(log), str(counter)]
            processes.append(await anyio.open_process([*argv, str(rounds), tag], cwd=ROOT))
        for process in processes:
            assert await _line(_stdout(process)) == b"ready"
        for process in processes:  # start both at once, so they contend
            assert process.stdin is not None
            await process.stdin.send(b"go\n")
        with anyio.fail_after(60):
            for process in processes:
                assert await process.wait() == 0
    finally:
        for process in processes:
            if process.returncode is None:
                process.kill()
            await process.aclose()
    lines = log.read_text().splitlines()
    assert len(lines) == 4 * rounds
    for start, end in zip(lines[::2], lines[1::2], strict=False):
        tag = start.split()[0]
        assert (start, end) == (f"{tag} start", f"{tag} end")  # no interleaving
    assert counter.read_text() == str(2 * rounds)  # no lost update


async def test_waiting_for_another_process_does_not_block_the_event_loop(tmp_path: Path) -> None:
    """While lock(key) waits for another process, the other tasks of this one keep running."""
    store = FileTokenStore(tmp_path / "logins")
    holder = await anyio.open_process([sys.executable, "-c", HOLDER, str(store.path)], cwd=ROOT)
    try:
        reader = _stdout(holder)
        assert await _line(reader) == b"held"
        acquired = anyio.Event()
        ticks_when_acquired: list[int] = []
        ticks = 0

        async def waiter() -> None:
            async with store.lock(KEY):
                ticks_when_acquired.append(ticks)
                acquired.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            for _ in range(10):  # if the wait blocked the loop, this would not run meanwhile
                await anyio.sleep(0.02)
                ticks += 1
            assert not acquired.is_set()
            assert holder.stdin is not None
            await holder.stdin.send(b"release\n")
            with anyio.fail_after(10):
                await acquired.wait()
        assert ticks_when_acquired == [10]
        assert await _line(reader) == b"released"
    finally:
        if holder.returncode is None:
            holder.kill()
        await holder.aclose()


@pytest.mark.parametrize("kind", ["file", "keyring"])
async def test_cancelled_wait_for_another_process_takes_nothing(tmp_path: Path, kind: str) -> None:
    """Cancelled while another process holds the lock: returns at once, and never grabs it later."""
    file_store = FileTokenStore(tmp_path / "logins")
    if kind == "file":
        store: FileTokenStore | KeyringTokenStore = file_store
        lock_file = file_store.path / f"{KEY.digest}.lock"
    else:
        # The keyring store's lock is a file lock in its lock_path: point it at the same
        # directory, so the holder process (a FileTokenStore) contends for the same file.
        store = KeyringTokenStore(backend=DictKeyring(), lock_path=file_store.path)
        lock_file = file_store.path / f"{KEY.digest}.lock"
    holder = await anyio.open_process(
        [sys.executable, "-c", HOLDER, str(file_store.path)], cwd=ROOT
    )
    try:
        reader = _stdout(holder)
        assert await _line(reader) == b"held"
        with anyio.fail_after(5):  # cancellation is prompt, not after the holder lets go
            with anyio.move_on_after(0.3) as scope:
                async with store.lock(KEY):
                    pytest.fail("got a lock another process holds")
        assert scope.cancelled_caught
        # The other process still holds it.
        probe = filelock.FileLock(str(lock_file), thread_local=False)
        with pytest.raises(filelock.Timeout):
            probe.acquire(timeout=0)
        assert holder.stdin is not None
        await holder.stdin.send(b"release\n")
        assert await _line(reader) == b"released"
        with anyio.fail_after(10):
            assert await holder.wait() == 0
        # The abandoned attempt stopped and kept nothing: the lock is free for the next one.
        with anyio.fail_after(10):
            async with store.lock(KEY):
                pass
    finally:
        if holder.returncode is None:
            holder.kill()
        await holder.aclose()


class _GrabThenCancel:
    """A file lock whose acquire succeeds just as the waiting task is cancelled."""

    def __init__(self, lock: filelock.BaseFileLock) -> None:
        self.lock = lock
        self.attempt: _Attempt | None = None

    def acquire(self, **kwargs: object) -> object:
        result = self.lock.acquire(timeout=0)
        assert self.attempt is not None
        self.attempt.abandon()  # the task was cancelled right after the thread got the lock
        return result

    def release(self) -> None:
        self.lock.release()


def _is_free(path: Path) -> bool:
    probe = filelock.FileLock(str(path), thread_local=False)
    try:
        probe.acquire(timeout=0)
    except filelock.Timeout:
        return False
    probe.release()
    return True


def test_a_lock_obtained_after_cancellation_is_given_back(tmp_path: Path) -> None:
    """If the worker thread gets the lock just after the task gave up, it releases it at once."""
    path = tmp_path / "x.lock"
    racing = _GrabThenCancel(filelock.FileLock(str(path), thread_local=False))
    attempt = _Attempt(cast("filelock.BaseFileLock", racing))
    racing.attempt = attempt
    assert attempt.run() is False
    assert _is_free(path)


def test_cancelling_after_the_thread_got_the_lock_releases_it(tmp_path: Path) -> None:
    """If the task is cancelled after the thread reported success, abandon() releases it."""
    path = tmp_path / "x.lock"
    attempt = _Attempt(filelock.FileLock(str(path), thread_local=False))
    assert attempt.run() is True
    assert not _is_free(path)
    attempt.abandon()
    assert _is_free(path)
    attempt.abandon()  # twice is harmless: nothing is released that is not held


def test_abandoned_waiting_thread_stops(tmp_path: Path) -> None:
    """A thread waiting for a held lock stops within a poll interval once abandoned."""
    path = tmp_path / "x.lock"
    holder = filelock.FileLock(str(path), thread_local=False)
    holder.acquire()
    try:
        attempt = _Attempt(filelock.FileLock(str(path), thread_local=False))
        results: list[bool] = []
        thread = threading.Thread(target=lambda: results.append(attempt.run()))
        thread.start()
        attempt.abandon()
        thread.join(timeout=10)
        assert not thread.is_alive()
        assert results == [False]
        assert not _is_free(path)  # the holder's lock is untouched
    finally:
        holder.release()
    assert _is_free(path)
