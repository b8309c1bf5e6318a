"""Hand-picked hostile requests against a live receiver, on asyncio and trio.

DNS rebinding (a foreign ``Host`` or absolute-form authority), the exact request-head cap,
keep-alive and pipelining, a TLS ClientHello to the plain port. Each case checks that nothing
pending was consumed and that a real callback still works afterwards.
"""

from __future__ import annotations

import socket
import struct

import anyio
import anyio.abc
import pytest

import oauth_loopback as ol
from oauth_loopback._receiver._serving import MAX_REQUEST_HEAD
from tests import _http

pytestmark = pytest.mark.anyio

TLS_CLIENT_HELLO = bytes.fromhex(
    "16030100c8010000c40303"
    + "5f" * 32
    + "00001c"
    + "c02bc02fc02cc030cca9cca8c013c014009c009d002f0035000a"
    + "0100007f0000000e000c0000093132372e302e302e31"
)


def _status(reply: bytes) -> int:
    assert reply.startswith(b"HTTP/1.1 "), reply[:100]
    return int(reply[9:12])


async def _still_serves(receiver: ol.CallbackReceiver, pending: ol.PendingCallback) -> None:
    """The untouched login completes with a real callback."""
    assert not pending.done
    reply = await _http.get(receiver.port, f"/callback?state={pending.state}&code=real")
    assert reply.status == 200
    assert (await pending.wait(5)).code == "real"


FOREIGN_HOSTS = [
    pytest.param("evil.example", id="rebound-name"),
    pytest.param("evil.example:{port}", id="rebound-name-with-port"),
    pytest.param("127.0.0.1:{port}.evil.example", id="loopback-prefix"),
    pytest.param("localhost.:{port}", id="trailing-dot"),
    pytest.param("127.0.0.1", id="missing-port"),
    pytest.param("127.0.0.1:1", id="other-port"),
    pytest.param("127.0.0.2:{port}", id="other-127-8"),
    pytest.param("[::1]:{port}", id="v6-name-on-v4-receiver"),
    pytest.param("0.0.0.0:{port}", id="wildcard"),
    pytest.param("", id="empty"),
]


@pytest.mark.parametrize("host", FOREIGN_HOSTS)
async def test_foreign_host_is_refused_and_consumes_nothing(host: str) -> None:
    """DNS-rebinding guard: a callback whose Host is not this receiver's name gets 421, login waits."""
    async with ol.open_receiver() as receiver:
        pending = receiver.expect()
        reply = await _http.get(
            receiver.port,
            f"/callback?state={pending.state}&code=stolen",
            host_header=host.format(port=receiver.port),
        )
        assert reply.status == 421
        assert "DNS rebinding" in reply.text
        await _still_serves(receiver, pending)


async def test_two_host_headers_are_refused() -> None:
    """A request carrying two Host headers (one of them ours) is refused and consumes nothing."""
    async with ol.open_receiver() as receiver:
        pending = receiver.expect()
        data = (
            f"GET /callback?state={pending.state}&code=x HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{receiver.port}\r\nHost: evil.example\r\n\r\n"
        ).encode()
        status = _status(await _http.raw(receiver.port, data))
        assert 400 <= status < 500
        await _still_serves(receiver, pending)


async def test_http10_without_host_is_refused() -> None:
    """HTTP/1.0 may omit Host, but the receiver cannot then tell a rebound page from the browser: 421."""
    async with ol.open_receiver() as receiver:
        pending = receiver.expect()
        data = f"GET /callback?state={pending.state}&code=x HTTP/1.0\r\n\r\n".encode()
        assert _status(await _http.raw(receiver.port, data)) == 421
        await _still_serves(receiver, pending)


@pytest.mark.parametrize(
    ("authority", "status"),
    [
        pytest.param("http://evil.example", 421, id="foreign-authority"),
        pytest.param("http://evil.example:{port}", 421, id="foreign-authority-our-port"),
        pytest.param("https://127.0.0.1:{port}", 400, id="https-scheme"),
        pytest.param("x:", 400, id="odd-scheme"),
    ],
)
async def test_absolute_form_target_is_checked_like_host(authority: str, status: int) -> None:
    """RFC 9112 §3.2.2: an absolute-form target's authority replaces Host, so it is what gets checked."""
    async with ol.open_receiver() as receiver:
        pending = receiver.expect()
        target = f"{authority.format(port=receiver.port)}/callback?state={pending.state}&code=x"
        data = f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{receiver.port}\r\n\r\n".encode()
        assert _status(await _http.raw(receiver.port, data)) == status
        await _still_serves(receiver, pending)


async def test_absolute_form_target_with_our_authority_is_accepted() -> None:
    """An absolute-form target naming this receiver is a valid callback (RFC 9112 §3.2.2)."""
    async with ol.open_receiver() as receiver:
        pending = receiver.expect()
        target = f"http://127.0.0.1:{receiver.port}/callback?state={pending.state}&code=abs"
        data = f"GET {target} HTTP/1.1\r\nHost: evil.example\r\n\r\n".encode()
        assert _status(await _http.raw(receiver.port, data)) == 200
        assert (await pending.wait(5)).code == "abs"


def _callback_head(port: int, state: str, size: int) -> bytes:
    """A valid callback request head of exactly ``size`` bytes (padded with a header)."""
    head = f"GET /callback?state={state}&code=big HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
    pad_line = len("X-Pad: \r\n")
    filler = size - len(head) - pad_line - 2
    return (head + "X-Pad: " + "a" * filler + "\r\n\r\n").encode()


@pytest.mark.parametrize("chunk", [MAX_REQUEST_HEAD * 2, 4096, 1000, 3000])
async def test_request_head_cap_is_exact(chunk: int) -> None:
    """A head of exactly 8 KiB is served, one byte more gets 431, however the bytes are split."""
    async with ol.open_receiver() as receiver:
        pending = receiver.expect()
        for size, expected in ((MAX_REQUEST_HEAD + 1, 431), (MAX_REQUEST_HEAD, 200)):
            data = _callback_head(receiver.port, pending.state, size)
            assert len(data) == size
            async with await anyio.connect_tcp("127.0.0.1", receiver.port) as stream:
                for i in range(0, len(data), chunk):
                    await stream.send(data[i : i + chunk])
                reply = b""
                with anyio.fail_after(10):
                    while True:
                        try:
                            reply += await stream.receive()
                        except (anyio.EndOfStream, anyio.BrokenResourceError):
                            break
            assert _status(reply) == expected
        assert (await pending.wait(5)).code == "big"


@pytest.mark.parametrize(("path", "status"), [("/callback", 405), ("/favicon.ico", 404)])
async def test_head_request_gets_headers_only(path: str, status: int) -> None:
    """HEAD gets its status and GET's headers with no content (RFC 9110 §9.3.2); nothing consumed."""
    async with ol.open_receiver() as receiver:
        pending = receiver.expect()
        target = f"{path}?state={pending.state}&code=x"
        data = f"HEAD {target} HTTP/1.1\r\nHost: 127.0.0.1:{receiver.port}\r\n\r\n".encode()
        reply = await _http.raw(receiver.port, data)
        assert _status(reply) == status
        head, _, content = reply.partition(b"\r\n\r\n")
        assert content == b""
        assert b"content-length: 0" not in head.lower()  # GET's length, not a false zero
        await _still_serves(receiver, pending)


async def test_keep_alive_request_is_answered_then_closed() -> None:
    """A keep-alive client that never half-closes gets its answer and then the receiver closes."""
    async with ol.open_receiver() as receiver:
        pending = receiver.expect()
        data = (
            f"GET /favicon.ico HTTP/1.1\r\nHost: 127.0.0.1:{receiver.port}\r\n"
            "Connection: keep-alive\r\n\r\n"
        ).encode()
        reply = b""
        async with await anyio.connect_tcp("127.0.0.1", receiver.port) as stream:
            await stream.send(data)
            with anyio.fail_after(5):  # closed by the receiver, not by our deadline
                while True:
                    try:
                        reply += await stream.receive()
                    except (anyio.EndOfStream, anyio.BrokenResourceError):
                        break
        assert _status(reply) == 404
        assert b"connection: close" in reply.lower()
        await _still_serves(receiver, pending)


async def test_pipelined_requests_get_only_the_first_answered() -> None:
    """Pipelining: the first request is answered and the connection closed; the second is not read."""
    async with ol.open_receiver() as receiver:
        first, second = receiver.expect(), receiver.expect()
        data = b"".join(
            f"GET /callback?state={p.state}&code={p.state[:4]} HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{receiver.port}\r\n\r\n".encode()
            for p in (first, second)
        )
        reply = await _http.raw(receiver.port, data)
        assert _status(reply) == 200
        assert reply.count(b"HTTP/1.1 ") == 1
        assert (await first.wait(5)).code == first.state[:4]
        await _still_serves(receiver, second)


async def test_tls_client_hello_gets_an_answer_or_a_close() -> None:
    """Someone typing https:// against the plain port: a 400 or a close, and the receiver keeps serving."""
    async with ol.open_receiver() as receiver:
        pending = receiver.expect()
        reply = await _http.raw(receiver.port, TLS_CLIENT_HELLO)
        assert reply == b"" or _status(reply) == 400
        await _still_serves(receiver, pending)


async def test_peer_vanishing_mid_request_costs_nothing() -> None:
    """A client that sends half a request and resets the connection leaves the login pending."""
    async with ol.open_receiver() as receiver:
        pending = receiver.expect()
        for _ in range(20):
            stream = await anyio.connect_tcp("127.0.0.1", receiver.port)
            await stream.send(f"GET /callback?state={pending.state}&co".encode())
            sock = stream.extra(anyio.abc.SocketAttribute.raw_socket)  # noqa: S610 (anyio, not Django)
            # SO_LINGER with a zero timeout: close() sends RST instead of FIN.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            await anyio.aclose_forcefully(stream)
        await _still_serves(receiver, pending)
