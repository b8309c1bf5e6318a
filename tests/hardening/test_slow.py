"""Slow, idle and flooding clients cannot starve the real callback (asyncio and trio).

A local process can open many connections and then say nothing, or trickle a byte at a time
(slowloris). The receiver bounds each connection with a whole-request read deadline
(``read_timeout``) and caps the number it keeps (``max_connections``); when full it closes the
connection idle longest, so a fresh connection (the browser's) always gets in.
"""

from __future__ import annotations

import resource
import sys
from pathlib import Path

import anyio
import anyio.abc
import pytest

import oauth_loopback as ol
from tests import _http

pytestmark = pytest.mark.anyio

HELD = 200  # hostile connections held open at once


def _affordable(wanted: int) -> int:
    """How many client connections this process may open (each costs two fds: ours and theirs)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    budget = (soft - 200) // 2 if soft != resource.RLIM_INFINITY else wanted
    if budget < 50:
        pytest.skip(f"ulimit -n is {soft}; these tests need at least 500 file descriptors")
    return min(wanted, budget)


async def _closed_by_peer(stream: anyio.abc.SocketStream) -> bytes:
    """Read until the receiver closes this connection; return what it sent (bounded)."""
    received = b""
    with anyio.fail_after(10):
        while True:
            try:
                received += await stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                return received


async def _trickle(stream: anyio.abc.SocketStream, text: bytes) -> None:
    """Send one byte every 50 ms until told to stop or the receiver hangs up."""
    try:
        for i in range(10_000):
            await stream.send(text[i % len(text) : i % len(text) + 1])
            await anyio.sleep(0.05)
    except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        return


async def test_hundreds_of_idle_and_trickling_clients_do_not_delay_the_callback() -> None:
    """200 silent or slowloris connections: the real callback still completes within 1 s."""
    held = _affordable(HELD)
    config = ol.CallbackConfig(read_timeout=30, max_connections=64)
    async with ol.open_receiver(config) as receiver, anyio.create_task_group() as tg:
        pending = receiver.expect()
        streams = []
        try:
            for i in range(held):
                stream = await anyio.connect_tcp("127.0.0.1", receiver.port)
                streams.append(stream)
                if i % 2:
                    tg.start_soon(_trickle, stream, b"GET /callback?state=x")
            await anyio.wait_all_tasks_blocked()
            with anyio.fail_after(1):  # the bound: never delayed past a second
                reply = await _http.get(receiver.port, f"/callback?state={pending.state}&code=c")
                response = await pending.wait()
            assert reply.status == 200
            assert response.code == "c"
            # The cap held: at most 64 connections kept, the rest were closed to make room.
            assert len(receiver._server._connections) <= config.max_connections
        finally:
            tg.cancel_scope.cancel()
            # Shielded: in a cancelled scope, trio would stop the loop at the first checkpoint.
            with anyio.CancelScope(shield=True):
                for stream in streams:
                    await anyio.aclose_forcefully(stream)


async def test_read_deadline_closes_a_silent_connection_with_408() -> None:
    """A connection that never sends a request is answered 408 and closed after read_timeout."""
    async with ol.open_receiver(ol.CallbackConfig(read_timeout=0.2)) as receiver:
        async with await anyio.connect_tcp("127.0.0.1", receiver.port) as stream:
            reply = await _closed_by_peer(stream)
        assert reply.startswith(b"HTTP/1.1 408 ")


async def test_read_deadline_bounds_the_whole_request_not_each_byte() -> None:
    """Slowloris: a byte every 50 ms keeps the connection busy, yet the deadline still closes it."""
    async with ol.open_receiver(ol.CallbackConfig(read_timeout=0.3)) as receiver:
        pending = receiver.expect()
        async with (
            await anyio.connect_tcp("127.0.0.1", receiver.port) as stream,
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(_trickle, stream, f"GET /callback?state={pending.state}&code=".encode())
            reply = await _closed_by_peer(stream)
            tg.cancel_scope.cancel()
        assert reply.startswith(b"HTTP/1.1 408 ")
        assert not pending.done


async def test_full_receiver_closes_the_connection_idle_longest() -> None:
    """At the cap, a new connection evicts the one idle longest, not the oldest nor the newest."""
    config = ol.CallbackConfig(read_timeout=30, max_connections=3)
    async with ol.open_receiver(config) as receiver:
        oldest = await anyio.connect_tcp("127.0.0.1", receiver.port)
        idlest = await anyio.connect_tcp("127.0.0.1", receiver.port)
        third = await anyio.connect_tcp("127.0.0.1", receiver.port)
        try:
            await anyio.wait_all_tasks_blocked()
            # The oldest and the third speak after the idlest connected: the idlest is now the
            # one that has been quiet longest.
            await oldest.send(b"GET /favicon.ico HTTP/1.1\r\n")
            await third.send(b"GET /favicon.ico HTTP/1.1\r\n")
            await anyio.wait_all_tasks_blocked()
            async with await anyio.connect_tcp("127.0.0.1", receiver.port) as newest:
                assert await _closed_by_peer(idlest) == b""  # evicted without an answer
                for stream in (oldest, third):  # still served
                    await stream.send(f"Host: 127.0.0.1:{receiver.port}\r\n\r\n".encode())
                    assert (await _closed_by_peer(stream)).startswith(b"HTTP/1.1 404 ")
                await newest.send(
                    f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{receiver.port}\r\n\r\n".encode()
                )
                assert (await _closed_by_peer(newest)).startswith(b"HTTP/1.1 404 ")
        finally:
            for stream in (oldest, idlest, third):
                await anyio.aclose_forcefully(stream)


async def test_cap_of_one_never_locks_the_browser_out() -> None:
    """Even with max_connections=1 and 50 silent sockets ahead of it, the callback gets through."""
    config = ol.CallbackConfig(read_timeout=30, max_connections=1)
    async with ol.open_receiver(config) as receiver:
        pending = receiver.expect()
        squatters = [await anyio.connect_tcp("127.0.0.1", receiver.port) for _ in range(50)]
        try:
            await anyio.wait_all_tasks_blocked()
            reply = await _http.get(receiver.port, f"/callback?state={pending.state}&code=one")
            assert reply.status == 200
            assert (await pending.wait(5)).code == "one"
            closed = 0
            for stream in squatters:
                if await _closed_by_peer(stream) == b"":
                    closed += 1
            assert closed == len(squatters)  # every one was evicted, none answered
        finally:
            for stream in squatters:
                await anyio.aclose_forcefully(stream)


FLOODER = """\
import collections, select, socket, sys, time
port = int(sys.argv[1])
held = collections.deque()
end = time.monotonic() + 20  # bounds: 20 s, 100,000 connections, or "stop" on stdin
opened = 0
for i in range(100_000):
    if time.monotonic() > end or (i % 25 == 0 and select.select([sys.stdin], [], [], 0)[0]):
        break
    try:
        held.append(socket.create_connection(("127.0.0.1", port), timeout=5))
    except OSError:
        continue
    opened += 1
    if opened == 50:
        print("flooding", flush=True)
    if len(held) > 200:
        held.popleft().close()
for sock in held:
    sock.close()
print(opened, flush=True)
"""


async def test_a_connection_flood_from_another_process_does_not_lock_the_browser_out(
    tmp_path: Path,
) -> None:
    """Another process opening connections as fast as it can (cap 8): 10 callbacks still complete."""
    _affordable(400)
    script = tmp_path / "flooder.py"
    script.write_text(FLOODER)
    config = ol.CallbackConfig(read_timeout=30, max_connections=8)
    async with ol.open_receiver(config) as receiver:
        async with await anyio.open_process(
            [sys.executable, str(script), str(receiver.port)]
        ) as flooder:
            assert flooder.stdout is not None
            assert flooder.stdin is not None
            with anyio.fail_after(20):
                assert await flooder.stdout.receive() == b"flooding\n"
            for i in range(10):
                pending = receiver.expect()
                with anyio.fail_after(5):
                    reply = await _http.get(
                        receiver.port, f"/callback?state={pending.state}&code=c{i}"
                    )
                    assert reply.status == 200
                    assert (await pending.wait()).code == f"c{i}"
            await flooder.stdin.send(b"stop\n")
            with anyio.fail_after(30):
                tail = b""
                while True:
                    try:
                        tail += await flooder.stdout.receive()
                    except anyio.EndOfStream:
                        break
                assert await flooder.wait() == 0
            opened = int(tail)
            assert opened > 50  # the flood was on while the callbacks went through
