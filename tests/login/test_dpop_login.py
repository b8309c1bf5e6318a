"""authorize() with DPoP (RFC 9449): the code and the token are bound to a fresh key."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx2
import pytest

import oauth_loopback as ol
from oauth_loopback._login._dpop import JtiCache, verify_proof
from tests.login.test_authorize import ISSUER, ScriptedServer, _authorize

pytestmark = pytest.mark.anyio


@dataclass
class DPoPServer(ScriptedServer):
    """The scripted server, demanding DPoP proofs (with a nonce) at its token endpoint."""

    require_nonce: bool = True
    token_type: str = "DPoP"
    advertise: bool = True
    proofs: list[str] = field(default_factory=list)
    thumbprints: list[str] = field(default_factory=list)
    seen: JtiCache = field(default_factory=JtiCache)

    @property
    def metadata(self) -> dict[str, Any]:
        document = super().metadata
        if self.advertise:
            document["dpop_signing_alg_values_supported"] = ["ES256"]
        return document

    def handle(self, request: httpx2.Request) -> httpx2.Response:
        if request.url.path == "/token" and self.token_type == "DPoP":
            proof = request.headers.get("dpop")
            if proof is None:
                return httpx2.Response(400, json={"error": "invalid_dpop_proof"})
            self.proofs.append(proof)
            nonce = "server-nonce-1" if self.require_nonce else None
            try:
                jkt = verify_proof(
                    proof,
                    htm="POST",
                    htu=f"{ISSUER}/token",
                    seen_jtis=self.seen,
                    expected_nonce=nonce,
                )
            except ol.DPoPProofRejected as exc:
                headers = {"DPoP-Nonce": "server-nonce-1"} if exc.error == "use_dpop_nonce" else {}
                return httpx2.Response(400, json={"error": exc.error}, headers=headers)
            self.thumbprints.append(jkt)
        reply = super().handle(request)
        if request.url.path == "/token" and reply.status_code == 200:
            return httpx2.Response(200, json={**reply.json(), "token_type": self.token_type})
        return reply


async def test_an_advertising_server_gets_a_bound_code_and_token_with_a_nonce_retry() -> None:
    """dpop_jkt in the authorization request, a proof on the token request, one nonce retry."""
    server = DPoPServer()
    token = await _authorize(server)
    assert token.token_type == "DPoP"
    assert token.dpop_key is not None
    assert server.authorization_params[0]["dpop_jkt"] == token.dpop_key.jkt
    assert len(server.proofs) == 2  # the first without the nonce, answered use_dpop_nonce
    assert server.thumbprints == [token.dpop_key.jkt]
    assert token.dpop_key.jkt not in repr(token)


async def test_a_bearer_token_for_a_dpop_request_is_refused() -> None:
    """With dpop=True, a server that issues a Bearer token anyway fails the login, naming the fix."""
    server = DPoPServer(token_type="Bearer", advertise=False)
    with pytest.raises(ol.TokenError) as info:
        await _authorize(server, dpop=True)
    assert "dpop=False" in str(info.value.description)


async def test_no_dpop_where_the_server_does_not_advertise_it() -> None:
    """Without dpop_signing_alg_values_supported (and dpop=None), the token is a plain bearer one."""
    server = ScriptedServer()
    token = await _authorize(server)
    assert token.dpop_key is None
    assert "dpop_jkt" not in server.authorization_params[0]


async def test_dpop_false_opts_out_against_an_advertising_server() -> None:
    """dpop=False sends no proof even where the server offers DPoP."""
    server = DPoPServer(token_type="Bearer")
    token = await _authorize(server, dpop=False)
    assert token.dpop_key is None
    assert server.proofs == []
