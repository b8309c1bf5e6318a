"""oauth_loopback.mcp end to end with the REAL MCP Python SDK client and server.

The client is ``mcp.ClientSession`` over streamable HTTP with ``auth=OAuthClientProvider(...)``
wired through :mod:`oauth_loopback.mcp`, in-process on asyncio and on trio. The server is the
SDK's own ``MCPServer`` with its authorization-server routes and an
``OAuthAuthorizationServerProvider`` (``tests/mcp_adapter/_sdk_server.py``), in subprocesses because
uvicorn runs on asyncio only. The browser is an httpx2 client that follows the redirects of
the authorization endpoint back to the receiver; everything stays on 127.0.0.1.
Staying logged in across runs is in ``test_stay_logged_in.py``.
"""

from __future__ import annotations

import errno
import logging
import socket
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import anyio
import httpx2
import pytest

from oauth_loopback import CallbackConfig, CallbackPortInUse, CallbackTimeout
from oauth_loopback.mcp import LoopbackOAuth, loopback_oauth
from tests.mcp_adapter._harness import (
    LOGIN_DEADLINE,
    SDK_WARNINGS,
    Browser,
    MemoryStorage,
    call_whoami,
    first_run,
    only_loopback,
    registered,
    sdk_provider,
)

pytestmark = [pytest.mark.anyio, *SDK_WARNINGS]


async def test_first_login_registers_dynamically_and_calls_the_tool(
    servers: dict[str, str],
) -> None:
    """A first run registers the client (RFC 7591), logs in through the receiver and calls a tool."""
    browser, storage = Browser(), MemoryStorage()
    async with loopback_oauth(open_browser=browser) as cb:
        text = await call_whoami(servers["exact"], sdk_provider(cb, servers["exact"], storage))
        redirect_uri = cb.redirect_uri
    assert text == "hello from exact"
    assert storage.registrations == 1
    assert storage.client_info is not None
    assert [str(u) for u in storage.client_info.redirect_uris or ()] == [redirect_uri]
    # client_metadata() asks for a public client: the SDK's server then mints no secret.
    assert storage.client_info.token_endpoint_auth_method == "none"
    assert storage.client_info.client_secret is None
    assert storage.tokens is not None
    assert len(browser.visited) == 1
    query = parse_qs(urlsplit(browser.visited[0]).query)
    assert query["redirect_uri"] == [redirect_uri]
    assert query["code_challenge_method"] == ["S256"]


async def test_second_run_reuses_stored_tokens_without_a_browser(servers: dict[str, str]) -> None:
    """A second run with the same storage calls the tool with the stored token: no browser, no registration."""
    storage = MemoryStorage()
    await first_run(servers["exact"], storage)
    tokens = storage.tokens
    browser = Browser()
    async with loopback_oauth(open_browser=browser) as cb:
        text = await call_whoami(servers["exact"], sdk_provider(cb, servers["exact"], storage))
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
            provider = sdk_provider(cb, server_url, storage, keep_native=keep_native)
            assert await call_whoami(server_url, provider)
    assert f"preferred callback port {old_port} is unavailable" in caplog.text
    return cb, browser


async def test_changed_port_keeps_a_native_registration(
    servers: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """Port changed, keep_native=True, RFC 8252 §7.3 server: the native registration is kept and accepted."""
    storage = MemoryStorage()
    old_uri, old_port = await first_run(servers["loopback"], storage)
    assert storage.client_info is not None
    client_id = storage.client_info.client_id
    assert storage.client_info.application_type == "native"
    cb, browser = await _rerun_on_another_port(
        servers["loopback"], storage, old_port, caplog, keep_native=True
    )
    assert storage.registrations == 1
    assert storage.client_info.client_id == client_id
    assert registered(storage) == [old_uri]
    assert parse_qs(urlsplit(browser.visited[0]).query)["redirect_uri"] == [cb.redirect_uri]
    assert "keeping the stored native client registration" in caplog.text


async def test_changed_port_registers_again_with_an_exact_match_server(
    servers: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """Port changed, SDK server matching exactly: the (native) stale registration is replaced by default."""
    storage = MemoryStorage()
    _, old_port = await first_run(servers["exact"], storage)
    assert storage.client_info is not None
    old_client_id = storage.client_info.client_id
    assert storage.client_info.application_type == "native"
    cb, _ = await _rerun_on_another_port(servers["exact"], storage, old_port, caplog)
    assert storage.registrations == 2
    assert storage.client_info.client_id != old_client_id
    assert registered(storage) == [cb.redirect_uri]
    assert "does not list" in caplog.text


class RecordingBrowser(Browser):
    """A browser that stops wherever the server leaves it (an error page) instead of failing."""

    async def __call__(self, url: str) -> bool:
        self.visited.append(url)
        async with httpx2.AsyncClient(
            trust_env=False,
            follow_redirects=True,
            timeout=10,
            event_hooks={"request": [only_loopback]},
        ) as client:
            response = await client.get(url)
        self.pages.append(f"{response.status_code} {response.url.path}")
        return True


async def test_keeping_a_native_registration_strands_the_login_on_the_sdk_server(
    servers: dict[str, str],
) -> None:
    """Why keep_native is opt-in: the SDK's server refuses the native registration's new port."""
    storage = MemoryStorage()
    await first_run(servers["exact"], storage)
    storage.tokens = None
    browser = RecordingBrowser()
    # The server's refusal is a page in the browser; the client only sees its wait run out.
    async with loopback_oauth(CallbackConfig(timeout=0.5), open_browser=browser) as cb:
        assert cb.port != urlsplit(registered(storage)[0]).port
        provider = sdk_provider(cb, servers["exact"], storage, keep_native=True)
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
    old_uri, old_port = await first_run(servers["exact"], storage)
    storage.tokens = None
    with caplog.at_level(logging.INFO, logger="oauth_loopback"):
        async with loopback_oauth(open_browser=Browser(), prefer_port_from=[storage]) as cb:
            assert cb.redirect_uri == old_uri
            await call_whoami(servers["exact"], sdk_provider(cb, servers["exact"], storage))
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
        assert registered(storage) == [cb.redirect_uri]


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
        # The default launcher runs in a worker thread, so this browser is synchronous. It is
        # handed a private file:// page that redirects to the authorization URL (SECURITY.md:
        # the URL never reaches a process's argv); follow it as a browser would.
        if url.startswith("file://"):
            import html
            import re
            from urllib.parse import unquote, urlsplit

            page = Path(unquote(urlsplit(url).path)).read_text(encoding="utf-8")
            refresh = re.search(r'http-equiv=refresh content="0;url=([^"]+)"', page)
            assert refresh is not None, page
            url = html.unescape(refresh.group(1))
        opened.append(url)
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
