"""Small loopback HTTP helpers for tests: raw bytes in, (status, headers, body) out.

Tests talk to the receiver over real sockets on 127.0.0.1/::1. ``get`` uses h11 as a client so
the request is exactly what we say; ``raw`` sends arbitrary bytes for adversarial cases.
"""

from __future__ import annotations

from dataclasses import dataclass

import anyio
import h11


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


async def _read_reply(stream: anyio.abc.SocketStream, conn: h11.Connection) -> Reply:
    status, headers, body = 0, {}, b""
    with anyio.fail_after(10):
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                try:
                    conn.receive_data(await stream.receive())
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    conn.receive_data(b"")
            elif isinstance(event, h11.Response):
                status = event.status_code
                headers = {k.decode().lower(): v.decode() for k, v in event.headers}
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                return Reply(status, headers, body)


async def get(
    port: int,
    target: str,
    *,
    host: str = "127.0.0.1",
    host_header: str | None = None,
    method: str = "GET",
    extra_headers: list[tuple[str, str]] | None = None,
) -> Reply:
    """Send one request on a fresh connection and read the whole reply."""
    literal = f"[{host}]" if ":" in host else host
    headers = [("Host", host_header if host_header is not None else f"{literal}:{port}")]
    headers += extra_headers or []
    headers.append(("Connection", "close"))
    async with await anyio.connect_tcp(host, port) as stream:
        conn = h11.Connection(h11.CLIENT)
        data = conn.send(h11.Request(method=method, target=target, headers=headers)) or b""
        data += conn.send(h11.EndOfMessage()) or b""
        await stream.send(data)
        return await _read_reply(stream, conn)


async def raw(port: int, data: bytes, *, host: str = "127.0.0.1") -> bytes:
    """Send raw bytes, half-close, and return everything the server sends back."""
    received = b""
    async with await anyio.connect_tcp(host, port) as stream:
        await stream.send(data)
        await stream.send_eof()
        with anyio.fail_after(10):
            while True:
                try:
                    received += await stream.receive()
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    return received
