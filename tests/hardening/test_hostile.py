"""Hostile local peers, on asyncio and trio, with real sockets and real processes.

What another user of the machine (or a page in the user's browser) can do to a receiver that
the HTTP fuzz suite does not reach: reset a connection before the receiver accepted it, fill
the browser's Cookie header for 127.0.0.1, send an absolute-form target urlsplit cannot read,
a code with control characters or an empty ``error=`` beside it, hold a fixed port under a
command line full of terminal escapes; and what a program does to itself: an invalid
``wait(timeout=)``, and a sticky port re-opened while its last connections sit in TIME_WAIT.
"""

from __future__ import annotations

import logging
import socket
import struct
import sys
from pathlib import Path
from urllib.parse import quote

import anyio
import anyio.abc
import h11
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import oauth_loopback as ol
from oauth_loopback._login._paste import wait_for_response
from oauth_loopback._receiver._heads import MAX_COOKIE_BYTES, MAX_REQUEST_HEAD, HeadFilter
from tests import _http

pytestmark = pytest.mark.anyio

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def _bug_records(caplog: pytest.LogCaptureFixture) -> list[str]:
    """What the receiver logged as a bug of its own (peer input must never produce any)."""
    return [r.getMessage() for r in caplog.records if "bug" in r.getMessage()]


def _status(reply: bytes) -> int:
    assert reply.startswith(b"HTTP/1.1 "), reply[:100]
    return int(reply[9:12])


async def _complete(receiver: ol.CallbackReceiver, pending: ol.PendingCallback, code: str) -> None:
    """The login completes with a real callback and gets exactly its code."""
    reply = await _http.get(receiver.port, f"/callback?state={pending.state}&code={code}")
    assert reply.status == 200, reply.text
    assert (await pending.wait(5)).code == code


async def _served_so_far(receiver: ol.CallbackReceiver) -> None:
    """Return once the receiver has taken every connection made before this call.

    The kernel's accept queue is first in, first out, and the receiver accepts one connection
    at a time: when a request on a new connection has been answered, every connection queued
    before it has been accepted and set up.
    """
    assert (await _http.get(receiver.port, "/favicon.ico")).status == 404


# --- 1. one connection never takes the receiver down --------------------------------------


def _connect(port: int, data: bytes = b"") -> socket.socket:
    """A blocking client socket (the handshake completes in the kernel, before accept())."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    if data:
        sock.sendall(data)
    return sock


def _reset(sock: socket.socket) -> None:
    """Close with SO_LINGER 0: the kernel sends RST instead of FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def _head(port: int, target: str, extra: str = "") -> bytes:
    return f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{extra}\r\n".encode()


BEFORE_ACCEPT = [
    pytest.param(lambda port, state: b"", id="silent"),
    pytest.param(lambda port, state: b"GET /cal", id="partial-request-line"),
    pytest.param(lambda port, state: _head(port, "/callback")[:-2], id="head-without-end"),
    pytest.param(lambda port, state: _head(port, "/callback?state=nobody&code=x"), id="whole"),
    pytest.param(lambda port, state: b"\x16\x03\x01\x00\xc8\x01", id="tls-hello-start"),
]


@pytest.mark.parametrize("data", BEFORE_ACCEPT)
async def test_reset_before_accept_costs_that_connection_only(
    data: object, caplog: pytest.LogCaptureFixture
) -> None:
    """A peer that sends a few bytes and resets before accept() runs leaves every login pending."""
    make = data
    assert callable(make)
    with caplog.at_level(logging.DEBUG, logger="oauth_loopback"):
        async with ol.open_receiver() as receiver:
            logins = [receiver.expect() for _ in range(3)]
            for _ in range(5):  # nothing awaited in between: all five are reset before accept()
                _reset(_connect(receiver.port, make(receiver.port, logins[0].state)))
            await _served_so_far(receiver)
            for i, pending in enumerate(logins):
                assert not pending.done
                await _complete(receiver, pending, f"code-{i}")
    assert _bug_records(caplog) == []


async def test_whole_callback_reset_before_accept_still_wakes_its_login() -> None:
    """A callback that fully arrived counts even if its browser reset before we answered."""
    async with ol.open_receiver() as receiver:
        pending = receiver.expect()
        _reset(
            _connect(receiver.port, _head(receiver.port, f"/callback?state={pending.state}&code=c"))
        )
        assert (await pending.wait(5)).code == "c"


STAGES = ["after-accept-silent", "after-accept-partial", "after-accept-before-reply"]


@pytest.mark.parametrize("stage", STAGES)
async def test_reset_at_every_later_stage_costs_that_connection_only(
    stage: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Resets after accept (silent, mid-head, before the reply is read) leave every login pending."""
    with caplog.at_level(logging.DEBUG, logger="oauth_loopback"):
        async with ol.open_receiver() as receiver:
            logins = [receiver.expect() for _ in range(3)]
            head = _head(receiver.port, "/callback?state=nobody&code=x")
            first = b"" if stage == "after-accept-silent" else head[:20]
            peers = [_connect(receiver.port, first) for _ in range(5)]
            await _served_so_far(receiver)  # each of them is now its own task, reading
            for peer in peers:
                if stage == "after-accept-before-reply":
                    peer.sendall(head[20:])  # the receiver answers into a reset socket
                _reset(peer)
            await _served_so_far(receiver)
            for i, pending in enumerate(logins):
                assert not pending.done
                await _complete(receiver, pending, f"code-{i}")
    assert _bug_records(caplog) == []


async def test_a_burst_of_resets_at_mixed_stages_does_not_stop_a_login() -> None:
    """60 connections reset at random stages, on both serving paths, and the login completes."""
    async with ol.open_receiver() as receiver:
        pending = receiver.expect()
        head = _head(receiver.port, f"/callback?state=x{pending.state}&code=x")
        peers = []
        for i in range(60):
            peers.append(_connect(receiver.port, head[: (i * 7) % len(head)]))
            if i % 3 == 0:
                _reset(peers.pop())  # before accept
        await _served_so_far(receiver)
        for peer in peers:
            _reset(peer)  # after accept
        await _complete(receiver, pending, "survived")


MALFORMED_TARGETS = [
    "http://[::1/callback?state={state}&code=x",
    "http://127.0.0.1]:{port}/callback?state={state}&code=x",
    "http://[/callback?state={state}&code=x",
]


@pytest.mark.parametrize("split", [False, True], ids=["at-once", "split"])
@pytest.mark.parametrize("target", MALFORMED_TARGETS)
async def test_malformed_absolute_target_gets_400_and_logs_no_bug(
    target: str, split: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """A target urlsplit cannot read gets a 400 page (both serving paths), not a logged 'bug'."""
    with caplog.at_level(logging.DEBUG, logger="oauth_loopback"):
        async with ol.open_receiver() as receiver:
            pending = receiver.expect()
            data = _head(receiver.port, target.format(state=pending.state, port=receiver.port))
            async with await anyio.connect_tcp("127.0.0.1", receiver.port) as stream:
                if split:
                    await stream.send(data[:10])
                    await _served_so_far(receiver)
                    await stream.send(data[10:])
                else:
                    await stream.send(data)
                reply = b""
                with anyio.fail_after(5):
                    while True:
                        try:
                            reply += await stream.receive()
                        except (anyio.EndOfStream, anyio.BrokenResourceError):
                            break
            assert _status(reply) == 400
            assert b"not a well-formed URL" in reply
            await _complete(receiver, pending, "after")
    assert _bug_records(caplog) == []


@pytest.mark.parametrize("target", MALFORMED_TARGETS)
async def test_malformed_pasted_url_is_refused_with_a_reason(target: str) -> None:
    """deliver() of an unreadable URL raises CallbackRejected (not ValueError); nothing consumed."""
    async with ol.open_receiver() as receiver:
        pending = receiver.expect()
        with pytest.raises(ol.CallbackRejected, match="not a well-formed URL") as info:
            receiver.deliver(target.format(state=pending.state, port=receiver.port))
        assert info.value.status_hint == 400
        assert not pending.done
        await _complete(receiver, pending, "after")


async def test_a_mistyped_paste_asks_again_instead_of_aborting_the_login() -> None:
    """paste: an unreadable address gets 'not accepted' and a new prompt; the next one wins."""
    prompts: list[str] = []
    async with ol.open_receiver() as receiver:
        pending = receiver.expect()

        def read_line(prompt: str) -> str | None:
            prompts.append(prompt)
            if len(prompts) == 1:
                return f"http://[127.0.0.1:{receiver.port}/callback?state={pending.state}&code=x"
            return f"{receiver.redirect_uri}?state={pending.state}&code=pasted"

        response = await wait_for_response(receiver, pending, 5, read_line, "paste: ")
    assert response.code == "pasted"
    assert "not accepted" in prompts[1]
    assert "not a well-formed URL" in prompts[1]


# --- 3. the browser's cookies never lock the user out -------------------------------------


def _cookie_jar(size: int) -> str:
    """Browser-like cookies of about ``size`` bytes (name=value pairs joined by '; ')."""
    cookies, total, i = [], 0, 0
    while total < size:
        cookie = f"_ga_{i:03d}=GS1.1.{'7' * 300}.{i}"
        cookies.append(cookie)
        total += len(cookie) + 2
        i += 1
    return "; ".join(cookies)


def _browser_head(port: int, state: str, cookie_lines: list[str]) -> bytes:
    lines = [
        f"GET /callback?state={state}&code=with-cookies HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36",
        "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        "Accept-Language: en-GB,en;q=0.9",
        *cookie_lines,
        "Sec-Fetch-Site: cross-site",
        "Sec-Fetch-Mode: navigate",
        "Upgrade-Insecure-Requests: 1",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def _exchange(port: int, data: bytes, chunk: int) -> bytes:
    """Send ``data`` in chunks (0: before the receiver accepts) and read the whole reply."""
    reply = b""
    if chunk == 0:
        sock = _connect(port, data)  # all of it queued in the kernel before accept()
        stream = await anyio.abc.SocketStream.from_socket(sock)
    else:
        stream = await anyio.connect_tcp("127.0.0.1", port)
    async with stream:
        async with anyio.create_task_group() as tg:

            async def send() -> None:
                try:
                    for i in range(0, len(data), chunk):
                        await stream.send(data[i : i + chunk])
                except (anyio.BrokenResourceError, OSError):
                    pass  # the receiver answered early and closed: read its answer

            if chunk:
                tg.start_soon(send)
            with anyio.fail_after(10):
                while True:
                    try:
                        reply += await stream.receive()
                    except (anyio.EndOfStream, anyio.BrokenResourceError):
                        break
    return reply


COOKIE_SHAPES = [
    pytest.param(lambda jar: [f"Cookie: {jar}"], id="one-header"),
    pytest.param(lambda jar: [f"cookie: {jar[:6000]}", f"COOKIE: {jar[6000:]}"], id="two-headers"),
    pytest.param(lambda jar: [f"Cookie: {jar[:5000]}", f" {jar[5000:]}"], id="obs-folded"),
]


@pytest.mark.parametrize("chunk", [0, 1000, 4096, 65536], ids=["queued", "1k", "4k", "64k"])
@pytest.mark.parametrize("shape", COOKIE_SHAPES)
async def test_a_12_kib_cookie_header_still_signs_in(shape: object, chunk: int) -> None:
    """A browser with 12 KiB of cookies for 127.0.0.1 gets 'Signed in', not 431."""
    assert callable(shape)
    async with ol.open_receiver() as receiver:
        pending = receiver.expect()
        jar = _cookie_jar(12 * 1024)
        data = _browser_head(receiver.port, pending.state, shape(jar))
        assert len(data) > MAX_REQUEST_HEAD + 3 * 1024
        reply = await _exchange(receiver.port, data, chunk)
        assert _status(reply) == 200
        assert (await pending.wait(5)).code == "with-cookies"


async def test_a_full_cookie_jar_for_every_browser_still_signs_in() -> None:
    """180 cookies of 4 KiB (the most a browser keeps for one host) still sign in."""
    async with ol.open_receiver() as receiver:
        pending = receiver.expect()
        jar = "; ".join(f"c{i:03d}={'x' * 4090}" for i in range(180))
        data = _browser_head(receiver.port, pending.state, [f"Cookie: {jar}"])
        reply = await _exchange(receiver.port, data, 16384)
        assert _status(reply) == 200
        assert (await pending.wait(5)).code == "with-cookies"


async def test_more_cookies_than_any_browser_keeps_get_a_431_that_says_what_to_clear() -> None:
    """Over 1 MiB of cookies: 431, and the page says to clear cookies for 127.0.0.1."""
    async with ol.open_receiver() as receiver:
        pending = receiver.expect()
        jar = _cookie_jar(MAX_COOKIE_BYTES + 64 * 1024)
        data = _browser_head(receiver.port, pending.state, [f"Cookie: {jar}"])
        reply = await _exchange(receiver.port, data, 65536)
        assert _status(reply) == 431
        page = reply.decode("utf-8", "replace")
        assert "Clear the cookies" in page
        assert "127.0.0.1" in page
        assert not pending.done
        await _complete(receiver, pending, "after")


async def test_other_headers_keep_their_exact_8_kib_cap_beside_cookies() -> None:
    """Cookies are not counted, everything else is: 8 KiB of other headers plus cookies -> 431."""
    async with ol.open_receiver() as receiver:
        pending = receiver.expect()
        data = _browser_head(
            receiver.port, pending.state, [f"Cookie: {_cookie_jar(4096)}", "X-Pad: " + "p" * 8192]
        )
        reply = await _exchange(receiver.port, data, 4096)
        assert _status(reply) == 431
        assert b"not counting cookies" in reply
        assert not pending.done


_line = st.one_of(
    st.from_regex(rb"(?i)cookie: [ -~]{0,300}", fullmatch=True),
    st.from_regex(rb"[A-Za-z-]{1,12}: [ -~]{0,40}", fullmatch=True),
    st.from_regex(rb"[ \t][ -~]{0,40}", fullmatch=True),  # an obsolete line fold
    st.sampled_from([b"Cookie:", b"cookie:x", b"Cookie :x", b"Cookiex: y", b"\r", b"Coo"]),
)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    lines=st.lists(_line, max_size=12),
    newline=st.sampled_from([b"\r\n", b"\n"]),
    cuts=st.lists(st.integers(0, 4000), max_size=8),
)
def test_head_filter_drops_exactly_the_cookie_fields_however_split(
    lines: list[bytes], newline: bytes, cuts: list[int]
) -> None:
    """h11 parses the filtered head as the same request minus its Cookie fields, for any split."""
    raw = newline.join([b"GET /callback?x HTTP/1.1", b"Host: h", *lines]) + newline + newline
    raw += b"trailing bytes are never passed on"
    whole = HeadFilter("a").feed(raw)
    split = HeadFilter("a")
    pieces, at = [], 0
    for cut in sorted({c % (len(raw) + 1) for c in cuts}) + [len(raw)]:
        pieces.append(split.feed(raw[at:cut]))
        at = cut
    assert b"".join(pieces) == whole
    assert split.done

    def parse(data: bytes) -> object:
        conn = h11.Connection(h11.SERVER)
        conn.receive_data(data)
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError:
            return "refused"
        assert isinstance(event, h11.Request)
        return [(k, v) for k, v in event.headers]

    expected = parse(raw)
    got = parse(whole)
    if expected == "refused":
        # h11 refused the raw head; a refusal may only have come from a cookie line we drop.
        return
    assert isinstance(expected, list)
    assert got == [(k, v) for k, v in expected if k != b"cookie"]


def test_head_filter_keeps_nothing_of_a_megabyte_of_cookies() -> None:
    """The filter holds at most a few bytes whatever a connection sends (64 connections stay cheap)."""
    heads = HeadFilter("a")
    assert heads.feed(b"GET / HTTP/1.1\r\nCookie: ") == b"GET / HTTP/1.1\r\n"
    for _ in range(200):
        assert heads.feed(b"k=" + b"v" * 4094) == b""
    assert heads.dropped > 800_000
    assert heads.passed == len(b"GET / HTTP/1.1\r\n")


# --- 4. argument checks come before any state changes ------------------------------------


@pytest.mark.parametrize("seconds", [0, -1, float("nan"), "5", True])
async def test_invalid_wait_timeout_leaves_the_login_waitable(seconds: object) -> None:
    """wait(timeout=0) raises ValueError and changes nothing: a later wait() gets the code."""
    async with ol.open_receiver() as receiver:
        pending = receiver.expect()
        with pytest.raises(ValueError, match="positive number of seconds"):
            await pending.wait(seconds)  # type: ignore[arg-type]
        assert pending.state in receiver._registry
        async with anyio.create_task_group() as tg:
            codes: list[str] = []

            async def wait() -> None:
                codes.append((await pending.wait(5)).code)

            tg.start_soon(wait)
            await anyio.wait_all_tasks_blocked()
            reply = await _http.get(receiver.port, f"/callback?state={pending.state}&code=ok")
        assert reply.status == 200
        assert codes == ["ok"]


async def test_deliver_of_a_non_string_is_a_type_error_and_consumes_nothing() -> None:
    """deliver(b'...') raises TypeError (not AttributeError) and the login stays pending."""
    async with ol.open_receiver() as receiver:
        pending = receiver.expect()
        with pytest.raises(TypeError, match="as a str"):
            receiver.deliver(f"state={pending.state}&code=x".encode())  # type: ignore[arg-type]
        await _complete(receiver, pending, "after")


# --- 6. presence, not truthiness; no control characters in a code -------------------------

MALFORMED_RESPONSES = [
    pytest.param("code=x&error=", id="code-and-empty-error"),
    pytest.param("error=&code=x", id="empty-error-and-code"),
    pytest.param("code=&error=access_denied", id="empty-code-and-error"),
    pytest.param("code=", id="empty-code"),
    pytest.param("error=", id="empty-error"),
    pytest.param(f"code={quote('ab' + chr(27) + '[2Kc')}", id="code-with-esc"),
    pytest.param("code=ab%07", id="code-with-bel"),
    pytest.param("code=a%00b", id="code-with-nul"),
    pytest.param("code=a%0D%0Ab", id="code-with-crlf"),
    pytest.param("code=a%C2%9Bb", id="code-with-c1-csi"),
    pytest.param("code=a%E2%80%AEb", id="code-with-bidi-override"),
    pytest.param("error=access_denied%1B", id="error-with-esc"),
]


@pytest.mark.parametrize("query", MALFORMED_RESPONSES)
async def test_malformed_code_or_error_gets_400_and_the_login_stays_pending(query: str) -> None:
    """Present-but-empty or control-character code/error: 400 page; the real callback then wins."""
    async with ol.open_receiver() as receiver:
        pending = receiver.expect()
        reply = await _http.get(receiver.port, f"/callback?state={pending.state}&{query}")
        assert reply.status == 400
        assert "still waiting" in reply.text
        assert not pending.done
        await _complete(receiver, pending, "clean")


@pytest.mark.parametrize("query", MALFORMED_RESPONSES)
async def test_malformed_pasted_code_is_refused_the_same_way(query: str) -> None:
    """deliver() applies the same presence and control-character rules as the live path."""
    async with ol.open_receiver() as receiver:
        pending = receiver.expect()
        with pytest.raises(ol.CallbackRejected):
            receiver.deliver(f"?state={pending.state}&{query}")
        assert not pending.done


async def test_printable_codes_with_spaces_and_unicode_pass_through() -> None:
    """A code of printable characters (VSCHAR, even non-ASCII letters) is accepted as sent."""
    async with ol.open_receiver() as receiver:
        pending = receiver.expect()
        code = "a b~c/é"
        reply = await _http.get(
            receiver.port, f"/callback?state={pending.state}&code={quote(code)}"
        )
        assert reply.status == 200
        assert (await pending.wait(5)).code == code


# --- 5. another process's command line never writes to the user's terminal -----------------

_HOLDER = """\
import socket, sys
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen()
print(s.getsockname()[1], flush=True)
sys.stdin.read()
"""
_EVIL = ["\x1b]52;c;cHduZWQ=\x07", "\x1b[2K\rport 1 is free\x07", "\u202eevil\x9b31m"]


@linux_only
async def test_holder_command_line_is_shown_with_control_characters_escaped(
    tmp_path: Path,
) -> None:
    """CallbackPortInUse and doctor name the holder, with its ESC/BEL/CSI shown as escapes."""
    (tmp_path / "h.py").write_text(_HOLDER)
    async with await anyio.open_process(
        [sys.executable, "h.py", *_EVIL], cwd=tmp_path, stdin=-1, stdout=-1
    ) as holder:
        try:
            assert holder.stdout is not None
            with anyio.fail_after(10):
                line = await holder.stdout.receive()
            port = int(line.decode().strip())
            with pytest.raises(ol.CallbackPortInUse) as info:
                async with ol.open_receiver(ol.CallbackConfig(port=port)):
                    pytest.fail("bound a busy port")
            message = str(info.value)
            assert f"pid {holder.pid}" in message
            assert "\\x1b]52;c;cHduZWQ=\\x07" in message
            assert "\\u202eevil\\x9b31m" in message
            for text in (message, info.value.holder or ""):
                assert text.isprintable(), repr(text)

            doctor = await anyio.run_process(
                [sys.executable, "-m", "oauth_loopback", "doctor", "--port", str(port)],
                check=False,
            )
            output = doctor.stdout + doctor.stderr
            assert f"pid {holder.pid}".encode() in output
            assert b"\\x1b]52" in output
            for byte in (b"\x1b", b"\x07", b"\xc2\x9b", "\u202e".encode()):
                assert byte not in output
        finally:
            assert holder.stdin is not None
            await holder.stdin.aclose()
            with anyio.fail_after(10):
                await holder.wait()


# --- 8. a sticky port is free again right after the previous run --------------------------


def _sockets_on(port: int) -> list[tuple[str, str, str]]:
    """(local, remote, state) of every IPv4 TCP socket whose local port is ``port``."""
    found = []
    with open("/proc/net/tcp", encoding="ascii") as fh:
        for row in fh.readlines()[1:]:
            fields = row.split()
            if int(fields[1].partition(":")[2], 16) == port:
                found.append((fields[1], fields[2], fields[3]))
    return found


def _time_wait_on(port: int) -> int:
    """How many TIME_WAIT sockets (state 06) have ``port`` as their local port."""
    return sum(1 for _, _, state in _sockets_on(port) if state == "06")


@linux_only
async def test_sticky_port_is_taken_again_right_after_the_previous_run() -> None:
    """A run right after another gets its ephemeral port back (prefer_port), despite TIME_WAIT."""
    async with ol.open_receiver() as first:
        port = first.port
        for i in range(3):
            pending = first.expect()
            # Read to the receiver's end of stream before closing: it closes first, so the
            # TIME_WAIT of each connection is on its side, the port's.
            async with await anyio.connect_tcp("127.0.0.1", port) as stream:
                await stream.send(_head(port, f"/callback?state={pending.state}&code=c{i}"))
                reply = b""
                with anyio.fail_after(5):
                    while True:
                        try:
                            reply += await stream.receive()
                        except (anyio.EndOfStream, anyio.BrokenResourceError):
                            break
            assert _status(reply) == 200
            assert (await pending.wait(5)).code == f"c{i}"
    assert _time_wait_on(port) > 0  # we closed first: the port's connections wait it out
    async with ol.open_receiver(ol.CallbackConfig(prefer_port=port)) as second:
        # (Another process's connection could take the port in between on a busy machine:
        # the message then shows who holds it.)
        assert second.port == port, _sockets_on(port)
        await _complete(second, second.expect(), "run2")
    async with ol.open_receiver(ol.CallbackConfig(port=port)) as fixed:
        assert fixed.port == port


@linux_only
async def test_reuseaddr_never_lets_a_second_listener_share_the_port() -> None:
    """While we listen, neither another receiver nor a SO_REUSEADDR socket can listen there."""
    async with ol.open_receiver() as receiver:
        pending = receiver.expect()
        with pytest.raises(ol.CallbackPortInUse):
            async with ol.open_receiver(ol.CallbackConfig(port=receiver.port)):
                pytest.fail("two listeners on one port")
        for host in ("127.0.0.1", "0.0.0.0"):
            squatter = socket.socket()
            squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                with pytest.raises(OSError):  # noqa: PT011, PT012  (bind or listen: EADDRINUSE)
                    squatter.bind((host, receiver.port))
                    squatter.listen()
            finally:
                squatter.close()
        await _complete(receiver, pending, "ours")
