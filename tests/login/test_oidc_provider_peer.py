"""End to end against panva's oidc-provider, an authorization server we did not write.

The peer (tests/peers/oidc-provider, started by tests/_oidc_provider.py) is a real OpenID
Provider: RFC 7591 registration, PKCE S256 required, RFC 8252 loopback redirects on any port
for native clients, RFC 9207 ``iss``, refresh-token rotation, RFC 8707, RFC 7009, RFC 8628,
RFC 9126 and RFC 9449. The first part logs in through the public API only
(``oauth_loopback.*``); the second checks the peer's own switches at the protocol level, so
the tests that rely on them (device grant, PAR, DPoP) stand on something verified.

Skipped without Node.js/npm; under ``CI=true`` they must run.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import anyio
import httpx2
import pytest
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet

import oauth_loopback as ol
from tests._oidc_provider import (
    MIN_NODE_MAJOR,
    HeadlessBrowser,
    Peer,
    PeerPool,
    PeerStartError,
    pinned_version,
    start_peer,
)

# Bounds every login and protocol exchange with the peer.
DEADLINE = 30
LOOPBACK_CALLBACK = "http://127.0.0.1/callback"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
DENIED = "The test account refused (oidc-provider peer started with interactions=deny)."


# --- helpers: plain HTTP to the peer -------------------------------------------------------


def _http() -> httpx2.AsyncClient:
    return httpx2.AsyncClient(trust_env=False, timeout=10, follow_redirects=False)


async def _metadata(peer: Peer) -> dict[str, Any]:
    async with _http() as http:
        response = await http.get(f"{peer.issuer}/.well-known/openid-configuration")
    assert response.status_code == 200, response.text
    document = response.json()
    assert isinstance(document, dict)
    return document


async def _register(peer: Peer, **metadata: object) -> str:
    """Register a public native client (RFC 7591) with a port-less loopback redirect URI."""
    body: dict[str, object] = {
        "application_type": "native",
        "token_endpoint_auth_method": "none",
        "redirect_uris": [LOOPBACK_CALLBACK],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "client_name": "oauth-loopback peer tests",
        **metadata,
    }
    meta = await _metadata(peer)
    async with _http() as http:
        response = await http.post(meta["registration_endpoint"], json=body)
    assert response.status_code == 201, response.text
    client_id = response.json()["client_id"]
    assert isinstance(client_id, str)
    return client_id


async def _token_request(
    peer: Peer, form: Mapping[str, str], headers: Mapping[str, str] | None = None
) -> httpx2.Response:
    meta = await _metadata(peer)
    async with _http() as http:
        response: httpx2.Response = await http.post(
            meta["token_endpoint"], data=dict(form), headers=dict(headers or {})
        )
    return response


async def _jwks(peer: Peer) -> KeySet:
    meta = await _metadata(peer)
    async with _http() as http:
        response = await http.get(meta["jwks_uri"])
    keys: KeySet = KeySet.import_key_set(response.json())
    return keys


async def _login(
    peer: Peer, browser: HeadlessBrowser, **kwargs: Any
) -> tuple[ol.Token, list[tuple[str, str]]]:
    steps: list[tuple[str, str]] = []
    # The front-channel checks below read the authorization URL, so push (RFC 9126) only
    # where a test asks for it; the PAR tests do.
    kwargs.setdefault("par", False)
    # The bearer-token checks below use the token without a proof; the DPoP test binds it.
    kwargs.setdefault("dpop", False)
    with anyio.fail_after(DEADLINE):
        token = await ol.authorize(
            peer.issuer,
            open_browser=browser,
            on_step=lambda name, detail: steps.append((name, detail)),
            timeout=DEADLINE,
            **kwargs,
        )
    return token, steps


def _query(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query)


def _sent_redirect_uri(browser: HeadlessBrowser, login: int = -1) -> str:
    """The redirect_uri of the authorization request the browser was given."""
    (uri,) = _query(browser.pages[login].visited[0])["redirect_uri"]
    return uri


# --- the library against the peer (public API only) ----------------------------------------


@pytest.mark.anyio
async def test_authorize_registers_and_logs_in(oidc_peers: PeerPool) -> None:
    """authorize() registers a native client, logs in with PKCE on an ephemeral port, checks iss."""
    peer = oidc_peers()
    async with HeadlessBrowser() as browser:
        token, steps = await _login(peer, browser, scope="openid")
    (page,) = browser.pages
    request = _query(page.visited[0])
    assert request["code_challenge_method"] == ["S256"]
    assert len(request["code_challenge"][0]) == 43  # RFC 7636 §4.2: BASE64URL(SHA256)
    redirect = urlsplit(_sent_redirect_uri(browser))
    assert (redirect.hostname, redirect.path) == ("127.0.0.1", "/callback")
    assert redirect.port not in (None, 0, ol.LEGACY_CALLBACK_PORT)
    # The browser ended on our receiver with the peer's RFC 9207 iss, which was checked.
    assert page.url.startswith(f"http://127.0.0.1:{redirect.port}/callback?")
    assert page.status == 200
    assert _query(page.url)["iss"] == [peer.issuer]
    assert dict(steps)["callback"] == "authorization code received, iss checked (RFC 9207)"
    assert "registered a native public client" in dict(steps)["registration"]
    assert token.token_type == "Bearer"
    assert token.refresh_token is not None
    # The access token is real: the peer's userinfo endpoint accepts it.
    meta = await _metadata(peer)
    async with _http() as http:
        me = await http.get(
            meta["userinfo_endpoint"], headers={"Authorization": f"Bearer {token.access_token}"}
        )
    assert me.status_code == 200, me.text
    assert me.json()["sub"] == "test-user"


@pytest.mark.anyio
async def test_one_client_logs_in_on_two_ephemeral_ports(oidc_peers: PeerPool) -> None:
    """A client registered once with a port-less loopback URI logs in from any port (RFC 8252 §7.3)."""
    peer = oidc_peers()
    client_id = await _register(peer)
    async with HeadlessBrowser() as first, HeadlessBrowser() as second:
        token1, _ = await _login(peer, first, client_id=client_id, scope="openid")
        token2, steps = await _login(peer, second, client_id=client_id, scope="openid")
    port1 = urlsplit(_sent_redirect_uri(first)).port
    port2 = urlsplit(_sent_redirect_uri(second)).port
    assert port1 != port2
    assert dict(steps)["registration"] == "skipped: using the given client_id"
    assert token1.access_token != token2.access_token
    for browser in (first, second):
        assert _query(browser.pages[-1].url)["iss"] == [peer.issuer]


@pytest.mark.anyio
async def test_openid_scope_returns_a_signed_id_token(oidc_peers: PeerPool) -> None:
    """scope="openid" yields an ID token signed by the peer's JWKS, for this client and user."""
    peer = oidc_peers()
    client_id = await _register(peer)
    async with HeadlessBrowser() as browser:
        token, _ = await _login(peer, browser, client_id=client_id, scope="openid")
    id_token = token.get("id_token")
    assert isinstance(id_token, str)
    decoded = jwt.decode(id_token, await _jwks(peer), algorithms=["RS256"])
    claims = decoded.claims
    assert claims["iss"] == peer.issuer
    assert claims["aud"] == client_id
    assert claims["sub"] == "test-user"
    assert claims["exp"] > time.time() > claims["iat"] - 60
    # authorize() validated the same token itself (OIDC Core §3.1.3.7), nonce included.
    assert token.id_token_claims is not None
    assert token.id_token_claims["sub"] == "test-user"
    assert token.id_token_claims["nonce"] == claims["nonce"]


@pytest.mark.anyio
async def test_resource_indicator_reaches_the_access_token(oidc_peers: PeerPool) -> None:
    """resource= (RFC 8707) gets an access token whose audience is that resource."""
    peer = oidc_peers(accessTokenFormat="jwt")
    resource = "http://127.0.0.1:9/mcp"
    async with HeadlessBrowser() as browser:
        token, _ = await _login(peer, browser, scope="read", resource=resource)
    assert _query(browser.pages[0].visited[0])["resource"] == [resource]
    assert token.scope == "read"
    decoded = jwt.decode(token.access_token, await _jwks(peer), algorithms=["ES256"])
    assert decoded.claims["aud"] == resource
    assert decoded.claims["scope"] == "read"
    assert decoded.claims["iss"] == peer.issuer


@pytest.mark.anyio
async def test_denied_login_raises_authorization_denied(oidc_peers: PeerPool) -> None:
    """A refusal at the peer wakes authorize() with AuthorizationDenied, its fields intact."""
    peer = oidc_peers(interactions="deny")
    async with HeadlessBrowser() as browser:
        with pytest.raises(ol.AuthorizationDenied) as caught:
            await _login(peer, browser, scope="openid")
    assert caught.value.error == "access_denied"
    assert caught.value.description == DENIED
    assert caught.value.iss == peer.issuer


@pytest.mark.anyio
async def test_login_through_the_form_pages(oidc_peers: PeerPool) -> None:
    """With interaction pages, the login completes after Approve is pressed on each."""
    peer = oidc_peers(interactions="form")
    shown: list[str] = []

    async with HeadlessBrowser() as browser:

        async def click_approve(url: str) -> bool:
            page = await browser.open(url)
            while "x-peer-interaction" in page.headers:
                shown.append(page.headers["x-peer-interaction"])
                page = await browser.submit(page, button="approve")
            browser.pages.append(page)
            return True

        with anyio.fail_after(DEADLINE):
            token = await ol.authorize(
                peer.issuer, scope="openid", open_browser=click_approve, timeout=DEADLINE
            )
    assert shown == ["login", "consent"]
    assert token.token_type == "DPoP"  # the peer advertises DPoP: bound by default (RFC 9449)


@pytest.mark.anyio
async def test_login_when_the_server_requires_par(oidc_peers: PeerPool) -> None:
    """Against a server that requires pushed authorization requests, authorize() pushes (RFC 9126)."""
    peer = oidc_peers(requirePar=True)
    async with HeadlessBrowser() as browser:
        token, _ = await _login(peer, browser, scope="openid", par=None)
    assert token.access_token
    assert set(_query(browser.pages[0].visited[0])) == {"client_id", "request_uri"}


# --- the peer's own switches, at the protocol level ----------------------------------------


def test_peer_runs_the_pinned_oidc_provider_on_node_22(oidc_peers: PeerPool) -> None:
    """The peer reports the pinned oidc-provider on Node.js 22+, on loopback."""
    peer = oidc_peers()
    assert peer.oidc_provider == pinned_version()
    assert int(peer.node.lstrip("v").split(".")[0]) >= MIN_NODE_MAJOR
    assert peer.issuer == f"http://127.0.0.1:{peer.port}"


@pytest.mark.anyio
async def test_peer_metadata_advertises_what_the_tests_rely_on(oidc_peers: PeerPool) -> None:
    """The peer's discovery lists registration, S256, RFC 9207, PAR, DPoP, device, revocation."""
    meta = await _metadata(oidc_peers())
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert meta["authorization_response_iss_parameter_supported"] is True
    for key in (
        "registration_endpoint",
        "pushed_authorization_request_endpoint",
        "device_authorization_endpoint",
        "revocation_endpoint",
        "introspection_endpoint",
    ):
        assert meta[key].startswith(f"{meta['issuer']}/"), key
    assert "ES256" in meta["dpop_signing_alg_values_supported"]
    assert meta.get("require_pushed_authorization_requests", False) is False
    required = await _metadata(oidc_peers(requirePar=True))
    assert required["require_pushed_authorization_requests"] is True


@pytest.mark.anyio
async def test_peer_refuses_an_authorization_request_without_pkce(oidc_peers: PeerPool) -> None:
    """PKCE is required: the same request without code_challenge is answered invalid_request."""
    peer = oidc_peers()
    client_id = await _register(peer)
    meta = await _metadata(peer)
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": "http://127.0.0.1:9/callback",
        "scope": "openid",
        "state": secrets.token_urlsafe(16),
    }
    async with _http() as http:
        response = await http.get(f"{meta['authorization_endpoint']}?{urlencode(params)}")
    assert response.status_code == 303
    answer = _query(response.headers["location"])
    assert answer["error"] == ["invalid_request"]
    assert "requires PKCE" in answer["error_description"][0]


@pytest.mark.anyio
async def test_peer_rotates_and_revokes_refresh_tokens(oidc_peers: PeerPool) -> None:
    """A refresh rotates the refresh token (the old one dies); a revoked one is refused (RFC 7009)."""
    peer = oidc_peers()
    client_id = await _register(peer)
    async with HeadlessBrowser() as browser:
        token, _ = await _login(peer, browser, client_id=client_id, scope="openid")
    old = token.refresh_token
    assert old is not None
    refresh = {"grant_type": "refresh_token", "client_id": client_id}
    rotated = await _token_request(peer, {**refresh, "refresh_token": old})
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()["refresh_token"]
    assert new != old
    reused = await _token_request(peer, {**refresh, "refresh_token": old})
    assert reused.status_code == 400
    assert reused.json()["error"] == "invalid_grant"
    meta = await _metadata(peer)
    async with _http() as http:
        revoked = await http.post(
            meta["revocation_endpoint"],
            data={"token": new, "token_type_hint": "refresh_token", "client_id": client_id},
        )
    assert revoked.status_code == 200, revoked.text
    after = await _token_request(peer, {**refresh, "refresh_token": new})
    assert after.status_code == 400
    assert after.json()["error"] == "invalid_grant"


async def _authorization_code(
    peer: Peer, client_id: str, *, push: bool, dpop_jkt: str | None = None
) -> tuple[str, str, str]:
    """One login by hand through the library's receiver: (code, redirect_uri, verifier).

    ``push`` sends the request by RFC 9126 PAR, the browser then gets only ``request_uri``.
    """
    meta = await _metadata(peer)
    verifier = secrets.token_urlsafe(48)
    async with ol.open_receiver() as receiver, HeadlessBrowser() as browser, _http() as http:
        pending = receiver.expect(issuer=peer.issuer)
        params = {
            "client_id": client_id,
            "response_type": "code",
            "redirect_uri": receiver.redirect_uri,
            "scope": "openid",
            "state": pending.state,
            "code_challenge": create_s256_code_challenge(verifier),
            "code_challenge_method": "S256",
        }
        if dpop_jkt is not None:
            params["dpop_jkt"] = dpop_jkt  # RFC 9449 §10
        if push:
            pushed = await http.post(meta["pushed_authorization_request_endpoint"], data=params)
            assert pushed.status_code == 201, pushed.text
            request_uri = pushed.json()["request_uri"]
            assert request_uri.startswith("urn:ietf:params:oauth:request_uri:")  # RFC 9126 §2.2
            params = {"client_id": client_id, "request_uri": request_uri}
        await browser(f"{meta['authorization_endpoint']}?{urlencode(params)}")
        with anyio.fail_after(DEADLINE):
            response = await pending.wait()
        assert response.iss == peer.issuer
        return response.code, receiver.redirect_uri, verifier


def _redeem(client_id: str, code: str, redirect_uri: str, verifier: str) -> dict[str, str]:
    return {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri,
        "code_verifier": verifier,
        "client_id": client_id,
    }


@pytest.mark.anyio
async def test_peer_pushed_authorization_request_with_the_receiver(oidc_peers: PeerPool) -> None:
    """With PAR required, a pushed request plus request_uri reaches the receiver and redeems."""
    peer = oidc_peers(requirePar=True)
    client_id = await _register(peer)
    code, redirect_uri, verifier = await _authorization_code(peer, client_id, push=True)
    redeemed = await _token_request(peer, _redeem(client_id, code, redirect_uri, verifier))
    assert redeemed.status_code == 200, redeemed.text
    assert redeemed.json()["token_type"] == "Bearer"


def _dpop_proof(key: ECKey, htu: str, nonce: str | None = None) -> str:
    """An RFC 9449 §4.2 proof for a POST to ``htu``."""
    claims: dict[str, object] = {
        "jti": secrets.token_urlsafe(16),
        "htm": "POST",
        "htu": htu,
        "iat": int(time.time()),
    }
    if nonce is not None:
        claims["nonce"] = nonce
    header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": key.as_dict(private=False)}
    return jwt.encode(header, claims, key)


@pytest.mark.anyio
async def test_peer_dpop_tokens_with_a_required_nonce(oidc_peers: PeerPool) -> None:
    """DPoP (RFC 9449): use_dpop_nonce first, then a DPoP-bound token whose refresh token works
    only with a proof of the same key, as PAR carries the key's thumbprint."""
    peer = oidc_peers(dpopRequireNonce=True)
    client_id = await _register(peer)
    endpoint = (await _metadata(peer))["token_endpoint"]
    key = ECKey.generate_key("P-256")
    code, redirect_uri, verifier = await _authorization_code(
        peer, client_id, push=True, dpop_jkt=key.thumbprint()
    )
    form = _redeem(client_id, code, redirect_uri, verifier)
    first = await _token_request(peer, form, {"DPoP": _dpop_proof(key, endpoint)})
    assert first.status_code == 400
    assert first.json()["error"] == "use_dpop_nonce"  # RFC 9449 §8
    nonce = first.headers["dpop-nonce"]
    second = await _token_request(peer, form, {"DPoP": _dpop_proof(key, endpoint, nonce)})
    assert second.status_code == 200, second.text
    body = second.json()
    assert body["token_type"] == "DPoP"
    nonce = second.headers.get("dpop-nonce", nonce)
    refresh = {"grant_type": "refresh_token", "client_id": client_id}
    bound = {**refresh, "refresh_token": body["refresh_token"]}
    stolen = await _token_request(peer, bound)
    assert stolen.status_code == 400
    assert stolen.json()["error"] == "invalid_grant"
    other = ECKey.generate_key("P-256")
    wrong_key = await _token_request(peer, bound, {"DPoP": _dpop_proof(other, endpoint, nonce)})
    assert wrong_key.status_code == 400
    assert wrong_key.json()["error"] == "invalid_grant"
    proof = _dpop_proof(key, endpoint, nonce)
    renewed = await _token_request(peer, bound, {"DPoP": proof})
    assert renewed.status_code == 200, renewed.text
    assert renewed.json()["token_type"] == "DPoP"
    # RFC 9449 §11.1: the same proof twice is refused, even with a good refresh token ...
    rotated = {**refresh, "refresh_token": renewed.json()["refresh_token"]}
    replay = await _token_request(peer, rotated, {"DPoP": proof})
    assert replay.status_code == 400
    assert replay.json()["error"] == "invalid_grant"
    # ... which a fresh proof then redeems.
    nonce = renewed.headers.get("dpop-nonce", nonce)
    fresh = await _token_request(peer, rotated, {"DPoP": _dpop_proof(key, endpoint, nonce)})
    assert fresh.status_code == 200, fresh.text


async def _start_device_login(peer: Peer, client_id: str) -> dict[str, Any]:
    meta = await _metadata(peer)
    async with _http() as http:
        response = await http.post(
            meta["device_authorization_endpoint"], data={"client_id": client_id, "scope": "openid"}
        )
    assert response.status_code == 200, response.text
    started = response.json()
    assert isinstance(started, dict)
    return started


def _device_poll(client_id: str, started: Mapping[str, Any]) -> dict[str, str]:
    return {
        "grant_type": DEVICE_GRANT,
        "device_code": started["device_code"],
        "client_id": client_id,
    }


async def _device_client(peer: Peer) -> str:
    return await _register(
        peer, grant_types=[DEVICE_GRANT, "refresh_token"], response_types=[], redirect_uris=[]
    )


@pytest.mark.anyio
async def test_peer_device_grant_approved_by_the_headless_browser(oidc_peers: PeerPool) -> None:
    """RFC 8628: pending until the browser opens verification_uri_complete, then a token."""
    peer = oidc_peers()
    client_id = await _device_client(peer)
    started = await _start_device_login(peer, client_id)
    assert started["verification_uri"] == f"{peer.issuer}/device"
    assert "interval" not in started  # oidc-provider's own default: clients use 5 s
    pending = await _token_request(peer, _device_poll(client_id, started))
    assert pending.json()["error"] == "authorization_pending"
    async with HeadlessBrowser() as browser:
        page = await browser.open(started["verification_uri_complete"])
    assert page.headers.get("x-peer-device") == "approved", page.text
    granted = await _token_request(peer, _device_poll(client_id, started))
    assert granted.status_code == 200, granted.text
    assert set(granted.json()) >= {"access_token", "id_token", "refresh_token"}


@pytest.mark.anyio
async def test_peer_device_grant_interval_and_slow_down(oidc_peers: PeerPool) -> None:
    """With deviceInterval, the response carries it and a too-early poll gets slow_down (§3.5)."""
    peer = oidc_peers(deviceInterval=2)
    client_id = await _device_client(peer)
    started = await _start_device_login(peer, client_id)
    assert started["interval"] == 2
    first = await _token_request(peer, _device_poll(client_id, started))
    assert first.json()["error"] == "authorization_pending"
    early = await _token_request(peer, _device_poll(client_id, started))
    assert early.status_code == 400
    assert early.json()["error"] == "slow_down"


@pytest.mark.anyio
async def test_peer_device_grant_denied(oidc_peers: PeerPool) -> None:
    """With interactions=deny, the device confirmation is refused and the poll says access_denied."""
    peer = oidc_peers(interactions="deny")
    client_id = await _device_client(peer)
    started = await _start_device_login(peer, client_id)
    async with HeadlessBrowser() as browser:
        await browser.open(started["verification_uri_complete"])
    refused = await _token_request(peer, _device_poll(client_id, started))
    assert refused.status_code == 400
    assert refused.json()["error"] == "access_denied"


def test_peer_exits_when_its_stdin_closes(oidc_peer_runtime: str) -> None:
    """A test process that dies closes the peer's stdin, and the peer exits by itself."""
    with start_peer() as peer:
        assert peer.process.stdin is not None
        peer.process.stdin.close()
        assert peer.process.wait(timeout=10) == 0


def test_peer_refuses_an_unknown_setting(oidc_peer_runtime: str) -> None:
    """A misspelt configuration key stops the peer with a message naming the valid keys."""
    with pytest.raises(PeerStartError, match=r"unknown OIDC_PEER_CONFIG key\(s\) requirePAR"):
        with start_peer({"requirePAR": True}):
            pass


@pytest.mark.anyio
@pytest.mark.parametrize("nonce", [False, True], ids=["no-nonce", "nonce-required"])
async def test_authorize_binds_the_token_to_a_dpop_key(oidc_peers: PeerPool, nonce: bool) -> None:
    """The peer advertises DPoP: the token is DPoP-bound, usable with a proof, refused as Bearer."""
    from oauth_loopback._login._dpop import DPoPKey

    peer = oidc_peers(dpopRequireNonce=nonce)
    async with HeadlessBrowser() as browser:
        token, _ = await _login(peer, browser, scope="openid", dpop=None)
    assert token.token_type == "DPoP"
    key = token.dpop_key
    assert isinstance(key, DPoPKey)
    assert "DPoPKey(jkt=" in repr(key)
    meta = await _metadata(peer)
    userinfo = meta["userinfo_endpoint"]
    async with _http() as http:
        as_bearer = await http.get(
            userinfo, headers={"Authorization": f"Bearer {token.access_token}"}
        )
        server_nonce = as_bearer.headers.get("dpop-nonce")
        proof = key.proof("GET", userinfo, access_token=token.access_token, nonce=server_nonce)
        with_proof = await http.get(
            userinfo, headers={"Authorization": f"DPoP {token.access_token}", "DPoP": proof}
        )
        if with_proof.status_code == 401 and with_proof.headers.get("dpop-nonce"):
            proof = key.proof(
                "GET",
                userinfo,
                access_token=token.access_token,
                nonce=with_proof.headers["dpop-nonce"],
            )
            with_proof = await http.get(
                userinfo, headers={"Authorization": f"DPoP {token.access_token}", "DPoP": proof}
            )
    assert as_bearer.status_code == 401
    assert with_proof.status_code == 200, with_proof.text
    assert with_proof.json()["sub"] == "test-user"
