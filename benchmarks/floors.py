"""The floors every figure is divided by, measured in the same process and run.

* syscall floor, bind: ``socket()+bind()+listen()+getsockname()`` and a client ``connect()``
  that succeeds: the least any receiver can do before its redirect URI is usable.
* syscall floor, dispatch: a thread blocked in ``accept()`` then ``recv()`` until the request
  head is complete (that instant is the "hand-off"), then a minimal response and ``close()``.
* framework floor, dispatch (per backend): a bare ``anyio`` TCP listener (``Listener.serve``,
  one task per connection) parsing with h11 and handing the request target to a parked task
  through an ``anyio.Event``, then answering with a two-byte body. No routing, no checks,
  no deadlines: what "the straightforward anyio + h11 receiver" costs.
"""

from __future__ import annotations

import socket
import threading

import anyio
import h11
from anyio.abc import SocketStream, TaskGroup

from ._client import callback_request, code_for, connect_and_send, read_all, read_all_blocking
from ._stats import ns, quiet_gc


def syscall_bind(iterations: int) -> list[int]:
    """Samples of the raw-socket bind floor (see the module docstring)."""
    samples: list[int] = []
    with quiet_gc():
        for _ in range(iterations):
            t0 = ns()
            server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            server.bind(("127.0.0.1", 0))
            server.listen(128)
            port = server.getsockname()[1]
            client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            client.connect(("127.0.0.1", port))
            t1 = ns()
            client.close()
            server.close()
            samples.append(t1 - t0)
    return samples


def syscall_dispatch(iterations: int) -> tuple[list[int], list[int]]:
    """(hand-off, whole response) samples of the blocking accept/recv thread floor."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(128)
    port = server.getsockname()[1]
    handoffs: list[int] = []
    failures: list[BaseException] = []

    def serve() -> None:
        try:
            for _ in range(iterations):
                conn, _addr = server.accept()
                with conn:
                    head = b""
                    while b"\r\n\r\n" not in head:
                        chunk = conn.recv(65536)
                        if not chunk:
                            break
                        head += chunk
                    handoffs.append(ns())
                    conn.sendall(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
                    )
        except BaseException as exc:  # noqa: BLE001 - re-raised by the main thread below
            failures.append(exc)

    thread = threading.Thread(target=serve, name="syscall-floor", daemon=True)
    wake: list[int] = []
    full: list[int] = []
    with quiet_gc():
        thread.start()
        try:
            for i in range(iterations):
                request = callback_request(port, "/callback", f"code={code_for(i)}&state=s{i}")
                t0 = ns()
                client = connect_and_send(port, request)
                with client:
                    body = read_all_blocking(client)
                t2 = ns()
                if not body.startswith(b"HTTP/1.1 200"):
                    raise RuntimeError(f"syscall floor answered {body[:40]!r}")
                full.append(t2 - t0)
                wake.append(handoffs[i] - t0)
        finally:
            thread.join(timeout=10)
            server.close()
    if failures:
        raise RuntimeError("the syscall-floor server thread failed") from failures[0]
    return wake, full


class _Slot:
    __slots__ = ("event", "target")

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.target: bytes = b""


_FLOOR_RESPONSE_HEADERS = [(b"Content-Length", b"2"), (b"Connection", b"close")]


class FrameworkFloor:
    """The bare anyio + h11 receiver (see the module docstring)."""

    def __init__(self) -> None:
        self.slot = _Slot()
        self.port = 0

    async def _handle(self, stream: SocketStream) -> None:
        async with stream:
            conn = h11.Connection(h11.SERVER)
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(await stream.receive())
                elif isinstance(event, h11.Request):
                    break
                else:
                    return
            slot = self.slot
            slot.target = event.target
            slot.event.set()
            data = conn.send(h11.Response(status_code=200, headers=_FLOOR_RESPONSE_HEADERS))
            data = (data or b"") + (conn.send(h11.Data(data=b"ok")) or b"")
            data += conn.send(h11.EndOfMessage()) or b""
            await stream.send(data)

    async def start(self, tg: TaskGroup) -> None:
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
        self.port = listener.extra(anyio.abc.SocketAttribute.local_port)  # noqa: S610 - anyio, not Django
        tg.start_soon(self._serve, listener, tg)

    async def _serve(self, listener: anyio.abc.Listener[SocketStream], tg: TaskGroup) -> None:
        async with listener:
            await listener.serve(self._handle, tg)


async def framework_dispatch(iterations: int) -> tuple[list[int], list[int]]:
    """(hand-off, whole response) samples of the anyio + h11 floor on the current backend."""
    wake: list[int] = []
    full: list[int] = []
    async with anyio.create_task_group() as tg:
        floor = FrameworkFloor()
        await floor.start(tg)
        port = floor.port
        with quiet_gc():
            for i in range(iterations):
                slot = floor.slot = _Slot()
                woke: list[int] = []
                expected = f"/callback?code={code_for(i)}&state=s{i}".encode()

                async def waiter(slot: _Slot = slot, woke: list[int] = woke) -> None:
                    await slot.event.wait()
                    woke.append(ns())

                tg.start_soon(waiter)
                await anyio.wait_all_tasks_blocked()
                request = callback_request(port, "/callback", f"code={code_for(i)}&state=s{i}")
                t0 = ns()
                client = connect_and_send(port, request)
                with client:
                    body = await read_all(client)
                t2 = ns()
                if not woke:
                    await slot.event.wait()
                    await anyio.wait_all_tasks_blocked()
                if slot.target != expected or not body.startswith(b"HTTP/1.1 200"):
                    raise RuntimeError("the framework floor handed off the wrong request")
                wake.append(woke[0] - t0)
                full.append(t2 - t0)
        tg.cancel_scope.cancel()
    return wake, full
