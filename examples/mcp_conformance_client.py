"""An MCP client for the official conformance suite, logging in through oauth_loopback.

The suite (``@modelcontextprotocol/conformance`` on npm) tests a client by starting a mock
MCP server (and authorization server) per scenario and running the client command with the
server URL appended as the last argument and the scenario name in ``MCP_CONFORMANCE_SCENARIO``
(``MCP_CONFORMANCE_CONTEXT`` carries JSON for scenarios that need it, such as pre-registered
client credentials; newer suites also set ``MCP_CONFORMANCE_PROTOCOL_VERSION``). The client
must exit 0 when it did what the scenario asks, non-zero otherwise.

Everything that opens a browser goes through the public API of this library: the MCP Python
SDK's ``OAuthClientProvider`` with ``oauth_loopback.mcp.loopback_oauth()``'s handlers and
receiver on an ephemeral loopback port. The "browser" is
``oauth_loopback.testing.follow_redirects``: the suite's authorization servers approve at
once and redirect to the receiver, so following the redirects over HTTP completes the login
exactly as a user's browser would. Scenarios without a browser leg (client credentials,
enterprise-managed authorization) use the SDK's own providers.

Run it on asyncio or trio::

    conformance client --scenario auth/metadata-default \\
        --command "python examples/mcp_conformance_client.py --backend trio"

``.ci/conformance`` runs every client scenario of the pinned suite this way on both backends.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import httpx2
import mcp_types as types
from mcp.client.auth import TokenStorage
from mcp.client.auth.extensions.client_credentials import (
    ClientCredentialsOAuthProvider,
    PrivateKeyJWTOAuthProvider,
    SignedJWTParameters,
)
from mcp.client.auth.extensions.identity_assertion import IdentityAssertionOAuthProvider
from mcp.client.auth.utils import build_protected_resource_metadata_discovery_urls
from mcp.client.client import Client
from mcp.client.context import ClientRequestContext
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import OAuthClientInformationFull, OAuthToken
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import AnyUrl

from oauth_loopback.mcp import loopback_oauth
from oauth_loopback.testing import follow_redirects

logger = logging.getLogger("mcp_conformance_client")

#: The client ID the suite's CIMD scenarios expect (a URL-formatted client ID, SEP-991); a
#: server that does not advertise ``client_id_metadata_document_supported`` gets a dynamic
#: registration (RFC 7591) instead.
CIMD_CLIENT_METADATA_URL = "https://conformance-test.local/client-metadata.json"
#: Every scenario must finish well inside the suite's per-client timeout.
SCENARIO_DEADLINE = 25.0
HTTP_TIMEOUT = 10.0

Scenario = Callable[[str], Awaitable[None]]
SCENARIOS: dict[str, Scenario] = {}


def scenario(*names: str) -> Callable[[Scenario], Scenario]:
    def register(fn: Scenario) -> Scenario:
        for name in names:
            SCENARIOS[name] = fn
        return fn

    return register


def protocol_version() -> str | None:
    """The protocol revision the suite's mock server speaks, when the suite says so."""
    return os.environ.get("MCP_CONFORMANCE_PROTOCOL_VERSION") or None


def client_mode() -> str:
    """``legacy`` (initialize handshake) unless the suite runs a modern (2026-07-28+) wire."""
    version = protocol_version()
    if version is not None and version in MODERN_PROTOCOL_VERSIONS:
        return "auto"
    return "legacy"


def context() -> dict[str, Any]:
    """The scenario's ``MCP_CONFORMANCE_CONTEXT`` (empty when the scenario sets none)."""
    raw = os.environ.get("MCP_CONFORMANCE_CONTEXT")
    if not raw:
        return {}
    value = json.loads(raw)
    if not isinstance(value, dict):
        msg = f"MCP_CONFORMANCE_CONTEXT must be a JSON object, not {type(value).__name__}."
        raise TypeError(msg)
    return value


def required(ctx: dict[str, Any], key: str) -> str:
    value = ctx.get(key)
    if not isinstance(value, str) or not value:
        msg = f"MCP_CONFORMANCE_CONTEXT has no {key!r} for this scenario."
        raise KeyError(msg)
    return value


class MemoryStorage(TokenStorage):
    """The SDK's ``TokenStorage`` in memory: each scenario is one fresh run of the client."""

    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client_info: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client_info = client_info


async def headless_browser(url: str) -> bool:
    """Play the user's browser: the suite's servers approve at once and redirect to us."""
    landed = await follow_redirects(url)  # code and state redacted
    logger.info("the browser leg ended at %s", landed)
    return True


async def apply_elicitation_defaults(
    context: ClientRequestContext, params: types.ElicitRequestParams
) -> types.ElicitResult | types.ErrorData:
    """Accept a form elicitation with every default its schema declares (SEP-1034)."""
    content: dict[str, str | int | float | bool | list[str] | None] = {}
    if isinstance(params, types.ElicitRequestFormParams):
        for name, prop in params.requested_schema.get("properties", {}).items():
            if isinstance(prop, dict) and "default" in prop:
                content[name] = prop["default"]
    return types.ElicitResult(action="accept", content=content)


def http_client(auth: httpx2.Auth | None = None) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(auth=auth, trust_env=False, timeout=HTTP_TIMEOUT)


async def list_and_call(server_url: str, auth: httpx2.Auth | None) -> None:
    """Connect, list the tools and call the first one, the way every auth scenario ends."""
    async with (
        http_client(auth) as http,
        Client(
            streamable_http_client(server_url, http_client=http),
            mode=client_mode(),
            elicitation_callback=apply_elicitation_defaults,
        ) as client,
    ):
        tools = (await client.list_tools()).tools
        logger.info("listed tools: %s", [tool.name for tool in tools])
        if tools:
            result = await client.call_tool(tools[0].name, {})
            logger.info("called %s: isError=%s", tools[0].name, result.is_error)


# --- scenarios without authorization ---------------------------------------------------------


@scenario("initialize")
async def run_initialize(server_url: str) -> None:
    """Initialize, list the tools, close."""
    async with http_client() as http, connect(server_url, http) as client:
        await client.list_tools()


@scenario("tools_call")
async def run_tools_call(server_url: str) -> None:
    """Call the scenario's ``add_numbers`` tool."""
    async with http_client() as http, connect(server_url, http) as client:
        await client.list_tools()
        result = await client.call_tool("add_numbers", {"a": 5, "b": 3})
        logger.info("add_numbers: %s", result.content)


@scenario("sse-retry")
async def run_sse_retry(server_url: str) -> None:
    """Call a tool whose SSE stream the server closes: the SDK must reconnect and resume."""
    async with http_client() as http, connect(server_url, http) as client:
        await client.list_tools()
        await client.call_tool("test_reconnection", {})


@scenario("elicitation-sep1034-client-defaults")
async def run_elicitation_defaults(server_url: str) -> None:
    """Answer the server's elicitation with the schema's defaults (SEP-1034)."""
    async with http_client() as http, connect(server_url, http) as client:
        await client.list_tools()
        await client.call_tool("test_client_elicitation_defaults", {})


def connect(server_url: str, http: httpx2.AsyncClient) -> Client:
    return Client(
        streamable_http_client(server_url, http_client=http),
        mode=client_mode(),
        elicitation_callback=apply_elicitation_defaults,
    )


# --- authorization code: the browser leg goes through oauth_loopback ------------------------


async def run_authorization_code(server_url: str) -> None:
    """Discover, register (or use the pre-registered client), log in through the receiver."""
    ctx = context()
    storage = MemoryStorage()
    async with loopback_oauth(open_browser=headless_browser) as cb:
        if "client_id" in ctx:
            # auth/pre-registration: the server has no registration endpoint; the operator
            # registered this client (and its redirect URI) beforehand.
            secret = ctx.get("client_secret")
            storage.client_info = OAuthClientInformationFull(
                client_id=required(ctx, "client_id"),
                client_secret=secret if isinstance(secret, str) else None,
                redirect_uris=[AnyUrl(cb.redirect_uri)],
                token_endpoint_auth_method="client_secret_basic" if secret else "none",
            )
        provider = cb.client_provider(
            server_url,
            storage,
            cb.client_metadata(
                client_name="oauth-loopback conformance client",
                grant_types=["authorization_code", "refresh_token"],
                response_types=["code"],
            ),
            client_metadata_url=CIMD_CLIENT_METADATA_URL,
        )
        await list_and_call(server_url, provider)


# --- grants without a browser: the SDK's providers alone -------------------------------------


@scenario("auth/client-credentials-jwt")
async def run_client_credentials_jwt(server_url: str) -> None:
    """Client credentials with ``private_key_jwt`` (RFC 7523): no browser leg."""
    ctx = context()
    client_id = required(ctx, "client_id")
    assertion = SignedJWTParameters(
        issuer=client_id,
        subject=client_id,
        signing_algorithm=ctx.get("signing_algorithm") or "ES256",
        signing_key=required(ctx, "private_key_pem"),
    )
    auth = PrivateKeyJWTOAuthProvider(
        server_url=server_url,
        storage=MemoryStorage(),
        client_id=client_id,
        assertion_provider=assertion.create_assertion_provider(),
    )
    await list_and_call(server_url, auth)


@scenario("auth/client-credentials-basic")
async def run_client_credentials_basic(server_url: str) -> None:
    """Client credentials with ``client_secret_basic``: no browser leg."""
    ctx = context()
    auth = ClientCredentialsOAuthProvider(
        server_url=server_url,
        storage=MemoryStorage(),
        client_id=required(ctx, "client_id"),
        client_secret=required(ctx, "client_secret"),
        token_endpoint_auth_method="client_secret_basic",  # noqa: S106 - a method name
    )
    await list_and_call(server_url, auth)


@scenario("auth/cross-app-access-complete-flow", "auth/enterprise-managed-authorization")
async def run_enterprise_managed(server_url: str) -> None:
    """SEP-990: an ID-JAG from the IdP (RFC 8693), then the jwt-bearer grant (RFC 7523)."""
    ctx = context()
    idp_token_endpoint = required(ctx, "idp_token_endpoint")
    idp_client_id = required(ctx, "idp_client_id")
    idp_id_token = required(ctx, "idp_id_token")
    # The SDK's provider takes the authorization server as configuration (SEP-990's trust
    # model); the suite does not pass it, so read it from the resource's RFC 9728 metadata.
    prm_url = build_protected_resource_metadata_discovery_urls(None, server_url)[0]
    async with http_client() as http:
        prm = (await http.get(prm_url)).raise_for_status().json()

    async def id_jag(audience: str, resource: str) -> str:
        async with http_client() as http:
            response = await http.post(
                idp_token_endpoint,
                data={
                    "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
                    "requested_token_type": "urn:ietf:params:oauth:token-type:id-jag",
                    "subject_token": idp_id_token,
                    "subject_token_type": "urn:ietf:params:oauth:token-type:id_token",
                    "audience": audience,
                    "resource": resource,
                    "client_id": idp_client_id,
                },
            )
        token = response.raise_for_status().json()["access_token"]
        if not isinstance(token, str):
            msg = "the IdP's token exchange answered without a string access_token."
            raise TypeError(msg)
        return token

    auth = IdentityAssertionOAuthProvider(
        server_url=server_url,
        storage=MemoryStorage(),
        client_id=required(ctx, "client_id"),
        client_secret=required(ctx, "client_secret"),
        issuer=prm["authorization_servers"][0],
        assertion_provider=id_jag,
        token_endpoint_auth_method="client_secret_basic",  # noqa: S106 - a method name
    )
    await list_and_call(server_url, auth)


def handler_for(name: str) -> Scenario | None:
    if name in SCENARIOS:
        return SCENARIOS[name]
    if name.startswith("auth/"):
        return run_authorization_code
    return None


async def run(name: str, server_url: str) -> None:
    handler = handler_for(name)
    if handler is None:
        msg = (
            f"this client has no behaviour for scenario {name!r}; add one to "
            f"examples/mcp_conformance_client.py (known: {sorted(SCENARIOS)} and auth/*)."
        )
        raise LookupError(msg)
    with anyio.fail_after(SCENARIO_DEADLINE):
        await handler(server_url)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument(
        "--backend",
        choices=("asyncio", "trio"),
        default=os.environ.get("CONFORMANCE_BACKEND", "asyncio"),
        help="event loop to run on (default: $CONFORMANCE_BACKEND, else asyncio)",
    )
    parser.add_argument(
        "--scenario",
        default=os.environ.get("MCP_CONFORMANCE_SCENARIO"),
        help="scenario name (default: $MCP_CONFORMANCE_SCENARIO, set by the suite)",
    )
    parser.add_argument("server_url", help="the MCP endpoint (the suite appends it)")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    if not args.scenario:
        parser.error("no scenario: pass --scenario or set MCP_CONFORMANCE_SCENARIO")
    logger.info(
        "scenario %s on %s (protocol %s, mode %s)",
        args.scenario,
        args.backend,
        protocol_version(),
        client_mode(),
    )
    try:
        anyio.run(run, args.scenario, args.server_url, backend=args.backend)
    except Exception:  # the suite reads the exit status and keeps stderr for its report
        logger.exception("scenario %s failed", args.scenario)
        return 1
    logger.info("scenario %s done", args.scenario)
    return 0


if __name__ == "__main__":
    sys.exit(main())
