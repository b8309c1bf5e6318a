"""DPoP (RFC 9449): the client's key and proofs, the response helpers, the server's checks."""

from __future__ import annotations

import base64
import hashlib
import json
import pickle
from collections.abc import Callable, Mapping
from typing import Any

import httpx2
import pytest
from joserfc import jws
from joserfc.jwk import DictKey, ECKey, OctKey, RSAKey

from oauth_loopback._errors import (
    DPoPKeyInvalid,
    DPoPProofRejected,
    IDTokenError,
    OAuthLoopbackError,
)
from oauth_loopback._login._dpop import (
    DPoPKey,
    JtiCache,
    access_token_hash,
    dpop_nonce,
    is_use_dpop_nonce,
    normalize_htu,
    parse_www_authenticate,
    retry_nonce,
    server_supports_dpop,
    verify_proof,
)

NOW = 1_700_000_000.0
TOKEN_URL = "https://as.example/token"
KEY = DPoPKey.generate()
OTHER = DPoPKey.generate()
DROP = object()


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(part: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def segments(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    header, payload, _ = token.split(".")
    return unb64(header), unb64(payload)


def as_jwk(data: Mapping[str, str]) -> DictKey:
    return dict(data)


def signer(key: DPoPKey) -> ECKey:
    private: ECKey = ECKey.import_key(as_jwk(key.private_jwk()))
    return private


def forge(
    header: Mapping[str, object] | None = None,
    claims: Mapping[str, object] | None = None,
    *,
    key: ECKey | RSAKey | OctKey | None = None,
    alg: str = "ES256",
    payload: bytes | None = None,
) -> str:
    """A proof built field by field (DROP removes a default), signed by joserfc."""
    full_header: dict[str, object] = {"typ": "dpop+jwt", "alg": alg, "jwk": KEY.public_jwk}
    full_claims: dict[str, object] = {
        "jti": "jti-" + b64(hashlib.sha256(repr((header, claims)).encode()).digest()),
        "htm": "POST",
        "htu": TOKEN_URL,
        "iat": int(NOW),
    }
    for target, updates in ((full_header, header), (full_claims, claims)):
        for name, value in (updates or {}).items():
            if value is DROP:
                target.pop(name, None)
            else:
                target[name] = value
    body = payload if payload is not None else json.dumps(full_claims).encode()
    return jws.serialize_compact(
        full_header, body, key if key is not None else signer(KEY), algorithms=[alg]
    )


def check(proof: str, **overrides: Any) -> str:
    kwargs: dict[str, Any] = {"htm": "POST", "htu": TOKEN_URL, "seen_jtis": set(), "now": NOW}
    kwargs.update(overrides)
    return verify_proof(proof, **kwargs)


# --- the key ---------------------------------------------------------------------------------


def test_generated_key_is_p256_and_public_jwk_has_no_private_part() -> None:
    """A fresh key is EC P-256 and its public JWK carries only kty, crv, x, y."""
    jwk = KEY.public_jwk
    assert set(jwk) == {"kty", "crv", "x", "y"}
    assert (jwk["kty"], jwk["crv"]) == ("EC", "P-256")
    assert KEY.algorithm == "ES256"


def test_jkt_is_the_rfc7638_thumbprint() -> None:
    """jkt is SHA-256 over the required members in lexical order (RFC 7638 §3.2)."""
    jwk = KEY.public_jwk
    canonical = json.dumps(
        {"crv": jwk["crv"], "kty": jwk["kty"], "x": jwk["x"], "y": jwk["y"]},
        separators=(",", ":"),
    )
    assert KEY.jkt == b64(hashlib.sha256(canonical.encode()).digest())
    assert KEY.jkt != OTHER.jkt


def test_key_round_trips_through_the_store_form() -> None:
    """A key saved with private_jwk() loads back as the same key and signs verifiable proofs."""
    restored = DPoPKey.from_jwk(json.loads(json.dumps(KEY.private_jwk())))
    assert restored.jkt == KEY.jkt
    assert restored.public_jwk == KEY.public_jwk
    assert check(restored.proof("POST", TOKEN_URL, now=NOW), jkt=KEY.jkt) == KEY.jkt


def test_repr_and_str_never_show_the_private_key() -> None:
    """repr() shows only the thumbprint, never 'd' or the coordinates."""
    d = KEY.private_jwk()["d"]
    for text in (repr(KEY), str(KEY), f"{KEY!r}"):
        assert d not in text
        assert KEY.public_jwk["x"] not in text
        assert KEY.jkt in text


def test_key_refuses_to_be_pickled() -> None:
    """Pickling a key (which would write the private key elsewhere) raises TypeError."""
    with pytest.raises(TypeError, match="private_jwk"):
        pickle.dumps(KEY)


def _private_with(**changes: object) -> dict[str, object]:
    data: dict[str, object] = dict(KEY.private_jwk())
    for name, value in changes.items():
        if value is DROP:
            data.pop(name)
        else:
            data[name] = value
    return data


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(["not", "a", "dict"], id="not-a-mapping"),
        pytest.param(_private_with(kty="RSA"), id="kty-rsa"),
        pytest.param(_private_with(crv="P-384"), id="crv-p384"),
        pytest.param(_private_with(d=DROP), id="public-only"),
        pytest.param(_private_with(d=12345), id="d-not-a-string"),
        pytest.param(_private_with(d=OTHER.private_jwk()["d"]), id="d-of-another-key"),
        pytest.param(_private_with(x="not-base64!"), id="x-garbage"),
        pytest.param(_private_with(y=OTHER.public_jwk["y"]), id="point-off-curve"),
    ],
)
def test_unusable_stored_key_is_refused(data: Any) -> None:
    """A stored key that is not a matching private P-256 JWK raises DPoPKeyInvalid with the fix."""
    with pytest.raises(DPoPKeyInvalid, match="Remove the stored login") as info:
        DPoPKey.from_jwk(data)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, OAuthLoopbackError)
    assert KEY.private_jwk()["d"] not in str(info.value)


def test_wrapping_a_public_key_is_refused() -> None:
    """DPoPKey() of a public-only or other-curve joserfc key raises DPoPKeyInvalid."""
    with pytest.raises(DPoPKeyInvalid):
        DPoPKey(ECKey.import_key(as_jwk(KEY.public_jwk)))
    with pytest.raises(DPoPKeyInvalid):
        DPoPKey(ECKey.generate_key("P-384"))


# --- proofs ----------------------------------------------------------------------------------


def test_proof_has_the_rfc9449_header_and_claims() -> None:
    """A proof: typ dpop+jwt, ES256, the public jwk; jti, htm, htu, iat and nothing else."""
    proof = KEY.proof("POST", "https://AS.example:443/token?code=x#frag", now=NOW + 0.9)
    header, claims = segments(proof)
    assert header == {"typ": "dpop+jwt", "alg": "ES256", "jwk": KEY.public_jwk}
    assert set(claims) == {"jti", "htm", "htu", "iat"}
    assert claims["htm"] == "POST"
    assert claims["htu"] == TOKEN_URL
    assert claims["iat"] == int(NOW)
    # 16 random octets: 22 base64url characters, at least 128 bits (RFC 9449 §4.2 asks 96).
    assert len(claims["jti"]) >= 22


def test_proof_signature_verifies_with_its_jwk() -> None:
    """joserfc verifies the proof's signature with the public key in its own header."""
    proof = KEY.proof("GET", "https://rs.example/api")
    public = ECKey.import_key(as_jwk(KEY.public_jwk))
    obj = jws.deserialize_compact(proof, public, algorithms=["ES256"])
    assert json.loads(obj.payload)["htm"] == "GET"


def test_each_proof_has_a_fresh_jti() -> None:
    """Two proofs for the same request differ in jti (RFC 9449 §11.1)."""
    jtis = {segments(KEY.proof("POST", TOKEN_URL))[1]["jti"] for _ in range(50)}
    assert len(jtis) == 50


def test_proof_with_access_token_and_nonce() -> None:
    """access_token= adds ath = base64url(SHA-256(token)); nonce= adds the server's nonce."""
    _, claims = segments(KEY.proof("GET", "https://rs.example/r", access_token="tok", nonce="n-1"))
    assert claims["ath"] == b64(hashlib.sha256(b"tok").digest())
    assert claims["nonce"] == "n-1"


def test_access_token_hash_matches_rfc9449_example() -> None:
    """ath of the RFC 9449 §7.1 example access token is the value the RFC gives."""
    token = "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"
    assert access_token_hash(token) == "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"


@pytest.mark.parametrize(
    ("htm", "htu", "kwargs"),
    [
        pytest.param("", TOKEN_URL, {}, id="empty-method"),
        pytest.param("PO ST", TOKEN_URL, {}, id="method-with-space"),
        pytest.param("POST", "/token", {}, id="relative-url"),
        pytest.param("POST", "ftp://as.example/token", {}, id="not-http"),
        pytest.param("POST", "https:///token", {}, id="no-host"),
        pytest.param("POST", "https://as.example/to\nken", {}, id="newline"),
        pytest.param("POST", "https://user:pw@as.example/token", {}, id="userinfo"),
        pytest.param("POST", "https://as.example:99999/token", {}, id="bad-port"),
        pytest.param("POST", TOKEN_URL, {"nonce": ""}, id="empty-nonce"),
        pytest.param("POST", TOKEN_URL, {"access_token": "tök"}, id="non-ascii-token"),
    ],
)
def test_proof_refuses_bad_arguments(htm: str, htu: str, kwargs: dict[str, Any]) -> None:
    """A proof for something that is not an HTTP request raises ValueError naming the parameter."""
    with pytest.raises(ValueError, match=r"\S"):
        KEY.proof(htm, htu, **kwargs)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        pytest.param("https://as.example/token", "https://as.example/token", id="already-normal"),
        pytest.param("HTTPS://AS.Example/token", "https://as.example/token", id="case"),
        pytest.param("https://as.example:443/token", "https://as.example/token", id="default-port"),
        pytest.param("http://as.example:80/t", "http://as.example/t", id="default-port-http"),
        pytest.param("https://as.example:8443/t", "https://as.example:8443/t", id="other-port"),
        pytest.param("https://as.example", "https://as.example/", id="empty-path"),
        pytest.param("https://as.example/t?a=1&b=2", "https://as.example/t", id="query"),
        pytest.param("https://as.example/t#x", "https://as.example/t", id="fragment"),
        pytest.param("https://as.example/a/./b/../c", "https://as.example/a/c", id="dot-segments"),
        pytest.param("https://as.example/a/..", "https://as.example/", id="trailing-dotdot"),
        pytest.param("https://as.example/%7euser/%2f", "https://as.example/~user/%2F", id="pct"),
        pytest.param("http://[::1]:8080/cb", "http://[::1]:8080/cb", id="ipv6"),
        pytest.param("http://127.0.0.1:53682/t", "http://127.0.0.1:53682/t", id="loopback"),
    ],
)
def test_normalize_htu(url: str, expected: str) -> None:
    """htu drops query and fragment and is normalised as RFC 9449 §4.3 / RFC 3986 §6.2 say."""
    assert normalize_htu(url) == expected


# --- reading the server's answer -------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        pytest.param(
            {"DPoP-Nonce": "eyJ7S_zG.eyJH0-Z.HX4w-7v"}, "eyJ7S_zG.eyJH0-Z.HX4w-7v", id="set"
        ),
        pytest.param({"dpop-nonce": "abc"}, "abc", id="plain-dict-lower-case"),
        pytest.param(httpx2.Headers({"DPOP-NONCE": "abc"}), "abc", id="httpx-headers"),
        pytest.param({"DPoP-Nonce": " abc "}, "abc", id="surrounding-space"),
        pytest.param({}, None, id="absent"),
        pytest.param({"DPoP-Nonce": ""}, None, id="empty"),
        pytest.param({"DPoP-Nonce": "a b"}, None, id="space-inside"),
        pytest.param({"DPoP-Nonce": 'a"b'}, None, id="quote"),
        pytest.param(httpx2.Headers([("DPoP-Nonce", "a"), ("DPoP-Nonce", "b")]), None, id="twice"),
    ],
)
def test_dpop_nonce(headers: Mapping[str, str], expected: str | None) -> None:
    """The DPoP-Nonce header is read case-insensitively; a malformed one counts as absent."""
    assert dpop_nonce(headers) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(
            'DPoP error="use_dpop_nonce", error_description="Resource server requires nonce"',
            [
                (
                    "dpop",
                    {
                        "error": "use_dpop_nonce",
                        "error_description": "Resource server requires nonce",
                    },
                )
            ],
            id="rfc9449-section9",
        ),
        pytest.param(
            'Bearer realm="api", DPoP algs="ES256 PS256", error=invalid_token',
            [
                ("bearer", {"realm": "api"}),
                ("dpop", {"algs": "ES256 PS256", "error": "invalid_token"}),
            ],
            id="two-challenges",
        ),
        pytest.param(
            "Basic abc+/==, DPoP", [("basic", {"": "abc+/=="}), ("dpop", {})], id="token68"
        ),
        pytest.param(
            'Bearer realm="a \\"b\\""', [("bearer", {"realm": 'a "b"'})], id="escaped-quote"
        ),
        pytest.param(
            "DPOP  ERROR = use_dpop_nonce", [("dpop", {"error": "use_dpop_nonce"})], id="case-bws"
        ),
        pytest.param("Bearer, DPoP", [("bearer", {}), ("dpop", {})], id="bare-schemes"),
        pytest.param('DPoP error="unterminated', [("dpop", {})], id="unterminated"),
        pytest.param("DPoP a=1, error=", [("dpop", {"a": "1"})], id="missing-value"),
        pytest.param("DPoP error=", [("dpop", {"": "error="})], id="token68-lookalike"),
        pytest.param('DPoP a="1" junk, Bearer', [("dpop", {"a": "1"})], id="garbage"),
        pytest.param("", [], id="empty"),
        pytest.param(",,, ", [], id="only-commas"),
    ],
)
def test_parse_www_authenticate(value: str, expected: list[tuple[str, dict[str, str]]]) -> None:
    """WWW-Authenticate challenges parse per RFC 9110 §11.6.1; malformed input stops, never raises."""
    assert parse_www_authenticate(value) == expected


NONCE_BODY = (
    b'{"error": "use_dpop_nonce", "error_description": "Authorization server requires nonce"}'
)
RS_CHALLENGE = 'DPoP error="use_dpop_nonce", error_description="Resource server requires nonce"'


@pytest.mark.parametrize(
    ("status", "headers", "body", "expected"),
    [
        pytest.param(400, {}, NONCE_BODY, True, id="token-endpoint"),
        pytest.param(400, {}, NONCE_BODY.decode(), True, id="token-endpoint-str-body"),
        pytest.param(400, {}, b'{"error": "invalid_grant"}', False, id="other-error"),
        pytest.param(400, {}, b"use_dpop_nonce", False, id="not-json"),
        pytest.param(400, {}, b'["use_dpop_nonce"]', False, id="json-not-object"),
        pytest.param(400, {}, b"\xff\xfe", False, id="not-utf8"),
        pytest.param(401, {"WWW-Authenticate": RS_CHALLENGE}, b"", True, id="resource-server"),
        pytest.param(
            401,
            httpx2.Headers(
                [("WWW-Authenticate", 'Bearer realm="x"'), ("WWW-Authenticate", RS_CHALLENGE)]
            ),
            b"",
            True,
            id="resource-server-second-challenge",
        ),
        pytest.param(
            401,
            {"WWW-Authenticate": 'Bearer error="use_dpop_nonce"'},
            b"",
            False,
            id="bearer-scheme",
        ),
        pytest.param(
            401, {"WWW-Authenticate": 'DPoP error="invalid_token"'}, b"", False, id="invalid-token"
        ),
        pytest.param(401, {}, NONCE_BODY, False, id="401-json-body-only"),
        pytest.param(200, {"WWW-Authenticate": RS_CHALLENGE}, NONCE_BODY, False, id="success"),
        pytest.param(500, {}, NONCE_BODY, False, id="server-error"),
    ],
)
def test_is_use_dpop_nonce(
    status: int, headers: Mapping[str, str], body: bytes | str, expected: bool
) -> None:
    """use_dpop_nonce is a 400 JSON error from the AS (§8) or a 401 DPoP challenge from an RS (§9)."""
    assert is_use_dpop_nonce(status, headers, body) is expected


@pytest.mark.parametrize(
    ("status", "headers", "body", "sent", "retried", "expected"),
    [
        pytest.param(400, {"DPoP-Nonce": "n2"}, NONCE_BODY, None, False, "n2", id="first-nonce"),
        pytest.param(400, {"DPoP-Nonce": "n2"}, NONCE_BODY, "n1", False, "n2", id="rotated"),
        pytest.param(
            401,
            {"DPoP-Nonce": "r1", "WWW-Authenticate": RS_CHALLENGE},
            b"",
            None,
            False,
            "r1",
            id="rs",
        ),
        pytest.param(400, {"DPoP-Nonce": "n2"}, NONCE_BODY, "n1", True, None, id="already-retried"),
        pytest.param(400, {}, NONCE_BODY, None, False, None, id="no-nonce-sent-back"),
        pytest.param(
            400, {"DPoP-Nonce": "bad nonce"}, NONCE_BODY, None, False, None, id="bad-nonce"
        ),
        pytest.param(400, {"DPoP-Nonce": "n1"}, NONCE_BODY, "n1", False, None, id="same-nonce"),
        pytest.param(
            400,
            {"DPoP-Nonce": "n2"},
            b'{"error": "invalid_dpop_proof"}',
            None,
            False,
            None,
            id="other",
        ),
        pytest.param(200, {"DPoP-Nonce": "n2"}, b"{}", "n1", False, None, id="success"),
    ],
)
def test_retry_nonce(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    sent: str | None,
    retried: bool,
    expected: str | None,
) -> None:
    """A use_dpop_nonce answer with a new nonce is retried exactly once, with that nonce."""
    assert retry_nonce(status, headers, body, sent_nonce=sent, retried=retried) == expected


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        pytest.param({"dpop_signing_alg_values_supported": ["ES256", "RS256"]}, True, id="es256"),
        pytest.param({"dpop_signing_alg_values_supported": ["RS256"]}, False, id="rs256-only"),
        pytest.param({"dpop_signing_alg_values_supported": "ES256"}, False, id="not-a-list"),
        pytest.param({}, False, id="absent"),
    ],
)
def test_server_supports_dpop(metadata: Mapping[str, object], expected: bool) -> None:
    """DPoP is used automatically only when the server lists ES256 (RFC 9449 §5.1)."""
    assert server_supports_dpop(metadata) is expected


# --- the server's checks: accepted -----------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "kwargs"),
    [
        pytest.param(lambda: KEY.proof("POST", TOKEN_URL, now=NOW), {}, id="token-request"),
        pytest.param(
            lambda: KEY.proof("GET", "https://rs.example/r", access_token="at", now=NOW),
            {"htm": "GET", "htu": "https://rs.example/r?page=2", "access_token": "at"},
            id="resource-request-with-ath",
        ),
        pytest.param(
            lambda: KEY.proof("POST", TOKEN_URL, nonce="n1", now=NOW),
            {"expected_nonce": "n1"},
            id="nonce",
        ),
        pytest.param(
            lambda: KEY.proof("POST", TOKEN_URL, nonce="old", now=NOW),
            {"expected_nonce": frozenset({"new", "old"})},
            id="previous-nonce",
        ),
        pytest.param(
            lambda: KEY.proof("POST", TOKEN_URL, now=NOW), {"jkt": KEY.jkt}, id="bound-key"
        ),
        pytest.param(
            lambda: KEY.proof("POST", "HTTPS://as.example:443/./token", now=NOW),
            {},
            id="normalised-htu",
        ),
        pytest.param(lambda: KEY.proof("POST", TOKEN_URL, now=NOW - 300), {}, id="oldest-iat"),
        pytest.param(lambda: KEY.proof("POST", TOKEN_URL, now=NOW + 5), {}, id="newest-iat"),
        pytest.param(lambda: forge({"typ": "application/dpop+jwt"}), {}, id="typ-with-prefix"),
        pytest.param(lambda: forge({"kid": "k1"}, {"extra": 1}), {}, id="extra-members"),
    ],
)
def test_verify_proof_accepts(make: Callable[[], str], kwargs: dict[str, Any]) -> None:
    """A proof that meets every check of RFC 9449 §4.3 is accepted; its key's jkt is returned."""
    seen: set[str] = set()
    assert check(make(), seen_jtis=seen, **kwargs) == KEY.jkt
    assert len(seen) == 1


def test_verify_proof_accepts_rs256_when_allowed() -> None:
    """With algorithms=("RS256",), a proof signed by a 2048-bit RSA key is accepted."""
    rsa = RSAKey.generate_key(2048)
    proof = forge({"alg": "RS256", "jwk": rsa.as_dict()}, key=rsa, alg="RS256")
    assert check(proof, algorithms=("RS256",)) == rsa.thumbprint()


# --- the server's checks: refused ------------------------------------------------------------


def _unsigned() -> str:
    header = {"typ": "dpop+jwt", "alg": "none", "jwk": KEY.public_jwk}
    claims = {"jti": "j", "htm": "POST", "htu": TOKEN_URL, "iat": int(NOW)}
    return f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}."


def _tampered() -> str:
    header, _, signature = KEY.proof("POST", TOKEN_URL, now=NOW).split(".")
    claims = {"jti": "j", "htm": "POST", "htu": TOKEN_URL, "iat": int(NOW)}
    return f"{header}.{b64(json.dumps(claims).encode())}.{signature}"


def _small_rsa() -> str:
    from cryptography.hazmat.primitives.asymmetric import rsa

    with pytest.warns(UserWarning, match="2048"):  # joserfc's SecurityWarning, expected here
        small = RSAKey.import_key(rsa.generate_private_key(65537, 1024))  # noqa: S505 (on purpose)
    return forge({"alg": "RS256", "jwk": small.as_dict()}, key=small, alg="RS256")


_P384 = ECKey.generate_key("P-384")
_OCT = OctKey.import_key(b"0123456789abcdef0123456789abcdef")


@pytest.mark.parametrize(
    ("make", "kwargs", "reason"),
    [
        pytest.param(lambda: "", {}, "malformed", id="empty"),
        pytest.param(lambda: "not-a-jwt", {}, "malformed", id="not-a-jwt"),
        pytest.param(lambda: "a.b.c", {}, "malformed", id="bad-base64"),
        pytest.param(lambda: "é.b.c", {}, "malformed", id="non-ascii"),
        pytest.param(lambda: forge(payload=b"[1, 2]"), {}, "malformed", id="payload-not-object"),
        pytest.param(lambda: forge(payload=b"\xff"), {}, "malformed", id="payload-not-json"),
        pytest.param(lambda: forge({"typ": "JWT"}), {}, "typ", id="typ-jwt"),
        pytest.param(lambda: forge({"typ": DROP}), {}, "typ", id="typ-missing"),
        pytest.param(_unsigned, {}, "alg-none", id="alg-none"),
        pytest.param(
            lambda: forge({"alg": "HS256"}, key=_OCT, alg="HS256"), {}, "alg", id="alg-hs256"
        ),
        pytest.param(
            lambda: forge({"alg": "ES384", "jwk": _P384.as_dict()}, key=_P384, alg="ES384"),
            {},
            "alg",
            id="alg-not-advertised",
        ),
        pytest.param(lambda: forge({"jwk": DROP}), {}, "jwk", id="jwk-missing"),
        pytest.param(
            lambda: forge({"jwk": KEY.private_jwk()}), {}, "jwk-private", id="jwk-private"
        ),
        pytest.param(lambda: forge({"jwk": _P384.as_dict()}), {}, "jwk", id="jwk-wrong-curve"),
        pytest.param(lambda: forge({"jwk": {"kty": "EC"}}), {}, "jwk", id="jwk-incomplete"),
        pytest.param(_small_rsa, {"algorithms": ("RS256",)}, "jwk", id="rsa-1024"),
        pytest.param(lambda: forge({"jwk": OTHER.public_jwk}), {}, "signature", id="other-key"),
        pytest.param(_tampered, {}, "signature", id="tampered-payload"),
        pytest.param(lambda: forge(claims={"jti": DROP}), {}, "claims", id="no-jti"),
        pytest.param(lambda: forge(claims={"jti": "x" * 257}), {}, "claims", id="long-jti"),
        pytest.param(lambda: forge(claims={"htm": DROP}), {}, "claims", id="no-htm"),
        pytest.param(lambda: forge(claims={"htu": DROP}), {}, "claims", id="no-htu"),
        pytest.param(lambda: forge(claims={"iat": DROP}), {}, "claims", id="no-iat"),
        pytest.param(lambda: forge(claims={"iat": str(NOW)}), {}, "claims", id="iat-string"),
        pytest.param(lambda: forge(claims={"iat": True}), {}, "claims", id="iat-bool"),
        pytest.param(lambda: KEY.proof("GET", TOKEN_URL, now=NOW), {}, "htm", id="htm-get"),
        pytest.param(lambda: forge(claims={"htm": "post"}), {}, "htm", id="htm-case"),
        pytest.param(
            lambda: KEY.proof("POST", "https://as.example/par", now=NOW), {}, "htu", id="htu-path"
        ),
        pytest.param(
            lambda: KEY.proof("POST", "https://evil.example/token", now=NOW),
            {},
            "htu",
            id="htu-host",
        ),
        pytest.param(
            lambda: KEY.proof("POST", "http://as.example/token", now=NOW),
            {},
            "htu",
            id="htu-scheme",
        ),
        pytest.param(
            lambda: KEY.proof("POST", "https://as.example:8443/token", now=NOW),
            {},
            "htu",
            id="htu-port",
        ),
        pytest.param(lambda: forge(claims={"htu": "/token"}), {}, "htu", id="htu-relative"),
        pytest.param(
            lambda: KEY.proof("POST", TOKEN_URL, now=NOW - 301), {}, "iat", id="iat-stale"
        ),
        pytest.param(lambda: KEY.proof("POST", TOKEN_URL, now=NOW + 6), {}, "iat", id="iat-future"),
        pytest.param(
            lambda: KEY.proof("GET", TOKEN_URL, now=NOW),
            {"htm": "GET", "access_token": "at"},
            "ath",
            id="ath-missing",
        ),
        pytest.param(
            lambda: KEY.proof("GET", TOKEN_URL, access_token="other", now=NOW),
            {"htm": "GET", "access_token": "at"},
            "ath",
            id="ath-other-token",
        ),
        pytest.param(
            lambda: KEY.proof("POST", TOKEN_URL, now=NOW),
            {"jkt": OTHER.jkt},
            "jkt",
            id="stolen-token",
        ),
        pytest.param(
            lambda: KEY.proof("POST", TOKEN_URL, now=NOW),
            {"expected_nonce": "n1"},
            "nonce-missing",
            id="nonce-missing",
        ),
        pytest.param(
            lambda: KEY.proof("POST", TOKEN_URL, nonce="n0", now=NOW),
            {"expected_nonce": "n1"},
            "nonce-mismatch",
            id="nonce-stale",
        ),
        pytest.param(
            lambda: forge(claims={"nonce": 1}),
            {"expected_nonce": "1"},
            "nonce-mismatch",
            id="nonce-int",
        ),
    ],
)
def test_verify_proof_refuses(make: Callable[[], str], kwargs: dict[str, Any], reason: str) -> None:
    """Each failed RFC 9449 §4.3 check raises DPoPProofRejected with its reason; no jti is kept."""
    seen: set[str] = set()
    with pytest.raises(DPoPProofRejected) as info:
        check(make(), seen_jtis=seen, **kwargs)
    assert info.value.reason == reason
    expected_error = "use_dpop_nonce" if reason.startswith("nonce") else "invalid_dpop_proof"
    assert info.value.error == expected_error
    assert str(info.value)
    assert seen == set()


def test_replayed_proof_is_refused() -> None:
    """The same proof presented twice is accepted once, then refused as a replay (§11.1)."""
    seen = JtiCache()
    proof = KEY.proof("POST", TOKEN_URL, now=NOW)
    check(proof, seen_jtis=seen)
    with pytest.raises(DPoPProofRejected) as info:
        check(proof, seen_jtis=seen)
    assert info.value.reason == "replay"
    assert info.value.error == "invalid_dpop_proof"


def test_nonce_retry_round_trip() -> None:
    """A proof refused for its nonce, re-signed with the nonce from the answer, is accepted."""
    seen: set[str] = set()
    with pytest.raises(DPoPProofRejected) as info:
        check(KEY.proof("POST", TOKEN_URL, now=NOW), seen_jtis=seen, expected_nonce="srv-1")
    body = json.dumps({"error": info.value.error, "error_description": info.value.message})
    nonce = retry_nonce(400, {"DPoP-Nonce": "srv-1"}, body, sent_nonce=None, retried=False)
    assert nonce == "srv-1"
    proof = KEY.proof("POST", TOKEN_URL, nonce=nonce, now=NOW)
    assert check(proof, seen_jtis=seen, expected_nonce="srv-1") == KEY.jkt


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"algorithms": ("HS256",)}, id="mac-algorithm"),
        pytest.param({"algorithms": ("none",)}, id="none-algorithm"),
        pytest.param({"algorithms": ()}, id="no-algorithm"),
        pytest.param({"htu": "/token"}, id="relative-request-url"),
    ],
)
def test_verify_proof_refuses_bad_configuration(kwargs: dict[str, Any]) -> None:
    """A server misconfiguration (MAC or no algorithms, a relative URL) raises ValueError."""
    with pytest.raises(ValueError, match=r"\S"):
        check(KEY.proof("POST", TOKEN_URL, now=NOW), **kwargs)


def test_errors_survive_pickling() -> None:
    """The new errors pickle with their reason and message (for multiprocessing and logging)."""
    for error in (
        DPoPProofRejected("nonce-missing", "retry with the nonce"),
        DPoPKeyInvalid("it has no private part ('d')"),
        IDTokenError("issuer", "wrong issuer"),
    ):
        copy = pickle.loads(pickle.dumps(error))  # noqa: S301 (our own object)
        assert type(copy) is type(error)
        assert str(copy) == str(error)
        assert getattr(copy, "reason", None) == getattr(error, "reason", None)
    nonce_error = pickle.loads(pickle.dumps(DPoPProofRejected("nonce-missing", "m")))  # noqa: S301
    assert nonce_error.error == "use_dpop_nonce"


# --- JtiCache --------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_jti_cache_forgets_after_retention() -> None:
    """A jti is remembered for `retention` seconds and dropped after, keeping memory bounded."""
    clock = FakeClock()
    cache = JtiCache(60, clock=clock)
    cache.add("a")
    clock.now += 30
    cache.add("b")
    assert "a" in cache
    assert sorted(cache) == ["a", "b"]
    clock.now += 30
    assert "a" not in cache
    assert "b" in cache
    assert len(cache) == 1
    clock.now += 31
    assert len(cache) == 0


def test_jti_cache_add_twice_keeps_first_expiry_and_discard() -> None:
    """Adding a known jti does not extend it; discard() forgets it at once."""
    clock = FakeClock()
    cache = JtiCache(10, clock=clock)
    cache.add("a")
    clock.now += 9
    cache.add("a")
    clock.now += 1
    assert "a" not in cache
    cache.add("b")
    cache.discard("b")
    cache.discard("never-added")
    assert len(cache) == 0
    assert "retention=10" in repr(cache)


@pytest.mark.parametrize("retention", [0, -1.0, float("nan")])
def test_jti_cache_refuses_non_positive_retention(retention: float) -> None:
    """A retention that is not a positive number of seconds raises ValueError."""
    with pytest.raises(ValueError, match="retention"):
        JtiCache(retention)
