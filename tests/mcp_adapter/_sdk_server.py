"""A real MCP server that requires OAuth, for the oauth_loopback.mcp end-to-end tests.

Run as ``python tests/mcp_adapter/_sdk_server.py MODE``: it binds 127.0.0.1 port 0, writes
``PORT <n>`` on stdout once the socket listens, and serves the MCP Python SDK's own stack
(``MCPServer`` + its authorization-server routes + uvicorn) until its stdin closes.

It is a subprocess because uvicorn runs on asyncio only, and the client under test must run
in-process on asyncio and on trio alike.

MODE decides how the authorization server matches redirect URIs and registers clients:

``loopback``
    RFC 8252 §7.3: a client registered as ``application_type: native`` may use any port on
    a registered loopback redirect URI. (The SDK's stock server matches exactly even for
    native clients; this mode overrides ``validate_redirect_uri`` to follow the RFC.)
``exact``
    The SDK's stock behaviour: it echoes ``application_type: native`` and still matches
    redirect URIs exactly (``OAuthClientInformationFull.validate_redirect_uri``).
``preregistered``
    No registration endpoint at all; one client, ``PRE_CLIENT_ID``, is registered by hand
    with the portless ``http://127.0.0.1/callback`` (RFC 8252 §7.3: any port matches).
``cimd``
    Advertises ``client_id_metadata_document_supported``. An https ``client_id`` is resolved
    as a client ID metadata document listing the portless ``http://127.0.0.1/callback``
    (the document is not fetched: the SDK client only sends https URLs, and these tests
    stay on plain loopback HTTP; what is under test is the client's side).

Append ``+iss`` to MODE to add the RFC 9207 ``iss`` parameter to authorization responses.

Every mode refreshes tokens (rotating the refresh token, RFC 6749 §6 and §10.4), revokes
them (RFC 7009, ``/revoke``) and serves two test-only routes: ``GET /test/stats`` (what each
client did: registrations, authorizations, refreshes) and ``POST /test/expire-access-tokens``
(every access token issued so far expires now, as if an hour had passed).
"""

from __future__ import annotations

import secrets
import socket
import sys
import time
from collections import Counter
from typing import Any, Protocol
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
from mcp.server.auth.routes import build_metadata
from mcp.server.auth.settings import AuthSettings, ClientRegistrationOptions, RevocationOptions
from mcp.server.mcpserver import MCPServer
from mcp.shared.auth import OAuthClientInformationFull, OAuthToken
from pydantic import AnyUrl
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

_LOOPBACK = ("127.0.0.1", "[::1]", "::1", "localhost")
#: The client registered by hand in ``preregistered`` mode.
PRE_CLIENT_ID = "pre-registered-cli"
#: What a client ID metadata document lists, and a hand registration (RFC 8252 §7.3).
PORTLESS = "http://127.0.0.1/callback"
ACCESS_TOKEN_LIFETIME = 3600
METADATA_PATH = "/.well-known/oauth-authorization-server"


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


def _portless_client(client_id: str) -> PortAgnosticClient:
    return PortAgnosticClient(
        client_id=client_id,
        redirect_uris=[AnyUrl(PORTLESS)],
        token_endpoint_auth_method="none",
        application_type="native",
    )


class Provider(OAuthAuthorizationServerProvider[AuthorizationCode, RefreshToken, AccessToken]):
    """Auto-consenting authorization server: /authorize redirects straight back with a code."""

    def __init__(self, issuer: str, mode: str, *, send_iss: bool) -> None:
        self.issuer = issuer
        self.mode = mode
        self.send_iss = send_iss
        self.clients: dict[str, OAuthClientInformationFull] = {}
        if mode == "preregistered":
            self.clients[PRE_CLIENT_ID] = _portless_client(PRE_CLIENT_ID)
        self.codes: dict[str, AuthorizationCode] = {}
        self.tokens: dict[str, AccessToken] = {}
        self.refresh: dict[str, RefreshToken] = {}
        self.registrations = 0
        self.authorizations: Counter[str] = Counter()
        self.refreshes: Counter[str] = Counter()

    async def get_client(self, client_id: str) -> OAuthClientInformationFull | None:
        if self.mode == "cimd" and client_id.startswith("https://"):
            return _portless_client(client_id)  # the document, resolved
        return self.clients.get(client_id)

    async def register_client(self, client_info: OAuthClientInformationFull) -> None:
        self.registrations += 1
        if self.mode == "loopback":
            self.clients[client_info.client_id] = PortAgnosticClient.model_validate(
                client_info.model_dump()
            )
        else:
            self.clients[client_info.client_id] = client_info

    async def authorize(
        self, client: OAuthClientInformationFull, params: AuthorizationParams
    ) -> str:
        self.authorizations[client.client_id] += 1
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

    def _issue(self, client_id: str, scopes: list[str], resource: str | None) -> OAuthToken:
        access, refresh = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        self.tokens[access] = AccessToken(
            token=access,
            client_id=client_id,
            scopes=scopes,
            expires_at=int(time.time()) + ACCESS_TOKEN_LIFETIME,
            resource=resource,
        )
        self.refresh[refresh] = RefreshToken(token=refresh, client_id=client_id, scopes=scopes)
        return OAuthToken(
            access_token=access,
            token_type="Bearer",
            expires_in=ACCESS_TOKEN_LIFETIME,
            refresh_token=refresh,
        )

    async def exchange_authorization_code(
        self, client: OAuthClientInformationFull, authorization_code: AuthorizationCode
    ) -> OAuthToken:
        del self.codes[authorization_code.code]
        return self._issue(client.client_id, authorization_code.scopes, authorization_code.resource)

    async def load_refresh_token(
        self, client: OAuthClientInformationFull, refresh_token: str
    ) -> RefreshToken | None:
        return self.refresh.get(refresh_token)

    async def exchange_refresh_token(
        self, client: OAuthClientInformationFull, refresh_token: RefreshToken, scopes: list[str]
    ) -> OAuthToken:
        # RFC 6749 §10.4: rotate; the spent refresh token is gone.
        del self.refresh[refresh_token.token]
        self.refreshes[client.client_id] += 1
        return self._issue(client.client_id, scopes, None)

    async def load_access_token(self, token: str) -> AccessToken | None:
        return self.tokens.get(token)

    async def revoke_token(self, token: AccessToken | RefreshToken) -> None:
        if isinstance(token, RefreshToken):
            self.refresh.pop(token.token, None)
        else:
            self.tokens.pop(token.token, None)

    def stats(self) -> dict[str, Any]:
        return {
            "registrations": self.registrations,
            "clients": sorted(self.clients),
            "authorizations": dict(self.authorizations),
            "refreshes": dict(self.refreshes),
        }

    def expire_access_tokens(self) -> int:
        past = int(time.time()) - 10
        for token in self.tokens.values():
            token.expires_at = past
        return len(self.tokens)


class Counts(Protocol):
    """What the test routes ask of an authorization server."""

    def stats(self) -> dict[str, Any]: ...

    def expire_access_tokens(self) -> int: ...


class ControlRoutes:
    """The test-only routes, in front of the SDK's app; in ``cimd`` mode also the RFC 8414
    metadata with ``client_id_metadata_document_supported`` added."""

    def __init__(
        self, app: ASGIApp, provider: Counts, metadata: dict[str, Any] | None = None
    ) -> None:
        self.app = app
        self.provider = provider
        self.metadata = metadata

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            route = (scope["method"], scope["path"])
            response: Response | None = None
            if route == ("GET", "/test/stats"):
                response = JSONResponse(self.provider.stats())
            elif route == ("POST", "/test/expire-access-tokens"):
                response = JSONResponse({"expired": self.provider.expire_access_tokens()})
            elif route[1] == METADATA_PATH and self.metadata is not None:
                response = JSONResponse(self.metadata)
            if response is not None:
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


async def _serve(mode: str) -> None:
    base_mode, _, flag = mode.partition("+")
    if base_mode not in ("loopback", "exact", "preregistered", "cimd") or flag not in ("", "iss"):
        raise SystemExit(f"unknown mode {mode!r}")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    port = sock.getsockname()[1]
    issuer = f"http://127.0.0.1:{port}"
    provider = Provider(issuer, base_mode, send_iss=flag == "iss")
    registration = ClientRegistrationOptions(enabled=base_mode != "preregistered")
    revocation = RevocationOptions(enabled=True)
    server = MCPServer(
        name=f"test-{mode}",
        auth_server_provider=provider,
        auth=AuthSettings(
            issuer_url=issuer,  # type: ignore[arg-type]
            resource_server_url=f"{issuer}/mcp",  # type: ignore[arg-type]
            validate_token_resource=False,
            client_registration_options=registration,
            revocation_options=revocation,
        ),
    )

    @server.tool()
    def whoami() -> str:
        """Say which server answered."""
        return f"hello from {mode}"

    metadata = None
    if base_mode == "cimd":
        assert server.settings.auth is not None
        document = build_metadata(server.settings.auth.issuer_url, None, registration, revocation)
        metadata = {
            **document.model_dump(mode="json", exclude_none=True),
            "client_id_metadata_document_supported": True,
        }
    app = ControlRoutes(server.streamable_http_app(), provider, metadata)
    config = uvicorn.Config(app, log_level="warning", lifespan="on")
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
