"""The benchmark's HTTP client side: a browser-like callback request over a fresh connection.

Every receiver (ours, the floors, the peers) is driven with the same request bytes and the same
client code, so differences between figures come from the server side only. The connect and
the send are plain blocking calls: on loopback against a listening socket they complete inside
the kernel (the handshake needs no accept()), so they never wait on the event loop.
"""

from __future__ import annotations

import re
import socket

import anyio

# What a current Chromium sends when an authorization server redirects it to the callback.
_BROWSER_HEADERS = (
    b"Connection: keep-alive\r\n"
    b'sec-ch-ua: "Chromium";v="131", "Not_A Brand";v="24"\r\n'
    b"sec-ch-ua-mobile: ?0\r\n"
    b'sec-ch-ua-platform: "Linux"\r\n'
    b"Upgrade-Insecure-Requests: 1\r\n"
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    b"Chrome/131.0.0.0 Safari/537.36\r\n"
    b"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,"
    b"image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7\r\n"
    b"Sec-Fetch-Site: cross-site\r\n"
    b"Sec-Fetch-Mode: navigate\r\n"
    b"Sec-Fetch-Dest: document\r\n"
    b"Accept-Encoding: gzip, deflate, br, zstd\r\n"
    b"Accept-Language: en-US,en;q=0.9\r\n"
)


def code_for(i: int) -> str:
    """A distinct, realistic-length (43 characters) authorization code for request ``i``."""
    return f"{i:08d}-bench-code-" + "x" * 22


def callback_request(port: int, path: str, query: str) -> bytes:
    """``GET path?query`` as a browser sends it to ``127.0.0.1:port``."""
    return (
        f"GET {path}?{query} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n".encode()
        + _BROWSER_HEADERS
        + b"\r\n"
    )


def form_post_request(port: int, path: str, body: str) -> bytes:
    """``POST path`` with a form body (``response_mode=form_post``), as a browser sends it."""
    data = body.encode()
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n".encode()
        + _BROWSER_HEADERS
        + b"Content-Type: application/x-www-form-urlencoded\r\n"
        + f"Content-Length: {len(data)}\r\n\r\n".encode()
        + data
    )


def connect_and_send(port: int, request: bytes) -> socket.socket:
    """Open a fresh connection to 127.0.0.1:port and send ``request`` (blocking, see above)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.connect(("127.0.0.1", port))
        sock.sendall(request)
    except BaseException:
        sock.close()
        raise
    return sock


_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)", re.IGNORECASE)


def _complete(data: bytes) -> bool:
    """Whether ``data`` holds a whole response with a Content-Length (keep-alive servers)."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return False
    match = _CONTENT_LENGTH.search(data, 0, end + 2)
    return match is not None and len(data) - end - 4 >= int(match.group(1))


def read_all_blocking(sock: socket.socket, timeout: float = 10.0) -> bytes:
    """Read the whole response (blocking, for thread-based servers)."""
    sock.settimeout(timeout)
    data = b""
    while not _complete(data) and (chunk := sock.recv(65536)):
        data += chunk
    return data


async def read_all(sock: socket.socket) -> bytes:
    """Read the whole response, parking in the event loop between chunks.

    Complete at its Content-Length, or when the server closes (our receiver and the floors
    close; uvicorn keeps the connection alive).
    """
    sock.setblocking(False)
    data = b""
    while not _complete(data):
        try:
            chunk = sock.recv(65536)
        except BlockingIOError:
            await anyio.wait_readable(sock)
            continue
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    return data


def status_of(response: bytes) -> int:
    """The status code of a raw HTTP/1.x response (0 if there is none)."""
    parts = response.split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
        return 0
    try:
        return int(parts[1])
    except ValueError:
        return 0
