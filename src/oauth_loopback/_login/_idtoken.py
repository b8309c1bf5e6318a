"""ID token validation (OpenID Connect Core 1.0 §3.1.3.7), for a public native client.

:func:`validate_id_token` is sync and pure: the token, what this login expects, and the
issuer's JWKS in; the validated claims out, or an :class:`IDTokenError` whose ``reason`` says
which check failed. :func:`validate_id_token_fetching_jwks` adds key rotation: when the token
names a key the cached JWKS does not have, it fetches the JWKS once more and tries again.

joserfc checks the signature. A public client holds no secret, so an HMAC-signed ID token
(HS256, ...) could have been made by anyone who knows the client ID: it is refused, like
``alg: none``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Any, Final, NoReturn

from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, Key, OKPKey, RSAKey, import_key

from .._errors import IDTokenError
from ._jose import MIN_RSA_BITS, PARSER, b64url, quiet_joserfc

__all__ = [
    "ID_TOKEN_ALGORITHMS",
    "validate_id_token",
    "validate_id_token_fetching_jwks",
]

logger = logging.getLogger(__name__)

#: The signing algorithms accepted by default: the asymmetric JWS algorithms of RFC 7518 §3.1
#: and EdDSA (RFC 8037). OIDC Core §15.1 makes RS256 mandatory to implement.
ID_TOKEN_ALGORITHMS: Final[tuple[str, ...]] = (
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
)
_ASYMMETRIC: Final = frozenset(ID_TOKEN_ALGORITHMS)
_EDDSA_CURVES: Final = frozenset({"Ed25519", "Ed448"})
# Keys tried for a token without a kid; a JWKS rarely has more than a few per algorithm.
_MAX_CANDIDATES: Final = 16
# The failures a newer JWKS can cure: the key was rotated in after our copy was fetched.
# ("signature" only counts when the token names no kid: see _may_be_rotation.)
_ROTATION_REASONS: Final = frozenset({"unknown-kid", "no-key"})


def _fail(reason: str, message: str) -> NoReturn:
    raise IDTokenError(reason, message)


def _half_hash(value: str, alg: str, key: Key) -> str:
    """OIDC Core §3.1.3.8 (``at_hash``): the left half of the hash the JWS ``alg`` uses.

    For EdDSA, OIDC Core (errata set 2, §3.1.3.6) names SHA-512 for Ed25519 and SHAKE256 with
    a 114-octet output for Ed448.
    """
    octets = value.encode("ascii")
    if alg == "EdDSA":
        if isinstance(key, OKPKey) and key.curve_name == "Ed448":
            digest = hashlib.shake_256(octets).digest(114)
        else:
            digest = hashlib.sha512(octets).digest()
    else:
        digest = hashlib.new(f"sha{alg[2:]}", octets).digest()
    return b64url(digest[: len(digest) // 2])


def _import_jwks(jwks: Mapping[str, Any]) -> list[Key]:
    """The usable keys of a JWKS document (RFC 7517 §5); unusable members are skipped."""
    members = jwks.get("keys") if isinstance(jwks, Mapping) else None
    if not isinstance(members, list):
        _fail(
            "jwks",
            "The issuer's JWKS is not a JSON object with a 'keys' list (RFC 7517 §5). Check "
            "the jwks_uri in the server's metadata.",
        )
    keys: list[Key] = []
    for member in members:
        if not isinstance(member, dict):
            continue
        try:
            with quiet_joserfc():
                keys.append(import_key(member))
        except (JoseError, ValueError, TypeError, KeyError) as exc:
            # RFC 7517 §5: a member we cannot use is ignored, not fatal to the set.
            logger.debug("ignoring a JWKS member joserfc cannot import: %s", type(exc).__name__)
    return keys


def _fits(key: Key, alg: str, registry: jws.JWSRegistry) -> bool:
    """Whether ``key`` may verify a JWS signed with ``alg``."""
    if key.get("use") not in (None, "sig"):
        return False
    key_ops = key.get("key_ops")
    if key_ops is not None and "verify" not in key_ops:
        return False
    try:
        with quiet_joserfc():
            registry.get_alg(alg).check_key(key)  # kty, the key's own "alg", EC curve
    except JoseError:
        return False
    if isinstance(key, RSAKey):
        return key.public_key.key_size >= MIN_RSA_BITS
    if isinstance(key, OKPKey):
        return key.curve_name in _EDDSA_CURVES
    return isinstance(key, ECKey)


def _verified_payload(
    id_token: str, jwks: Mapping[str, Any], algorithms: Collection[str]
) -> tuple[dict[str, Any], str, Key]:
    """Check the JOSE layer: structure, algorithm, key selection, signature."""
    if not isinstance(id_token, str) or not id_token:
        _fail("malformed", "The token response's id_token is missing or not a string.")
    dots = id_token.count(".")
    if dots == 4:
        _fail(
            "encrypted",
            "The ID token is encrypted (a JWE); oauth-loopback validates signed ID tokens only. "
            "Register the client without id_token_encrypted_response_alg.",
        )
    if dots != 2:
        _fail("malformed", "The ID token is not a JWS in compact form (three dot-separated parts).")
    try:
        obj = jws.extract_compact(id_token.encode("ascii"), registry=PARSER)
    except (JoseError, ValueError):  # UnicodeEncodeError is a ValueError
        _fail("malformed", "The ID token could not be parsed as a JWS.")
    header = obj.headers()
    alg = header.get("alg")
    if alg == "none":
        _fail(
            "unsigned",
            "The ID token is unsigned (alg 'none'), so anyone could have written it; it was "
            "refused. Configure the server to sign ID tokens (id_token_signed_response_alg, "
            "e.g. RS256).",
        )
    if isinstance(alg, str) and alg.startswith("HS"):
        _fail(
            "symmetric",
            f"The ID token is signed with {alg}, a shared-secret MAC. A public client has no "
            f"secret to check it with, and anyone who knows the client ID could forge one; it "
            f"was refused. Configure the server to sign ID tokens with an asymmetric key "
            f"(id_token_signed_response_alg, e.g. RS256 or ES256).",
        )
    if not isinstance(alg, str) or alg not in algorithms:
        _fail(
            "algorithm",
            f"The ID token is signed with {alg!r}, which is not one of the accepted algorithms "
            f"({', '.join(algorithms)}). Configure the server's id_token_signed_response_alg "
            f"to one of them, or pass it in algorithms=.",
        )
    kid = header.get("kid")
    if kid is not None and not isinstance(kid, str):
        _fail("malformed", "The ID token's kid header is not a string.")

    registry = jws.JWSRegistry(algorithms=[alg], strict_check_header=False)
    keys = _import_jwks(jwks)
    if kid is not None:
        named = [key for key in keys if key.get("kid") == kid]
        if not named:
            _fail(
                "unknown-kid",
                f"The ID token is signed with key {kid!r}, which is not in the issuer's JWKS. "
                f"If the server rotated its keys, log in again; otherwise the token did not "
                f"come from this issuer.",
            )
        candidates = [key for key in named if _fits(key, alg, registry)]
    else:
        candidates = [key for key in keys if _fits(key, alg, registry)]
    if not candidates:
        _fail(
            "no-key",
            f"The issuer's JWKS has no key that can verify an {alg} signature"
            f"{f' under kid {kid!r}' if kid is not None else ''}. Check the server's jwks_uri "
            f"and its id_token_signed_response_alg.",
        )
    # OIDC Core §10.1 asks for a kid when the set has several keys; without one, each key
    # that fits the algorithm is tried, up to a bound.
    for key in candidates[:_MAX_CANDIDATES]:
        try:
            with quiet_joserfc():
                valid = jws.validate_compact(obj, key, registry=registry)
        except JoseError:
            valid = False
        if valid:
            break
    else:
        _fail(
            "signature",
            "The ID token's signature does not verify with the issuer's key, so it was not "
            "issued by this issuer or was altered; it was refused. Log in again; if this "
            "persists, check the issuer URL.",
        )
    try:
        claims = json.loads(obj.payload)
    except ValueError:
        claims = None
    if not isinstance(claims, dict):
        _fail("malformed", "The ID token's payload is not a JSON object.")
    return claims, alg, key


def _number(claims: Mapping[str, Any], name: str) -> float:
    value = claims.get(name)
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        _fail(
            "claims",
            f"The ID token's {name!r} claim is missing or not a number (OIDC Core §2 requires "
            f"iss, sub, aud, exp and iat). The server's ID tokens do not follow the standard.",
        )
    return float(value)


def validate_id_token(
    id_token: str,
    *,
    issuer: str,
    client_id: str,
    nonce: str | None,
    jwks: Mapping[str, Any],
    access_token: str | None = None,
    now: float | None = None,
    leeway: float = 60.0,
    algorithms: Collection[str] = ID_TOKEN_ALGORITHMS,
) -> dict[str, Any]:
    """Validate an ID token as OIDC Core §3.1.3.7 says; return its claims.

    ``issuer`` is the issuer identifier the login used (compared exactly), ``client_id`` this
    client's ID, ``jwks`` the issuer's JWKS document (``{"keys": [...]}`` from ``jwks_uri``).
    ``nonce`` is the value sent in the authorization request, which the token must carry;
    pass None only for an ID token from a refresh grant, where no nonce was sent (OIDC Core
    §12.2). With ``access_token`` (from the same response), an ``at_hash`` claim must match it
    (§3.1.3.8). ``exp``, ``nbf`` and ``iat`` are checked against ``now`` (Unix seconds,
    default the clock) with ``leeway`` seconds of clock skew either way.

    Raises :class:`IDTokenError` (``.reason`` names the failed check); never returns claims
    that failed a check.
    """
    allowed = tuple(algorithms)
    bad = [alg for alg in allowed if alg not in _ASYMMETRIC]
    if not allowed or bad:
        msg = (
            f"algorithms={list(allowed)!r} must be a non-empty subset of "
            f"{list(ID_TOKEN_ALGORITHMS)!r}; {bad!r} cannot be checked by a public client."
        )
        raise ValueError(msg)
    if not (isinstance(issuer, str) and issuer and isinstance(client_id, str) and client_id):
        msg = "issuer= and client_id= must be non-empty strings."
        raise ValueError(msg)
    claims, alg, key = _verified_payload(id_token, jwks, allowed)

    # §3.1.3.7 step 2: the issuer, exactly.
    token_issuer = claims.get("iss")
    if token_issuer != issuer:
        _fail(
            "issuer",
            f"The ID token was issued by {token_issuer!r}, but this login expected {issuer!r} "
            f"(OIDC Core §3.1.3.7). Pass the issuer exactly as the server's metadata spells it "
            f"(issuer=); a different issuer here can mean a mix-up attack.",
        )
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        _fail("claims", "The ID token has no 'sub' claim (OIDC Core §2 requires one).")

    # Steps 3-5: this client is an audience, and the authorized party when there are others.
    audience = claims.get("aud")
    audiences = [audience] if isinstance(audience, str) else audience
    if not isinstance(audiences, list) or not all(isinstance(a, str) for a in audiences):
        _fail("claims", "The ID token's 'aud' claim is missing or not a string or list of strings.")
    if client_id not in audiences:
        _fail(
            "audience",
            f"The ID token was issued for {audiences!r}, not for this client ({client_id!r}). "
            f"Pass the client ID this login registered (client_id=); a token for another "
            f"client must not log you in here.",
        )
    azp = claims.get("azp")
    if len(audiences) > 1 and azp is None:
        _fail(
            "azp",
            "The ID token names several audiences but no authorized party ('azp'), so it cannot "
            "be shown to be meant for this client (OIDC Core §3.1.3.7).",
        )
    if azp is not None and azp != client_id:
        _fail(
            "azp",
            f"The ID token's authorized party is {azp!r}, not this client ({client_id!r}); it "
            f"was issued to another client and was refused.",
        )

    # Steps 9-10 (and RFC 7519 §4.1.5 for nbf), with leeway for clock skew.
    current = time.time() if now is None else now
    expires = _number(claims, "exp")
    issued = _number(claims, "iat")
    if current - leeway >= expires:
        _fail(
            "expired",
            f"The ID token expired {current - expires:.0f} seconds ago (leeway {leeway:g} s). "
            f"Log in again; if it was just issued, this machine's clock is wrong.",
        )
    if issued > current + leeway:
        _fail(
            "issued-in-future",
            f"The ID token was issued {issued - current:.0f} seconds in the future (leeway "
            f"{leeway:g} s). This machine's clock or the server's is wrong; fix the clock.",
        )
    if "nbf" in claims and _number(claims, "nbf") > current + leeway:
        _fail(
            "not-yet-valid",
            "The ID token is not valid yet (nbf). This machine's clock or the server's is "
            "wrong; fix the clock.",
        )

    # Step 11: the nonce binds the token to this login's authorization request.
    if nonce is not None:
        token_nonce = claims.get("nonce")
        if not isinstance(token_nonce, str) or not hmac.compare_digest(
            token_nonce.encode(), nonce.encode()
        ):
            what = "carries no nonce" if token_nonce is None else "carries another login's nonce"
            _fail(
                "nonce",
                f"The ID token {what}, not the one this login sent, so it may have been "
                f"replayed from another login (OIDC Core §3.1.3.7); it was refused. Start the "
                f"login again.",
            )

    # §3.1.3.8: at_hash ties the access token of the same response to the ID token.
    at_hash = claims.get("at_hash")
    if at_hash is not None and access_token is not None:
        if not isinstance(at_hash, str):
            _fail("claims", "The ID token's 'at_hash' claim is not a string.")
        try:
            expected = _half_hash(access_token, alg, key)
        except UnicodeEncodeError:
            expected = ""
        if not hmac.compare_digest(at_hash.encode(), expected.encode()):
            _fail(
                "at-hash",
                "The ID token's at_hash does not match the access token it came with, so the "
                "two were not issued together; both were refused. Log in again.",
            )
    return claims


def _may_be_rotation(error: IDTokenError, id_token: str) -> bool:
    """Whether a newer JWKS could make this token valid (its key was rotated in since)."""
    if error.reason in _ROTATION_REASONS:
        return True
    if error.reason != "signature":
        return False
    # A bad signature under a kid we know is a forgery or corruption, not a rotation; with no
    # kid the issuer may have replaced its only key.
    header = jws.extract_compact(id_token.encode("ascii"), registry=PARSER).headers()
    return header.get("kid") is None


async def validate_id_token_fetching_jwks(
    id_token: str,
    *,
    issuer: str,
    client_id: str,
    nonce: str | None,
    fetch_jwks: Callable[[], Awaitable[Mapping[str, Any]]],
    jwks: Mapping[str, Any] | None = None,
    access_token: str | None = None,
    now: float | None = None,
    leeway: float = 60.0,
    algorithms: Collection[str] = ID_TOKEN_ALGORITHMS,
) -> dict[str, Any]:
    """:func:`validate_id_token`, fetching the issuer's JWKS at most once more on rotation.

    With a cached ``jwks``, it is tried first; if the token names a ``kid`` the cache lacks,
    or has no ``kid`` and no cached key verifies it, the issuer may have rotated its keys:
    ``await fetch_jwks()`` once and validate against the fresh set. Without ``jwks``, the set
    is fetched once up front and never again. Either way ``fetch_jwks`` is awaited at most
    once, and a failure against a freshly fetched set is final. Keep what ``fetch_jwks``
    returns as the next call's ``jwks``.
    """

    def check(document: Mapping[str, Any]) -> dict[str, Any]:
        return validate_id_token(
            id_token,
            issuer=issuer,
            client_id=client_id,
            nonce=nonce,
            jwks=document,
            access_token=access_token,
            now=now,
            leeway=leeway,
            algorithms=algorithms,
        )

    if jwks is not None:
        try:
            return check(jwks)
        except IDTokenError as exc:
            if not _may_be_rotation(exc, id_token):
                raise
            logger.debug("ID token key not in the cached JWKS (%s); fetching it once", exc.reason)
    return check(await fetch_jwks())
