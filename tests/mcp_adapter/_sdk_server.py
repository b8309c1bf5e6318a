"""A real MCP server that requires OAuth, for the oauth_loopback.mcp end-to-end tests.

Run as ``python tests/mcp_adapter/_sdk_server.py MODE``: it binds 127.0.0.1 port 0, writes
``PORT <n>`` on stdout once the socket listens, and serves the MCP Python SDK's own stack
(``MCPServer`` + its authorization-server routes + uvicorn) until its stdin closes.

It is a subprocess because uvicorn runs on asyncio only, and the client under test must run
in-process on asyncio and on trio alike.

MODE decides how the authorization server matches redirect URIs:

``loopback``
    RFC 8252 §7.3: a client registered as ``application_type: native`` may use any port on
    a registered loopback redirect URI. (The SDK's stock server matches exactly even for
    native clients; this mode overrides ``validate_redirect_uri`` to follow the RFC.)
``exact``
    The SDK's stock behaviour: it echoes ``application_type: native`` and still matches
    redirect URIs exactly (``OAuthClientInformationFull.validate_redirect_uri``).

Append ``+iss`` to MODE to add the RFC 9207 ``iss`` parameter to authorization responses, and
``+prereg`` to turn dynamic registration off and pre-register one native client,
``PREREGISTERED_CLIENT_ID``, for the portless ``http://127.0.0.1/callback`` (RFC 8252 §7.3:
any port; use it with ``loopback``).

Every mode refreshes tokens (rotating the refresh token). ``+counts`` adds a tool beside
``whoami``, ``grant_counts``, which says how many tokens each grant issued.
"""

from __future__ import annotations

import json
import secrets
import socket
import sys
import time
from urllib.parse import urlsplit

import anyio
import uvicorn
from mcp.server.auth.provider import (
    AccessToken,
    AuthorizationCode,
    AuthorizationParams,
    OAuthAuthorizationServerProvider,
    RefreshToken,
    construct_redirect_uri,
)
from mcp.server.auth.settings import AuthSettings, ClientRegistrationOptions
from mcp.server.mcpserver import MCPServer
from mcp.shared.auth import OAuthClientInformationFull, OAuthToken
from pydantic import AnyUrl

_LOOPBACK = ("127.0.0.1", "[::1]", "::1", "localhost")
PREREGISTERED_CLIENT_ID = "preregistered-native-client"
PREREGISTERED_REDIRECT_URI = "http://127.0.0.1/callback"


class PortAgnosticClient(OAuthClientInformationFull):
    """A registered client whose loopback redirect URIs match on any port (RFC 8252 §7.3)."""

    def validate_redirect_uri(self, redirect_uri: AnyUrl | None) -> AnyUrl:
        if (
            redirect_uri is not None
            and self.application_type == "native"
            and any(_same_but_port(str(redirect_uri), str(u)) for u in self.redirect_uris or ())
        ):
            return redirect_uri
        return super().validate_redirect_uri(redirect_uri)


def _same_but_port(a: str, b: str) -> bool:
    pa, pb = urlsplit(a), urlsplit(b)
    return (
        pa.scheme == pb.scheme == "http"
        and pa.hostname in _LOOPBACK
        and pa.hostname == pb.hostname
        and pa.path == pb.path
        and pa.query == pb.query
    )


class Provider(OAuthAuthorizationServerProvider[AuthorizationCode, RefreshToken, AccessToken]):
    """Auto-consenting authorization server: /authorize redirects straight back with a code."""

    def __init__(self, issuer: str, *, port_agnostic: bool, send_iss: bool) -> None:
        self.issuer = issuer
        self.port_agnostic = port_agnostic
        self.send_iss = send_iss
        self.clients: dict[str, OAuthClientInformationFull] = {}
        self.codes: dict[str, AuthorizationCode] = {}
        self.tokens: dict[str, AccessToken] = {}
        self.refresh: dict[str, RefreshToken] = {}
        self.grants = {"authorization_code": 0, "refresh_token": 0}

    async def get_client(self, client_id: str) -> OAuthClientInformationFull | None:
        return self.clients.get(client_id)

    async def register_client(self, client_info: OAuthClientInformationFull) -> None:
        if self.port_agnostic:
            self.clients[client_info.client_id] = PortAgnosticClient.model_validate(
                client_info.model_dump()
            )
        else:
            self.clients[client_info.client_id] = client_info

    async def authorize(
        self, client: OAuthClientInformationFull, params: AuthorizationParams
    ) -> str:
        code = secrets.token_urlsafe(32)
        self.codes[code] = AuthorizationCode(
            code=code,
            scopes=params.scopes or [],
            expires_at=time.time() + 300,
            client_id=client.client_id,
            code_challenge=params.code_challenge,
            redirect_uri=params.redirect_uri,
            redirect_uri_provided_explicitly=params.redirect_uri_provided_explicitly,
            resource=params.resource,
        )
        extra = {"iss": self.issuer} if self.send_iss else {}
        return construct_redirect_uri(
            str(params.redirect_uri), code=code, state=params.state, **extra
        )

    async def load_authorization_code(
        self, client: OAuthClientInformationFull, authorization_code: str
    ) -> AuthorizationCode | None:
        return self.codes.get(authorization_code)

    async def exchange_authorization_code(
        self, client: OAuthClientInformationFull, authorization_code: AuthorizationCode
    ) -> OAuthToken:
        del self.codes[authorization_code.code]
        self.grants["authorization_code"] += 1
        return self._issue(client.client_id, authorization_code.scopes, authorization_code.resource)

    def _issue(self, client_id: str, scopes: list[str], resource: str | None) -> OAuthToken:
        access, refresh = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        self.tokens[access] = AccessToken(
            token=access,
            client_id=client_id,
            scopes=scopes,
            expires_at=int(time.time()) + 3600,
            resource=resource,
        )
        self.refresh[refresh] = RefreshToken(token=refresh, client_id=client_id, scopes=scopes)
        return OAuthToken(
            access_token=access, token_type="Bearer", expires_in=3600, refresh_token=refresh
        )

    async def load_refresh_token(
        self, client: OAuthClientInformationFull, refresh_token: str
    ) -> RefreshToken | None:
        stored = self.refresh.get(refresh_token)
        return stored if stored is not None and stored.client_id == client.client_id else None

    async def exchange_refresh_token(
        self, client: OAuthClientInformationFull, refresh_token: RefreshToken, scopes: list[str]
    ) -> OAuthToken:
        del self.refresh[refresh_token.token]  # rotated (OAuth 2.1 §4.3.1)
        self.grants["refresh_token"] += 1
        return self._issue(client.client_id, scopes or refresh_token.scopes, None)

    async def load_access_token(self, token: str) -> AccessToken | None:
        return self.tokens.get(token)

    async def revoke_token(self, token: AccessToken | RefreshToken) -> None:
        self.tokens.pop(token.token, None)


async def _serve(mode: str) -> None:
    base_mode, *flags = mode.split("+")
    if base_mode not in ("loopback", "exact") or not set(flags) <= {"iss", "prereg", "counts"}:
        raise SystemExit(f"unknown mode {mode!r}")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    port = sock.getsockname()[1]
    issuer = f"http://127.0.0.1:{port}"
    provider = Provider(issuer, port_agnostic=base_mode == "loopback", send_iss="iss" in flags)
    if "prereg" in flags:
        provider.clients[PREREGISTERED_CLIENT_ID] = PortAgnosticClient(
            client_id=PREREGISTERED_CLIENT_ID,
            redirect_uris=[AnyUrl(PREREGISTERED_REDIRECT_URI)],
            token_endpoint_auth_method="none",
            grant_types=["authorization_code", "refresh_token"],
            application_type="native",
        )
    server = MCPServer(
        name=f"test-{mode}",
        auth_server_provider=provider,
        auth=AuthSettings(
            issuer_url=issuer,  # type: ignore[arg-type]
            resource_server_url=f"{issuer}/mcp",  # type: ignore[arg-type]
            validate_token_resource=False,
            client_registration_options=ClientRegistrationOptions(enabled="prereg" not in flags),
        ),
    )

    @server.tool()
    def whoami() -> str:
        """Say which server answered."""
        return f"hello from {mode}"

    if "counts" in flags:

        @server.tool()
        def grant_counts() -> str:
            """How many tokens each grant issued, as JSON."""
            return json.dumps(provider.grants)

    config = uvicorn.Config(server.streamable_http_app(), log_level="warning", lifespan="on")
    userver = uvicorn.Server(config)
    # The socket listens already: connections wait in its backlog until uvicorn accepts.
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
    anyio.run(_serve, sys.argv[1])
