"""The token a login ends with (RFC 6749 §5.1), typed, with its secrets kept out of reprs."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Final

# Token fields whose values may be shown: everything else (tokens, secrets) is redacted.
SHOWN_TOKEN_FIELDS: Final = frozenset({"token_type", "expires_in", "scope"})


if TYPE_CHECKING:
    from ._dpop import DPoPKey


class Token(Mapping[str, object]):
    """A token response (RFC 6749 §5.1): a read-only mapping of everything the server sent.

    The common fields are typed properties. ``repr()`` shows ``token_type``, ``expires_in``
    and ``scope`` only; every other value (access and refresh tokens, ID tokens) is redacted,
    because reprs end up in logs and tracebacks. ``dict(token)`` gives the raw fields, e.g.
    to store them.
    """

    __slots__ = ("_data", "dpop_key", "id_token_claims", "received_at")

    def __init__(self, data: Mapping[str, object], *, received_at: float | None = None) -> None:
        access_token = data.get("access_token")
        token_type = data.get("token_type")
        if not isinstance(access_token, str) or not access_token:
            msg = "A token response needs a non-empty string 'access_token' (RFC 6749 §5.1)."
            raise ValueError(msg)
        if not isinstance(token_type, str) or not token_type:
            msg = "A token response needs a non-empty string 'token_type' (RFC 6749 §5.1)."
            raise ValueError(msg)
        self._data: Mapping[str, object] = MappingProxyType(dict(data))
        #: ``time.time()`` when the token arrived; ``expires_at`` counts from it.
        self.received_at = time.time() if received_at is None else received_at
        #: The ID token's claims, validated (OIDC Core §3.1.3.7), when the login asked for
        #: scope ``openid`` and the server sent one; None otherwise. Never unvalidated.
        self.id_token_claims: Mapping[str, object] | None = None
        #: The DPoP key the token is bound to (RFC 9449), or None for a bearer token. Keep it
        #: with the token (``key.private_jwk()``, a secret): without it the token is useless.
        self.dpop_key: DPoPKey | None = None

    def __getitem__(self, key: str) -> object:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    @property
    def access_token(self) -> str:
        value = self._data["access_token"]
        assert isinstance(value, str)  # noqa: S101  (checked in __init__)
        return value

    @property
    def token_type(self) -> str:
        value = self._data["token_type"]
        assert isinstance(value, str)  # noqa: S101  (checked in __init__)
        return value

    @property
    def expires_in(self) -> int | None:
        """Seconds the access token lives, if the server said (some send it as a string)."""
        value = self._data.get("expires_in")
        if isinstance(value, bool):
            return None
        if isinstance(value, int):
            return value
        if isinstance(value, float) and math.isfinite(value):
            return int(value)
        if isinstance(value, str) and value.isdecimal():
            return int(value)
        return None

    @property
    def expires_at(self) -> float | None:
        """``received_at + expires_in`` (a ``time.time()`` value), or None."""
        expires_in = self.expires_in
        return None if expires_in is None else self.received_at + expires_in

    @property
    def refresh_token(self) -> str | None:
        value = self._data.get("refresh_token")
        return value if isinstance(value, str) and value else None

    @property
    def scope(self) -> str | None:
        """The granted scope; RFC 6749 §5.1 lets the server omit it when it is as requested."""
        value = self._data.get("scope")
        return value if isinstance(value, str) else None

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{key}={self._data[key]!r}" if key in SHOWN_TOKEN_FIELDS else f"{key}=<redacted>"
            for key in self._data
        )
        return f"Token({shown})"

    __str__ = __repr__
