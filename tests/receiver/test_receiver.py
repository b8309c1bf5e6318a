"""The receiver over real loopback sockets, on asyncio and trio (the behaviours README.md and the core docstrings promise)."""

from __future__ import annotations

import errno
import logging
import os
import socket
import subprocess
import sys
from collections.abc import Iterator

import anyio
import pytest

import oauth_loopback as ol
from tests import _http

pytestmark = pytest.mark.anyio


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.fixture
def squatter() -> Iterator[socket.socket]:
    """A socket listening on an OS-chosen port of 127.0.0.1, like another program would."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    yield sock
    sock.close()


async def test_default_receiver_binds_an_ephemeral_port() -> None:
    """Two receivers opened at once get two different OS-assigned ports, neither 19876."""
    async with ol.open_receiver() as a, ol.open_receiver() as b:
        assert a.port != b.port
        assert ol.LEGACY_CALLBACK_PORT not in (a.port, b.port)
        assert a.redirect_uri == f"http://127.0.0.1:{a.port}/callback"
        # Bound before open_receiver returned: a connection succeeds at once.
        stream = await anyio.connect_tcp("127.0.0.1", a.port)
        await stream.aclose()


async def test_redirect_uri_without_port_is_ephemeral_and_normalised() -> None:
    """A redirect URI without a port gets the bound port filled in."""
    cfg = ol.CallbackConfig(redirect_uri="http://127.0.0.1/oauth/cb")
    async with ol.open_receiver(cfg) as rx:
        assert rx.port > 0
        assert rx.redirect_uri == f"http://127.0.0.1:{rx.port}/oauth/cb"


async def test_callback_wakes_the_waiting_login_with_its_code() -> None:
    """GET /callback?code&state wakes wait() with the code; the browser gets a success page."""
    async with ol.open_receiver(ol.CallbackConfig(app_name="Acme CLI")) as rx:
        pending = rx.expect()
        result: list[ol.AuthorizationResponse] = []

        async def wait() -> None:
            result.append(await pending.wait())

        async with anyio.create_task_group() as tg:
            tg.start_soon(wait)
            reply = await _http.get(rx.port, f"/callback?code=abc123&state={pending.state}&iss=x")
        assert reply.status == 200
        assert "return to Acme CLI" in reply.text
        assert reply.headers["cache-control"] == "no-store"
        assert reply.headers["referrer-policy"] == "no-referrer"
        assert "default-src 'none'" in reply.headers["content-security-policy"]
        [response] = result
        assert (response.code, response.state, response.iss) == ("abc123", pending.state, "x")


async def test_callback_before_wait_is_kept_for_the_waiter() -> None:
    """A response that arrives before wait() is called is returned at once."""
    async with ol.open_receiver() as rx:
        pending = rx.expect("my-own-state")
        reply = await _http.get(rx.port, "/callback?code=early&state=my-own-state")
        assert reply.status == 200
        assert pending.done
        response = await pending.wait()
        assert response.code == "early"


@pytest.mark.parametrize(
    ("target", "status"),
    [
        pytest.param("/callback?code=x&state=unknown", 400, id="unknown-state"),
        pytest.param("/callback?code=x", 400, id="missing-state"),
        pytest.param("/callback?code=x&state=A&state=A", 400, id="repeated-state"),
        pytest.param("/favicon.ico", 404, id="favicon"),
        pytest.param("/", 404, id="root"),
    ],
)
async def test_stray_requests_get_4xx_and_leave_logins_pending(target: str, status: int) -> None:
    """Unknown/missing/repeated state and other paths are refused; pending logins are untouched."""
    async with ol.open_receiver() as rx:
        pending = rx.expect("A")
        other = rx.expect()
        reply = await _http.get(rx.port, target)
        assert reply.status == status
        assert not pending.done
        assert not other.done
        assert rx.pending_count == 2
        # The real callback still works afterwards.
        await _http.get(rx.port, "/callback?code=real&state=A")
        assert (await pending.wait()).code == "real"


async def test_unknown_state_page_explains_in_plain_words() -> None:
    """The page for an unknown state says no login is waiting for it on this port."""
    async with ol.open_receiver() as rx:
        reply = await _http.get(rx.port, "/callback?code=x&state=from-another-program")
        assert reply.status == 400
        assert "No login is waiting for this response on this port" in reply.text


async def test_used_state_gets_4xx() -> None:
    """A state is single-use: a second callback with it is refused."""
    async with ol.open_receiver() as rx:
        pending = rx.expect()
        assert (await _http.get(rx.port, f"/callback?code=1&state={pending.state}")).status == 200
        again = await _http.get(rx.port, f"/callback?code=2&state={pending.state}")
        assert again.status == 400
        assert "already received" in again.text
        assert (await pending.wait()).code == "1"


async def test_non_get_gets_405_and_consumes_nothing() -> None:
    """A POST to the callback path is 405 with Allow: GET, and the login keeps waiting."""
    async with ol.open_receiver() as rx:
        pending = rx.expect()
        reply = await _http.get(rx.port, f"/callback?code=x&state={pending.state}", method="POST")
        assert reply.status == 405
        assert reply.headers["allow"] == "GET"
        assert not pending.done


async def test_foreign_host_header_is_refused() -> None:
    """DNS-rebinding guard: a Host other than this receiver's loopback names gets 4xx."""
    async with ol.open_receiver() as rx:
        pending = rx.expect()
        reply = await _http.get(
            rx.port,
            f"/callback?code=x&state={pending.state}",
            host_header=f"evil.example:{rx.port}",
        )
        assert reply.status == 421
        assert not pending.done
        ok = await _http.get(
            rx.port, f"/callback?code=x&state={pending.state}", host_header=f"localhost:{rx.port}"
        )
        assert ok.status == 200


async def test_access_denied_wakes_the_waiter_with_authorization_denied() -> None:
    """error=access_denied raises AuthorizationDenied with RFC 6749 fields; raised outside too."""

    async def login() -> None:
        async with ol.open_receiver() as rx:
            pending = rx.expect()
            reply = await _http.get(
                rx.port,
                f"/callback?error=access_denied&error_description=User+said+no"
                f"&error_uri=https%3A%2F%2Fas.example%2Fhelp&state={pending.state}",
            )
            assert reply.status == 400
            assert "denied" in reply.text
            await pending.wait()

    with pytest.raises(ol.AuthorizationDenied) as info:
        await login()
    exc = info.value
    assert (exc.error, exc.description, exc.uri) == (
        "access_denied",
        "User said no",
        "https://as.example/help",
    )
    assert exc.params["error"] == "access_denied"


async def test_other_errors_are_authorization_errors() -> None:
    """error=server_error raises AuthorizationError (not Denied)."""
    async with ol.open_receiver() as rx:
        pending = rx.expect()
        await _http.get(rx.port, f"/callback?error=server_error&state={pending.state}")
        with pytest.raises(ol.AuthorizationError) as info:
            await pending.wait()
        assert type(info.value) is ol.AuthorizationError
        assert info.value.error == "server_error"


async def test_issuer_mismatch() -> None:
    """With expect(issuer=X), a response from another issuer wakes the waiter with IssuerMismatch."""
    async with ol.open_receiver() as rx:
        pending = rx.expect(issuer="https://as.example")
        reply = await _http.get(
            rx.port, f"/callback?code=x&state={pending.state}&iss=https%3A%2F%2Fevil.example"
        )
        assert 400 <= reply.status < 500
        with pytest.raises(ol.IssuerMismatch) as info:
            await pending.wait()
        assert info.value.received == "https://evil.example"
        good = rx.expect(issuer="https://as.example")
        await _http.get(
            rx.port, f"/callback?code=y&state={good.state}&iss=https%3A%2F%2Fas.example"
        )
        assert (await good.wait()).iss == "https://as.example"


async def test_wait_timeout_raises_and_forgets_the_state() -> None:
    """Past its deadline wait() raises CallbackTimeout (a TimeoutError); a late callback gets 4xx."""
    async with ol.open_receiver() as rx:
        pending = rx.expect()
        with pytest.raises(TimeoutError) as info:
            await pending.wait(timeout=0.05)
        assert isinstance(info.value, ol.CallbackTimeout)
        assert rx.pending_count == 0
        late = await _http.get(rx.port, f"/callback?code=x&state={pending.state}")
        assert late.status == 400
        assert "took too long" in late.text


async def test_config_timeout_is_the_default_deadline() -> None:
    """wait() without a timeout uses CallbackConfig.timeout."""
    async with ol.open_receiver(ol.CallbackConfig(timeout=0.05)) as rx:
        with pytest.raises(ol.CallbackTimeout):
            await rx.expect().wait()


async def test_cancelled_wait_forgets_the_state() -> None:
    """Cancelling wait() forgets the state: a later callback for it is refused."""
    async with ol.open_receiver() as rx:
        pending = rx.expect()
        with anyio.move_on_after(0.05):
            await pending.wait()
        assert rx.pending_count == 0
        assert (await _http.get(rx.port, f"/callback?code=x&state={pending.state}")).status == 400


async def test_wait_is_awaited_once() -> None:
    """A second wait() on the same login is a usage error."""
    async with ol.open_receiver() as rx:
        pending = rx.expect()
        await _http.get(rx.port, f"/callback?code=x&state={pending.state}")
        await pending.wait()
        with pytest.raises(RuntimeError, match="already called"):
            await pending.wait()


async def test_wait_rejects_a_bad_timeout() -> None:
    """wait(timeout=0) is a usage error, not an instant timeout."""
    async with ol.open_receiver() as rx:
        with pytest.raises(ValueError, match="positive"):
            await rx.expect().wait(timeout=0)


async def test_leaving_the_receiver_wakes_every_waiter_with_receiver_closed() -> None:
    """Closing wakes all waiters with ReceiverClosed, and expect() afterwards is refused."""
    errors: list[BaseException] = []

    async def wait(pending: ol.PendingCallback) -> None:
        try:
            await pending.wait()
        except ol.ReceiverClosed as exc:
            errors.append(exc)

    async with anyio.create_task_group() as tg:
        async with ol.open_receiver() as rx:
            for _ in range(3):
                tg.start_soon(wait, rx.expect())
            await anyio.wait_all_tasks_blocked()
        kept = rx
    assert len(errors) == 3
    with pytest.raises(ol.ReceiverClosed):
        kept.expect()


async def test_many_pending_logins_each_get_their_own_code() -> None:
    """Fifty concurrent logins on one receiver, callbacks in reverse order: each wakes with its code."""
    async with ol.open_receiver() as rx:
        pendings = [rx.expect() for _ in range(50)]
        results: dict[str, str] = {}

        async def wait(p: ol.PendingCallback) -> None:
            results[p.state] = (await p.wait()).code

        async with anyio.create_task_group() as tg:
            for p in pendings:
                tg.start_soon(wait, p)
            for i, p in reversed(list(enumerate(pendings))):
                tg.start_soon(_http.get, rx.port, f"/callback?code=code-{i}&state={p.state}")
        assert results == {p.state: f"code-{i}" for i, p in enumerate(pendings)}


async def test_expect_validates_states() -> None:
    """Generated states are unique with >=128 bits; duplicates and empty states are refused."""
    async with ol.open_receiver() as rx:
        states = {rx.expect().state for _ in range(100)}
        assert len(states) == 100
        assert all(len(s) >= 22 for s in states)  # 22 url-safe chars = 132 bits
        rx.expect("mine")
        with pytest.raises(ValueError, match="already pending"):
            rx.expect("mine")
        with pytest.raises(ValueError, match="non-empty"):
            rx.expect("")


async def test_fixed_port_busy_raises_at_once(squatter: socket.socket) -> None:
    """A busy fixed port raises CallbackPortInUse within a second, naming port, holder and fix."""
    port = squatter.getsockname()[1]
    started = anyio.current_time()
    with pytest.raises(ol.CallbackPortInUse) as info:
        async with ol.open_receiver(ol.CallbackConfig(port=port)):
            pytest.fail("must not get here")
    assert anyio.current_time() - started < 1.0
    exc = info.value
    assert isinstance(exc, OSError)
    assert exc.errno == errno.EADDRINUSE
    assert exc.port == port
    message = str(exc)
    assert str(port) in message
    for setting in ("callbackPort", "port=", "redirect_uri"):
        assert setting in message
    if sys.platform == "linux":
        assert f"pid {os.getpid()}" in message


@pytest.fixture
def wildcard_squatter() -> Iterator[tuple[int, int]]:
    """Another process listening on 0.0.0.0 (all interfaces); yields (pid, port)."""
    with subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import socket,sys; s=socket.socket(); s.bind(('0.0.0.0',0)); s.listen(); "
            "print(s.getsockname()[1], flush=True); sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as holder:
        try:
            assert holder.stdout is not None
            yield holder.pid, int(holder.stdout.readline())
        finally:
            holder.kill()


async def test_fixed_port_busy_on_wildcard_is_detected(wildcard_squatter: tuple[int, int]) -> None:
    """A squatter on 0.0.0.0 also makes a fixed 127.0.0.1 port fail loudly, naming it."""
    pid, port = wildcard_squatter
    with pytest.raises(ol.CallbackPortInUse) as info:
        async with ol.open_receiver(ol.CallbackConfig.from_mapping({"callbackPort": port})):
            pass
    if sys.platform == "linux":
        assert f"pid {pid}" in str(info.value)
        assert "0.0.0.0" in str(info.value)


async def test_fixed_port_when_free_is_used_exactly() -> None:
    """A free fixed port is bound as asked, and the redirect URI names it."""
    with socket.socket() as probe:  # test-only: find a port that is free right now
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with ol.open_receiver(ol.CallbackConfig(port=port)) as rx:
        assert rx.port == port
        assert rx.redirect_uri == f"http://127.0.0.1:{port}/callback"


async def test_user_exceptions_are_not_wrapped_in_exception_groups() -> None:
    """An error raised inside the block comes out as itself, not as an ExceptionGroup."""
    with pytest.raises(KeyError):
        async with ol.open_receiver():
            raise KeyError("mine")


async def test_deliver_feeds_a_pasted_url_through_the_same_checks() -> None:
    """A pasted redirect URL wakes the login like a request; a wrong one is refused, nothing consumed."""
    async with ol.open_receiver() as rx:
        pending = rx.expect()
        with pytest.raises(ol.CallbackRejected):
            rx.deliver(f"http://127.0.0.1:{rx.port}/other?code=x&state={pending.state}")
        with pytest.raises(ol.CallbackRejected):
            rx.deliver("code=x&state=unknown")
        assert not pending.done
        rx.deliver(f"  {rx.redirect_uri}?code=pasted&state={pending.state}\n")
        assert (await pending.wait()).code == "pasted"


async def test_idle_connection_hits_the_read_deadline() -> None:
    """A client that connects and sends nothing is answered 408 and closed after read_timeout."""
    async with ol.open_receiver(ol.CallbackConfig(read_timeout=0.2)) as rx:
        async with await anyio.connect_tcp("127.0.0.1", rx.port) as stream:
            received = b""
            with anyio.fail_after(5):
                while True:
                    try:
                        received += await stream.receive()
                    except (anyio.EndOfStream, anyio.BrokenResourceError):
                        break
        assert received.startswith(b"HTTP/1.1 408 ")


async def test_connection_cap_evicts_the_idlest_and_serves_the_browser() -> None:
    """With the cap full of idle sockets, a real callback still gets through at once."""
    cfg = ol.CallbackConfig(max_connections=3, read_timeout=30)
    async with ol.open_receiver(cfg) as rx:
        pending = rx.expect()
        idle = [await anyio.connect_tcp("127.0.0.1", rx.port) for _ in range(5)]
        try:
            with anyio.fail_after(2):
                reply = await _http.get(rx.port, f"/callback?code=x&state={pending.state}")
            assert reply.status == 200
            assert (await pending.wait()).code == "x"
        finally:
            for s in idle:
                await s.aclose()


async def test_malformed_request_gets_400_and_the_server_keeps_serving() -> None:
    """Garbage bytes get a 400 and the next real callback works."""
    async with ol.open_receiver() as rx:
        pending = rx.expect()
        answer = await _http.raw(
            rx.port, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n"
        )
        assert answer.startswith(b"HTTP/1.1 400 ") or answer == b""
        oversized = await _http.raw(
            rx.port, b"GET /callback?" + b"a" * 20000 + b" HTTP/1.1\r\n\r\n"
        )
        assert oversized.startswith(b"HTTP/1.1 4")
        await _http.get(rx.port, f"/callback?code=x&state={pending.state}")
        assert (await pending.wait()).code == "x"


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="this machine has no IPv6 loopback")
async def test_ipv6_receiver() -> None:
    """host='::1' listens on the IPv6 loopback and says [::1] in the redirect URI."""
    async with ol.open_receiver(ol.CallbackConfig(host="::1")) as rx:
        assert rx.redirect_uri == f"http://[::1]:{rx.port}/callback"
        pending = rx.expect()
        reply = await _http.get(rx.port, f"/callback?code=v6&state={pending.state}", host="::1")
        assert reply.status == 200
        assert (await pending.wait()).code == "v6"


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="this machine has no IPv6 loopback")
async def test_localhost_mode_serves_both_families_on_one_port() -> None:
    """host='localhost' holds 127.0.0.1 and ::1 on the same port and says localhost in the URI."""
    async with ol.open_receiver(ol.CallbackConfig(host="localhost")) as rx:
        assert rx.redirect_uri == f"http://localhost:{rx.port}/callback"
        a, b = rx.expect(), rx.expect()
        r4 = await _http.get(
            rx.port, f"/callback?code=4&state={a.state}", host_header=f"localhost:{rx.port}"
        )
        r6 = await _http.get(
            rx.port,
            f"/callback?code=6&state={b.state}",
            host="::1",
            host_header=f"localhost:{rx.port}",
        )
        assert (r4.status, r6.status) == (200, 200)
        assert ((await a.wait()).code, (await b.wait()).code) == ("4", "6")


async def test_logs_never_contain_codes_or_states(caplog: pytest.LogCaptureFixture) -> None:
    """Nothing the receiver logs includes the code or the state."""
    caplog.set_level(logging.DEBUG, logger="oauth_loopback")
    async with ol.open_receiver() as rx:
        pending = rx.expect("STATE-SECRET-123")
        await _http.get(rx.port, "/callback?code=CODE-SECRET-456&state=STATE-SECRET-123")
        await _http.get(rx.port, "/callback?code=CODE-SECRET-789&state=STATE-SECRET-000")
        await pending.wait()
    assert caplog.records, "the receiver should log its decisions"
    for record in caplog.records:
        text = record.getMessage()
        assert "SECRET" not in text


async def test_open_receiver_rejects_a_mapping() -> None:
    """Passing a dict instead of a CallbackConfig says how to convert it."""
    with pytest.raises(TypeError, match="from_mapping"):
        async with ol.open_receiver({"callbackPort": 1}):  # type: ignore[arg-type]
            pass


async def test_outer_cancellation_closes_the_receiver_cleanly() -> None:
    """A deadline around the whole block cancels the wait and closes the receiver, no error."""
    with anyio.move_on_after(0.05) as scope:
        async with ol.open_receiver() as rx:
            await rx.expect().wait(timeout=10)
    assert scope.cancelled_caught
    assert rx.closed


async def test_leaving_right_after_the_login_still_delivers_the_page() -> None:
    """Closing the receiver as soon as wait() returns does not cut off the browser's page."""
    replies: list[_http.Reply] = []
    async with anyio.create_task_group() as tg:
        async with ol.open_receiver() as rx:
            pending = rx.expect()

            async def browser() -> None:
                replies.append(await _http.get(rx.port, f"/callback?code=x&state={pending.state}"))

            tg.start_soon(browser)
            await pending.wait()
        # The block is left immediately; the page must still arrive whole.
    [reply] = replies
    assert reply.status == 200
    assert reply.text.endswith("</html>")


async def test_open_receiver_binds_only_when_entered_and_only_once() -> None:
    """open_receiver() does nothing until its block is entered; a block is entered once."""
    block = ol.open_receiver(ol.CallbackConfig(port=0))
    not_a_config = ol.open_receiver({"callbackPort": 0})  # type: ignore[arg-type]
    async with block as rx:
        assert rx.redirect_uri.startswith("http://127.0.0.1:")
        with pytest.raises(RuntimeError, match="already entered"):
            await block.__aenter__()
    with pytest.raises(TypeError, match="from_mapping"):
        await not_a_config.__aenter__()


async def test_leaving_closes_the_listening_socket() -> None:
    """Once the block is left, the port refuses connections: nothing keeps listening."""
    async with ol.open_receiver() as rx:
        port = rx.port
    with socket.socket() as client, pytest.raises(ConnectionRefusedError):
        client.connect(("127.0.0.1", port))
