"""The embedded server's signed ID tokens (OpenID Connect) and DPoP-bound tokens (RFC 9449).

authlib's server has neither DPoP nor a key set of its own, so this is that part, small:

- **ID tokens**: for a code grant with scope ``openid``, an RS256 ID token signed by the
  current key (``iss``, ``sub``, ``aud``, ``exp``, ``iat``, the request's ``nonce``,
  ``at_hash``); the keys are served at ``/jwks``; :meth:`Keys.rotate` makes a new current key
  (the old one stays in the set unless dropped), so clients meet a ``kid`` they have not seen.
- **DPoP**: the token endpoint checks a proof (``htm``/``htu``, signature, freshness, a
  replayed ``jti`` refused, the server's nonce when nonces are on) with the library's own
  verifier, issues ``token_type: DPoP`` bound to the key's thumbprint, and refuses to refresh
  a bound refresh token without a proof of that key (a stolen refresh token is useless).
  The nonce changes with every token response (``DPoP-Nonce``), so clients must follow it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from collections.abc import Mapping
from typing import Any

from joserfc import jws
from joserfc.jwk import KeySet, RSAKey

from .._errors import DPoPProofRejected
from .._login._dpop import JtiCache, verify_proof

__all__ = ["DPoPGuard", "Keys", "at_hash"]

# OIDC Core §2: a few minutes; the tests' clocks agree.
ID_TOKEN_LIFETIME = 300


def at_hash(access_token: str) -> str:
    """OIDC Core §3.1.3.6: the left half of SHA-256 of the access token, base64url."""
    digest = hashlib.sha256(access_token.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest[:16]).rstrip(b"=").decode("ascii")


class Keys:
    """The server's signing keys: the last one signs, all of them are published."""

    def __init__(self) -> None:
        # Made on first use: an RSA key takes tens of milliseconds, and most test servers
        # never sign an ID token.
        self._keys: list[RSAKey] = []

    def _current(self) -> RSAKey:
        if not self._keys:
            self.rotate()
        return self._keys[-1]

    def rotate(self, *, drop_old: bool = False) -> str:
        """Make a new current signing key; return its ``kid``."""
        key = RSAKey.generate_key(
            2048, parameters={"kid": secrets.token_hex(8), "alg": "RS256", "use": "sig"}
        )
        self._keys = [key] if drop_old else [*self._keys, key]
        return str(key.kid)

    def jwks(self) -> dict[str, Any]:
        self._current()
        return dict(KeySet(list(self._keys)).as_dict(private=False))

    def id_token(
        self, *, issuer: str, client_id: str, subject: str, nonce: str | None, access_token: str
    ) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": issuer,
            "sub": subject,
            "aud": client_id,
            "iat": now,
            "exp": now + ID_TOKEN_LIFETIME,
            "at_hash": at_hash(access_token),
        }
        if nonce is not None:
            claims["nonce"] = nonce
        key = self._current()
        header = {"alg": "RS256", "kid": key.kid, "typ": "JWT"}
        return jws.serialize_compact(header, json.dumps(claims).encode(), key, algorithms=["RS256"])


class DPoPGuard:
    """Proof checks and nonces for one server's token endpoint (or one resource)."""

    def __init__(self, *, require_nonce: bool) -> None:
        self.require_nonce = require_nonce
        self.nonce = secrets.token_urlsafe(16)
        self._seen = JtiCache()
        #: What was refused, by reason, for assertions in tests.
        self.refused: list[str] = []

    def next_nonce(self) -> str:
        """A new nonce: the previous one stops being accepted."""
        self.nonce = secrets.token_urlsafe(16)
        return self.nonce

    def check(
        self,
        headers: Mapping[str, str],
        *,
        htm: str,
        htu: str,
        access_token: str | None = None,
        jkt: str | None = None,
    ) -> str | DPoPProofRejected:
        """The proof's thumbprint, or why it was refused (RFC 9449 §4.3, §7.1)."""
        proof = headers.get("dpop")
        if proof is None:
            error = DPoPProofRejected("missing", "No DPoP proof was sent.")
            self.refused.append("missing")
            return error
        try:
            return verify_proof(
                proof,
                htm=htm,
                htu=htu,
                seen_jtis=self._seen,
                access_token=access_token,
                expected_nonce=self.nonce if self.require_nonce else None,
                jkt=jkt,
            )
        except DPoPProofRejected as exc:
            self.refused.append(exc.reason)
            return exc
