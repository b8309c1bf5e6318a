"""ID token validation (OpenID Connect Core §3.1.3.7) and JWKS rotation."""

from __future__ import annotations

import base64
import hashlib
import json
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import anyio.lowlevel
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc import jws
from joserfc.errors import SecurityWarning
from joserfc.jwk import ECKey, Key, OctKey, OKPKey, RSAKey, import_key

from oauth_loopback._errors import IDTokenError, OAuthLoopbackError
from oauth_loopback._login._idtoken import (
    ID_TOKEN_ALGORITHMS,
    validate_id_token,
    validate_id_token_fetching_jwks,
)

NOW = 1_700_000_000.0
ISSUER = "https://as.example"
CLIENT = "client-123"
NONCE = "n-0S6_WzA2Mj"
ACCESS_TOKEN = "jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y"
DROP = object()


def _keyed(key: Key, kid: str) -> Key:
    data = key.as_dict(private=True)
    data["kid"] = kid
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SecurityWarning)  # SMALL_RSA
        return import_key(data)


RSA = _keyed(RSAKey.generate_key(2048), "rsa-1")
RSA_NEW = _keyed(RSAKey.generate_key(2048), "rsa-2")
EC = _keyed(ECKey.generate_key("P-256"), "ec-1")
EC384 = _keyed(ECKey.generate_key("P-384"), "ec384-1")
ED25519 = _keyed(OKPKey.generate_key("Ed25519"), "ed-1")
ED448 = _keyed(OKPKey.generate_key("Ed448"), "ed448-1")
with warnings.catch_warnings():
    warnings.simplefilter("ignore", SecurityWarning)
    # Deliberately too small: validation must refuse it (RFC 7518 §3.3).
    SMALL_RSA = _keyed(RSAKey.import_key(rsa.generate_private_key(65537, 1024)), "rsa-small")  # noqa: S505
ALG_OF = {
    "rsa-1": "RS256",
    "rsa-2": "RS256",
    "rsa-small": "RS256",
    "ec-1": "ES256",
    "ec384-1": "ES384",
}


def public(*keys: Key, **extra: object) -> dict[str, Any]:
    """A JWKS document with the public halves of ``keys``."""
    return {"keys": [{**key.as_dict(private=False), **extra} for key in keys]}


JWKS = public(RSA, EC, EC384, ED25519, ED448)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def half_hash(value: str, hash_name: str) -> str:
    """at_hash computed independently: the left half of the named digest."""
    if hash_name == "shake256":
        digest = hashlib.shake_256(value.encode()).digest(114)
    else:
        digest = hashlib.new(hash_name, value.encode()).digest()
    return b64(digest[: len(digest) // 2])


def claims_with(**changes: object) -> dict[str, object]:
    claims: dict[str, object] = {
        "iss": ISSUER,
        "sub": "user-1",
        "aud": CLIENT,
        "exp": int(NOW) + 300,
        "iat": int(NOW),
        "nonce": NONCE,
    }
    for name, value in changes.items():
        if value is DROP:
            claims.pop(name, None)
        else:
            claims[name] = value
    return claims


def sign(
    claims: Mapping[str, object] | None = None,
    *,
    key: Key = RSA,
    alg: str | None = None,
    header: Mapping[str, object] | None = None,
    payload: bytes | None = None,
) -> str:
    """An ID token signed by joserfc (kid from the key unless ``header`` drops it)."""
    alg = alg or ALG_OF.get(str(key.kid), "EdDSA")
    full_header: dict[str, object] = {"typ": "JWT", "alg": alg, "kid": key.kid}
    for name, value in (header or {}).items():
        if value is DROP:
            full_header.pop(name, None)
        else:
            full_header[name] = value
    body = payload if payload is not None else json.dumps(claims or claims_with()).encode()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SecurityWarning)  # EdDSA on joserfc >= 1.8
        return jws.serialize_compact(full_header, body, key, algorithms=[alg])


def validate(token: str, **overrides: Any) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "issuer": ISSUER,
        "client_id": CLIENT,
        "nonce": NONCE,
        "jwks": JWKS,
        "now": NOW,
    }
    kwargs.update(overrides)
    return validate_id_token(token, **kwargs)


def raw(header: Mapping[str, object], signature: str = "") -> str:
    """A token assembled by hand, for headers joserfc would refuse to sign."""
    parts = (json.dumps(header).encode(), json.dumps(claims_with()).encode())
    return f"{b64(parts[0])}.{b64(parts[1])}.{signature}"


def _unsigned() -> str:
    return raw({"alg": "none", "typ": "JWT"})


def _tampered() -> str:
    header, _, signature = sign().split(".")
    return f"{header}.{b64(json.dumps(claims_with(sub='admin')).encode())}.{signature}"


def _hmac_with_client_id() -> str:
    # The classic public-client forgery: a MAC keyed with something the attacker knows.
    secret = OctKey.import_key((CLIENT * 4).encode())
    return jws.serialize_compact(
        {"alg": "HS256", "kid": "rsa-1"},
        json.dumps(claims_with()).encode(),
        secret,
        algorithms=["HS256"],
    )


# --- accepted --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "kwargs"),
    [
        pytest.param(lambda: sign(key=RSA), {}, id="rs256"),
        pytest.param(lambda: sign(key=RSA, alg="PS256"), {}, id="ps256"),
        pytest.param(lambda: sign(key=RSA, alg="RS512"), {}, id="rs512"),
        pytest.param(lambda: sign(key=EC), {}, id="es256"),
        pytest.param(lambda: sign(key=EC384), {}, id="es384"),
        pytest.param(lambda: sign(key=ED25519, alg="EdDSA"), {}, id="eddsa-ed25519"),
        pytest.param(lambda: sign(key=ED448, alg="EdDSA"), {}, id="eddsa-ed448"),
        pytest.param(lambda: sign(claims_with(aud=[CLIENT])), {}, id="aud-list-of-one"),
        pytest.param(
            lambda: sign(claims_with(aud=[CLIENT, "api"], azp=CLIENT)),
            {},
            id="aud-several-with-azp",
        ),
        pytest.param(lambda: sign(claims_with(azp=CLIENT)), {}, id="azp-single-aud"),
        pytest.param(
            lambda: sign(header={"kid": DROP}),
            {"jwks": public(RSA)},
            id="no-kid-one-key",
        ),
        pytest.param(
            lambda: sign(header={"kid": DROP}, key=RSA_NEW),
            {"jwks": public(RSA, EC, RSA_NEW)},
            id="no-kid-tries-each-key",
        ),
        pytest.param(
            lambda: sign(),
            {
                "jwks": {
                    "keys": [{"kty": "PQC", "x": "1"}, "junk", {"kty": "EC"}, *public(RSA)["keys"]]
                }
            },
            id="unusable-jwks-members-skipped",
        ),
        pytest.param(
            lambda: sign(key=RSA),
            {"jwks": {"keys": [{**public(RSA)["keys"][0], "use": "sig", "alg": "RS256"}]}},
            id="key-use-sig-alg-rs256",
        ),
        pytest.param(lambda: sign(claims_with(exp=int(NOW) - 59)), {}, id="expired-within-leeway"),
        pytest.param(
            lambda: sign(claims_with(iat=int(NOW) + 60)), {}, id="iat-future-within-leeway"
        ),
        pytest.param(lambda: sign(claims_with(nbf=int(NOW) + 30)), {}, id="nbf-within-leeway"),
        pytest.param(lambda: sign(claims_with(exp=NOW + 0.5, iat=NOW - 0.5)), {}, id="float-times"),
        pytest.param(lambda: sign(), {"nonce": None}, id="refresh-grant-repeats-nonce"),
        pytest.param(
            lambda: sign(claims_with(nonce=DROP)), {"nonce": None}, id="refresh-grant-no-nonce"
        ),
        pytest.param(
            lambda: sign(claims_with(at_hash=half_hash(ACCESS_TOKEN, "sha256"))),
            {"access_token": ACCESS_TOKEN},
            id="at-hash-rs256",
        ),
        pytest.param(
            lambda: sign(claims_with(at_hash=half_hash(ACCESS_TOKEN, "sha384")), key=EC384),
            {"access_token": ACCESS_TOKEN},
            id="at-hash-es384",
        ),
        pytest.param(
            lambda: sign(claims_with(at_hash=half_hash(ACCESS_TOKEN, "sha512")), key=ED25519),
            {"access_token": ACCESS_TOKEN},
            id="at-hash-ed25519-sha512",
        ),
        pytest.param(
            lambda: sign(claims_with(at_hash=half_hash(ACCESS_TOKEN, "shake256")), key=ED448),
            {"access_token": ACCESS_TOKEN},
            id="at-hash-ed448-shake256",
        ),
        pytest.param(
            lambda: sign(claims_with(at_hash="not-checked-without-token")),
            {},
            id="at-hash-no-token",
        ),
        pytest.param(lambda: sign(), {"access_token": ACCESS_TOKEN}, id="no-at-hash-is-optional"),
        pytest.param(lambda: sign(header={"x5t": "abc", "typ": DROP}), {}, id="extra-header"),
    ],
)
def test_valid_id_token_is_accepted(make: Callable[[], str], kwargs: dict[str, Any]) -> None:
    """A token meeting every check of OIDC Core §3.1.3.7 returns its claims."""
    claims = validate(make(), **kwargs)
    assert claims["iss"] == ISSUER
    assert claims["sub"] == "user-1"


def test_rs256_only_accepts_rs256() -> None:
    """algorithms=("RS256",) (from the server's metadata) accepts an RS256 token."""
    assert validate(sign(), algorithms=("RS256",))["aud"] == CLIENT


# --- refused ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "kwargs", "reason"),
    [
        pytest.param(lambda: "", {}, "malformed", id="empty"),
        pytest.param(lambda: "abc", {}, "malformed", id="one-part"),
        pytest.param(lambda: "a.b", {}, "malformed", id="two-parts"),
        pytest.param(lambda: "a.b.c", {}, "malformed", id="bad-base64"),
        pytest.param(lambda: "é.b.c", {}, "malformed", id="non-ascii"),
        pytest.param(lambda: "a.b.c.d.e", {}, "encrypted", id="jwe"),
        pytest.param(lambda: sign(payload=b"[1]"), {}, "malformed", id="payload-list"),
        pytest.param(lambda: sign(payload=b"\xff"), {}, "malformed", id="payload-not-json"),
        pytest.param(
            lambda: raw({"alg": "RS256", "kid": 7}, "c2ln"), {}, "malformed", id="kid-not-string"
        ),
        pytest.param(_unsigned, {}, "unsigned", id="alg-none"),
        pytest.param(_hmac_with_client_id, {}, "symmetric", id="hs256"),
        pytest.param(
            _hmac_with_client_id,
            {"jwks": {"keys": [{"kty": "oct", "k": b64((CLIENT * 4).encode()), "kid": "rsa-1"}]}},
            "symmetric",
            id="hs256-with-oct-key-in-jwks",
        ),
        pytest.param(
            lambda: sign(key=EC), {"algorithms": ("RS256",)}, "algorithm", id="alg-not-allowed"
        ),
        pytest.param(lambda: raw({"alg": 5}, "c2ln"), {}, "algorithm", id="alg-not-string"),
        pytest.param(lambda: raw({"kid": "rsa-1"}, "c2ln"), {}, "malformed", id="alg-missing"),
        pytest.param(lambda: sign(header={"kid": "gone"}), {}, "unknown-kid", id="unknown-kid"),
        pytest.param(
            lambda: sign(header={"kid": "ec-1"}, key=RSA), {}, "no-key", id="kid-of-wrong-key-type"
        ),
        pytest.param(
            lambda: sign(key=RSA),
            {"jwks": public(RSA, use="enc")},
            "no-key",
            id="encryption-key",
        ),
        pytest.param(
            lambda: sign(key=RSA),
            {"jwks": public(RSA, alg="RS512")},
            "no-key",
            id="key-for-other-alg",
        ),
        pytest.param(
            lambda: sign(key=RSA),
            {"jwks": public(RSA, key_ops=["encrypt"])},
            "no-key",
            id="key-ops-without-verify",
        ),
        pytest.param(
            lambda: sign(key=SMALL_RSA, alg="RS256"),
            {"jwks": public(SMALL_RSA)},
            "no-key",
            id="rsa-1024",
        ),
        pytest.param(
            lambda: sign(key=ED25519, alg="EdDSA", header={"kid": DROP}),
            {"jwks": public(RSA, EC)},
            "no-key",
            id="no-kid-no-fitting-key",
        ),
        pytest.param(
            lambda: sign(key=RSA_NEW, header={"kid": "rsa-1"}),
            {},
            "signature",
            id="other-key-same-kid",
        ),
        pytest.param(_tampered, {}, "signature", id="tampered-payload"),
        pytest.param(
            lambda: sign(key=RSA_NEW, header={"kid": DROP}),
            {"jwks": public(RSA)},
            "signature",
            id="no-kid-other-key",
        ),
        pytest.param(
            lambda: sign(claims_with(iss="https://evil.example")), {}, "issuer", id="other-issuer"
        ),
        pytest.param(
            lambda: sign(claims_with(iss=ISSUER + "/")), {}, "issuer", id="issuer-trailing-slash"
        ),
        pytest.param(lambda: sign(claims_with(iss=ISSUER.upper())), {}, "issuer", id="issuer-case"),
        pytest.param(lambda: sign(claims_with(iss=DROP)), {}, "issuer", id="issuer-missing"),
        pytest.param(lambda: sign(claims_with(sub=DROP)), {}, "claims", id="sub-missing"),
        pytest.param(lambda: sign(claims_with(sub="")), {}, "claims", id="sub-empty"),
        pytest.param(
            lambda: sign(claims_with(aud="other-client")), {}, "audience", id="other-audience"
        ),
        pytest.param(
            lambda: sign(claims_with(aud=["a", "b"])), {}, "audience", id="audiences-without-us"
        ),
        pytest.param(lambda: sign(claims_with(aud=DROP)), {}, "claims", id="aud-missing"),
        pytest.param(
            lambda: sign(claims_with(aud=[CLIENT, 7])), {}, "claims", id="aud-not-strings"
        ),
        pytest.param(
            lambda: sign(claims_with(aud=[CLIENT, "api"])), {}, "azp", id="several-aud-no-azp"
        ),
        pytest.param(lambda: sign(claims_with(azp="other-client")), {}, "azp", id="azp-other"),
        pytest.param(lambda: sign(claims_with(exp=int(NOW) - 61)), {}, "expired", id="expired"),
        pytest.param(
            lambda: sign(claims_with(exp=int(NOW) - 60)), {}, "expired", id="expired-at-leeway"
        ),
        pytest.param(
            lambda: sign(claims_with(exp=int(NOW) - 5)),
            {"leeway": 0},
            "expired",
            id="expired-no-leeway",
        ),
        pytest.param(lambda: sign(claims_with(exp=DROP)), {}, "claims", id="exp-missing"),
        pytest.param(lambda: sign(claims_with(exp=str(NOW + 300))), {}, "claims", id="exp-string"),
        pytest.param(lambda: sign(claims_with(exp=True)), {}, "claims", id="exp-bool"),
        pytest.param(lambda: sign(claims_with(iat=DROP)), {}, "claims", id="iat-missing"),
        pytest.param(
            lambda: sign(claims_with(iat=int(NOW) + 61)), {}, "issued-in-future", id="iat-future"
        ),
        pytest.param(
            lambda: sign(claims_with(nbf=int(NOW) + 61)), {}, "not-yet-valid", id="nbf-future"
        ),
        pytest.param(lambda: sign(claims_with(nbf="soon")), {}, "claims", id="nbf-string"),
        pytest.param(lambda: sign(claims_with(nonce="other")), {}, "nonce", id="wrong-nonce"),
        pytest.param(lambda: sign(claims_with(nonce=DROP)), {}, "nonce", id="nonce-missing"),
        pytest.param(lambda: sign(claims_with(nonce=1)), {}, "nonce", id="nonce-not-string"),
        pytest.param(
            lambda: sign(claims_with(at_hash=half_hash("other-token", "sha256"))),
            {"access_token": ACCESS_TOKEN},
            "at-hash",
            id="at-hash-other-token",
        ),
        pytest.param(
            lambda: sign(claims_with(at_hash=half_hash(ACCESS_TOKEN, "sha512"))),
            {"access_token": ACCESS_TOKEN},
            "at-hash",
            id="at-hash-wrong-hash",
        ),
        pytest.param(
            lambda: sign(claims_with(at_hash=b64(hashlib.sha256(ACCESS_TOKEN.encode()).digest()))),
            {"access_token": ACCESS_TOKEN},
            "at-hash",
            id="at-hash-full-digest",
        ),
        pytest.param(
            lambda: sign(claims_with(at_hash=half_hash(ACCESS_TOKEN, "sha256"))),
            {"access_token": "tök"},
            "at-hash",
            id="at-hash-non-ascii-token",
        ),
        pytest.param(
            lambda: sign(claims_with(at_hash=12)),
            {"access_token": ACCESS_TOKEN},
            "claims",
            id="at-hash-not-string",
        ),
        pytest.param(lambda: sign(), {"jwks": {"keys": "nope"}}, "jwks", id="jwks-keys-not-list"),
        pytest.param(lambda: sign(), {"jwks": {}}, "jwks", id="jwks-empty-object"),
        pytest.param(lambda: sign(), {"jwks": {"keys": []}}, "unknown-kid", id="jwks-no-keys"),
    ],
)
def test_invalid_id_token_is_refused(
    make: Callable[[], str], kwargs: dict[str, Any], reason: str
) -> None:
    """Each failed check raises IDTokenError with its own reason; no claims come back."""
    with pytest.raises(IDTokenError) as info:
        validate(make(), **kwargs)
    assert info.value.reason == reason
    assert isinstance(info.value, OAuthLoopbackError)
    assert len(str(info.value)) > 40


@pytest.mark.parametrize(
    ("make", "kwargs", "says"),
    [
        pytest.param(_unsigned, {}, "id_token_signed_response_alg", id="unsigned"),
        pytest.param(_hmac_with_client_id, {}, "asymmetric key", id="symmetric"),
        pytest.param(
            lambda: sign(claims_with(iss="https://evil.example")),
            {},
            "'https://evil.example'",
            id="issuer",
        ),
        pytest.param(lambda: sign(claims_with(aud="other")), {}, "client_id=", id="audience"),
        pytest.param(
            lambda: sign(claims_with(exp=int(NOW) - 600)), {}, "Log in again", id="expired"
        ),
        pytest.param(lambda: sign(claims_with(nonce="x")), {}, "Start the login again", id="nonce"),
    ],
)
def test_refusal_message_says_what_to_do(
    make: Callable[[], str], kwargs: dict[str, Any], says: str
) -> None:
    """The message names what was wrong and the setting or action that fixes it."""
    with pytest.raises(IDTokenError, match=says.replace("(", r"\(")):
        validate(make(), **kwargs)


def test_issuer_message_names_both_issuers() -> None:
    """An issuer mismatch names the token's issuer and the expected one."""
    with pytest.raises(IDTokenError) as info:
        validate(sign(claims_with(iss="https://evil.example")))
    assert "https://evil.example" in str(info.value)
    assert repr(ISSUER) in str(info.value)


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"algorithms": ("HS256",)}, id="mac-algorithm"),
        pytest.param({"algorithms": ("none", "RS256")}, id="none-algorithm"),
        pytest.param({"algorithms": ()}, id="no-algorithms"),
        pytest.param({"issuer": ""}, id="empty-issuer"),
        pytest.param({"client_id": ""}, id="empty-client-id"),
    ],
)
def test_bad_arguments_raise_value_error(kwargs: dict[str, Any]) -> None:
    """A caller asking for a MAC or no algorithm, or an empty issuer/client, gets ValueError."""
    with pytest.raises(ValueError, match=r"\S"):
        validate(sign(), **kwargs)


def test_default_algorithms_are_asymmetric() -> None:
    """The default allow-list has RS256 (OIDC Core §15.1) and no MAC or 'none'."""
    assert "RS256" in ID_TOKEN_ALGORITHMS
    assert not [alg for alg in ID_TOKEN_ALGORITHMS if alg.startswith("HS") or alg == "none"]


def test_validation_emits_no_warnings() -> None:
    """Validating EdDSA tokens and skipping small RSA keys warns nothing (filterwarnings=error)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        validate(sign(key=ED25519, alg="EdDSA"), jwks=public(SMALL_RSA, ED25519))


# --- key rotation ----------------------------------------------------------------------------


class Fetcher:
    """An async JWKS source that serves the documents given, counting calls."""

    def __init__(self, *documents: Mapping[str, Any]) -> None:
        self.documents = list(documents)
        self.calls = 0

    async def __call__(self) -> Mapping[str, Any]:
        await anyio.lowlevel.checkpoint()
        self.calls += 1
        return self.documents.pop(0)


async def rotate(token: str, fetcher: Fetcher, jwks: Mapping[str, Any] | None) -> dict[str, Any]:
    return await validate_id_token_fetching_jwks(
        token,
        issuer=ISSUER,
        client_id=CLIENT,
        nonce=NONCE,
        fetch_jwks=fetcher,
        jwks=jwks,
        now=NOW,
    )


@pytest.mark.anyio
async def test_rotation_cached_jwks_still_good_fetches_nothing() -> None:
    """A token signed by a cached key validates without fetching the JWKS."""
    fetcher = Fetcher()
    assert (await rotate(sign(), fetcher, public(RSA)))["sub"] == "user-1"
    assert fetcher.calls == 0


@pytest.mark.anyio
async def test_rotation_new_kid_fetches_once() -> None:
    """A kid missing from the cached JWKS triggers one fetch, and the fresh set validates it."""
    fetcher = Fetcher(public(RSA, RSA_NEW))
    assert (await rotate(sign(key=RSA_NEW), fetcher, public(RSA)))["sub"] == "user-1"
    assert fetcher.calls == 1


@pytest.mark.anyio
async def test_rotation_without_kid_refetches_once_on_bad_signature() -> None:
    """No kid and no cached key verifying it: one fetch, then the new key validates it."""
    fetcher = Fetcher(public(RSA_NEW))
    token = sign(key=RSA_NEW, header={"kid": DROP})
    assert (await rotate(token, fetcher, public(RSA)))["sub"] == "user-1"
    assert fetcher.calls == 1


@pytest.mark.anyio
async def test_rotation_fetches_at_most_once() -> None:
    """A kid absent from both the cached and the fresh JWKS fails after exactly one fetch."""
    fetcher = Fetcher(public(RSA), public(RSA_NEW))
    with pytest.raises(IDTokenError) as info:
        await rotate(sign(key=RSA_NEW), fetcher, public(RSA))
    assert info.value.reason == "unknown-kid"
    assert fetcher.calls == 1


@pytest.mark.anyio
async def test_rotation_without_cache_fetches_once_and_never_again() -> None:
    """With no cached JWKS, the set is fetched once up front; a failure then is final."""
    good = Fetcher(public(RSA))
    assert (await rotate(sign(), good, None))["sub"] == "user-1"
    assert good.calls == 1
    stale = Fetcher(public(RSA), public(RSA_NEW))
    with pytest.raises(IDTokenError) as info:
        await rotate(sign(key=RSA_NEW), stale, None)
    assert info.value.reason == "unknown-kid"
    assert stale.calls == 1


@pytest.mark.anyio
async def test_rotation_known_kid_bad_signature_is_not_refetched() -> None:
    """A bad signature under a known kid is a forgery, not a rotation: no fetch, refused."""
    fetcher = Fetcher(public(RSA_NEW))
    with pytest.raises(IDTokenError) as info:
        await rotate(sign(key=RSA_NEW, header={"kid": "rsa-1"}), fetcher, public(RSA))
    assert info.value.reason == "signature"
    assert fetcher.calls == 0


@pytest.mark.anyio
async def test_rotation_other_failures_are_not_refetched() -> None:
    """A wrong nonce or an unsigned token fails at once, without fetching the JWKS."""
    fetcher = Fetcher(public(RSA))
    for token, reason in ((sign(claims_with(nonce="x")), "nonce"), (_unsigned(), "unsigned")):
        with pytest.raises(IDTokenError) as info:
            await rotate(token, fetcher, public(RSA))
        assert info.value.reason == reason
    assert fetcher.calls == 0


@pytest.mark.anyio
async def test_rotation_fetch_error_reaches_the_caller() -> None:
    """An error raised by fetch_jwks propagates unchanged (it is the caller's transport's)."""

    async def broken() -> Mapping[str, Any]:
        await anyio.lowlevel.checkpoint()
        raise ConnectionError("jwks_uri unreachable")

    with pytest.raises(ConnectionError, match="unreachable"):
        await validate_id_token_fetching_jwks(
            sign(key=RSA_NEW),
            issuer=ISSUER,
            client_id=CLIENT,
            nonce=NONCE,
            fetch_jwks=broken,
            jwks=public(RSA),
            now=NOW,
        )
