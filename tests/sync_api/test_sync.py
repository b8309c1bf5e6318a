"""oauth_loopback.sync: the blocking API from plain functions, click, worker threads, Ctrl-C."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import textwrap
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator

import anyio
import anyio.from_thread
import click
import pytest
from click.testing import CliRunner

import oauth_loopback as ol
from oauth_loopback import sync
from oauth_loopback.testing import AuthorizationServer, follow_redirects

BACKENDS = ["asyncio", "trio"]


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as reply:  # noqa: S310  (loopback)
            return int(reply.status)
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.fixture
def embedded_issuer() -> Iterator[str]:
    """An embedded authorization server on its own event loop thread."""
    with anyio.from_thread.start_blocking_portal() as portal:
        with portal.wrap_async_context_manager(AuthorizationServer()) as server:
            yield server.issuer


@pytest.mark.parametrize("backend", BACKENDS)
def test_receiver_from_a_plain_function(backend: sync.Backend) -> None:
    """A blocking receiver binds at once, takes a real callback and wait() returns its code."""
    with sync.open_receiver(backend=backend) as receiver:
        assert receiver.redirect_uri == f"http://127.0.0.1:{receiver.port}/callback"
        pending = receiver.expect()
        assert _get(f"{receiver.redirect_uri}?code=abc&state={pending.state}") == 200
        response = pending.wait(timeout=5)
    assert (response.code, response.state) == ("abc", pending.state)


@pytest.mark.parametrize("backend", BACKENDS)
def test_blocking_calls_raise_the_same_typed_errors(backend: sync.Backend) -> None:
    """A timeout is CallbackTimeout, a denial AuthorizationDenied, a cancelled login ReceiverClosed."""
    with sync.open_receiver(backend=backend) as receiver:
        with pytest.raises(ol.CallbackTimeout):
            receiver.expect().wait(timeout=0.05)
        denied = receiver.expect()
        assert _get(f"{receiver.redirect_uri}?error=access_denied&state={denied.state}") == 400
        with pytest.raises(ol.AuthorizationDenied):
            denied.wait(timeout=5)
        cancelled = receiver.expect()
        cancelled.cancel()
        assert _get(f"{receiver.redirect_uri}?code=late&state={cancelled.state}") == 400
        with pytest.raises(ol.CallbackRejected):
            receiver.deliver("?code=x&state=nobody")


def test_busy_fixed_port_fails_at_once() -> None:
    """The blocking receiver refuses a busy fixed port with CallbackPortInUse, like the async one."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with (
            pytest.raises(ol.CallbackPortInUse) as info,
            sync.open_receiver(ol.CallbackConfig(port=port)),
        ):
            pass
    assert info.value.port == port


@pytest.mark.parametrize("backend", BACKENDS)
def test_authorize_from_a_plain_function(embedded_issuer: str, backend: sync.Backend) -> None:
    """sync.authorize() runs the whole login and returns the token."""
    token = sync.authorize(embedded_issuer, open_browser=follow_redirects, backend=backend)
    assert token.token_type == "Bearer"
    assert token.access_token


def test_authorize_from_a_click_command(embedded_issuer: str) -> None:
    """A click command can call sync.authorize() directly, with no event loop glue."""

    @click.command()
    @click.argument("issuer")
    def login(issuer: str) -> None:
        token = sync.authorize(issuer, open_browser=follow_redirects)
        click.echo(f"logged in: {token.token_type}")

    result = CliRunner().invoke(login, [embedded_issuer])
    assert result.exit_code == 0, result.output
    assert result.output == "logged in: Bearer\n"


@pytest.mark.anyio
async def test_authorize_from_a_worker_thread_of_a_running_loop() -> None:
    """From anyio.to_thread inside a running loop, the blocking call works on a loop of its own."""
    async with AuthorizationServer() as server:
        token = await anyio.to_thread.run_sync(
            lambda: sync.authorize(server.issuer, open_browser=follow_redirects)
        )
    assert token.token_type == "Bearer"


@pytest.mark.anyio
async def test_blocking_call_on_the_event_loop_thread_is_refused() -> None:
    """Calling a blocking function on a loop's own thread raises instead of freezing the loop."""
    with pytest.raises(RuntimeError, match=r"await oauth_loopback\.open_receiver"):
        with sync.open_receiver():
            pass
    with pytest.raises(RuntimeError, match=r"await oauth_loopback\.authorize"):
        sync.authorize("https://as.example")


def test_unknown_backend_is_refused() -> None:
    """A misspelt backend is a ValueError naming the choices."""
    with pytest.raises(ValueError, match="'asyncio' or 'trio'"):
        sync.authorize("https://as.example", backend="curio")  # type: ignore[arg-type]


@pytest.mark.parametrize("backend", BACKENDS)
def test_ctrl_c_cancels_the_wait_and_closes_the_receiver(backend: str) -> None:
    """A real SIGINT during wait() raises KeyboardInterrupt promptly, the loop thread ends, the port closes."""
    script = textwrap.dedent(
        f"""
        import socket, sys, threading
        from oauth_loopback import sync
        try:
            with sync.open_receiver(backend={backend!r}) as receiver:
                port = receiver.port
                pending = receiver.expect()
                print(port, flush=True)
                pending.wait(timeout=60)
        except KeyboardInterrupt:
            others = [t.name for t in threading.enumerate() if t is not threading.main_thread()]
            probe = socket.socket()
            refused = probe.connect_ex(("127.0.0.1", port)) != 0
            print("interrupted", refused, others, flush=True)
            sys.exit(130)
        """
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        port_line = child.stdout.readline()
        assert port_line.strip().isdigit(), child.stderr.read() if child.stderr else ""
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 130, err
    assert out.strip() == "interrupted True []"
    assert "Traceback" not in err


def test_threads_do_not_outlive_a_call(embedded_issuer: str) -> None:
    """Each blocking call's event loop thread is gone when it returns."""
    before = {t.ident for t in threading.enumerate()}
    sync.authorize(embedded_issuer, open_browser=follow_redirects)
    assert {t.ident for t in threading.enumerate()} <= before
