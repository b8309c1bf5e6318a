"""Resource hygiene on asyncio and trio: no leaked sockets or tasks, whatever happens.

Counts ``/proc/self/fd`` and anyio's running tasks before and after: a receiver closed under
load, cancelled at (a sweep of) every point of a login, or left by peers that vanish
mid-request. ResourceWarning is already an error (pytest ``filterwarnings = error``); each test
also runs the garbage collector so an unclosed socket would surface inside it.
"""

from __future__ import annotations

import gc
import os
import socket
import struct
import sys

import anyio
import anyio.abc
import pytest

import oauth_loopback as ol
from tests import _http

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="counts /proc/self/fd"),
]


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def _baseline() -> tuple[int, int]:
    """(open fds, running tasks) once the backend has created whatever it creates lazily."""
    async with ol.open_receiver() as receiver:
        await _http.get(receiver.port, "/")
    gc.collect()
    await anyio.wait_all_tasks_blocked()
    return _fds(), len(anyio.get_running_tasks())


async def _assert_back_to(baseline: tuple[int, int]) -> None:
    """Counts return to ``baseline`` once the loop has handled what the kernel delivered.

    A peer's reset reaches the receiver's task only after the loop polls its sockets, which
    asyncio's wait_all_tasks_blocked() does not wait for: settle for up to a second.
    """
    now: tuple[int, int] = (-1, -1)
    for _ in range(100):
        gc.collect()
        await anyio.wait_all_tasks_blocked()
        now = (_fds(), len(anyio.get_running_tasks()))
        if now == baseline:
            return
        await anyio.sleep(0.01)
    assert now == baseline


async def _waiter(pending: ol.PendingCallback, woken: list[type[BaseException]]) -> None:
    try:
        await pending.wait()
    except ol.OAuthLoopbackError as exc:
        woken.append(type(exc))


async def test_closing_under_load_wakes_every_waiter_and_leaks_nothing() -> None:
    """Leaving the receiver with 100 waiting logins and 50 open connections: all woken, all closed."""
    baseline = await _baseline()
    woken: list[type[BaseException]] = []
    clients: list[anyio.abc.SocketStream] = []
    async with anyio.create_task_group() as tg:
        async with ol.open_receiver(ol.CallbackConfig(read_timeout=30)) as receiver:
            for _ in range(100):
                tg.start_soon(_waiter, receiver.expect(), woken)
            for i in range(50):
                stream = await anyio.connect_tcp("127.0.0.1", receiver.port)
                clients.append(stream)
                if i % 2:  # half of them are mid-request when the receiver closes
                    await stream.send(b"GET /callback?state=")
            await anyio.wait_all_tasks_blocked()
            assert receiver.pending_count == 100
        # The block is left: every waiter wakes with ReceiverClosed.
    assert woken == [ol.ReceiverClosed] * 100
    for stream in clients:  # the receiver closed its side of every connection
        with anyio.fail_after(5):
            try:
                assert await stream.receive() == b""
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                pass
        await stream.aclose()
    await _assert_back_to(baseline)


async def test_cancelling_open_receiver_before_it_starts_leaks_nothing() -> None:
    """A cancelled scope around open_receiver(): no socket, no task, and a fixed port is free again."""
    baseline = await _baseline()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with anyio.CancelScope() as scope:
        scope.cancel()
        async with ol.open_receiver(ol.CallbackConfig(port=port)):
            await anyio.sleep(1)  # if the block is entered at all, it is cancelled here
    assert scope.cancelled_caught
    await _assert_back_to(baseline)
    async with ol.open_receiver(ol.CallbackConfig(port=port)) as receiver:
        assert receiver.port == port  # released: the same fixed port binds again


async def _login(delay_before_callback: float, results: list[str]) -> None:
    """One full login: open, expect, a browser connects and sends the callback, wait."""
    async with ol.open_receiver(ol.CallbackConfig(read_timeout=5)) as receiver:
        pending = receiver.expect()

        async def browser() -> None:
            await anyio.sleep(delay_before_callback)
            await _http.get(receiver.port, f"/callback?state={pending.state}&code=c")

        async with anyio.create_task_group() as tg:
            tg.start_soon(browser)
            response = await pending.wait()
        results.append(response.code)


# Deadlines that land the cancellation at different awaits: while binding/starting, while the
# browser connects, while the request is read or answered, inside wait(), after it.
_SWEEP = [
    0.0,
    1e-5,
    5e-5,
    1e-4,
    2e-4,
    4e-4,
    7e-4,
    1e-3,
    1.5e-3,
    2e-3,
    3e-3,
    5e-3,
    8e-3,
    0.013,
    0.02,
]


async def test_cancellation_anywhere_in_a_login_leaks_nothing() -> None:
    """A login cancelled at a sweep of moments leaves no socket and no task behind, every time."""
    baseline = await _baseline()
    outcomes: set[tuple[bool, bool]] = set()
    for deadline in _SWEEP:
        for browser_delay in (0.0, 0.001):
            completed: list[str] = []
            with anyio.move_on_after(deadline) as scope:
                await _login(browser_delay, completed)
            # Uncancelled runs complete; a cancelled one may have got its code first (it was
            # cancelled while the receiver closed).
            assert scope.cancelled_caught or completed == ["c"]
            outcomes.add((scope.cancelled_caught, bool(completed)))
            await _assert_back_to(baseline)
    assert (True, False) in outcomes  # the sweep interrupted logins before their code...
    assert (False, True) in outcomes  # ...and let others complete


async def test_cancelled_wait_forgets_the_state_and_the_receiver_keeps_serving() -> None:
    """Cancelling wait() forgets its state (a late callback gets 4xx); other logins still complete."""
    async with ol.open_receiver() as receiver:
        cancelled, other = receiver.expect(), receiver.expect()
        with anyio.move_on_after(0.01):
            await cancelled.wait()
        late = await _http.get(receiver.port, f"/callback?state={cancelled.state}&code=late")
        assert late.status == 400
        assert receiver.pending_count == 1
        reply = await _http.get(receiver.port, f"/callback?state={other.state}&code=ok")
        assert reply.status == 200
        assert (await other.wait(5)).code == "ok"


async def test_peers_vanishing_mid_request_release_their_sockets() -> None:
    """50 peers that reset mid-request: the receiver closes each socket while it keeps running."""
    baseline = await _baseline()
    async with ol.open_receiver(ol.CallbackConfig(read_timeout=30)) as receiver:
        pending = receiver.expect()
        await anyio.wait_all_tasks_blocked()
        serving = (_fds(), len(anyio.get_running_tasks()))
        for i in range(50):
            stream = await anyio.connect_tcp("127.0.0.1", receiver.port)
            await stream.send(f"GET /callback?state={pending.state}&code=".encode()[: i + 1])
            raw = stream.extra(anyio.abc.SocketAttribute.raw_socket)  # noqa: S610 (anyio, not Django)
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            await stream.aclose()  # RST: the peer vanishes
        # No timer needed: each connection task sees the reset and closes its socket.
        await _assert_back_to(serving)
        reply = await _http.get(receiver.port, f"/callback?state={pending.state}&code=ok")
        assert reply.status == 200
        assert (await pending.wait(5)).code == "ok"
    await _assert_back_to(baseline)
