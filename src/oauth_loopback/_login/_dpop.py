"""DPoP (RFC 9449): a per-login key, the proofs it signs, and the server-side checks.

The client side is sans-I/O: :class:`DPoPKey` signs a proof for one request, and the helpers
below read what the server answered (``DPoP-Nonce``, ``use_dpop_nonce``) and decide whether the
request is worth one retry. The caller does the sending. :func:`verify_proof` is the other
half, for the embedded test authorization server and resource server: every check of RFC 9449
§4.3, each failure a :class:`DPoPProofRejected` with its own ``reason``.

All signing and verifying is joserfc's; this module only decides what goes into a proof and
what a valid one must contain.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import time
from collections.abc import Callable, Collection, Iterator, Mapping, MutableSet
from collections.abc import Set as AbstractSet
from typing import Any, Final, NoReturn
from urllib.parse import urlsplit

from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, RSAKey, import_key

from .._errors import DPoPKeyInvalid, DPoPProofRejected
from ._dpop_wire import (
    DPOP_ALGORITHM,
    HTTP_TOKEN_RE,
    dpop_nonce,
    is_use_dpop_nonce,
    parse_www_authenticate,
    retry_nonce,
    server_supports_dpop,
)
from ._jose import MIN_RSA_BITS, PARSER, b64url, quiet_joserfc

__all__ = [
    "DPOP_ALGORITHM",
    "DPoPKey",
    "JtiCache",
    "access_token_hash",
    "dpop_nonce",
    "is_use_dpop_nonce",
    "normalize_htu",
    "parse_www_authenticate",
    "retry_nonce",
    "server_supports_dpop",
    "verify_proof",
]


# RFC 9449 §4.3 check 5: asymmetric algorithms only ("none" and MACs are refused outright).
# EdDSA is left out: the servers this verifier is for (the embedded ones) advertise ES256.
_ASYMMETRIC: Final = frozenset(
    {"ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}
)
# JWK members that only a private key has (RFC 7518 §6.2.2, §6.3.2, §6.4); a proof's ``jwk``
# must carry none of them (RFC 9449 §4.3 check 7).
_PRIVATE_JWK_MEMBERS: Final = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
# RFC 9449 §4.2: "jti ... at least 96 bits of pseudorandom data"; we use 128.
_JTI_BYTES: Final = 16
# What the server stores per proof is bounded: a longer jti is refused.
_MAX_JTI_LENGTH: Final = 256
# RFC 3986 §6.2.2.2: percent-encoded octets of unreserved characters are decoded.
_UNRESERVED: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_PCT_RE: Final = re.compile(r"%([0-9A-Fa-f]{2})")
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
_TYPES: Final = frozenset({"dpop+jwt", "application/dpop+jwt"})


def access_token_hash(access_token: str) -> str:
    """The ``ath`` claim: base64url of the SHA-256 of the ASCII access token (RFC 9449 §4.2)."""
    try:
        octets = access_token.encode("ascii")
    except UnicodeEncodeError:
        msg = (
            "The access token contains non-ASCII characters, so it cannot be bound to a DPoP "
            "proof (RFC 9449 §4.2 hashes its ASCII encoding). Pass the token exactly as the "
            "token endpoint returned it."
        )
        raise ValueError(msg) from None
    return b64url(hashlib.sha256(octets).digest())


# --- htu -------------------------------------------------------------------------------------


def _normalize_percent(segment: str) -> str:
    # RFC 3986 §6.2.2.1 (upper-case hex) and §6.2.2.2 (decode unreserved characters).
    def fix(match: re.Match[str]) -> str:
        char = chr(int(match.group(1), 16))
        return char if char in _UNRESERVED else "%" + match.group(1).upper()

    return _PCT_RE.sub(fix, segment)


def _remove_dot_segments(path: str) -> str:
    # RFC 3986 §5.2.4, on segments: "." is dropped, ".." drops the segment before it.
    out: list[str] = []
    segments = path.split("/")
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        if segment == ".":
            if last:
                out.append("")
        elif segment == "..":
            if len(out) > 1:
                out.pop()
            if last:
                out.append("")
        else:
            out.append(segment)
    return "/".join(out)


def normalize_htu(url: str) -> str:
    """The ``htu`` form of a request URI: no query or fragment (RFC 9449 §4.2), normalised.

    Normalised as RFC 9449 §4.3 asks of servers, by syntax (RFC 3986 §6.2.2: lower-case scheme
    and host, upper-case percent-encodings, unreserved characters decoded, dot segments
    removed) and by scheme (§6.2.3: no default port, an empty path is ``/``), so the client
    and the server compute the same string. Raises :class:`ValueError` for anything that is
    not an absolute ``http``/``https`` URI with a host.
    """
    if not isinstance(url, str) or any(ord(c) <= 0x20 or ord(c) == 0x7F for c in url):
        # urlsplit() silently deletes tabs and newlines; a URI with them is refused instead.
        msg = (
            f"The DPoP target URI {url!r} is not a URI: it contains spaces or control "
            f"characters. Pass the URL the request is sent to."
        )
        raise ValueError(msg)
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        host = parts.hostname
        port = parts.port
    except ValueError as exc:
        msg = f"The DPoP target URI {url!r} has an invalid host or port: {exc}."
        raise ValueError(msg) from None
    if scheme not in _DEFAULT_PORTS or not host:
        msg = (
            f"The DPoP target URI {url!r} is not an absolute http(s) URI; pass the full URL "
            f"the request is sent to (RFC 9449 §4.2 htu)."
        )
        raise ValueError(msg)
    if parts.username is not None or parts.password is not None:
        # RFC 9110 §4.2.4: userinfo is not part of an http(s) target URI.
        msg = f"The DPoP target URI {url!r} carries user information; remove it."
        raise ValueError(msg)
    netloc = f"[{host}]" if ":" in host else host
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        netloc = f"{netloc}:{port}"
    path = _remove_dot_segments(_normalize_percent(parts.path)) or "/"
    return f"{scheme}://{netloc}{path}"


# --- the client's key ------------------------------------------------------------------------


class DPoPKey:
    """A DPoP key pair (ES256 on P-256) that signs proofs for one login (RFC 9449 §4).

    Make one with :meth:`generate`, keep :meth:`private_jwk` in the token store (0600 file or
    keyring, next to the tokens bound to it), and load it back with :meth:`from_jwk`. The
    private half never appears in a repr; only the thumbprint :attr:`jkt` does.
    """

    __slots__ = ("_jkt", "_key", "_public_jwk")

    def __init__(self, key: ECKey) -> None:
        """Wrap a private P-256 joserfc key; prefer :meth:`generate` or :meth:`from_jwk`."""
        if not isinstance(key, ECKey) or not key.is_private or key.curve_name != "P-256":
            detail = "it is not a private P-256 (ES256) key"
            raise DPoPKeyInvalid(detail)
        self._key = key
        public = key.as_dict(private=False)
        self._public_jwk: dict[str, str] = {
            "kty": "EC",
            "crv": "P-256",
            "x": str(public["x"]),
            "y": str(public["y"]),
        }
        # RFC 7638 §3: the SHA-256 thumbprint of the required members (crv, kty, x, y).
        self._jkt: str = key.thumbprint()

    @classmethod
    def generate(cls) -> DPoPKey:
        """A fresh key pair from the operating system's random source."""
        return cls(ECKey.generate_key("P-256", private=True))

    @classmethod
    def from_jwk(cls, data: Mapping[str, Any]) -> DPoPKey:
        """Load a key saved with :meth:`private_jwk`; raises :class:`DPoPKeyInvalid` if unusable."""
        if not isinstance(data, Mapping):
            detail = f"it is a {type(data).__name__}, not a JWK object"
            raise DPoPKeyInvalid(detail)
        if data.get("kty") != "EC" or data.get("crv") != "P-256":
            detail = "it is not an EC P-256 JWK (kty 'EC', crv 'P-256')"
            raise DPoPKeyInvalid(detail)
        if not isinstance(data.get("d"), str):
            detail = "it has no private part ('d')"
            raise DPoPKeyInvalid(detail)
        members = {name: data[name] for name in ("kty", "crv", "x", "y", "d") if name in data}
        try:
            key = ECKey.import_key(members)
        except (JoseError, ValueError, TypeError, KeyError) as exc:
            # cryptography refuses a point off the curve or a 'd' that does not match x/y.
            detail = f"joserfc could not import it ({type(exc).__name__})"
            raise DPoPKeyInvalid(detail) from None
        return cls(key)

    def private_jwk(self) -> dict[str, str]:
        """The private key as a JWK (``kty``, ``crv``, ``x``, ``y``, ``d``), for the store only."""
        private = self._key.as_dict(private=True)
        return {**self._public_jwk, "d": str(private["d"])}

    @property
    def public_jwk(self) -> dict[str, str]:
        """The public key as a JWK (``kty``, ``crv``, ``x``, ``y``): what each proof carries."""
        return dict(self._public_jwk)

    @property
    def jkt(self) -> str:
        """The RFC 7638 thumbprint: ``dpop_jkt`` of PAR / authorization requests (RFC 9449 §10)."""
        return self._jkt

    @property
    def algorithm(self) -> str:
        """``ES256``, for matching against ``dpop_signing_alg_values_supported``."""
        return DPOP_ALGORITHM

    def proof(
        self,
        htm: str,
        htu: str,
        *,
        access_token: str | None = None,
        nonce: str | None = None,
        now: float | None = None,
    ) -> str:
        """A DPoP proof JWT for one request (RFC 9449 §4.2), for the ``DPoP`` header.

        ``htm`` is the HTTP method, ``htu`` the request URL (its query and fragment are
        dropped, see :func:`normalize_htu`). Pass ``access_token`` when the request carries
        one (resource requests: adds ``ath``, §7.1) and the server's latest ``nonce`` when it
        has sent one (§8, §9). ``now`` (Unix seconds) is for tests; the default is the clock.
        """
        if not isinstance(htm, str) or not HTTP_TOKEN_RE.fullmatch(htm):
            msg = f"htm={htm!r} is not an HTTP method; pass the request's method, e.g. 'POST'."
            raise ValueError(msg)
        if nonce is not None and (not isinstance(nonce, str) or not nonce):
            msg = "nonce= must be the server's DPoP-Nonce value (a non-empty string) or None."
            raise ValueError(msg)
        claims: dict[str, Any] = {
            "jti": secrets.token_urlsafe(_JTI_BYTES),
            "htm": htm,
            "htu": normalize_htu(htu),
            "iat": int(time.time() if now is None else now),
        }
        if access_token is not None:
            claims["ath"] = access_token_hash(access_token)
        if nonce is not None:
            claims["nonce"] = nonce
        header = {"typ": "dpop+jwt", "alg": DPOP_ALGORITHM, "jwk": self.public_jwk}
        return jwt.encode(header, claims, self._key, algorithms=[DPOP_ALGORITHM])

    def __repr__(self) -> str:
        return f"DPoPKey(jkt={self._jkt!r})"

    def __reduce__(self) -> tuple[object, ...]:
        # Pickling would write the private key wherever the pickle goes; keys are stored
        # through private_jwk() in the token store, nowhere else.
        msg = "DPoPKey is not picklable; store private_jwk() in the token store instead."
        raise TypeError(msg)


# --- the server's checks ---------------------------------------------------------------------


class JtiCache(MutableSet[str]):
    """The ``jti`` values of accepted proofs, each kept for ``retention`` seconds (RFC 9449 §11.1).

    Pass one per server as ``verify_proof(seen_jtis=...)``. ``retention`` must cover the whole
    window in which :func:`verify_proof` accepts a proof's ``iat`` (``max_age`` plus twice the
    ``leeway``), or an old proof could be replayed once its ``jti`` is forgotten. Expired
    entries are dropped as new ones arrive, so memory is bounded by the request rate times
    ``retention``.
    """

    def __init__(
        self, retention: float = 600.0, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        """Remember each jti for ``retention`` seconds of ``clock``."""
        if not retention > 0:
            msg = f"retention={retention!r} must be a positive number of seconds."
            raise ValueError(msg)
        self.retention = float(retention)
        self._clock = clock
        self._expiry: dict[str, float] = {}  # insertion order is expiry order

    def _prune(self, now: float) -> None:
        expiry = self._expiry
        while expiry:
            oldest = next(iter(expiry))
            if expiry[oldest] > now:
                break
            del expiry[oldest]

    def __contains__(self, jti: object) -> bool:
        self._prune(self._clock())
        return jti in self._expiry

    def __iter__(self) -> Iterator[str]:
        self._prune(self._clock())
        return iter(list(self._expiry))

    def __len__(self) -> int:
        self._prune(self._clock())
        return len(self._expiry)

    def add(self, value: str) -> None:
        """Remember ``value`` from now until ``retention`` seconds have passed."""
        now = self._clock()
        self._prune(now)
        if value not in self._expiry:
            self._expiry[value] = now + self.retention

    def discard(self, value: str) -> None:
        """Forget ``value``."""
        self._expiry.pop(value, None)

    def __repr__(self) -> str:
        return f"JtiCache(retention={self.retention:g}, size={len(self._expiry)})"


def _reject(reason: str, message: str) -> NoReturn:
    raise DPoPProofRejected(reason, message)


def _decode_proof(proof: str) -> tuple[jws.CompactSignature, dict[str, Any], str]:
    """Parse the proof and check its header (RFC 9449 §4.3 checks 2, 4, 5, 7)."""
    if not isinstance(proof, str) or not proof or proof.count(".") != 2:
        _reject(
            "malformed",
            "The DPoP header is not a signed JWT (three base64url parts). Send one proof made "
            "for this request in the DPoP header.",
        )
    try:
        obj = jws.extract_compact(proof.encode("ascii"), registry=PARSER)
    except (JoseError, ValueError):  # UnicodeEncodeError is a ValueError
        _reject(
            "malformed",
            "The DPoP proof could not be parsed as a JWS. Send one proof made for this request.",
        )
    header = obj.headers()
    typ = header.get("typ")
    if not isinstance(typ, str) or typ.lower() not in _TYPES:
        _reject(
            "typ",
            f"The DPoP proof has typ {typ!r}; RFC 9449 §4.2 requires 'dpop+jwt'. Set the JOSE "
            f"header typ to 'dpop+jwt'.",
        )
    alg = header.get("alg")
    if alg == "none":
        _reject(
            "alg-none",
            "The DPoP proof is unsigned (alg 'none'). RFC 9449 §4.3 requires an asymmetric "
            "signature; sign it with the key in its jwk header (e.g. ES256).",
        )
    if not isinstance(alg, str) or alg not in _ASYMMETRIC:
        _reject(
            "alg",
            f"The DPoP proof is signed with {alg!r}, which is not an asymmetric algorithm "
            f"this server accepts (RFC 9449 §4.3). Sign it with ES256.",
        )
    public = header.get("jwk")
    if not isinstance(public, dict):
        _reject(
            "jwk",
            "The DPoP proof has no jwk header. Put the public key the proof is signed with "
            "in the jwk JOSE header (RFC 9449 §4.2).",
        )
    if _PRIVATE_JWK_MEMBERS.intersection(public):
        _reject(
            "jwk-private",
            "The DPoP proof's jwk header contains private key material (RFC 9449 §4.3 "
            "forbids it). Send only the public key; treat this private key as leaked.",
        )
    return obj, public, alg


def verify_proof(
    proof: str,
    *,
    htm: str,
    htu: str,
    seen_jtis: MutableSet[str],
    access_token: str | None = None,
    expected_nonce: str | AbstractSet[str] | None = None,
    jkt: str | None = None,
    max_age: float = 300.0,
    leeway: float = 5.0,
    algorithms: Collection[str] = (DPOP_ALGORITHM,),
    now: float | None = None,
) -> str:
    """Check a DPoP proof as RFC 9449 §4.3 says; return the thumbprint of its key.

    ``htm``/``htu`` are the method and URL the request actually arrived with. With
    ``access_token`` the proof must carry a matching ``ath`` (§7.1); with ``jkt`` its key
    must be the one the token is bound to (``cnf.jkt``, §6.1; a public client's refresh token,
    §5); with ``expected_nonce`` (one nonce, or a set such as the current and the previous)
    its ``nonce`` must be one of them (§8, §9). ``iat`` must lie within ``max_age`` seconds
    before ``now`` and at most ``leeway`` after it (§11.1). An accepted proof's ``jti`` is
    added to ``seen_jtis`` (a :class:`JtiCache`, or any mutable set), and a ``jti`` already
    there is a replay.

    Raises :class:`DPoPProofRejected`; its ``error`` is ``use_dpop_nonce`` for a missing or
    stale nonce and ``invalid_dpop_proof`` otherwise, its message fit for
    ``error_description``. Raises :class:`ValueError` if ``htu`` itself is not a URL.
    """
    expected_htu = normalize_htu(htu)
    allowed = set(algorithms)
    if not allowed or not allowed <= _ASYMMETRIC:
        msg = (
            f"algorithms={sorted(allowed)!r} must be a non-empty subset of {sorted(_ASYMMETRIC)!r}."
        )
        raise ValueError(msg)
    obj, public, alg = _decode_proof(proof)
    if alg not in allowed:
        _reject(
            "alg",
            f"The DPoP proof is signed with {alg}, but this server accepts "
            f"{', '.join(sorted(allowed))} (see dpop_signing_alg_values_supported).",
        )

    # RFC 9449 §4.3 check 6: the signature verifies with the key in the jwk header.
    try:
        with quiet_joserfc():
            key = import_key(public)
        registry = jws.JWSRegistry(algorithms=[alg], strict_check_header=False)
        registry.get_alg(alg).check_key(key)
        if isinstance(key, RSAKey) and key.public_key.key_size < MIN_RSA_BITS:
            msg = f"an RSA key of {key.public_key.key_size} bits"
            raise ValueError(msg)
    except (JoseError, ValueError, TypeError, KeyError) as exc:
        _reject(
            "jwk",
            f"The DPoP proof's jwk header is not a public key usable with {alg} "
            f"({type(exc).__name__}). Send the public key the proof is signed with.",
        )
    try:
        valid = jws.validate_compact(obj, key, registry=registry)
    except (JoseError, ValueError):
        _reject("signature", "The DPoP proof's header could not be checked.")
    if not valid:
        _reject(
            "signature",
            "The DPoP proof's signature does not verify with the key in its jwk header. Sign "
            "the proof with the private key matching that jwk.",
        )
    thumbprint = key.thumbprint()

    try:
        claims = json.loads(obj.payload)
    except ValueError:
        claims = None
    if not isinstance(claims, dict):
        _reject("malformed", "The DPoP proof's payload is not a JSON object.")
    jti, proof_htm, proof_htu = claims.get("jti"), claims.get("htm"), claims.get("htu")
    iat = claims.get("iat")
    if not (
        isinstance(jti, str)
        and 0 < len(jti) <= _MAX_JTI_LENGTH
        and isinstance(proof_htm, str)
        and isinstance(proof_htu, str)
        and isinstance(iat, (int, float))
        and not isinstance(iat, bool)
    ):
        _reject(
            "claims",
            "The DPoP proof lacks one of the claims jti, htm, htu, iat, or one has the wrong "
            "type (jti: a string of at most 256 characters). RFC 9449 §4.2 requires all four.",
        )

    # §4.3 check 8, 9: method and URI of this request.
    if proof_htm != htm:
        _reject(
            "htm",
            f"The DPoP proof was made for method {proof_htm!r}, but this request is {htm!r}. "
            f"Make a new proof for each request.",
        )
    try:
        claimed_htu = normalize_htu(proof_htu)
    except ValueError:
        claimed_htu = None
    if claimed_htu != expected_htu:
        _reject(
            "htu",
            f"The DPoP proof was made for {proof_htu!r}, but this request went to "
            f"{expected_htu!r}. Make the proof for the URL the request is sent to.",
        )

    # §4.3 check 11 and §11.1: only recent proofs, so the jti store stays bounded.
    current = time.time() if now is None else now
    if iat > current + leeway:
        _reject(
            "iat",
            f"The DPoP proof's iat is {iat - current:.0f} seconds in the future. Check the "
            f"client machine's clock.",
        )
    if iat < current - max_age:
        _reject(
            "iat",
            f"The DPoP proof was issued {current - iat:.0f} seconds ago; this server accepts "
            f"proofs up to {max_age:g} seconds old. Make a new proof for each request (and "
            f"check the client machine's clock).",
        )

    # §4.3 check 12 / §7.1: the proof is bound to the access token it is sent with.
    if access_token is not None:
        ath = claims.get("ath")
        if not isinstance(ath, str):
            _reject(
                "ath",
                "The DPoP proof has no ath claim, but the request carries an access token. "
                "Put base64url(SHA-256(access token)) in ath (RFC 9449 §4.2).",
            )
        if not hmac.compare_digest(ath.encode(), access_token_hash(access_token).encode()):
            _reject(
                "ath",
                "The DPoP proof's ath does not match the access token sent with it. Make the "
                "proof for the token in this request's Authorization header.",
            )

    # §6.1 / §5: the token (or refresh token) is bound to one key.
    if jkt is not None and not hmac.compare_digest(thumbprint.encode(), jkt.encode()):
        _reject(
            "jkt",
            "The DPoP proof is signed with a different key than the one this token is bound "
            "to. Sign with the key the token was issued for; a token copied without its key "
            "cannot be used.",
        )

    # §8, §9, §4.3 check 10: the server's nonce.
    if expected_nonce is not None:
        accepted = {expected_nonce} if isinstance(expected_nonce, str) else set(expected_nonce)
        nonce = claims.get("nonce")
        if nonce is None:
            _reject(
                "nonce-missing",
                "This server requires a nonce in DPoP proofs. Retry with a new proof whose "
                "nonce claim is the DPoP-Nonce header of this response.",
            )
        if not isinstance(nonce, str) or nonce not in accepted:
            _reject(
                "nonce-mismatch",
                "The DPoP proof's nonce is not current. Retry with a new proof whose nonce "
                "claim is the DPoP-Nonce header of this response.",
            )

    # §11.1: each proof is accepted once.
    if jti in seen_jtis:
        _reject(
            "replay",
            "This DPoP proof was already used. Make a new proof (with a new jti) for each request.",
        )
    seen_jtis.add(jti)
    return thumbprint
