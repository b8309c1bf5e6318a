"""What the MCP end-to-end tests share: the server subprocesses, a test browser, storage.

The servers are ``_sdk_server.py`` subprocesses (uvicorn runs on asyncio only, and the client
under test runs in-process on asyncio and on trio alike); ``conftest.py`` starts one per mode
for the whole session.
"""

from __future__ import annotations

import selectors
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import anyio
import httpx2
import pytest
from mcp import ClientSession
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import OAuthClientInformationFull, OAuthToken
from mcp.types import TextContent

from oauth_loopback import CallbackConfig
from oauth_loopback.mcp import LoopbackOAuth, loopback_oauth

# SDK workaround (mcp 2.3.0, httpx2 2.16): the streamable HTTP transport drops the SSE
# response iterators without aclose(); on trio the asyncgen finalizer reports each one as a
# ResourceWarning, which filterwarnings=error turns into a failure. Only those generators of
# the SDK's HTTP stack are ignored.
SDK_WARNINGS = [
    pytest.mark.filterwarnings(
        r"ignore:Async generator 'httpx2\._(models|sse)\.[A-Za-z_.]+' was garbage collected:ResourceWarning"
    ),
    pytest.mark.filterwarnings(
        r"ignore:Async generator 'httpcore2\._async\.[A-Za-z_.]+' was garbage collected:ResourceWarning"
    ),
]

SERVER = Path(__file__).with_name("_sdk_server.py")
ROOT = Path(__file__).parents[2]
# "fastmcp" is FastMCP's own server (``_fastmcp_server.py``), the others the SDK's.
MODES = ("loopback", "exact", "loopback+iss", "preregistered", "cimd", "fastmcp")
# Bounds every login: discovery, registration, browser leg, token exchange, tool call.
LOGIN_DEADLINE = 30


@contextmanager
def running_servers(modes: tuple[str, ...] = MODES) -> Iterator[dict[str, str]]:
    """Start one MCP server per mode (in parallel) and yield mode -> MCP endpoint URL."""
    procs: dict[str, subprocess.Popen[str]] = {}
    logs = tempfile.TemporaryFile("w+")
    try:
        for mode in modes:
            command = (
                [sys.executable, "-m", "tests.mcp_adapter._fastmcp_server"]
                if mode == "fastmcp"
                else [sys.executable, str(SERVER), mode]
            )
            procs[mode] = subprocess.Popen(
                command,
                cwd=ROOT,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=logs,
                text=True,
            )
        urls = {
            mode: f"http://127.0.0.1:{read_port(proc, logs)}/mcp" for mode, proc in procs.items()
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


def read_port(proc: subprocess.Popen[str], logs: IO[str]) -> int:
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


async def only_loopback(request: httpx2.Request) -> None:
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
            event_hooks={"request": [only_loopback]},
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


def sdk_provider(
    cb: LoopbackOAuth, server_url: str, storage: MemoryStorage, **kw: object
) -> OAuthClientProvider:
    return OAuthClientProvider(
        server_url,
        client_metadata=cb.client_metadata(client_name="oauth-loopback tests"),
        storage=cb.storage(storage, **kw),  # type: ignore[arg-type]
        redirect_handler=cb.redirect_handler,
        callback_handler=cb.callback_handler,
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def first_run(server_url: str, storage: MemoryStorage) -> tuple[str, int]:
    """Log in once; return (redirect URI, port) of that run.

    The run asks for a free port as prefer_port, as a sticky client does from its second run
    on. That socket is bound with SO_REUSEADDR, so the connections it leaves in TIME_WAIT do
    not keep the next run (or the tests' blocker) off the port. A first run on a plain
    ephemeral port leaves TIME_WAIT entries that block re-binding the port for about a
    minute on Linux; the sticky port then falls back, which is the documented behaviour.
    """
    for _ in range(5):  # the probed port may be taken before we bind it: probe again
        port = free_port()
        async with loopback_oauth(CallbackConfig(prefer_port=port), open_browser=Browser()) as cb:
            if cb.port != port:
                continue
            await call_whoami(server_url, sdk_provider(cb, server_url, storage))
            return cb.redirect_uri, cb.port
    pytest.fail("five probed free ports were all taken before they could be bound")


def registered(storage: MemoryStorage) -> list[str]:
    assert storage.client_info is not None
    return [str(u) for u in storage.client_info.redirect_uris or ()]


def _origin(server_url: str) -> str:
    return server_url.removesuffix("/mcp")


async def server_stats(server_url: str) -> dict[str, Any]:
    """What the test server saw: registrations, clients, authorizations and refreshes per client."""
    async with httpx2.AsyncClient(trust_env=False, timeout=10) as client:
        response = await client.get(f"{_origin(server_url)}/test/stats")
    response.raise_for_status()
    stats: dict[str, Any] = response.json()
    return stats


async def expire_access_tokens(server_url: str) -> None:
    """Make every access token the server issued so far expire now, as if an hour had passed."""
    async with httpx2.AsyncClient(trust_env=False, timeout=10) as client:
        response = await client.post(f"{_origin(server_url)}/test/expire-access-tokens")
    response.raise_for_status()


async def revoke(server_url: str, token: str, client_id: str) -> None:
    """Revoke ``token`` at the server's RFC 7009 endpoint, as a public client."""
    # The SDK's server (2.3) requires the client_secret field even from a public client
    # (RFC 7009 §2.1 needs only the client's own authentication): send it empty.
    form = {"token": token, "client_id": client_id, "client_secret": ""}
    async with httpx2.AsyncClient(trust_env=False, timeout=10) as client:
        response = await client.post(f"{_origin(server_url)}/revoke", data=form)
    assert response.status_code == 200, response.text
