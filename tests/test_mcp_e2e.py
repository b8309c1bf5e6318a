"""oauth_loopback.mcp end to end with the REAL MCP Python SDK client and server.

The client is ``mcp.ClientSession`` over streamable HTTP with ``auth=OAuthClientProvider(...)``
wired through :mod:`oauth_loopback.mcp`, in-process on asyncio and on trio. The server is the
SDK's own ``MCPServer`` with its authorization-server routes and an
``OAuthAuthorizationServerProvider`` (``tests/_mcp_server.py``), in subprocesses because
uvicorn runs on asyncio only. The browser is an httpx2 client that follows the redirects of
the authorization endpoint back to the receiver; everything stays on 127.0.0.1.
"""

from __future__ import annotations

import selectors
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

from oauth_loopback.mcp import LoopbackOAuth, loopback_oauth

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

SERVER = Path(__file__).with_name("_mcp_server.py")
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
        urls = {mode: f"http://127.0.0.1:{_read_port(proc, logs)}/mcp" for mode, proc in procs.items()}
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


def _provider(cb: LoopbackOAuth, server_url: str, storage: MemoryStorage, **kw: object) -> OAuthClientProvider:
    return OAuthClientProvider(
        server_url,
        client_metadata=cb.client_metadata(client_name="oauth-loopback tests"),
        storage=cb.storage(storage, **kw),  # type: ignore[arg-type]
        redirect_handler=cb.redirect_handler,
        callback_handler=cb.callback_handler,
    )


async def test_first_login_registers_dynamically_and_calls_the_tool(servers: dict[str, str]) -> None:
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
