"""oauth-loopback's own figures: bind, dispatch, scaling with pending logins, memory, burst."""

from __future__ import annotations

import socket
import tracemalloc
from typing import TypedDict

import anyio

from oauth_loopback import AuthorizationResponse, CallbackConfig, PendingCallback, open_receiver

from ._client import callback_request, code_for, connect_and_send, read_all, status_of
from ._stats import Summary, ns, quiet_gc, summarise


async def bind(iterations: int) -> list[int]:
    """``open_receiver()`` entered -> ``redirect_uri`` known and a TCP connect to it succeeds."""
    samples: list[int] = []
    with quiet_gc():
        for _ in range(iterations):
            t0 = ns()
            async with open_receiver() as receiver:
                uri = receiver.redirect_uri
                client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                client.connect(("127.0.0.1", receiver.port))
                t1 = ns()
                client.close()
            samples.append(t1 - t0)
            if not uri.startswith("http://127.0.0.1:"):
                raise RuntimeError(f"unexpected redirect URI {uri!r}")
    return samples


# A client's JSON settings, as it would keep them (the port left to the OS: ephemeral).
USER_SETTINGS = {
    "callbackHost": "127.0.0.1",
    "callbackPath": "/callback",
    "timeout": 300,
    "appName": "bench-cli",
}


async def bind_config(iterations: int) -> list[int]:
    """Bind as a user calls it: ``CallbackConfig.from_mapping(settings)``, ``open_receiver(cfg)``,
    ``expect()``, read ``redirect_uri``, and a TCP connect to it succeeds."""
    samples: list[int] = []
    with quiet_gc():
        for _ in range(iterations):
            t0 = ns()
            config = CallbackConfig.from_mapping(USER_SETTINGS)
            async with open_receiver(config) as receiver:
                receiver.expect()
                uri = receiver.redirect_uri
                client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                client.connect(("127.0.0.1", receiver.port))
                t1 = ns()
                client.close()
            samples.append(t1 - t0)
            if not uri.startswith("http://127.0.0.1:") or not uri.endswith("/callback"):
                raise RuntimeError(f"unexpected redirect URI {uri!r}")
    return samples


async def dispatch(iterations: int, pending: int = 1) -> tuple[list[int], list[int]]:
    """(``wait()`` returns, client has the whole page) samples with ``pending`` logins waiting.

    ``pending - 1`` other logins stay registered (``expect()``) for the whole measurement; the
    measured one is parked in ``wait()`` in its own task before the client connects.
    """
    wake: list[int] = []
    full: list[int] = []
    async with open_receiver() as receiver, anyio.create_task_group() as tg:
        others = [receiver.expect() for _ in range(pending - 1)]
        port, path = receiver.port, receiver.config.path
        with quiet_gc():
            for i in range(iterations):
                login = receiver.expect()
                code = code_for(i)
                woke: list[int] = []
                got: list[AuthorizationResponse] = []

                async def waiter(
                    login: PendingCallback = login,
                    woke: list[int] = woke,
                    got: list[AuthorizationResponse] = got,
                ) -> None:
                    response = await login.wait()
                    woke.append(ns())
                    got.append(response)

                tg.start_soon(waiter)
                await anyio.wait_all_tasks_blocked()
                request = callback_request(port, path, f"code={code}&state={login.state}")
                t0 = ns()
                client = connect_and_send(port, request)
                with client:
                    body = await read_all(client)
                t2 = ns()
                if not woke:
                    await anyio.wait_all_tasks_blocked()
                if not got or got[0].code != code or status_of(body) != 200:
                    raise RuntimeError(f"dispatch {i} went wrong: {body[:60]!r}")
                wake.append(woke[0] - t0)
                full.append(t2 - t0)
        if receiver.pending_count != len(others):
            raise RuntimeError("the other pending logins were disturbed")
    return wake, full


class MemoryFigures(TypedDict):
    """Bytes per pending login, traced by tracemalloc."""

    logins: int
    bytes_per_pending: float
    bytes_per_pending_with_parked_wait: float


async def memory(logins: int) -> MemoryFigures:
    """Bytes per pending login: ``expect()`` alone, and with a task parked in ``wait()``."""
    async with open_receiver() as receiver:
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            held = [receiver.expect() for _ in range(logins)]
            after = tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
        per_pending = (after - before) / logins
        del held
    parked_logins = min(logins, 2000)
    async with open_receiver() as receiver, anyio.create_task_group() as tg:
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for _ in range(parked_logins):
                tg.start_soon(receiver.expect().wait)
            await anyio.wait_all_tasks_blocked()
            after = tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
        per_parked = (after - before) / parked_logins
        tg.cancel_scope.cancel()
    return MemoryFigures(
        logins=logins,
        bytes_per_pending=per_pending,
        bytes_per_pending_with_parked_wait=per_parked,
    )


class BurstFigures(TypedDict):
    """A burst of concurrent callbacks, each on its own connection and with its own code."""

    callbacks: int
    resolved: int
    correct: int
    pages_200: int
    all_resolved_ms: float
    all_answered_ms: float
    per_callback: Summary
    max_connections: int


async def burst(callbacks: int, config: CallbackConfig | None = None) -> BurstFigures:
    """``callbacks`` clients connect at once; every login must wake with its own code."""
    config = config or CallbackConfig()
    codes = [code_for(i) for i in range(callbacks)]
    woke: list[int] = [0] * callbacks
    received: list[str | None] = [None] * callbacks
    statuses: list[int] = [0] * callbacks
    async with open_receiver(config) as receiver, anyio.create_task_group() as tg:
        logins = [receiver.expect() for _ in range(callbacks)]
        port, path = receiver.port, receiver.config.path
        requests = [
            callback_request(port, path, f"code={codes[i]}&state={logins[i].state}")
            for i in range(callbacks)
        ]

        async def waiter(i: int) -> None:
            response = await logins[i].wait(timeout=30)
            woke[i] = ns()
            received[i] = response.code

        async def client(i: int) -> None:
            async with await anyio.connect_tcp("127.0.0.1", port) as stream:
                await stream.send(requests[i])
                body = b""
                while True:
                    try:
                        body += await stream.receive()
                    except (anyio.EndOfStream, anyio.BrokenResourceError):
                        break
            statuses[i] = status_of(body)

        for i in range(callbacks):
            tg.start_soon(waiter, i)
        await anyio.wait_all_tasks_blocked()
        with quiet_gc(), anyio.fail_after(60):
            t0 = ns()
            async with anyio.create_task_group() as clients:
                for i in range(callbacks):
                    clients.start_soon(client, i)
            t_answered = ns()
        tg.cancel_scope.cancel()
    resolved = [t for t in woke if t]
    return BurstFigures(
        callbacks=callbacks,
        resolved=len(resolved),
        correct=sum(1 for i in range(callbacks) if received[i] == codes[i]),
        pages_200=statuses.count(200),
        all_resolved_ms=(max(resolved) - t0) / 1e6 if resolved else float("nan"),
        all_answered_ms=(t_answered - t0) / 1e6,
        per_callback=summarise([t - t0 for t in resolved] or [0]),
        max_connections=config.max_connections,
    )
