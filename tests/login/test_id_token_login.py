"""authorize() with scope openid: a nonce is sent, the ID token is validated, claims exposed."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import httpx2
import pytest
from joserfc import jws
from joserfc.jwk import Key

import oauth_loopback as ol
from tests.login.test_authorize import ISSUER, ScriptedServer, _authorize
from tests.login.test_idtoken import RSA, RSA_NEW, b64, public

pytestmark = pytest.mark.anyio


@dataclass
class OidcServer(ScriptedServer):
    """The scripted server, issuing ID tokens signed with ``key`` and serving ``jwks``."""

    key: Key = field(default_factory=lambda: RSA)
    jwks: list[dict[str, Any]] = field(default_factory=lambda: [public(RSA)])
    claims: dict[str, Any] = field(default_factory=dict)
    alg: str = "RS256"
    jwks_fetches: int = 0
    with_jwks_uri: bool = True

    @property
    def metadata(self) -> dict[str, Any]:
        document = super().metadata
        if self.with_jwks_uri:
            document["jwks_uri"] = f"{self.issuer}/jwks"
        return document

    def handle(self, request: httpx2.Request) -> httpx2.Response:
        if request.url.path == "/jwks":
            self.jwks_fetches += 1
            return httpx2.Response(200, json=self.jwks[min(self.jwks_fetches, len(self.jwks)) - 1])
        reply = super().handle(request)
        if request.url.path == "/token" and reply.status_code == 200:
            body = reply.json()
            params = self.authorization_params[-1]
            claims = {
                "iss": ISSUER,
                "sub": "user-1",
                "aud": params["client_id"],
                "exp": int(time.time()) + 300,
                "iat": int(time.time()),
                "nonce": params.get("nonce"),
                **self.claims,
            }
            claims = {k: v for k, v in claims.items() if v is not None}
            import json

            if self.alg == "none":
                header = b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
                body["id_token"] = f"{header}.{b64(json.dumps(claims).encode())}."
            else:
                body["id_token"] = jws.serialize_compact(
                    {"alg": self.alg, "kid": self.key.kid, "typ": "JWT"},
                    json.dumps(claims).encode(),
                    self.key,
                    algorithms=[self.alg],
                )
            return httpx2.Response(200, json=body)
        return reply


async def test_a_good_id_token_is_validated_and_its_claims_exposed() -> None:
    """The nonce reaches the server, comes back in the ID token, and the claims are exposed."""
    server = OidcServer()
    token = await _authorize(server, scope="openid profile")
    nonce = server.authorization_params[0]["nonce"]
    assert len(nonce) >= 32
    assert token.id_token_claims is not None
    assert token.id_token_claims["sub"] == "user-1"
    assert token.id_token_claims["nonce"] == nonce


async def test_without_openid_no_nonce_is_sent() -> None:
    """A plain OAuth login sends no nonce and exposes no claims."""
    server = ScriptedServer()
    token = await _authorize(server, scope="read")
    assert "nonce" not in server.authorization_params[0]
    assert token.id_token_claims is None


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        pytest.param({"nonce": "another-login"}, "nonce", id="wrong-nonce"),
        pytest.param({"aud": "someone-else"}, "audience", id="wrong-audience"),
        pytest.param(
            {"exp": int(time.time()) - 3600, "iat": int(time.time()) - 7200},
            "expired",
            id="expired",
        ),
        pytest.param({"iss": "https://AS.example"}, "issuer", id="issuer-near-miss"),
    ],
)
async def test_a_bad_id_token_fails_the_login(claims: dict[str, Any], reason: str) -> None:
    """Each OIDC Core §3.1.3.7 failure is an IDTokenError with its reason, never a silent pass."""
    server = OidcServer(claims=claims)
    with pytest.raises(ol.IDTokenError) as info:
        await _authorize(server, scope="openid")
    assert info.value.reason == reason


async def test_an_unsigned_id_token_is_refused() -> None:
    """alg: none is refused whatever the claims say."""
    server = OidcServer(alg="none")
    with pytest.raises(ol.IDTokenError) as info:
        await _authorize(server, scope="openid")
    assert info.value.reason == "unsigned"


async def test_a_rotated_key_is_fetched_once_more() -> None:
    """Signed with a key the first JWKS lacks: the JWKS is fetched again, once, and it passes."""
    server = OidcServer(key=RSA_NEW, jwks=[public(RSA), public(RSA, RSA_NEW)])
    token = await _authorize(server, scope="openid")
    assert token.id_token_claims is not None
    assert server.jwks_fetches == 2


async def test_a_server_without_jwks_uri_cannot_pass_an_id_token() -> None:
    """No keys to check the signature with: the ID token is not trusted."""
    server = OidcServer(with_jwks_uri=False)
    with pytest.raises(ol.IDTokenError) as info:
        await _authorize(server, scope="openid")
    assert info.value.reason == "jwks"
