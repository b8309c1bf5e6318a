"""What one login leaves behind, as frozen records with a versioned JSON form.

A :class:`StoredLogin` is everything one login to one issuer (and, optionally, one protected
resource, RFC 8707) leaves behind: the client registration, the tokens with their absolute
expiry, a DPoP key, and the server's metadata. Every record that holds a credential names the
issuer it belongs to, and a login refuses parts that name another issuer, so a credential is
never handed to a server it was not issued by.

Secrets (tokens, client secrets, registration access tokens, private keys) never appear in a
``repr()``: reprs end up in logs and tracebacks.

The JSON form (:meth:`StoredLogin.to_dict` / :meth:`StoredLogin.from_dict`) is what the stores
write. It carries ``"format": "oauth-loopback/login"`` and ``"version": 1``. Fields a reader
does not know are kept in ``extra`` and written back unchanged, so an older version of the
library can update a file a newer one wrote without losing what it added; a file of a newer
*version* is refused instead of being half-understood.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Literal, NoReturn, cast

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "CachedMetadata",
    "ClientRegistration",
    "LoginFormatError",
    "LoginKey",
    "RegistrationKind",
    "StoredLogin",
    "StoredTokens",
]

#: The ``format`` marker of a stored login; anything else is a foreign file.
FORMAT = "oauth-loopback/login"
#: The version this library writes and the newest it reads.
FORMAT_VERSION = 1

#: How the client registration was obtained (the MCP authorization spec's order:
#: pre-registered, then a client ID metadata document, then RFC 7591 dynamic registration).
RegistrationKind = Literal["dynamic", "preregistered", "metadata_document"]
_REGISTRATION_KINDS: frozenset[str] = frozenset({"dynamic", "preregistered", "metadata_document"})


class LoginFormatError(ValueError):
    """A stored login could not be read; the stores turn it into a :class:`TokenStoreError`.

    ``problem`` is ``"foreign"`` (not an oauth-loopback login at all), ``"newer"`` (written by a
    newer version of the format) or ``"damaged"`` (ours, but a field is wrong). ``issuer`` is the
    issuer the record names, when it could be read, so the error can suggest a logout.
    """

    def __init__(
        self,
        message: str,
        *,
        problem: Literal["foreign", "newer", "damaged"],
        issuer: str | None = None,
    ) -> None:
        super().__init__(message)
        self.problem = problem
        self.issuer = issuer


# --- JSON helpers -------------------------------------------------------------------------


def _mapping_as_dict(value: object) -> object:
    # json's hook for what it cannot encode: our read-only mappings are JSON objects too.
    if isinstance(value, Mapping):
        return dict(value)
    msg = f"{type(value).__name__} is not a JSON value"
    raise TypeError(msg)


def _json_text(value: Mapping[str, object]) -> str:
    return json.dumps(value, allow_nan=False, default=_mapping_as_dict)


class _JSONObject(Mapping[str, object]):
    """A read-only view of a private JSON object (unlike MappingProxyType, it pickles)."""

    __slots__ = ("_data",)

    def __init__(self, data: dict[str, object]) -> None:
        self._data = data

    def __getitem__(self, key: str) -> object:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return repr(self._data)

    def __reduce__(self) -> tuple[object, ...]:
        return (_JSONObject, (self._data,))


def _frozen_json(value: Mapping[str, object], what: str) -> Mapping[str, object]:
    """A deep copy of a JSON object, read-only at the top, refusing what JSON cannot hold."""
    if not isinstance(value, Mapping):
        msg = f"{what} must be a mapping (a JSON object), not {type(value).__name__}."
        raise TypeError(msg)
    try:
        text = _json_text(value)
    except (TypeError, ValueError) as exc:
        msg = f"{what} must hold only JSON values (str, number, bool, None, list, dict): {exc}"
        raise TypeError(msg) from exc
    return _JSONObject(cast("dict[str, object]", json.loads(text)))


def _thaw(value: Mapping[str, object]) -> dict[str, object]:
    """A plain, deep copy (``to_dict`` hands out data the caller may change)."""
    return cast("dict[str, object]", json.loads(_json_text(value)))


def _is_number(value: object) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )


class _Fields:
    """Reads typed fields out of one JSON object, naming the field when one is wrong."""

    def __init__(self, data: object, where: str, issuer: str | None) -> None:
        self.where = where
        self.issuer = issuer
        if not isinstance(data, dict):
            self._fail(f"{where} must be a JSON object, not {type(data).__name__}")
        self.data: dict[str, object] = cast("dict[str, object]", data)
        self.used: set[str] = set()

    def _fail(self, message: str) -> NoReturn:
        raise LoginFormatError(message, problem="damaged", issuer=self.issuer)

    def _get(self, name: str) -> object:
        self.used.add(name)
        return self.data.get(name)

    def string(self, name: str) -> str:
        value = self._get(name)
        if not isinstance(value, str) or not value:
            self._fail(f"{self.where}.{name} must be a non-empty string")
        return value

    def optional_string(self, name: str) -> str | None:
        value = self._get(name)
        if value is not None and not isinstance(value, str):
            self._fail(f"{self.where}.{name} must be a string or null")
        return value

    def optional_number(self, name: str) -> float | None:
        value = self._get(name)
        if value is None:
            return None
        if not _is_number(value):
            self._fail(f"{self.where}.{name} must be a number or null")
        return float(cast("float", value))

    def number(self, name: str) -> float:
        value = self.optional_number(name)
        if value is None:
            self._fail(f"{self.where}.{name} must be a number")
        return value

    def strings(self, name: str) -> tuple[str, ...]:
        value = self._get(name)
        if value is None:
            return ()
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            self._fail(f"{self.where}.{name} must be a list of strings")
        return tuple(cast("list[str]", value))

    def optional_object(self, name: str) -> dict[str, object] | None:
        value = self._get(name)
        if value is not None and not isinstance(value, dict):
            self._fail(f"{self.where}.{name} must be a JSON object or null")
        return cast("dict[str, object] | None", value)

    def rest(self) -> dict[str, object]:
        """The fields this version does not know, kept so they survive a rewrite."""
        return {key: value for key, value in self.data.items() if key not in self.used}


def _check_extra(extra: Mapping[str, object], known: frozenset[str], what: str) -> None:
    clash = sorted(set(extra) & known)
    if clash:
        msg = (
            f"{what}.extra must not repeat the record's own fields ({', '.join(clash)}); "
            f"set them as arguments instead."
        )
        raise ValueError(msg)


def _redacted(value: object) -> str:
    return "None" if value is None else "<redacted>"


def _extra_repr(extra: Mapping[str, object]) -> str:
    # Keys only: an unknown field may well be a secret (a server's own token, say).
    return f", extra_keys={sorted(extra)!r}" if extra else ""


# --- the key ------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoginKey:
    """Which login a store entry is: one issuer, optionally one resource (RFC 8707).

    Both are compared exactly, byte for byte, with no case folding and no trailing-slash or
    default-port normalisation: RFC 8414 §3.3 requires the metadata's ``issuer`` to be
    *identical* to the issuer the client asked for, so two spellings are two servers.
    """

    issuer: str
    resource: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.issuer, str) or not self.issuer:
            msg = f"LoginKey(issuer=...) must be a non-empty string, not {self.issuer!r}."
            raise ValueError(msg)
        if self.resource is not None and (not isinstance(self.resource, str) or not self.resource):
            msg = (
                f"LoginKey(resource=...) must be a non-empty string or None, not {self.resource!r}."
            )
            raise ValueError(msg)

    @property
    def digest(self) -> str:
        """A stable, filesystem-safe name for this key (128 bits of SHA-256)."""
        canonical = json.dumps([self.issuer, self.resource], ensure_ascii=False)
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:32]


# --- the records --------------------------------------------------------------------------

_CLIENT_FIELDS = frozenset(
    {
        "issuer",
        "client_id",
        "obtained",
        "client_secret",
        "redirect_uris",
        "token_endpoint_auth_method",
        "registration_client_uri",
        "registration_access_token",
        "client_secret_expires_at",
    }
)


@dataclass(frozen=True, kw_only=True)
class ClientRegistration:
    """A client registered at one authorization server, and how it came about.

    ``redirect_uris`` are the ones it was registered with (a refresh never uses them; an
    interactive login with another port may, RFC 8252 §7.3). ``client_secret_expires_at`` is
    RFC 7591 §3.2.1's: ``None`` or ``0`` means the secret does not expire.
    """

    issuer: str
    client_id: str
    obtained: RegistrationKind
    client_secret: str | None = None
    redirect_uris: tuple[str, ...] = ()
    #: RFC 7591 §2; left empty, its default: ``client_secret_basic`` with a secret, else ``none``.
    token_endpoint_auth_method: str = ""
    registration_client_uri: str | None = None
    registration_access_token: str | None = None
    client_secret_expires_at: float | None = None
    #: Other registration metadata the server returned (RFC 7591 §3.2.1), round-tripped.
    extra: Mapping[str, object] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if self.token_endpoint_auth_method == "":
            default = "client_secret_basic" if self.client_secret else "none"
            object.__setattr__(self, "token_endpoint_auth_method", default)
        for name in ("issuer", "client_id", "token_endpoint_auth_method"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                msg = f"ClientRegistration({name}=...) must be a non-empty string, not {value!r}."
                raise ValueError(msg)
        if self.obtained not in _REGISTRATION_KINDS:
            msg = (
                f"ClientRegistration(obtained=...) must be one of "
                f"{', '.join(sorted(_REGISTRATION_KINDS))}, not {self.obtained!r}."
            )
            raise ValueError(msg)
        uris = self.redirect_uris
        if isinstance(uris, str) or not all(isinstance(uri, str) for uri in uris):
            msg = "ClientRegistration(redirect_uris=...) must be a sequence of strings."
            raise ValueError(msg)
        object.__setattr__(self, "redirect_uris", tuple(uris))
        if self.client_secret_expires_at is not None and not _is_number(
            self.client_secret_expires_at
        ):
            msg = "ClientRegistration(client_secret_expires_at=...) must be a number or None."
            raise ValueError(msg)
        extra = _frozen_json(self.extra, "ClientRegistration.extra")
        _check_extra(extra, _CLIENT_FIELDS, "ClientRegistration")
        object.__setattr__(self, "extra", extra)

    @classmethod
    def from_registration_response(
        cls,
        response: Mapping[str, object],
        *,
        issuer: str,
        obtained: RegistrationKind = "dynamic",
    ) -> ClientRegistration:
        """Build the record from an RFC 7591 §3.2.1 registration response.

        Fields other than the ones this record names (``client_id_issued_at``,
        ``client_name``, ...) are kept in ``extra``. When the server does not say which
        ``token_endpoint_auth_method`` it registered, RFC 7591 §2's default applies:
        ``client_secret_basic`` when it issued a secret, else ``none``.
        """
        try:
            return cls._from_fields(
                _Fields(dict(response), "registration", issuer), issuer, obtained
            )
        except LoginFormatError as exc:
            msg = f"The registration response is not usable: {exc} (RFC 7591 §3.2.1)."
            raise ValueError(msg) from None

    @classmethod
    def _from_fields(
        cls, fields: _Fields, issuer: str, obtained: RegistrationKind
    ) -> ClientRegistration:
        fields.used.update({"issuer", "obtained"})
        return cls(
            issuer=issuer,
            client_id=fields.string("client_id"),
            obtained=obtained,
            client_secret=fields.optional_string("client_secret"),
            redirect_uris=fields.strings("redirect_uris"),
            token_endpoint_auth_method=fields.optional_string("token_endpoint_auth_method") or "",
            registration_client_uri=fields.optional_string("registration_client_uri"),
            registration_access_token=fields.optional_string("registration_access_token"),
            client_secret_expires_at=fields.optional_number("client_secret_expires_at"),
            extra=fields.rest(),
        )

    def secret_expired(self, now: float | None = None) -> bool:
        """True when the client secret has an expiry (RFC 7591 §3.2.1) and it has passed."""
        expires = self.client_secret_expires_at
        if not expires:  # None or 0: never expires
            return False
        return (time.time() if now is None else now) >= expires

    def to_dict(self) -> dict[str, object]:
        """The JSON form (an object inside a stored login)."""
        data: dict[str, object] = {
            "issuer": self.issuer,
            "client_id": self.client_id,
            "obtained": self.obtained,
            "client_secret": self.client_secret,
            "redirect_uris": list(self.redirect_uris),
            "token_endpoint_auth_method": self.token_endpoint_auth_method,
            "registration_client_uri": self.registration_client_uri,
            "registration_access_token": self.registration_access_token,
            "client_secret_expires_at": self.client_secret_expires_at,
        }
        data.update(_thaw(self.extra))
        return data

    @classmethod
    def _parse(cls, data: object, issuer: str) -> ClientRegistration:
        fields = _Fields(data, "client", issuer)
        own_issuer = fields.string("issuer")
        if own_issuer != issuer:
            fields._fail(
                f"client.issuer is {own_issuer!r}, but the login is for {issuer!r}; a "
                f"registration is never used with another issuer"
            )
        obtained = fields.string("obtained")
        if obtained not in _REGISTRATION_KINDS:
            fields._fail(f"client.obtained must be one of {', '.join(sorted(_REGISTRATION_KINDS))}")
        method = fields.optional_string("token_endpoint_auth_method")
        if not method:
            fields._fail("client.token_endpoint_auth_method must be a non-empty string")
        return cls._from_fields(fields, issuer, cast("RegistrationKind", obtained))

    def __repr__(self) -> str:
        return (
            f"ClientRegistration(issuer={self.issuer!r}, client_id={self.client_id!r}, "
            f"obtained={self.obtained!r}, client_secret={_redacted(self.client_secret)}, "
            f"redirect_uris={self.redirect_uris!r}, "
            f"token_endpoint_auth_method={self.token_endpoint_auth_method!r}, "
            f"registration_client_uri={self.registration_client_uri!r}, "
            f"registration_access_token={_redacted(self.registration_access_token)}, "
            f"client_secret_expires_at={self.client_secret_expires_at!r}"
            f"{_extra_repr(self.extra)})"
        )


_TOKEN_FIELDS = frozenset(
    {"access_token", "token_type", "refresh_token", "expires_at", "expires_in", "scope", "id_token"}
)


def _expires_in(value: object) -> float | None:
    """RFC 6749 §5.1 ``expires_in``; some servers send it as a string of digits."""
    if isinstance(value, str) and value.isdecimal():
        return float(value)
    if _is_number(value):
        return float(cast("float", value))
    return None


#: Default margin for :meth:`StoredTokens.is_valid`: a token that expires within a minute is
#: refreshed now, so a request does not start with it and fail half way.
DEFAULT_LEEWAY = 60.0


@dataclass(frozen=True, kw_only=True)
class StoredTokens:
    """The tokens of one login, with the access token's **absolute** expiry.

    ``expires_at`` is a ``time.time()`` value (the response's ``expires_in`` counted from when
    it arrived), or ``None`` when the server did not say (RFC 6749 §5.1 makes ``expires_in``
    optional). ``extra`` keeps the other fields of the token response.
    """

    access_token: str
    token_type: str = "Bearer"  # noqa: S105  (RFC 6750's type name, not a secret)
    refresh_token: str | None = None
    expires_at: float | None = None
    scope: str | None = None
    id_token: str | None = None
    extra: Mapping[str, object] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        for name in ("access_token", "token_type"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                msg = f"StoredTokens({name}=...) must be a non-empty string (RFC 6749 §5.1)."
                raise ValueError(msg)
        for name in ("refresh_token", "scope", "id_token"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                msg = f"StoredTokens({name}=...) must be a string or None."
                raise ValueError(msg)
        if self.expires_at is not None and not _is_number(self.expires_at):
            msg = "StoredTokens(expires_at=...) must be a time.time() value or None."
            raise ValueError(msg)
        extra = _frozen_json(self.extra, "StoredTokens.extra")
        _check_extra(extra, _TOKEN_FIELDS, "StoredTokens")
        object.__setattr__(self, "extra", extra)

    @classmethod
    def from_response(
        cls,
        response: Mapping[str, object],
        *,
        received_at: float | None = None,
        previous: StoredTokens | None = None,
    ) -> StoredTokens:
        """Build the record from a token response (RFC 6749 §5.1).

        ``received_at`` (default: now) is when the response arrived; ``expires_at`` is
        ``received_at + expires_in``. Pass the tokens it replaces as ``previous`` after a
        refresh: the server may leave out ``refresh_token`` (RFC 6749 §6: then the old one
        stays valid) and ``scope`` (§5.1: then it is unchanged), and those are kept.
        A response without a string ``access_token`` and ``token_type`` raises ``ValueError``.
        """
        data = dict(response)
        arrived = time.time() if received_at is None else received_at
        fields = _Fields(data, "token response", None)
        access_token = fields.string("access_token")
        token_type = fields.string("token_type")
        refresh_token = fields.optional_string("refresh_token") or None
        scope = fields.optional_string("scope")
        id_token = fields.optional_string("id_token") or None
        lifetime = _expires_in(fields._get("expires_in"))
        fields.used.add("expires_at")
        if previous is not None:
            refresh_token = refresh_token or previous.refresh_token
            scope = previous.scope if scope is None else scope
        return cls(
            access_token=access_token,
            token_type=token_type,
            refresh_token=refresh_token,
            expires_at=None if lifetime is None else arrived + lifetime,
            scope=scope,
            id_token=id_token,
            extra=fields.rest(),
        )

    def is_valid(self, now: float | None = None, *, leeway: float = DEFAULT_LEEWAY) -> bool:
        """True while the access token has more than ``leeway`` seconds left.

        A token without a known expiry counts as valid: the resource server's 401 is then
        what tells the caller to refresh.
        """
        if self.expires_at is None:
            return True
        return (time.time() if now is None else now) + leeway < self.expires_at

    def expires_in(self, now: float | None = None) -> float | None:
        """Seconds the access token has left (negative once expired), or None if unknown."""
        if self.expires_at is None:
            return None
        return self.expires_at - (time.time() if now is None else now)

    def to_dict(self) -> dict[str, object]:
        """The JSON form (an object inside a stored login)."""
        data: dict[str, object] = {
            "access_token": self.access_token,
            "token_type": self.token_type,
            "refresh_token": self.refresh_token,
            "expires_at": self.expires_at,
            "scope": self.scope,
            "id_token": self.id_token,
        }
        data.update(_thaw(self.extra))
        return data

    @classmethod
    def _parse(cls, data: object, issuer: str) -> StoredTokens:
        fields = _Fields(data, "tokens", issuer)
        return cls(
            access_token=fields.string("access_token"),
            token_type=fields.string("token_type"),
            refresh_token=fields.optional_string("refresh_token"),
            expires_at=fields.optional_number("expires_at"),
            scope=fields.optional_string("scope"),
            id_token=fields.optional_string("id_token"),
            extra=fields.rest(),
        )

    def __repr__(self) -> str:
        return (
            f"StoredTokens(token_type={self.token_type!r}, expires_at={self.expires_at!r}, "
            f"scope={self.scope!r}, access_token=<redacted>, "
            f"refresh_token={_redacted(self.refresh_token)}, "
            f"id_token={_redacted(self.id_token)}{_extra_repr(self.extra)})"
        )


@dataclass(frozen=True, kw_only=True)
class CachedMetadata:
    """The authorization server's metadata (RFC 8414 §3.2) and when it was fetched.

    Lets a later run skip discovery while the copy is fresh enough for the caller.
    """

    document: Mapping[str, object] = field(hash=False)
    fetched_at: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "document", _frozen_json(self.document, "CachedMetadata.document"))
        if not _is_number(self.fetched_at):
            msg = "CachedMetadata(fetched_at=...) must be a time.time() value."
            raise ValueError(msg)

    def age(self, now: float | None = None) -> float:
        """Seconds since the document was fetched."""
        return (time.time() if now is None else now) - self.fetched_at

    def to_dict(self) -> dict[str, object]:
        return {"document": _thaw(self.document), "fetched_at": self.fetched_at}

    @classmethod
    def _parse(cls, data: object, issuer: str) -> CachedMetadata:
        fields = _Fields(data, "metadata", issuer)
        document = fields.optional_object("document")
        if document is None:
            fields._fail("metadata.document must be a JSON object")
        return cls(document=document, fetched_at=fields.number("fetched_at"))

    def __repr__(self) -> str:
        return (
            f"CachedMetadata(issuer={self.document.get('issuer')!r}, "
            f"fetched_at={self.fetched_at!r}, keys={len(self.document)})"
        )


_LOGIN_FIELDS = frozenset(
    {
        "format",
        "version",
        "issuer",
        "resource",
        "client",
        "tokens",
        "dpop_key",
        "metadata",
        "updated_at",
    }
)


@dataclass(frozen=True, kw_only=True)
class StoredLogin:
    """Everything one login to one issuer (and resource) leaves behind.

    Any part may be missing: a registration without tokens yet, tokens of a pre-registered
    client, a cached metadata document alone. ``client.issuer`` and ``metadata.document``'s
    ``issuer`` (RFC 8414 §3.3) must be ``issuer`` exactly. ``dpop_key`` is the private JWK that
    DPoP-bound tokens are bound to (RFC 9449). ``updated_at`` is set by the store on save.
    Change a record with :func:`dataclasses.replace`.
    """

    issuer: str
    resource: str | None = None
    client: ClientRegistration | None = None
    tokens: StoredTokens | None = None
    dpop_key: Mapping[str, object] | None = field(default=None, hash=False)
    metadata: CachedMetadata | None = None
    updated_at: float | None = None
    #: Fields a newer version of the format added, round-tripped untouched.
    extra: Mapping[str, object] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        LoginKey(self.issuer, self.resource)  # validates both, with LoginKey's messages
        if self.client is not None:
            if not isinstance(self.client, ClientRegistration):
                msg = "StoredLogin(client=...) must be a ClientRegistration or None."
                raise TypeError(msg)
            if self.client.issuer != self.issuer:
                msg = (
                    f"The client registration belongs to issuer {self.client.issuer!r}, not "
                    f"{self.issuer!r}: a registration is never used with another issuer. "
                    f"Register at {self.issuer!r}, or store it under its own issuer."
                )
                raise ValueError(msg)
        if self.tokens is not None and not isinstance(self.tokens, StoredTokens):
            msg = "StoredLogin(tokens=...) must be StoredTokens or None."
            raise TypeError(msg)
        if self.metadata is not None:
            if not isinstance(self.metadata, CachedMetadata):
                msg = "StoredLogin(metadata=...) must be CachedMetadata or None."
                raise TypeError(msg)
            meta_issuer = self.metadata.document.get("issuer")
            if meta_issuer is not None and meta_issuer != self.issuer:
                msg = (
                    f"The cached metadata names issuer {meta_issuer!r}, not {self.issuer!r}; "
                    f"RFC 8414 §3.3 requires them to be identical."
                )
                raise ValueError(msg)
        if self.dpop_key is not None:
            dpop_key = _frozen_json(self.dpop_key, "StoredLogin.dpop_key")
            if not isinstance(dpop_key.get("kty"), str):
                msg = "StoredLogin(dpop_key=...) must be a JWK (a mapping with 'kty', RFC 7517)."
                raise ValueError(msg)
            object.__setattr__(self, "dpop_key", dpop_key)
        if self.updated_at is not None and not _is_number(self.updated_at):
            msg = "StoredLogin(updated_at=...) must be a time.time() value or None."
            raise ValueError(msg)
        extra = _frozen_json(self.extra, "StoredLogin.extra")
        _check_extra(extra, _LOGIN_FIELDS, "StoredLogin")
        object.__setattr__(self, "extra", extra)

    @property
    def key(self) -> LoginKey:
        """The key this login is stored under."""
        return LoginKey(self.issuer, self.resource)

    def to_dict(self) -> dict[str, object]:
        """The versioned JSON form the stores write (``json.dumps`` it as it is)."""
        data: dict[str, object] = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "issuer": self.issuer,
            "resource": self.resource,
            "updated_at": self.updated_at,
            "client": None if self.client is None else self.client.to_dict(),
            "tokens": None if self.tokens is None else self.tokens.to_dict(),
            "dpop_key": None if self.dpop_key is None else _thaw(self.dpop_key),
            "metadata": None if self.metadata is None else self.metadata.to_dict(),
        }
        data.update(_thaw(self.extra))
        return data

    @classmethod
    def from_dict(cls, data: object) -> StoredLogin:
        """Read the JSON form back; raises :class:`LoginFormatError` (a ``ValueError``).

        A file that is not ours (no ``"format": "oauth-loopback/login"``) is ``"foreign"``; a
        newer ``version`` is ``"newer"``; a wrong field is ``"damaged"``, naming the field.
        """
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            msg = f'it is not an oauth-loopback login (no "format": "{FORMAT}")'
            raise LoginFormatError(msg, problem="foreign")
        raw_issuer = data.get("issuer")
        issuer = raw_issuer if isinstance(raw_issuer, str) and raw_issuer else None
        version = data.get("version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            msg = "its version must be a positive integer"
            raise LoginFormatError(msg, problem="damaged", issuer=issuer)
        if version > FORMAT_VERSION:
            msg = (
                f"it was written by a newer oauth-loopback (format version {version}; this one "
                f"reads up to {FORMAT_VERSION})"
            )
            raise LoginFormatError(msg, problem="newer", issuer=issuer)
        fields = _Fields(data, "login", issuer)
        fields.used.update({"format", "version"})
        issuer = fields.string("issuer")
        resource = fields.optional_string("resource")
        client = fields.optional_object("client")
        tokens = fields.optional_object("tokens")
        dpop_key = fields.optional_object("dpop_key")
        metadata = fields.optional_object("metadata")
        updated_at = fields.optional_number("updated_at")
        try:
            return cls(
                issuer=issuer,
                resource=resource,
                client=None if client is None else ClientRegistration._parse(client, issuer),
                tokens=None if tokens is None else StoredTokens._parse(tokens, issuer),
                dpop_key=dpop_key,
                metadata=None if metadata is None else CachedMetadata._parse(metadata, issuer),
                updated_at=updated_at,
                extra=fields.rest(),
            )
        except LoginFormatError:
            raise
        except (TypeError, ValueError) as exc:
            raise LoginFormatError(str(exc), problem="damaged", issuer=issuer) from exc

    def __repr__(self) -> str:
        return (
            f"StoredLogin(issuer={self.issuer!r}, resource={self.resource!r}, "
            f"client={self.client!r}, tokens={self.tokens!r}, "
            f"dpop_key={_redacted(self.dpop_key)}, metadata={self.metadata!r}, "
            f"updated_at={self.updated_at!r}{_extra_repr(self.extra)})"
        )
