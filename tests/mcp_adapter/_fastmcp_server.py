"""A FastMCP server that requires OAuth, for the staying-logged-in tests.

Run as ``python -m tests.mcp_adapter._fastmcp_server`` from the repository root: like
``_sdk_server.py`` it binds 127.0.0.1 port 0, writes ``PORT <n>`` once the socket listens and
serves until its stdin closes. The authorization server is FastMCP's own ``InMemoryOAuthProvider`` (auto-consenting,
dynamic registration, refresh with rotation, RFC 7009 revocation), which matches redirect
URIs exactly through the SDK's ``validate_redirect_uri``. The same test routes as the SDK
server are in front of it (``/test/stats``, ``/test/expire-access-tokens``).
"""

from __future__ import annotations

import socket
import sys
import time
from collections import Counter
from typing import Any

import anyio
import uvicorn
from fastmcp import FastMCP
from fastmcp.server.auth.providers.in_memory import InMemoryOAuthProvider
from mcp.server.auth.provider import AuthorizationParams, RefreshToken
from mcp.server.auth.settings import ClientRegistrationOptions, RevocationOptions
from mcp.shared.auth import OAuthClientInformationFull, OAuthToken

from tests.mcp_adapter._sdk_server import ControlRoutes


class CountingProvider(InMemoryOAuthProvider):
    """FastMCP's in-memory authorization server, counting what each client did."""

    def __init__(self, issuer: str) -> None:
        super().__init__(
            base_url=issuer,
            client_registration_options=ClientRegistrationOptions(enabled=True),
            revocation_options=RevocationOptions(enabled=True),
        )
        self.registrations = 0
        self.authorizations: Counter[str] = Counter()
        self.refreshes: Counter[str] = Counter()

    async def register_client(self, client_info: OAuthClientInformationFull) -> None:
        self.registrations += 1
        await super().register_client(client_info)

    async def authorize(
        self, client: OAuthClientInformationFull, params: AuthorizationParams
    ) -> str:
        self.authorizations[client.client_id] += 1
        return await super().authorize(client, params)

    async def exchange_refresh_token(
        self, client: OAuthClientInformationFull, refresh_token: RefreshToken, scopes: list[str]
    ) -> OAuthToken:
        self.refreshes[client.client_id] += 1
        return await super().exchange_refresh_token(client, refresh_token, scopes)

    def stats(self) -> dict[str, Any]:
        return {
            "registrations": self.registrations,
            "clients": sorted(self.clients),
            "authorizations": dict(self.authorizations),
            "refreshes": dict(self.refreshes),
        }

    def expire_access_tokens(self) -> int:
        past = int(time.time()) - 10
        for token in self.access_tokens.values():
            token.expires_at = past
        return len(self.access_tokens)


async def _serve() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    port = sock.getsockname()[1]
    provider = CountingProvider(f"http://127.0.0.1:{port}")
    server = FastMCP("test-fastmcp", auth=provider)

    @server.tool
    def whoami() -> str:
        """Say which server answered."""
        return "hello from fastmcp"

    app = ControlRoutes(server.http_app(path="/mcp"), provider)
    userver = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    sys.stdout.write(f"PORT {port}\n")
    sys.stdout.flush()
    async with anyio.create_task_group() as tg:

        async def stop_when_stdin_closes() -> None:
            await anyio.to_thread.run_sync(sys.stdin.read, abandon_on_cancel=True)
            userver.should_exit = True

        tg.start_soon(stop_when_stdin_closes)
        await userver.serve(sockets=[sock])
        tg.cancel_scope.cancel()


if __name__ == "__main__":
    anyio.run(_serve)
