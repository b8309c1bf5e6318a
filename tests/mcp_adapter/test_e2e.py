"""oauth_loopback.mcp end to end with the REAL MCP Python SDK client and server.

The client is ``mcp.ClientSession`` over streamable HTTP with ``auth=OAuthClientProvider(...)``
wired through :mod:`oauth_loopback.mcp`, in-process on asyncio and on trio. The server is the
SDK's own ``MCPServer`` with its authorization-server routes and an
``OAuthAuthorizationServerProvider`` (``tests/mcp_adapter/_sdk_server.py``), in subprocesses because
uvicorn runs on asyncio only. The browser is an httpx2 client that follows the redirects of
the authorization endpoint back to the receiver; everything stays on 127.0.0.1.
"""

from __future__ import annotations

import errno
import logging
import selectors
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO
from urllib.parse import parse_qs, urlsplit

import anyio
import httpx2
import pytest
from mcp import ClientSession
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import OAuthClientInformationFull, OAuthToken
from mcp.types import TextContent

from oauth_loopback import CallbackConfig, CallbackPortInUse, CallbackTimeout
from oauth_loopback.mcp import LoopbackOAuth, loopback_oauth
from tests import _http

pytestmark = [
    pytest.mark.anyio,
    # SDK workaround (mcp 2.3.0, httpx2 2.16): the streamable HTTP transport drops the
    # SSE response iterators without aclose(); on trio the asyncgen finalizer reports each
    # one as a ResourceWarning, which filterwarnings=error turns into a failure. Only those
    # generators of the SDK's HTTP stack are ignored.
    pytest.mark.filterwarnings(
        r"ignore:Async generator 'httpx2\._(models|sse)\.[A-Za-z_.]+' was garbage collected:ResourceWarning"
    ),
    pytest.mark.filterwarnings(
        r"ignore:Async generator 'httpcore2\._async\.[A-Za-z_.]+' was garbage collected:ResourceWarning"
    ),
]

SERVER = Path(__file__).with_name("_sdk_server.py")
MODES = ("loopback", "exact", "loopback+iss")
# Bounds every login: discovery, registration, browser leg, token exchange, tool call.
LOGIN_DEADLINE = 30


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, str]]:
    """Start one MCP server per mode (in parallel) and yield mode -> MCP endpoint URL."""
    procs: dict[str, subprocess.Popen[str]] = {}
    logs = tempfile.TemporaryFile("w+")
    try:
        for mode in MODES:
            procs[mode] = subprocess.Popen(
                [sys.executable, str(SERVER), mode],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=logs,
                text=True,
            )
        urls = {
            mode: f"http://127.0.0.1:{_read_port(proc, logs)}/mcp" for mode, proc in procs.items()
        }
        yield urls
    finally:
        for proc in procs.values():
            assert proc.stdin is not None
            proc.stdin.close()  # the server exits when its stdin closes
        for proc in procs.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
            assert proc.stdout is not None
            proc.stdout.close()
        logs.close()


def _read_port(proc: subprocess.Popen[str], logs: IO[str]) -> int:
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout=60):
            proc.kill()
            logs.seek(0)
            pytest.fail(f"the MCP test server did not start within 60 s:\n{logs.read()}")
    line = proc.stdout.readline()
    if not line.startswith("PORT "):
        logs.seek(0)
        pytest.fail(f"the MCP test server failed to start: {line!r}\n{logs.read()}")
    return int(line.split()[1])


class MemoryStorage:
    """The SDK's TokenStorage in memory, counting what the SDK stores."""

    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client_info: OAuthClientInformationFull | None = None
        self.registrations = 0

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.registrations += 1
        self.client_info = client_info


async def _only_loopback(request: httpx2.Request) -> None:
    assert request.url.host == "127.0.0.1", f"the test browser left loopback: {request.url}"


class Browser:
    """Plays the user's browser: follows the authorization redirects to the receiver."""

    def __init__(self) -> None:
        self.visited: list[str] = []
        self.pages: list[str] = []

    async def __call__(self, url: str) -> bool:
        self.visited.append(url)
        async with httpx2.AsyncClient(
            trust_env=False,
            follow_redirects=True,
            timeout=10,
            event_hooks={"request": [_only_loopback]},
        ) as client:
            response = await client.get(url)
        assert response.status_code == 200, response.text
        self.pages.append(response.text)
        return True


async def call_whoami(server_url: str, auth: OAuthClientProvider) -> str:
    """Connect a real ClientSession with ``auth`` and call the server's tool."""
    with anyio.fail_after(LOGIN_DEADLINE):
        async with (
            httpx2.AsyncClient(auth=auth, trust_env=False, timeout=10) as http,
            streamable_http_client(server_url, http_client=http) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            result = await session.call_tool("whoami", {})
    content = result.content[0]
    assert isinstance(content, TextContent)
    return content.text


def _provider(
    cb: LoopbackOAuth, server_url: str, storage: MemoryStorage, **kw: object
) -> OAuthClientProvider:
    return OAuthClientProvider(
        server_url,
        client_metadata=cb.client_metadata(client_name="oauth-loopback tests"),
        storage=cb.storage(storage, **kw),  # type: ignore[arg-type]
        redirect_handler=cb.redirect_handler,
        callback_handler=cb.callback_handler,
    )


async def test_first_login_registers_dynamically_and_calls_the_tool(
    servers: dict[str, str],
) -> None:
    """A first run registers the client (RFC 7591), logs in through the receiver and calls a tool."""
    browser, storage = Browser(), MemoryStorage()
    async with loopback_oauth(open_browser=browser) as cb:
        text = await call_whoami(servers["exact"], _provider(cb, servers["exact"], storage))
        redirect_uri = cb.redirect_uri
    assert text == "hello from exact"
    assert storage.registrations == 1
    assert storage.client_info is not None
    assert [str(u) for u in storage.client_info.redirect_uris or ()] == [redirect_uri]
    assert storage.tokens is not None
    assert len(browser.visited) == 1
    query = parse_qs(urlsplit(browser.visited[0]).query)
    assert query["redirect_uri"] == [redirect_uri]
    assert query["code_challenge_method"] == ["S256"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def _first_run(server_url: str, storage: MemoryStorage) -> tuple[str, int]:
    """Log in once; return (redirect URI, port) of that run.

    The run asks for a free port as prefer_port, as a sticky client does from its second run
    on. That socket is bound with SO_REUSEADDR, so the connections it leaves in TIME_WAIT do
    not keep the next run (or the tests' blocker) off the port. A first run on a plain
    ephemeral port leaves TIME_WAIT entries that block re-binding the port for about a
    minute on Linux; the sticky port then falls back, which is the documented behaviour.
    """
    for _ in range(5):  # the probed port may be taken before we bind it: probe again
        port = _free_port()
        async with loopback_oauth(CallbackConfig(prefer_port=port), open_browser=Browser()) as cb:
            if cb.port != port:
                continue
            await call_whoami(server_url, _provider(cb, server_url, storage))
            return cb.redirect_uri, cb.port
    pytest.fail("five probed free ports were all taken before they could be bound")


def _registered(storage: MemoryStorage) -> list[str]:
    assert storage.client_info is not None
    return [str(u) for u in storage.client_info.redirect_uris or ()]


async def test_second_run_reuses_stored_tokens_without_a_browser(servers: dict[str, str]) -> None:
    """A second run with the same storage calls the tool with the stored token: no browser, no registration."""
    storage = MemoryStorage()
    await _first_run(servers["exact"], storage)
    tokens = storage.tokens
    browser = Browser()
    async with loopback_oauth(open_browser=browser) as cb:
        text = await call_whoami(servers["exact"], _provider(cb, servers["exact"], storage))
    assert text == "hello from exact"
    assert browser.visited == []
    assert storage.registrations == 1
    assert storage.tokens is tokens


async def _rerun_on_another_port(
    server_url: str,
    storage: MemoryStorage,
    old_port: int,
    caplog: pytest.LogCaptureFixture,
    *,
    keep_native: bool = False,
) -> tuple[LoopbackOAuth, Browser]:
    """Re-login (tokens gone) while the old port is taken, with the sticky port asked for."""
    storage.tokens = None  # expired and forgotten: the next request needs a fresh login
    browser = Browser()
    with socket.socket() as blocker, caplog.at_level(logging.INFO, logger="oauth_loopback"):
        blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            blocker.bind(("127.0.0.1", old_port))
            blocker.listen(1)
        except OSError as exc:  # another process's socket took it meanwhile: busy all the same
            if exc.errno != errno.EADDRINUSE:
                raise
        async with loopback_oauth(open_browser=browser, prefer_port_from=storage) as cb:
            assert cb.port != old_port
            provider = _provider(cb, server_url, storage, keep_native=keep_native)
            assert await call_whoami(server_url, provider)
    assert f"preferred callback port {old_port} is unavailable" in caplog.text
    return cb, browser


async def test_changed_port_keeps_a_native_registration(
    servers: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """Port changed, keep_native=True, RFC 8252 §7.3 server: the native registration is kept and accepted."""
    storage = MemoryStorage()
    old_uri, old_port = await _first_run(servers["loopback"], storage)
    assert storage.client_info is not None
    client_id = storage.client_info.client_id
    assert storage.client_info.application_type == "native"
    cb, browser = await _rerun_on_another_port(
        servers["loopback"], storage, old_port, caplog, keep_native=True
    )
    assert storage.registrations == 1
    assert storage.client_info.client_id == client_id
    assert _registered(storage) == [old_uri]
    assert parse_qs(urlsplit(browser.visited[0]).query)["redirect_uri"] == [cb.redirect_uri]
    assert "keeping the stored native client registration" in caplog.text


async def test_changed_port_registers_again_with_an_exact_match_server(
    servers: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """Port changed, SDK server matching exactly: the (native) stale registration is replaced by default."""
    storage = MemoryStorage()
    _, old_port = await _first_run(servers["exact"], storage)
    assert storage.client_info is not None
    old_client_id = storage.client_info.client_id
    assert storage.client_info.application_type == "native"
    cb, _ = await _rerun_on_another_port(servers["exact"], storage, old_port, caplog)
    assert storage.registrations == 2
    assert storage.client_info.client_id != old_client_id
    assert _registered(storage) == [cb.redirect_uri]
    assert "does not list" in caplog.text


class RecordingBrowser(Browser):
    """A browser that stops wherever the server leaves it (an error page) instead of failing."""

    async def __call__(self, url: str) -> bool:
        self.visited.append(url)
        async with httpx2.AsyncClient(
            trust_env=False,
            follow_redirects=True,
            timeout=10,
            event_hooks={"request": [_only_loopback]},
        ) as client:
            response = await client.get(url)
        self.pages.append(f"{response.status_code} {response.url.path}")
        return True


async def test_keeping_a_native_registration_strands_the_login_on_the_sdk_server(
    servers: dict[str, str],
) -> None:
    """Why keep_native is opt-in: the SDK's server refuses the native registration's new port."""
    storage = MemoryStorage()
    await _first_run(servers["exact"], storage)
    storage.tokens = None
    browser = RecordingBrowser()
    # The server's refusal is a page in the browser; the client only sees its wait run out.
    async with loopback_oauth(CallbackConfig(timeout=0.5), open_browser=browser) as cb:
        assert cb.port != urlsplit(_registered(storage)[0]).port
        provider = _provider(cb, servers["exact"], storage, keep_native=True)
        # The SDK's transport task group wraps the handler's error in an ExceptionGroup.
        with pytest.raises(Exception) as info:  # noqa: PT011 - checked just below
            await call_whoami(servers["exact"], provider)
    assert info.group_contains(CallbackTimeout)
    assert browser.pages == ["400 /authorize"]
    assert storage.registrations == 1


async def test_sticky_port_keeps_the_exact_redirect_uri(
    servers: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """With the old port free, prefer_port_from= rebinds it: an exact-match server accepts the old registration."""
    storage = MemoryStorage()
    old_uri, old_port = await _first_run(servers["exact"], storage)
    storage.tokens = None
    with caplog.at_level(logging.INFO, logger="oauth_loopback"):
        async with loopback_oauth(open_browser=Browser(), prefer_port_from=[storage]) as cb:
            assert cb.redirect_uri == old_uri
            await call_whoami(servers["exact"], _provider(cb, servers["exact"], storage))
    assert storage.registrations == 1
    assert f"listening on the preferred callback port {old_port}" in caplog.text


async def test_two_servers_log_in_concurrently_through_one_receiver(
    servers: dict[str, str],
) -> None:
    """Two OAuthClientProviders log in at once on one receiver; each login wakes with its own code."""
    both_waiting = anyio.Event()
    seen: list[str] = []
    pending_when_both_opened: list[int] = []
    live: list[LoopbackOAuth] = []

    async def browser(url: str) -> bool:
        seen.append(url)
        if len(seen) == 2:
            # Both logins are registered on the one receiver before either completes.
            pending_when_both_opened.append(live[0].receiver.pending_count)
            both_waiting.set()
        await both_waiting.wait()
        return await Browser()(url)

    async with loopback_oauth(open_browser=browser) as cb:
        live.append(cb)
        results: dict[str, str] = {}
        storages = {mode: MemoryStorage() for mode in ("loopback", "exact")}

        async def login(mode: str) -> None:
            provider = cb.client_provider(servers[mode], storages[mode])
            results[mode] = await call_whoami(servers[mode], provider)

        with anyio.fail_after(LOGIN_DEADLINE):
            async with anyio.create_task_group() as tg:
                tg.start_soon(login, "loopback")
                tg.start_soon(login, "exact")
    assert results == {"loopback": "hello from loopback", "exact": "hello from exact"}
    assert pending_when_both_opened == [2]
    states = {parse_qs(urlsplit(url).query)["state"][0] for url in seen}
    assert len(states) == 2
    for storage in storages.values():
        assert _registered(storage) == [cb.redirect_uri]


async def test_legacy_port_busy_is_loud_before_any_login(servers: dict[str, str]) -> None:
    """A server entry pinning a busy callbackPort raises CallbackPortInUse at once: no browser, no fallback."""
    browser = Browser()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        busy = holder.getsockname()[1]
        with pytest.raises(CallbackPortInUse) as info:
            async with loopback_oauth({"callbackPort": busy}, open_browser=browser):
                pytest.fail("the receiver must not open on a busy fixed port")
    assert info.value.port == busy
    assert "callbackPort" in str(info.value)
    assert browser.visited == []


async def test_issuer_carried_by_the_response_is_checked(servers: dict[str, str]) -> None:
    """With issuer= the receiver requires RFC 9207 iss; the SDK gets it back in AuthorizationCodeResult."""
    server_url = servers["loopback+iss"]
    issuer = server_url.removesuffix("/mcp")
    async with loopback_oauth(open_browser=Browser()) as cb:
        provider = cb.client_provider(server_url, MemoryStorage(), issuer=issuer)
        assert await call_whoami(server_url, provider) == "hello from loopback+iss"


def _docs_example() -> str:
    text = (Path(__file__).parents[2] / "docs" / "mcp.md").read_text(encoding="utf-8")
    return text.split("```python\n", 1)[1].split("```", 1)[0]


async def test_docs_example_logs_in_and_lists_tools(
    servers: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first example of docs/mcp.md runs as written, with the default browser launcher."""
    opened: list[str] = []

    def fake_webbrowser_open(url: str) -> bool:
        # The default launcher runs in a worker thread, so this browser is synchronous.
        opened.append(url)
        url = _http.page_target(url)  # the launcher is given a private redirect page
        with httpx2.Client(trust_env=False, follow_redirects=True, timeout=10) as client:
            response = client.get(url)
        return bool(response.status_code == 200 and response.url.host == "127.0.0.1")

    monkeypatch.setattr("webbrowser.open", fake_webbrowser_open)
    for name in (
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ):
        monkeypatch.delenv(name, raising=False)
    namespace: dict[str, object] = {}
    exec(compile(_docs_example(), "docs/mcp.md", "exec"), namespace)  # noqa: S102 - our own docs
    list_tools = namespace["list_tools"]
    storage = MemoryStorage()
    with anyio.fail_after(LOGIN_DEADLINE):
        names = await list_tools(servers["exact"], storage)  # type: ignore[operator]
        again = await list_tools(servers["exact"], storage)  # type: ignore[operator]
    assert names == again == ["whoami"]
    assert len(opened) == 1  # the second call reused the stored token
    assert storage.registrations == 1
