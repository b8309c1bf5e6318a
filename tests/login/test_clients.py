"""How a reused registration is checked before the browser opens (_login._clients).

The authorization endpoint is scripted with ``httpx2.MockTransport``: what it answers decides
whether the stored registration is kept, replaced or reported.
"""

from __future__ import annotations

import json

import httpx2
import pytest

import oauth_loopback as ol
from oauth_loopback._login._client import Client
from oauth_loopback._login._clients import choose_client, server_accepts
from oauth_loopback._login._metadata import Metadata
from oauth_loopback.testing import AuthorizationServer, follow_redirects

pytestmark = pytest.mark.anyio

ISSUER = "https://as.example"
REDIRECT = "http://127.0.0.1:50001/callback"
STORED = ol.ClientRegistration(
    issuer=ISSUER,
    client_id="stored-client",
    obtained="dynamic",
    redirect_uris=("http://127.0.0.1:40000/callback",),
)


def _metadata(*, registration: bool = True) -> Metadata:
    document: dict[str, object] = {
        "issuer": ISSUER,
        "authorization_endpoint": f"{ISSUER}/authorize",
        "token_endpoint": f"{ISSUER}/token",
    }
    if registration:
        document["registration_endpoint"] = f"{ISSUER}/register"
    return Metadata("test", document)


def _transport(
    status: int, body: bytes = b"", seen: list[httpx2.Request] | None = None
) -> httpx2.MockTransport:
    def handle(request: httpx2.Request) -> httpx2.Response:
        if seen is not None:
            seen.append(request)
        if request.url.path == "/register":
            reply = {**json.loads(request.content), "client_id": "new-client"}
            return httpx2.Response(201, json=reply)
        headers = {"Location": "https://as.example/login"} if 300 <= status < 400 else {}
        return httpx2.Response(status, content=body, headers=headers)

    return httpx2.MockTransport(handle)


@pytest.mark.parametrize(
    ("status", "answer"),
    [
        pytest.param(302, "accepted", id="302-to-login"),
        pytest.param(200, "accepted", id="200-login-page"),
        pytest.param(400, "refused", id="400"),
        pytest.param(401, "refused", id="401"),
        pytest.param(404, "refused", id="404"),
        pytest.param(429, "unknown", id="429-rate-limited"),
        pytest.param(500, "unknown", id="500"),
    ],
)
async def test_what_the_authorization_endpoint_says(status: int, answer: str) -> None:
    """Redirects and pages accept; a 4xx refuses; rate limits and server errors tell nothing."""
    seen: list[httpx2.Request] = []
    async with Client(
        issuer=ISSUER, redirect_uri=REDIRECT, scope=None, transport=_transport(status, seen=seen)
    ) as oauth:
        got, _ = await server_accepts(oauth, _metadata(), STORED, None)
    assert got == answer
    (request,) = seen
    params = request.url.params
    assert params["client_id"] == "stored-client"
    assert params["redirect_uri"] == REDIRECT
    assert params["code_challenge_method"] == "S256"  # a throwaway, never exchanged


async def test_a_json_refusal_is_reported_with_its_error() -> None:
    """The reason carries the server's error and description."""
    body = json.dumps(
        {"error": "invalid_request", "error_description": "Unregistered redirect_uri"}
    )
    async with Client(
        issuer=ISSUER, redirect_uri=REDIRECT, scope=None, transport=_transport(400, body.encode())
    ) as oauth:
        answer, reason = await server_accepts(oauth, _metadata(), STORED, None)
    assert answer == "refused"
    assert reason == "HTTP 400 error='invalid_request': Unregistered redirect_uri"


@pytest.mark.parametrize(
    ("status", "client_id"),
    [(302, "stored-client"), (500, "stored-client"), (400, "new-client")],
    ids=["accepted-kept", "unknown-kept", "refused-replaced"],
)
async def test_the_stored_registration_is_kept_unless_refused(status: int, client_id: str) -> None:
    """Only a refusal costs a registration; the step says what happened."""
    steps: list[str] = []
    async with Client(
        issuer=ISSUER, redirect_uri=REDIRECT, scope=None, transport=_transport(status)
    ) as oauth:
        chosen, _ = await choose_client(
            oauth,
            _metadata(),
            REDIRECT,
            issuer=ISSUER,
            app_name="t",
            client_id=None,
            client_secret=None,
            registration=STORED,
            scope=None,
            resource=None,
            on_step=lambda name, detail: steps.append(detail),
        )
    assert chosen.client_id == client_id
    assert ("refused" in steps[0]) is (client_id == "new-client")


async def test_a_preregistered_client_is_never_probed_or_replaced() -> None:
    """A registration the user made by hand is used as it is: no request, no registration."""
    seen: list[httpx2.Request] = []
    mine = ol.ClientRegistration(issuer=ISSUER, client_id="mine", obtained="preregistered")
    async with Client(
        issuer=ISSUER, redirect_uri=REDIRECT, scope=None, transport=_transport(400, seen=seen)
    ) as oauth:
        chosen, _ = await choose_client(
            oauth,
            _metadata(),
            REDIRECT,
            issuer=ISSUER,
            app_name="t",
            client_id=None,
            client_secret=None,
            registration=mine,
            scope=None,
            resource=None,
            on_step=None,
        )
    assert chosen is mine
    assert seen == []


async def test_an_expired_client_secret_registers_again() -> None:
    """A registration whose secret expired (RFC 7591 §3.2.1) is replaced without asking."""
    expired = ol.ClientRegistration(
        issuer=ISSUER,
        client_id="old",
        obtained="dynamic",
        client_secret="s",
        redirect_uris=(REDIRECT,),
        client_secret_expires_at=1.0,
    )
    async with Client(
        issuer=ISSUER, redirect_uri=REDIRECT, scope=None, transport=_transport(302)
    ) as oauth:
        chosen, _ = await choose_client(
            oauth,
            _metadata(),
            REDIRECT,
            issuer=ISSUER,
            app_name="t",
            client_id=None,
            client_secret=None,
            registration=expired,
            scope=None,
            resource=None,
            on_step=None,
        )
    assert chosen.client_id == "new-client"


@pytest.mark.parametrize(
    ("advertised", "works"),
    [
        pytest.param(["client_secret_post"], True, id="post-only-server"),
        pytest.param(None, False, id="nothing-advertised-basic"),
    ],
)
async def test_a_confidential_client_uses_post_where_the_server_takes_only_post(
    advertised: list[str] | None, works: bool
) -> None:
    """A pre-registered client with a secret authenticates with client_secret_basic (RFC 8414
    §2's default), or with client_secret_post when the server's metadata lists post and not
    basic; the embedded server refuses the other method for a client registered with one."""
    async with AuthorizationServer() as server:
        client_id = server.register_client(
            ["http://127.0.0.1/callback"], token_endpoint_auth_method="client_secret_post"
        )
        secret = server.clients[client_id].client_secret
        metadata = dict(server.metadata)
        metadata.pop("token_endpoint_auth_methods_supported", None)
        if advertised is not None:
            metadata["token_endpoint_auth_methods_supported"] = advertised
        login = ol.authorize(
            server.issuer,
            client_id=client_id,
            client_secret=secret,
            metadata=metadata,
            open_browser=follow_redirects,
        )
        if works:
            token = await login
            assert token.client is not None
            assert token.client.token_endpoint_auth_method == "client_secret_post"
        else:
            with pytest.raises(ol.TokenError, match="invalid_client"):
                await login
