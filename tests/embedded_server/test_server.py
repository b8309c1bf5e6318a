"""The embedded authorization server (oauth_loopback.testing) against real loopback sockets.

Authorization URLs are built by hand here (with authlib's PKCE helpers), so these tests check
the server on its own, independently of ``authorize()``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from urllib.parse import parse_qs, urlencode, urlsplit

import anyio
import httpx2
import pytest
from authlib.common.security import generate_token
from authlib.oauth2 import rfc8414, rfc9207
from authlib.oauth2.rfc7636 import create_s256_code_challenge

import oauth_loopback as ol
from oauth_loopback.testing import AuthorizationServer, follow_redirects
from tests import _http

pytestmark = pytest.mark.anyio


@pytest.fixture
async def http() -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(trust_env=False, follow_redirects=False, timeout=10) as client:
        yield client


def auth_url(
    server: AuthorizationServer,
    client_id: str,
    redirect_uri: str,
    state: str,
    verifier: str | None,
    **extra: str,
) -> str:
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "state": state,
    }
    if verifier is not None:
        params["code_challenge"] = create_s256_code_challenge(verifier)
        params["code_challenge_method"] = "S256"
    params.update(extra)
    return f"{server.authorization_endpoint}?{urlencode(params)}"


async def login(
    server: AuthorizationServer,
    receiver: ol.CallbackReceiver,
    client_id: str,
    verifier: str,
    **extra: str,
) -> ol.AuthorizationResponse:
    """Run the browser part of a login with follow_redirects and return the response."""
    pending = receiver.expect()
    await follow_redirects(
        auth_url(server, client_id, receiver.redirect_uri, pending.state, verifier, **extra)
    )
    return await pending.wait(timeout=5)


async def exchange(
    http: httpx2.AsyncClient,
    server: AuthorizationServer,
    client_id: str,
    code: str,
    redirect_uri: str,
    verifier: str | None,
) -> httpx2.Response:
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri,
        "client_id": client_id,
    }
    if verifier is not None:
        data["code_verifier"] = verifier
    return await http.post(server.token_endpoint, data=data)


# --- metadata --------------------------------------------------------------------------------


async def test_metadata_document_has_rfc8414_fields(http: httpx2.AsyncClient) -> None:
    """The metadata served is RFC 8414-valid, S256-only, and advertises iss and registration."""
    async with AuthorizationServer(scopes_supported=["read", "write"]) as server:
        reply = await http.get(server.metadata_url)
        assert reply.status_code == 200
        assert reply.headers["content-type"] == "application/json"
        doc = reply.json()
        assert doc == dict(server.metadata)
        assert doc["issuer"] == server.issuer == f"http://127.0.0.1:{server.port}"
        assert server.metadata_url == f"{server.issuer}/.well-known/oauth-authorization-server"
        assert doc["authorization_endpoint"] == f"{server.issuer}/authorize"
        assert doc["token_endpoint"] == f"{server.issuer}/token"
        assert doc["registration_endpoint"] == f"{server.issuer}/register"
        assert doc["code_challenge_methods_supported"] == ["S256"]
        assert doc["response_types_supported"] == ["code"]
        assert doc["grant_types_supported"] == [
            "authorization_code",
            "refresh_token",
            "urn:ietf:params:oauth:grant-type:device_code",  # RFC 8628, on by default
        ]
        assert doc["device_authorization_endpoint"] == f"{server.issuer}/device_authorization"
        assert "none" in doc["token_endpoint_auth_methods_supported"]
        assert doc["scopes_supported"] == ["read", "write"]
        assert doc["authorization_response_iss_parameter_supported"] is True
        rfc8414.AuthorizationServerMetadata(doc).validate(
            metadata_classes=[rfc9207.AuthorizationServerMetadata]
        )


async def test_path_prefix_serves_path_aware_well_known(http: httpx2.AsyncClient) -> None:
    """With a path in the issuer, metadata lives at /.well-known/oauth-authorization-server/<path>."""
    async with AuthorizationServer(path_prefix="/tenant1/") as server:
        assert server.issuer == f"http://127.0.0.1:{server.port}/tenant1"
        assert server.metadata_url == (
            f"http://127.0.0.1:{server.port}/.well-known/oauth-authorization-server/tenant1"
        )
        reply = await http.get(server.metadata_url)
        assert reply.status_code == 200
        assert reply.json()["issuer"] == server.issuer
        assert reply.json()["token_endpoint"] == f"{server.issuer}/token"
        # RFC 8414 §3.1: the well-known part goes first; the appended form is not served.
        wrong = await http.get(f"{server.issuer}/.well-known/oauth-authorization-server")
        assert wrong.status_code == 404


async def test_switches_change_the_metadata(http: httpx2.AsyncClient) -> None:
    """registration=False and issue_iss=False drop those entries and the register endpoint."""
    async with AuthorizationServer(registration=False, issue_iss=False) as server:
        assert "registration_endpoint" not in server.metadata
        assert "authorization_response_iss_parameter_supported" not in server.metadata
        assert server.registration_endpoint is None
        reply = await http.post(f"{server.issuer}/register", json={"redirect_uris": []})
        assert reply.status_code == 404


# --- dynamic registration -------------------------------------------------------------------


async def test_dynamic_registration_of_a_native_public_client(http: httpx2.AsyncClient) -> None:
    """RFC 7591: a native public client registers and gets a client_id but no secret."""
    async with AuthorizationServer() as server:
        endpoint = server.metadata["registration_endpoint"]
        reply = await http.post(
            endpoint,
            json={
                "redirect_uris": ["http://127.0.0.1/callback"],
                "application_type": "native",
                "token_endpoint_auth_method": "none",
                "grant_types": ["authorization_code", "refresh_token"],
                "client_name": "tests",
            },
        )
        assert reply.status_code == 201
        body = reply.json()
        assert "client_secret" not in body
        assert body["redirect_uris"] == ["http://127.0.0.1/callback"]
        assert body["application_type"] == "native"
        assert "id_token_signed_response_alg" not in body  # no OpenID defaults leak in
        client = server.clients[body["client_id"]]
        assert client.dynamic
        assert client.token_endpoint_auth_method == "none"
        assert client.client_secret is None
        assert client.grant_types == ("authorization_code", "refresh_token")


async def test_dynamic_registration_of_a_confidential_client(http: httpx2.AsyncClient) -> None:
    """A client registering with client_secret_post gets a secret, which the server keeps."""
    async with AuthorizationServer() as server:
        reply = await http.post(
            server.metadata["registration_endpoint"],
            json={
                "redirect_uris": ["http://127.0.0.1:8765/cb"],
                "token_endpoint_auth_method": "client_secret_post",
            },
        )
        assert reply.status_code == 201
        body = reply.json()
        assert body["client_secret"] == server.clients[body["client_id"]].client_secret


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param({"redirect_uris": ["https://app.example/cb"]}, id="not-loopback"),
        pytest.param({"redirect_uris": []}, id="empty"),
        pytest.param({"redirect_uris": ["http://127.0.0.1/cb#frag"]}, id="fragment"),
    ],
)
async def test_dynamic_registration_refuses_non_loopback_redirects(
    http: httpx2.AsyncClient, payload: dict[str, object]
) -> None:
    """Registration refuses redirect URIs other than loopback http, with invalid_redirect_uri."""
    async with AuthorizationServer() as server:
        reply = await http.post(server.metadata["registration_endpoint"], json=payload)
        assert reply.status_code == 400
        assert reply.json()["error"] == "invalid_redirect_uri"
        assert server.clients == {}


async def test_dynamic_registration_refuses_a_non_json_body(http: httpx2.AsyncClient) -> None:
    """A registration request that is not a JSON object gets an RFC 7591 error, not a crash."""
    async with AuthorizationServer() as server:
        reply = await http.post(server.metadata["registration_endpoint"], content=b"[1, 2")
        assert reply.status_code == 400
        assert reply.json()["error"] == "invalid_request"


# --- the authorization code grant with PKCE --------------------------------------------------


async def test_code_and_pkce_round_trip_with_a_live_receiver(http: httpx2.AsyncClient) -> None:
    """A login delivers a code with state and iss to the receiver, and the code buys a token."""
    async with AuthorizationServer() as server, ol.open_receiver() as receiver:
        client_id = server.register_client(["http://127.0.0.1/callback"])
        verifier = generate_token(48)
        pending = receiver.expect(issuer=server.issuer)
        final = await follow_redirects(
            auth_url(server, client_id, receiver.redirect_uri, pending.state, verifier)
        )
        assert final.startswith(receiver.redirect_uri + "?")
        assert pending.state not in final  # follow_redirects redacts code and state
        response = await pending.wait(timeout=5)
        assert response.iss == server.issuer
        reply = await exchange(
            http, server, client_id, response.code, receiver.redirect_uri, verifier
        )
        assert reply.status_code == 200
        assert reply.headers["cache-control"] == "no-store"  # RFC 6749 §5.1
        token = reply.json()
        assert token["token_type"] == "Bearer"
        assert token["expires_in"] == 3600
        assert token["access_token"]
        assert token["refresh_token"]
        [issued] = server.issued_tokens
        assert issued.access_token == token["access_token"]
        assert issued.client_id == client_id
        assert issued.grant_type == "authorization_code"
        assert server.requests == [("GET", "/authorize"), ("POST", "/token")]


async def test_scope_and_resource_are_recorded(http: httpx2.AsyncClient) -> None:
    """Requested scope comes back in the token; RFC 8707 resource is recorded on it."""
    async with AuthorizationServer(scopes_supported=["read", "write"], token_lifetime=60) as server:
        async with ol.open_receiver() as receiver:
            client_id = server.register_client(["http://127.0.0.1/callback"])
            verifier = generate_token(48)
            response = await login(
                server, receiver, client_id, verifier, scope="read", resource="https://mcp.example/"
            )
            reply = await exchange(
                http, server, client_id, response.code, receiver.redirect_uri, verifier
            )
        assert reply.json()["scope"] == "read"
        assert reply.json()["expires_in"] == 60
        [issued] = server.issued_tokens
        assert issued.scope == "read"
        assert issued.resource == ("https://mcp.example/",)


async def test_unsupported_scope_is_an_invalid_scope_error() -> None:
    """A scope outside scopes_supported comes back to the receiver as invalid_scope."""
    async with AuthorizationServer(scopes_supported=["read"]) as server:
        async with ol.open_receiver() as receiver:
            client_id = server.register_client(["http://127.0.0.1/callback"])
            with pytest.raises(ol.AuthorizationError) as caught:
                await login(server, receiver, client_id, generate_token(48), scope="admin")
        assert caught.value.error == "invalid_scope"


@pytest.mark.parametrize(
    "pkce",
    [
        pytest.param({}, id="missing"),
        pytest.param({"code_challenge": "x" * 43, "code_challenge_method": "plain"}, id="plain"),
        pytest.param({"code_challenge": "x" * 43}, id="no-method"),
    ],
)
async def test_authorization_without_s256_pkce_is_refused(pkce: dict[str, str]) -> None:
    """No PKCE, or PKCE other than S256, is answered with error=invalid_request to the client."""
    async with AuthorizationServer() as server, ol.open_receiver() as receiver:
        client_id = server.register_client(["http://127.0.0.1/callback"])
        pending = receiver.expect(issuer=server.issuer)
        await follow_redirects(
            auth_url(server, client_id, receiver.redirect_uri, pending.state, None, **pkce)
        )
        with pytest.raises(ol.AuthorizationError) as caught:
            await pending.wait(timeout=5)
        assert caught.value.error == "invalid_request"
        assert "S256" in (caught.value.description or "")
        assert caught.value.iss == server.issuer  # RFC 9207: error responses carry iss too
        assert server.issued_tokens == []


async def test_wrong_verifier_is_invalid_grant(http: httpx2.AsyncClient) -> None:
    """A token request whose code_verifier does not match the challenge gets invalid_grant."""
    async with AuthorizationServer() as server, ol.open_receiver() as receiver:
        client_id = server.register_client(["http://127.0.0.1/callback"])
        response = await login(server, receiver, client_id, generate_token(48))
        reply = await exchange(
            http, server, client_id, response.code, receiver.redirect_uri, generate_token(48)
        )
        assert reply.status_code == 400
        assert reply.json()["error"] == "invalid_grant"
        missing = await exchange(
            http, server, client_id, response.code, receiver.redirect_uri, None
        )
        assert missing.status_code == 400
        assert missing.json()["error"] == "invalid_request"
        assert server.issued_tokens == []


async def test_token_request_must_repeat_the_redirect_uri(http: httpx2.AsyncClient) -> None:
    """RFC 6749 §4.1.3: the token request's redirect_uri must equal the authorization one."""
    async with AuthorizationServer() as server, ol.open_receiver() as receiver:
        client_id = server.register_client(["http://127.0.0.1/callback"])
        verifier = generate_token(48)
        response = await login(server, receiver, client_id, verifier)
        reply = await exchange(
            http, server, client_id, response.code, "http://127.0.0.1/callback", verifier
        )
        assert reply.status_code == 400
        assert reply.json()["error"] == "invalid_grant"


async def test_a_code_used_twice_is_refused_and_its_tokens_revoked(
    http: httpx2.AsyncClient,
) -> None:
    """RFC 6749 §4.1.2: a second use of a code fails and revokes the tokens it produced."""
    async with AuthorizationServer() as server, ol.open_receiver() as receiver:
        client_id = server.register_client(["http://127.0.0.1/callback"])
        verifier = generate_token(48)
        response = await login(server, receiver, client_id, verifier)
        first = await exchange(
            http, server, client_id, response.code, receiver.redirect_uri, verifier
        )
        assert first.status_code == 200
        second = await exchange(
            http, server, client_id, response.code, receiver.redirect_uri, verifier
        )
        assert second.status_code == 400
        assert second.json()["error"] == "invalid_grant"
        assert [t.revoked for t in server.issued_tokens] == [True]


# --- redirect URI matching (RFC 8252 §7.3) ---------------------------------------------------


async def test_loopback_redirect_matches_on_any_port() -> None:
    """A client registered without a port logs in from a receiver on an ephemeral port."""
    async with AuthorizationServer() as server, ol.open_receiver() as receiver:
        client_id = server.register_client(["http://127.0.0.1:1/callback"])
        response = await login(server, receiver, client_id, generate_token(48))
        assert response.code


@pytest.mark.parametrize(
    ("registered", "exact"),
    [
        pytest.param("http://127.0.0.1/callback", True, id="exact-match-needs-the-port"),
        pytest.param("http://127.0.0.1/other", False, id="path-differs"),
        pytest.param("http://[::1]/callback", False, id="host-differs"),
    ],
)
async def test_mismatched_redirect_is_refused_without_redirecting(
    http: httpx2.AsyncClient, registered: str, exact: bool
) -> None:
    """An unregistered redirect URI gets a 400 page from the server and is never redirected to."""
    async with (
        AuthorizationServer(exact_redirect_match=exact) as server,
        ol.open_receiver() as receiver,
    ):
        client_id = server.register_client([registered])
        pending = receiver.expect()
        url = auth_url(server, client_id, receiver.redirect_uri, pending.state, generate_token(48))
        reply = await http.get(url)
        assert reply.status_code == 400
        assert "location" not in reply.headers
        assert "not supported by client" in reply.text
        assert reply.headers["content-type"].startswith("text/html")
        assert not pending.done


async def test_exact_match_accepts_the_identical_uri() -> None:
    """With exact_redirect_match=True, registering the very URI (with its port) works."""
    async with AuthorizationServer(exact_redirect_match=True) as server:
        async with ol.open_receiver() as receiver:
            client_id = server.register_client([receiver.redirect_uri])
            response = await login(server, receiver, client_id, generate_token(48))
            assert response.code


async def test_unknown_client_gets_a_page_not_a_redirect(http: httpx2.AsyncClient) -> None:
    """RFC 6749 §4.1.2.1: an unknown client_id is shown an error page, nothing is redirected."""
    async with AuthorizationServer() as server:
        url = auth_url(server, "nobody", "http://127.0.0.1:9/cb", "s", generate_token(48))
        reply = await http.get(url)
        assert reply.status_code == 400
        assert "location" not in reply.headers
        assert "invalid_client" in reply.text


# --- deny, iss, token errors -----------------------------------------------------------------


async def test_deny_sends_access_denied_with_iss() -> None:
    """deny=True answers every request with error=access_denied, and iss (RFC 9207)."""
    async with AuthorizationServer(deny=True) as server, ol.open_receiver() as receiver:
        client_id = server.register_client(["http://127.0.0.1/callback"])
        pending = receiver.expect(issuer=server.issuer)
        await follow_redirects(
            auth_url(server, client_id, receiver.redirect_uri, pending.state, generate_token(48))
        )
        with pytest.raises(ol.AuthorizationDenied) as caught:
            await pending.wait(timeout=5)
        assert caught.value.error == "access_denied"
        assert caught.value.iss == server.issuer


async def test_issue_iss_false_sends_no_iss() -> None:
    """issue_iss=False leaves iss out of the authorization response."""
    async with AuthorizationServer(issue_iss=False) as server, ol.open_receiver() as receiver:
        client_id = server.register_client(["http://127.0.0.1/callback"])
        response = await login(server, receiver, client_id, generate_token(48))
        assert response.iss is None
        assert "iss" not in response.params


async def test_wrong_iss_trips_the_receivers_issuer_check() -> None:
    """wrong_iss=True sends another issuer, so expect(issuer=...) raises IssuerMismatch."""
    async with AuthorizationServer(wrong_iss=True) as server, ol.open_receiver() as receiver:
        assert server.metadata["authorization_response_iss_parameter_supported"] is True
        client_id = server.register_client(["http://127.0.0.1/callback"])
        pending = receiver.expect(issuer=server.issuer)
        await follow_redirects(
            auth_url(server, client_id, receiver.redirect_uri, pending.state, generate_token(48))
        )
        with pytest.raises(ol.IssuerMismatch):
            await pending.wait(timeout=5)


@pytest.mark.parametrize(
    ("error", "status"),
    [
        pytest.param("invalid_grant", 400, id="invalid_grant"),
        pytest.param("invalid_client", 401, id="invalid_client"),
    ],
)
async def test_token_error_switch(http: httpx2.AsyncClient, error: str, status: int) -> None:
    """token_error= makes the token endpoint answer that RFC 6749 §5.2 error."""
    async with AuthorizationServer(token_error=error) as server, ol.open_receiver() as receiver:
        client_id = server.register_client(["http://127.0.0.1/callback"])
        verifier = generate_token(48)
        response = await login(server, receiver, client_id, verifier)
        reply = await exchange(
            http, server, client_id, response.code, receiver.redirect_uri, verifier
        )
        assert reply.status_code == status
        assert reply.json()["error"] == error
        assert server.issued_tokens == []


# --- refresh and client authentication -------------------------------------------------------


async def test_refresh_grant_rotates_the_refresh_token(http: httpx2.AsyncClient) -> None:
    """A refresh token buys a new token pair once; the old refresh token is then refused."""
    async with AuthorizationServer() as server, ol.open_receiver() as receiver:
        client_id = server.register_client(["http://127.0.0.1/callback"])
        verifier = generate_token(48)
        response = await login(server, receiver, client_id, verifier)
        first = (
            await exchange(http, server, client_id, response.code, receiver.redirect_uri, verifier)
        ).json()
        data = {"grant_type": "refresh_token", "client_id": client_id}
        refreshed = await http.post(
            server.token_endpoint, data={**data, "refresh_token": first["refresh_token"]}
        )
        assert refreshed.status_code == 200
        second = refreshed.json()
        assert second["access_token"] != first["access_token"]
        assert second["refresh_token"] != first["refresh_token"]
        again = await http.post(
            server.token_endpoint, data={**data, "refresh_token": first["refresh_token"]}
        )
        assert again.status_code == 400
        assert again.json()["error"] == "invalid_grant"
        assert [(t.grant_type, t.revoked) for t in server.issued_tokens] == [
            ("authorization_code", True),
            ("refresh_token", False),
        ]


@pytest.mark.parametrize("method", ["client_secret_post", "client_secret_basic"])
async def test_confidential_client_authenticates_with_its_secret(
    http: httpx2.AsyncClient, method: str
) -> None:
    """client_secret_post and client_secret_basic clients must send their secret, and can."""
    async with AuthorizationServer() as server, ol.open_receiver() as receiver:
        client_id = server.register_client(
            ["http://127.0.0.1/callback"], token_endpoint_auth_method=method
        )
        secret = server.clients[client_id].client_secret
        assert secret
        verifier = generate_token(48)
        response = await login(server, receiver, client_id, verifier)
        data = {
            "grant_type": "authorization_code",
            "code": response.code,
            "redirect_uri": receiver.redirect_uri,
            "code_verifier": verifier,
        }
        unauthenticated = await http.post(
            server.token_endpoint, data={**data, "client_id": client_id}
        )
        assert unauthenticated.json()["error"] == "invalid_client"
        if method == "client_secret_post":
            reply = await http.post(
                server.token_endpoint,
                data={**data, "client_id": client_id, "client_secret": secret},
            )
        else:
            basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
            reply = await http.post(
                server.token_endpoint, data=data, headers={"Authorization": f"Basic {basic}"}
            )
        assert reply.status_code == 200, reply.text
        assert reply.json()["access_token"]


# --- the consent page ------------------------------------------------------------------------


async def _consent(
    http: httpx2.AsyncClient, server: AuthorizationServer, receiver: ol.CallbackReceiver, name: str
) -> tuple[ol.PendingCallback, str, httpx2.Response]:
    """Register a client, open the consent page; return the login, its ticket and the page."""
    client_id = server.register_client(["http://127.0.0.1/callback"], client_name=name)
    pending = receiver.expect()
    url = auth_url(server, client_id, receiver.redirect_uri, pending.state, generate_token(48))
    page = await http.get(url)
    assert page.status_code == 200
    ticket = page.text.split('name="ticket" value="', 1)[1].split('"', 1)[0]
    return pending, ticket, page


async def test_consent_page_escapes_and_approves(http: httpx2.AsyncClient) -> None:
    """auto_approve=False serves an escaped, unframeable form; Approve redirects with a code."""
    async with AuthorizationServer(auto_approve=False) as server, ol.open_receiver() as receiver:
        pending, ticket, page = await _consent(http, server, receiver, "<script>alert(1)</script>")
        assert "<script>" not in page.text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
        assert page.headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
        assert page.headers["cache-control"] == "no-store"
        reply = await http.post(
            server.authorization_endpoint, data={"ticket": ticket, "decision": "approve"}
        )
        assert reply.status_code == 303
        location = reply.headers["location"]
        assert location.startswith(receiver.redirect_uri + "?")
        query = parse_qs(urlsplit(location).query)
        assert query["state"] == [pending.state]
        assert query["code"]
        assert not pending.done  # nothing delivered until the browser follows the redirect
        # The ticket is single-use.
        replay = await http.post(
            server.authorization_endpoint, data={"ticket": ticket, "decision": "approve"}
        )
        assert replay.status_code == 400
        assert "no longer valid" in replay.text


async def test_consent_page_deny_redirects_access_denied(http: httpx2.AsyncClient) -> None:
    """Deny on the consent page redirects with error=access_denied, the state and iss."""
    async with AuthorizationServer(auto_approve=False) as server, ol.open_receiver() as receiver:
        pending, ticket, _ = await _consent(http, server, receiver, "app")
        reply = await http.post(
            server.authorization_endpoint, data={"ticket": ticket, "decision": "deny"}
        )
        assert reply.status_code == 303
        query = parse_qs(urlsplit(reply.headers["location"]).query)
        assert query["error"] == ["access_denied"]
        assert query["state"] == [pending.state]
        assert query["iss"] == [server.issuer]
        assert "code" not in query


@pytest.mark.parametrize(
    ("ticket", "decision", "headers", "status"),
    [
        pytest.param(None, "approve", {}, 400, id="no-ticket"),
        pytest.param("forged", "approve", {}, 400, id="forged-ticket"),
        pytest.param("real", "maybe", {}, 400, id="bad-decision"),
        pytest.param("real", "approve", {"Origin": "https://evil.example"}, 403, id="cross-site"),
        pytest.param("real", "approve", {"Origin": "null"}, 403, id="opaque-origin"),
    ],
)
async def test_consent_post_is_csrf_safe(
    http: httpx2.AsyncClient,
    ticket: str | None,
    decision: str,
    headers: dict[str, str],
    status: int,
) -> None:
    """A decision without this request's ticket, or from another origin, is refused."""
    async with AuthorizationServer(auto_approve=False) as server, ol.open_receiver() as receiver:
        pending, real, _ = await _consent(http, server, receiver, "app")
        data = {"decision": decision}
        if ticket is not None:
            data["ticket"] = real if ticket == "real" else ticket
        reply = await http.post(server.authorization_endpoint, data=data, headers=headers)
        assert reply.status_code == status
        assert "location" not in reply.headers
        # The real ticket still works afterwards: a refused post consumed nothing.
        ok = await http.post(
            server.authorization_endpoint, data={"ticket": real, "decision": "approve"}
        )
        assert ok.status_code == 303
        assert not pending.done


# --- HTTP hygiene ----------------------------------------------------------------------------


async def test_foreign_host_header_is_refused() -> None:
    """A request naming another Host (DNS rebinding) gets 421 and is not handled."""
    async with AuthorizationServer() as server:
        reply = await _http.get(
            server.port,
            "/.well-known/oauth-authorization-server",
            host_header=f"attacker.example:{server.port}",
        )
        assert reply.status == 421


async def test_oversized_requests_are_refused(http: httpx2.AsyncClient) -> None:
    """A body over 64 KiB gets 413 and a head over 8 KiB gets 431; the server keeps serving."""
    async with AuthorizationServer() as server:
        big = await http.post(server.token_endpoint, content=b"x" * (65 * 1024))
        assert big.status_code == 413
        reply = await _http.get(server.port, "/token?" + "a" * 9000)
        assert reply.status == 431
        ok = await http.get(server.metadata_url)
        assert ok.status_code == 200


async def test_malformed_request_gets_400_and_server_keeps_serving(
    http: httpx2.AsyncClient,
) -> None:
    """Bytes that are not HTTP get a 400 answer; the next request is served normally."""
    async with AuthorizationServer() as server:
        reply = await _http.raw(server.port, b"NOT HTTP AT ALL\r\n\r\n")
        assert reply.startswith(b"HTTP/1.1 400 ")
        latin = await _http.raw(server.port, b"GET /\xe9 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert latin.startswith(b"HTTP/1.1 400 ")
        assert (await http.get(server.metadata_url)).status_code == 200


async def test_connection_cap_closes_the_idlest(http: httpx2.AsyncClient) -> None:
    """Past 32 open connections the idlest is closed, and a new request is still served."""
    async with AuthorizationServer() as server, AsyncExitStack() as stack:
        streams = [
            await stack.enter_async_context(await anyio.connect_tcp("127.0.0.1", server.port))
            for _ in range(40)
        ]
        with anyio.fail_after(5):
            assert (await http.get(server.metadata_url)).status_code == 200
            with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
                await streams[0].receive()  # the server closed the oldest idle one


async def test_wrong_method_and_unknown_path(http: httpx2.AsyncClient) -> None:
    """GET on the token endpoint is 405 with Allow; an unknown path is 404."""
    async with AuthorizationServer() as server:
        reply = await http.get(server.token_endpoint)
        assert reply.status_code == 405
        assert reply.headers["allow"] == "POST"
        assert (await http.get(f"{server.issuer}/favicon.ico")).status_code == 404


async def test_request_log_never_holds_a_query() -> None:
    """server.requests records method and path only, so codes and states never show up."""
    async with AuthorizationServer() as server, ol.open_receiver() as receiver:
        client_id = server.register_client(["http://127.0.0.1/callback"])
        await login(server, receiver, client_id, generate_token(48))
        assert server.requests == [("GET", "/authorize")]
        assert all("?" not in path for _, path in server.requests)


async def test_connections_are_kept_alive(http: httpx2.AsyncClient) -> None:
    """Several requests on one client reuse the keep-alive connection and all succeed."""
    async with AuthorizationServer() as server:
        for _ in range(3):
            assert (await http.get(server.metadata_url)).status_code == 200
        assert len(server.requests) == 3


# --- follow_redirects --------------------------------------------------------------------------


async def test_follow_redirects_refuses_non_loopback_urls() -> None:
    """follow_redirects never requests anything but a loopback http URL."""
    with pytest.raises(ol.OAuthLoopbackError, match="only visits loopback"):
        await follow_redirects("https://accounts.example/authorize?code=secret")


async def test_follow_redirects_reports_an_unreachable_hop() -> None:
    """A redirect to a closed loopback port fails with a clear error, the code redacted."""
    async with AuthorizationServer() as server:
        client_id = server.register_client(["http://127.0.0.1/callback"])
        url = auth_url(server, client_id, "http://127.0.0.1:9/callback", "st", generate_token(48))
        with pytest.raises(ol.OAuthLoopbackError, match="could not load") as caught:
            await follow_redirects(url)
        assert "code=REDACTED" in str(caught.value)


async def test_follow_redirects_gives_up_after_max_hops() -> None:
    """max_hops bounds the redirect chain."""
    async with AuthorizationServer() as server, ol.open_receiver() as receiver:
        client_id = server.register_client(["http://127.0.0.1/callback"])
        pending = receiver.expect()
        url = auth_url(server, client_id, receiver.redirect_uri, pending.state, generate_token(48))
        with pytest.raises(ol.OAuthLoopbackError, match="gave up after 0 redirects"):
            await follow_redirects(url, max_hops=0)
        assert not pending.done


async def test_follow_redirects_cannot_click_a_consent_page() -> None:
    """Against auto_approve=False, follow_redirects raises instead of leaving the login hanging."""
    async with AuthorizationServer(auto_approve=False) as server, ol.open_receiver() as receiver:
        client_id = server.register_client(["http://127.0.0.1/callback"])
        pending = receiver.expect()
        url = auth_url(server, client_id, receiver.redirect_uri, pending.state, generate_token(48))
        with pytest.raises(ol.OAuthLoopbackError, match="auto_approve=True"):
            await follow_redirects(url)


async def test_head_gets_headers_without_a_body(http: httpx2.AsyncClient) -> None:
    """HEAD on the metadata answers GET's headers with no body, and the connection stays usable."""
    async with AuthorizationServer() as server:
        head = await http.head(server.metadata_url)
        assert head.status_code == 200
        assert head.content == b""
        assert int(head.headers["content-length"]) > 0
        assert (await http.get(server.metadata_url)).json()["issuer"] == server.issuer


# --- lifecycle and arguments -------------------------------------------------------------------


async def test_servers_get_distinct_ports_and_close_cleanly() -> None:
    """Two servers run side by side on different ports; after the block the port is closed."""
    async with AuthorizationServer() as one, AuthorizationServer() as two:
        assert one.port != two.port
        port = one.port
    with pytest.raises(OSError, match="connection attempts failed"):  # anyio: refused
        await anyio.connect_tcp("127.0.0.1", port)


async def test_body_exception_is_not_wrapped() -> None:
    """An exception raised in the block comes out as itself, not inside an ExceptionGroup."""
    with pytest.raises(KeyError):
        async with AuthorizationServer():
            raise KeyError("mine")


def test_not_running_server_says_how_to_start_it() -> None:
    """Reading the issuer or registering before 'async with' explains what to do."""
    server = AuthorizationServer()
    with pytest.raises(RuntimeError, match="async with AuthorizationServer"):
        _ = server.issuer
    with pytest.raises(RuntimeError, match="async with AuthorizationServer"):
        server.register_client(["http://127.0.0.1/cb"])


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        pytest.param({"token_error": "nope"}, ValueError, "section 5.2", id="token-error"),
        pytest.param({"token_lifetime": 0}, ValueError, "positive", id="lifetime"),
        pytest.param({"path_prefix": "tenant"}, ValueError, "absolute path", id="relative"),
        pytest.param({"path_prefix": "/a/../b"}, ValueError, "dot segments", id="dots"),
        pytest.param({"scopes_supported": "read"}, TypeError, "list of scopes", id="scopes"),
    ],
)
def test_bad_arguments_are_refused(
    kwargs: dict[str, object], error: type[Exception], match: str
) -> None:
    """Invalid constructor arguments raise at once with a message naming the fix."""
    with pytest.raises(error, match=match):
        AuthorizationServer(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("uris", "kwargs", "match"),
    [
        pytest.param(["https://app.example/cb"], {}, "loopback http", id="not-loopback"),
        pytest.param([], {}, "loopback http", id="empty"),
        pytest.param(
            ["http://127.0.0.1/cb"], {"client_secret": "s"}, "no secret", id="public-secret"
        ),
        pytest.param(
            ["http://127.0.0.1/cb"],
            {"token_endpoint_auth_method": "private_key_jwt"},
            "one of",
            id="method",
        ),
    ],
)
async def test_register_client_validates(
    uris: list[str], kwargs: dict[str, str], match: str
) -> None:
    """register_client refuses non-loopback URIs, secrets for public clients, unknown methods."""
    async with AuthorizationServer() as server:
        with pytest.raises(ValueError, match=match):
            server.register_client(uris, **kwargs)
        assert server.clients == {}


async def test_metadata_json_round_trips(http: httpx2.AsyncClient) -> None:
    """The metadata mapping is read-only and JSON-serialisable as served."""
    async with AuthorizationServer() as server:
        with pytest.raises(TypeError):
            server.metadata["issuer"] = "x"  # type: ignore[index]
        assert (
            json.loads(json.dumps(dict(server.metadata)))
            == (await http.get(server.metadata_url)).json()
        )


async def test_debug_logs_carry_no_issued_token(caplog: pytest.LogCaptureFixture) -> None:
    """authlib's grants log each token they issue at DEBUG; the embedded server's tokens show
    there redacted, so a test run with DEBUG logging leaks none (code and refresh grants)."""
    import logging

    caplog.set_level(logging.DEBUG)
    async with AuthorizationServer(token_lifetime=1) as server:
        store = ol.MemoryTokenStore()
        first = await ol.get_token(
            server.issuer, store=store, scope="read", open_browser=follow_redirects
        )
        # Lives 1 s, inside get_token's expiry margin: the second call refreshes it.
        second = await ol.get_token(server.issuer, store=store, scope="read")
        issued = server.issued_tokens
    assert [t.grant_type for t in issued] == ["authorization_code", "refresh_token"]
    assert second.access_token != first.access_token
    text = "\n".join(record.getMessage() for record in caplog.records)
    assert "Issue token" in text  # authlib did log them (else this test proves nothing)
    for token in issued:
        assert token.access_token not in text
        assert token.refresh_token is None or token.refresh_token not in text
