"""authlib's server-side components, adapted to the test server's h11 requests.

authlib ships no type hints, so everything that touches its objects lives here, behind plain
typed functions; ``testing.py`` never sees an authlib object. What comes from authlib:

- ``rfc6749.AuthorizationServer``: request dispatch, client authentication (``none``,
  ``client_secret_post``, ``client_secret_basic``), error responses (RFC 6749 §4.1.2.1, §5.2);
- ``rfc6749.grants.AuthorizationCodeGrant`` and ``RefreshTokenGrant`` (§4.1, §6);
- ``rfc7636.CodeChallenge`` for PKCE verification (narrowed to S256, required);
- ``rfc6750.BearerTokenGenerator`` for the token response;
- ``rfc7591.ClientRegistrationEndpoint`` with its client-metadata validation, plus the OpenID
  registration claims for ``application_type``;
- ``rfc8414.AuthorizationServerMetadata`` (+ ``rfc9207``) to validate the metadata we serve;
- ``rfc9207.IssuerParameter`` to add ``iss`` to authorization responses;
- ``rfc7009.RevocationEndpoint`` for token revocation.

What is hand-written: the adapter below (the part authlib's Flask/Django integrations provide),
the in-memory store, the RFC 8252 §7.3 redirect-URI comparison, and the consent page and
routing in ``testing.py``.
"""

from __future__ import annotations

import json
import secrets
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from authlib.common.security import generate_token
from authlib.oauth2 import rfc7009, rfc7591, rfc8414, rfc9207
from authlib.oauth2.rfc6749 import (
    AuthorizationServer,
    InvalidRequestError,
    JsonPayload,
    JsonRequest,
    OAuth2Error,
    OAuth2Payload,
    OAuth2Request,
    grants,
)
from authlib.oauth2.rfc6750 import BearerTokenGenerator
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7636.challenge import compare_s256_code_challenge
from authlib.oidc.registration import ClientMetadataClaims as OidcClientMetadataClaims

from .._loopback import loopback_http_uri
from ._device import DEVICE_GRANT, DeviceCodes, device_endpoint, device_grant
from ._http import HttpRequest, HttpResponse

__all__ = [
    "AuthorizeOutcome",
    "ClientRecord",
    "OAuthBackend",
    "TokenRecord",
    "is_loopback_http",
    "redirect_uri_matches",
    "token_error_response",
    "validate_metadata",
]

# RFC 6749 §4.1.2: "A maximum authorization code lifetime of 10 minutes is RECOMMENDED."
CODE_LIFETIME = 600.0
_JSON = [("Content-Type", "application/json")]


def is_loopback_http(uri: str) -> bool:
    """An ``http`` URI whose host is loopback (RFC 8252 §7.3, §8.3; one predicate: ``_loopback``)."""
    return loopback_http_uri(uri) is not None


def redirect_uri_matches(registered: str, requested: str, *, exact: bool) -> bool:
    """Compare a requested redirect URI with a registered one.

    RFC 8252 §7.3: "The authorization server MUST allow any port to be specified at the time
    of the request for loopback IP redirect URIs, to accommodate clients that obtain an
    available ephemeral port from the operating system at the time of the request." So for
    loopback ``http`` URIs everything but the port must be equal. ``exact=True`` behaves like
    servers that ignore §7.3: plain string equality (RFC 6749 §3.1.2.3 simple comparison).
    """
    if exact or not (is_loopback_http(registered) and is_loopback_http(requested)):
        return registered == requested
    reg, req = loopback_http_uri(registered), loopback_http_uri(requested)
    return (
        reg is not None and req is not None and reg._replace(port=None) == req._replace(port=None)
    )


@dataclass
class ClientRecord:
    """A registered client, as the store keeps it (authlib's ClientMixin, duck-typed)."""

    client_id: str
    redirect_uris: tuple[str, ...]
    application_type: str
    token_endpoint_auth_method: str
    client_secret: str | None = field(repr=False)  # authlib logs client records
    grant_types: tuple[str, ...]
    client_name: str | None
    dynamic: bool
    exact_redirect_match: bool
    #: Fetched from a client ID metadata document (its client_id is the document's URL).
    metadata_document: bool = False

    # --- authlib ClientMixin ---
    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        # RFC 6749 §3.1.2.3: with several registered URIs the request must name one.
        return self.redirect_uris[0] if len(self.redirect_uris) == 1 else None

    def get_allowed_scope(self, scope: str | None) -> str:
        return scope or ""

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return any(
            redirect_uri_matches(r, redirect_uri, exact=self.exact_redirect_match)
            for r in self.redirect_uris
        )

    def check_client_secret(self, client_secret: str) -> bool:
        if self.client_secret is None:
            return False
        return secrets.compare_digest(self.client_secret, client_secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        if endpoint == "token":
            return method == self.token_endpoint_auth_method
        return True

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.grant_types


@dataclass
class TokenRecord:
    """One token response the server issued (authlib's TokenMixin, duck-typed)."""

    access_token: str
    refresh_token: str | None
    token_type: str
    expires_in: int
    scope: str
    client_id: str
    grant_type: str
    resource: tuple[str, ...]
    issued_at: float
    #: Every token descended from one authorization code shares it (RFC 9700 §4.14.2).
    family: str = ""
    #: RFC 9449: the thumbprint of the DPoP key the token is bound to, or None (bearer).
    jkt: str | None = None
    #: Revoked: RFC 7009, the family revoked on reuse, or its code used twice.
    revoked: bool = False
    #: Its refresh token was spent: rotated into a new one (RFC 9700 §4.14.2).
    rotated: bool = False
    #: Only the access token was revoked (RFC 7009 with an access token).
    access_revoked: bool = False

    def check_client(self, client: ClientRecord) -> bool:
        return self.client_id == client.client_id

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return self.expires_in

    def is_revoked(self) -> bool:
        return self.revoked or self.rotated

    def is_expired(self) -> bool:
        return time.time() > self.issued_at + self.expires_in

    def access_token_valid(self) -> bool:
        """What a resource server would say of the access token (RFC 6750 §3.1)."""
        return not (self.revoked or self.access_revoked or self.is_expired())


@dataclass(frozen=True)
class _User:
    """The one resource owner of the test server."""

    id: str = "test-user"

    def get_user_id(self) -> str:
        return self.id


@dataclass
class _CodeRecord:
    code: str
    client_id: str
    redirect_uri: str
    scope: str
    code_challenge: str
    code_challenge_method: str
    resource: tuple[str, ...]
    expires_at: float
    tokens: list[TokenRecord] = field(default_factory=list)
    #: OIDC Core §3.1.2.1: the request's nonce, put into the ID token.
    nonce: str | None = None

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope


# --- the adapter (what authlib's framework integrations provide) --------------------------


class _Payload(OAuth2Payload):  # type: ignore[misc]
    def __init__(self, fields: list[tuple[str, str]]) -> None:
        self._datalist: defaultdict[str, list[str]] = defaultdict(list)
        for name, value in fields:
            self._datalist[name].append(value)
        # Like Flask's ``request.values``: the first value of each name.
        self._data = {name: values[0] for name, values in self._datalist.items()}

    @property
    def data(self) -> dict[str, str]:
        return self._data

    @property
    def datalist(self) -> defaultdict[str, list[str]]:
        return self._datalist


class _OAuth2Request(OAuth2Request):  # type: ignore[misc]
    """An authlib request over our :class:`HttpRequest`: query args + urlencoded form."""

    def __init__(self, request: HttpRequest, origin: str) -> None:
        super().__init__(
            method=request.method, uri=origin + request.target, headers=request.headers
        )
        self._args = parse_qsl(request.query, keep_blank_values=True)
        self._form: list[tuple[str, str]] = []
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if request.body and content_type == "application/x-www-form-urlencoded":
            self._form = parse_qsl(request.body.decode("utf-8", "replace"), keep_blank_values=True)
        self.payload = _Payload(self._args + self._form)

    @property
    def args(self) -> dict[str, str]:
        return dict(self._args)

    @property
    def form(self) -> dict[str, str]:
        return dict(self._form)


class _JsonPayload(JsonPayload):  # type: ignore[misc]
    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data

    @property
    def data(self) -> dict[str, Any]:
        return self._data


class _JsonRequest(JsonRequest):  # type: ignore[misc]
    def __init__(self, request: HttpRequest, origin: str) -> None:
        super().__init__(request.method, origin + request.target, request.headers)
        try:
            data = json.loads(request.body or b"null")
        except (UnicodeDecodeError, ValueError):
            data = None
        self.payload = _JsonPayload(data if isinstance(data, dict) else {})


class _S256Challenge(CodeChallenge):  # type: ignore[misc]
    """authlib's PKCE check, narrowed: a challenge is required, and only S256 is accepted.

    authlib's ``CodeChallenge(required=True)`` only insists on a verifier at the token
    endpoint for public clients, and accepts ``plain`` (the RFC 7636 §4.3 default when the
    method is missing). OAuth 2.1 and the MCP authorization spec require S256 for every
    client, so the authorization request itself is refused without it.
    """

    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]
    CODE_CHALLENGE_METHODS = {"S256": compare_s256_code_challenge}

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            msg = (
                "PKCE is required: send code_challenge and code_challenge_method=S256 "
                "(RFC 7636 section 4.3)."
            )
            raise InvalidRequestError(msg)
        if data.get("code_challenge_method") != "S256":
            msg = (
                "Only code_challenge_method=S256 is supported (RFC 7636 section 4.2); "
                "plain and a missing method are refused."
            )
            raise InvalidRequestError(msg)
        super().validate_code_challenge(grant, redirect_uri)


_TOKEN_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]


class _CodeGrant(grants.AuthorizationCodeGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = _TOKEN_AUTH_METHODS

    def save_authorization_code(self, code: str, request: Any) -> None:
        data = request.payload.data
        self.server.backend.codes[code] = _CodeRecord(
            code=code,
            client_id=request.client.client_id,
            redirect_uri=data.get("redirect_uri", ""),
            scope=request.scope or "",
            code_challenge=data["code_challenge"],
            code_challenge_method=data["code_challenge_method"],
            resource=tuple(request.payload.datalist.get("resource", ())),
            expires_at=time.monotonic() + CODE_LIFETIME,
            nonce=data.get("nonce"),
        )

    def query_authorization_code(self, code: str, client: ClientRecord) -> _CodeRecord | None:
        backend: OAuthBackend = self.server.backend
        used = backend.used_codes.get(code)
        if used is not None:
            # RFC 6749 §4.1.2: a code used twice is refused, and the tokens it produced
            # SHOULD be revoked (with those refreshed from them).
            for token in used.tokens:
                backend.revoke_family(token.family)
            return None
        record = backend.codes.get(code)
        if record is None or record.client_id != client.client_id:
            return None
        if time.monotonic() > record.expires_at:
            del backend.codes[code]
            return None
        return record

    def delete_authorization_code(self, authorization_code: _CodeRecord) -> None:
        backend: OAuthBackend = self.server.backend
        backend.codes.pop(authorization_code.code, None)
        backend.used_codes[authorization_code.code] = authorization_code

    def authenticate_user(self, authorization_code: _CodeRecord) -> _User:
        self.request.resource = authorization_code.resource
        self.request.code_record = authorization_code
        backend: OAuthBackend = self.server.backend
        return backend.user


class _RefreshGrant(grants.RefreshTokenGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = _TOKEN_AUTH_METHODS

    @property
    def INCLUDE_NEW_REFRESH_TOKEN(self) -> bool:  # authlib's attribute name
        # Rotate refresh tokens (the default): RFC 9700 §4.14.2 asks for it for public clients.
        backend: OAuthBackend = self.server.backend
        return backend.rotate_refresh_tokens

    def authenticate_refresh_token(self, refresh_token: str) -> TokenRecord | None:
        backend: OAuthBackend = self.server.backend
        token = backend.find_refresh_token(refresh_token)
        if token is None or token.revoked:
            return None
        if token.rotated:
            if backend.detect_refresh_token_reuse:
                # RFC 9700 §4.14.2: a spent refresh token presented again means two parties
                # hold it; the server cannot tell which is legitimate, so the whole family
                # is revoked and both must log in again.
                backend.refresh_token_reuses += 1
                backend.revoke_family(token.family)
            return None
        return token

    def authenticate_user(self, refresh_token: TokenRecord) -> _User:
        self.request.resource = refresh_token.resource
        backend: OAuthBackend = self.server.backend
        return backend.user

    def revoke_old_credential(self, refresh_token: TokenRecord) -> None:
        backend: OAuthBackend = self.server.backend
        if backend.rotate_refresh_tokens:
            refresh_token.rotated = True


class _RevocationEndpoint(rfc7009.RevocationEndpoint):  # type: ignore[misc]
    # Public clients authenticate with their client_id alone (RFC 7009 §2.1 defers to §2.3 of
    # RFC 6749), confidential ones with their secret.
    CLIENT_AUTH_METHODS = _TOKEN_AUTH_METHODS

    def query_token(self, token_string: str, token_type_hint: str | None) -> TokenRecord | None:
        backend: OAuthBackend = self.server.backend
        if token_type_hint != "refresh_token":  # noqa: S105  (a hint name, not a secret)
            found = backend.find_access_token(token_string)
            if found is not None:
                return found
        return backend.find_refresh_token(token_string)

    def revoke_token(self, token: TokenRecord, request: Any) -> None:
        backend: OAuthBackend = self.server.backend
        backend.revoke(token, refresh=_is_refresh_token(token, request.form.get("token")))


def _is_refresh_token(record: TokenRecord, presented: str | None) -> bool:
    return (
        presented is not None
        and record.refresh_token is not None
        and secrets.compare_digest(record.refresh_token, presented)
    )


class _IssuerParameter(rfc9207.IssuerParameter):  # type: ignore[misc]
    def __init__(self, issuer: str) -> None:
        self._issuer = issuer

    def get_issuer(self) -> str:
        return self._issuer


_OIDC_DEFAULTS = tuple(
    n for n in OidcClientMetadataClaims.REGISTERED_CLAIMS if n != "application_type"
)


class _RegistrationEndpoint(rfc7591.ClientRegistrationEndpoint):  # type: ignore[misc]
    def authenticate_token(self, request: Any) -> bool:
        return True  # open registration, as MCP clients expect (RFC 7591 §3)

    def get_server_metadata(self) -> dict[str, Any]:
        return dict(self.server.backend.metadata)

    def extract_client_metadata(self, request: Any) -> dict[str, Any]:
        if not request.payload.data:
            msg = "Send the client metadata as a JSON object (RFC 7591 section 3.1)."
            raise InvalidRequestError(msg)
        uris = request.payload.data.get("redirect_uris")
        grants_asked = request.payload.data.get("grant_types") or ()
        if uris in (None, []) and isinstance(grants_asked, list) and DEVICE_GRANT in grants_asked:
            uris = []  # RFC 8628 §3.1: a device client is never redirected anywhere
        elif (
            not isinstance(uris, list)
            or not uris
            or not all(isinstance(u, str) and is_loopback_http(u) for u in uris)
        ):
            # RFC 7591 §3.2.2: invalid_redirect_uri. Checked before authlib's claims so the
            # client gets this code. Only loopback http redirects: this is a test server for
            # native clients, and must never send a browser anywhere else.
            msg = (
                "This test server accepts only loopback http redirect URIs such as "
                "http://127.0.0.1/callback (RFC 8252 section 7.3)."
            )
            raise rfc7591.InvalidRedirectURIError(msg)
        metadata: dict[str, Any] = super().extract_client_metadata(request)
        # The OpenID claims class is here for ``application_type`` only: drop the OpenID
        # defaults it fills in (id_token_signed_response_alg, ...) that the client never sent.
        sent = request.payload.data
        for name in _OIDC_DEFAULTS:
            if name not in sent:
                metadata.pop(name, None)
        return metadata

    def generate_client_info(self, request: Any) -> dict[str, Any]:
        info: dict[str, Any] = super().generate_client_info(request)
        method = request.payload.data.get("token_endpoint_auth_method", "client_secret_basic")
        if method == "none":  # a public client gets no secret (RFC 7591 §3.2.1)
            info.pop("client_secret", None)
            info.pop("client_secret_expires_at", None)
        return info

    def save_client(
        self, client_info: dict[str, Any], client_metadata: dict[str, Any], request: Any
    ) -> ClientRecord:
        backend: OAuthBackend = self.server.backend
        client = ClientRecord(
            client_id=client_info["client_id"],
            redirect_uris=tuple(client_metadata.get("redirect_uris") or ()),
            application_type=client_metadata.get("application_type", "web"),
            token_endpoint_auth_method=client_metadata["token_endpoint_auth_method"],
            client_secret=client_info.get("client_secret"),
            grant_types=tuple(client_metadata.get("grant_types") or ("authorization_code",)),
            client_name=client_metadata.get("client_name"),
            dynamic=True,
            exact_redirect_match=backend.exact_redirect_match,
        )
        backend.clients[client.client_id] = client
        return client


class _Server(AuthorizationServer):  # type: ignore[misc]
    """authlib's generic server with the hooks a framework integration must provide."""

    def __init__(self, backend: OAuthBackend) -> None:
        super().__init__(scopes_supported=backend.scopes_supported)
        self.backend = backend

    def query_client(self, client_id: str) -> ClientRecord | None:
        return self.backend.clients.get(client_id)

    def save_token(self, token: dict[str, Any], request: Any) -> None:
        parent = request.refresh_token if request.payload.grant_type == "refresh_token" else None
        family = parent.family if isinstance(parent, TokenRecord) else secrets.token_hex(8)
        record = TokenRecord(
            access_token=token["access_token"],
            refresh_token=token.get("refresh_token"),
            token_type=token["token_type"],
            expires_in=int(token.get("expires_in", 0)),
            scope=token.get("scope", ""),
            client_id=request.client.client_id,
            grant_type=request.payload.grant_type,
            resource=tuple(getattr(request, "resource", ())),
            issued_at=time.time(),
            family=family,
        )
        self.backend.tokens.append(record)
        code_record = getattr(request, "code_record", None)
        if code_record is not None:
            code_record.tokens.append(record)
            keys = self.backend.keys
            if keys is not None and "openid" in record.scope.split():
                # OIDC Core §3.1.3.3: the ID token comes with the code grant's response.
                token["id_token"] = keys.id_token(
                    issuer=self.backend.issuer,
                    client_id=record.client_id,
                    subject=self.backend.user.get_user_id(),
                    nonce=code_record.nonce,
                    access_token=record.access_token,
                )

    def create_oauth2_request(self, request: Any) -> Any:
        if isinstance(request, OAuth2Request):
            return request
        return _OAuth2Request(request, self.backend.origin)

    def create_json_request(self, request: Any) -> Any:
        return _JsonRequest(request, self.backend.origin)

    def handle_response(self, status: int, body: Any, headers: Any) -> HttpResponse:
        if isinstance(body, dict):
            body = json.dumps(body)
        data = body.encode("utf-8") if isinstance(body, str) else bytes(body or b"")
        return HttpResponse(status, data, [(str(k), str(v)) for k, v in headers])

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        """authlib's signal hook: the test server has no listeners."""


# --- the typed facade testing.py uses ------------------------------------------------------


@dataclass
class AuthorizeOutcome:
    """What the authorization endpoint decided."""

    response: HttpResponse | None = None  # a redirect (or JSON error) to send as is
    error_page: tuple[str, str] | None = None  # (error, description) to show, no redirect
    client: ClientRecord | None = None  # validated: ask for consent
    scope: str = ""
    redirect_uri: str = ""


class OAuthBackend:
    """The in-memory state of one test server, and the authlib server that acts on it."""

    def __init__(
        self,
        *,
        origin: str,
        issuer: str,
        scopes_supported: list[str] | None,
        token_lifetime: int,
        exact_redirect_match: bool,
        iss_value: str | None,
        registration: bool,
        rotate_refresh_tokens: bool = True,
        detect_refresh_token_reuse: bool = False,
        revocation: bool = True,
    ) -> None:
        self.origin = origin
        self.issuer = issuer
        self.scopes_supported = scopes_supported
        self.exact_redirect_match = exact_redirect_match
        self.rotate_refresh_tokens = rotate_refresh_tokens
        self.detect_refresh_token_reuse = detect_refresh_token_reuse
        #: How often a spent refresh token was presented again (each revoked its family).
        self.refresh_token_reuses = 0
        self.metadata: Mapping[str, Any] = {}
        self.clients: dict[str, ClientRecord] = {}
        self.codes: dict[str, _CodeRecord] = {}
        self.used_codes: dict[str, _CodeRecord] = {}
        self.tokens: list[TokenRecord] = []
        self.user = _User()
        #: The signing keys of ID tokens (``_modern.Keys``), or None: no ID tokens.
        self.keys: Any = None
        server = _Server(self)
        server.register_token_generator(
            "default",
            _TokenGenerator(
                _random_token, _random_token, lambda client, grant_type: token_lifetime
            ),
        )
        server.register_grant(_CodeGrant, [_S256Challenge(required=True)])
        server.register_grant(_RefreshGrant)
        if iss_value is not None:
            server.register_extension(_IssuerParameter(iss_value))
        if registration:
            server.register_endpoint(
                _RegistrationEndpoint(
                    claims_classes=[rfc7591.ClientMetadataClaims, OidcClientMetadataClaims]
                )
            )
        if revocation:
            server.register_endpoint(_RevocationEndpoint)
        #: RFC 8628 device logins (``enable_device_grant``), or None.
        self.device_codes: DeviceCodes | None = None
        self._server = server

    def enable_device_grant(self, *, interval: float, lifetime: float) -> DeviceCodes:
        """Serve the device authorization grant (RFC 8628) with ``interval`` between polls."""
        codes = DeviceCodes(interval=interval, lifetime=lifetime)
        self._server.register_endpoint(device_endpoint(codes, f"{self.issuer}/device"))
        self._server.register_grant(device_grant(codes, self.user))
        self.device_codes = codes
        return codes

    def device_authorization(self, request: HttpRequest) -> HttpResponse:
        response: HttpResponse | None = self._server.create_endpoint_response(
            "device_authorization", request
        )
        if response is None:  # pragma: no cover  (authlib always answers this endpoint)
            return HttpResponse(500, b"", [])
        return response

    def add_client(self, client: ClientRecord) -> None:
        self.clients[client.client_id] = client

    def find_refresh_token(self, value: str) -> TokenRecord | None:
        for token in self.tokens:
            if token.refresh_token is not None and secrets.compare_digest(
                token.refresh_token, value
            ):
                return token
        return None

    def find_access_token(self, value: str) -> TokenRecord | None:
        for token in self.tokens:
            if secrets.compare_digest(token.access_token, value):
                return token
        return None

    def revoke_family(self, family: str) -> None:
        for token in self.tokens:
            if token.family == family:
                token.revoked = True

    def revoke(self, token: TokenRecord, *, refresh: bool) -> None:
        """RFC 7009 §2.1: revoking a refresh token also invalidates the access tokens of the
        same grant (here: its whole family); revoking an access token, that token only."""
        if refresh:
            self.revoke_family(token.family)
        else:
            token.access_revoked = True

    def revoke_value(self, value: str) -> bool:
        """Revoke the access or refresh token ``value``; False if the server never issued it."""
        found = self.find_refresh_token(value)
        if found is not None:
            self.revoke(found, refresh=True)
            return True
        found = self.find_access_token(value)
        if found is not None:
            self.revoke(found, refresh=False)
            return True
        return False

    def authorize(self, request: HttpRequest) -> AuthorizeOutcome:
        """Validate an authorization request (RFC 6749 §4.1.1) without deciding it."""
        oauth_request = _OAuth2Request(request, self.origin)
        try:
            grant = self._server.get_consent_grant(request=oauth_request, end_user=self.user)
        except OAuth2Error as error:
            if error.redirect_uri:
                # RFC 6749 §4.1.2.1: the redirect URI is valid, so the error goes back to
                # the client; RFC 9207 §2: with iss, like every authorization response.
                response = self._server.handle_error_response(oauth_request, error)
                self._server.execute_hook("after_create_authorization_response", response)
                return AuthorizeOutcome(response=response)
            # Unknown client or unregistered redirect URI: MUST NOT redirect (§4.1.2.1).
            return AuthorizeOutcome(error_page=(str(error.error), str(error.description or "")))
        return AuthorizeOutcome(
            client=grant.client,
            scope=oauth_request.scope or "",
            redirect_uri=grant.redirect_uri,
        )

    def decide(self, request: HttpRequest, *, approve: bool) -> HttpResponse:
        """Answer a validated authorization request: a code, or ``access_denied``."""
        oauth_request = _OAuth2Request(request, self.origin)
        try:
            grant = self._server.get_consent_grant(request=oauth_request, end_user=self.user)
        except OAuth2Error as error:
            response: HttpResponse = self._server.handle_error_response(oauth_request, error)
            return response
        response = self._server.create_authorization_response(
            request=oauth_request, grant_user=self.user if approve else None, grant=grant
        )
        return response

    def token(self, request: HttpRequest) -> HttpResponse:
        response: HttpResponse = self._server.create_token_response(request)
        return response

    def authenticate(self, request: HttpRequest) -> ClientRecord | None:
        """The client a back-channel request authenticates as (RFC 6749 §2.3), or None."""
        oauth_request = _OAuth2Request(request, self.origin)
        try:
            client: ClientRecord = self._server.authenticate_client(
                oauth_request, ["none", "client_secret_basic", "client_secret_post"], "pushed"
            )
        except OAuth2Error:
            return None
        return client

    def revocation(self, request: HttpRequest) -> HttpResponse:
        """RFC 7009 §2: revoke a token; 200 whether or not the server knew it (§2.2)."""
        response: HttpResponse | None = self._server.create_endpoint_response("revocation", request)
        if response is None:  # pragma: no cover  (authlib always answers this endpoint)
            return HttpResponse(500, b"", [])
        return response

    def register(self, request: HttpRequest) -> HttpResponse:
        response: HttpResponse | None = self._server.create_endpoint_response(
            "client_registration", request
        )
        if response is None:  # authlib returns None only for endpoints that answer nothing
            return HttpResponse(500, b"", [])
        return response


class _IssuedToken(dict[str, Any]):
    """A token response whose repr shows no secret: authlib's grants log every token they
    issue (``log.debug("Issue token %r to %r", ...)``), and a test's DEBUG logging must not
    carry the tokens of its logins. Serialised to JSON like the dict it is."""

    _SECRET = frozenset({"access_token", "refresh_token", "id_token"})

    def __repr__(self) -> str:
        shown = {k: ("<redacted>" if k in self._SECRET else v) for k, v in self.items()}
        return f"IssuedToken({shown!r})"


class _TokenGenerator(BearerTokenGenerator):  # type: ignore[misc]
    def generate(self, *args: Any, **kwargs: Any) -> _IssuedToken:
        return _IssuedToken(super().generate(*args, **kwargs))


def _random_token(**_: Any) -> str:
    """Opaque token: 42 characters from authlib's SystemRandom-backed ``generate_token``."""
    token: str = generate_token(42)
    return token


def validate_metadata(metadata: Mapping[str, Any]) -> None:
    """Check our own metadata with authlib's RFC 8414 (+ RFC 9207) validator."""
    rfc8414.AuthorizationServerMetadata(dict(metadata)).validate(
        metadata_classes=[rfc9207.AuthorizationServerMetadata]
    )


def token_error_response(error: str, description: str) -> HttpResponse:
    """An RFC 6749 §5.2 error response; ``invalid_client`` gets 401 as §5.2 allows."""
    status = 401 if error == "invalid_client" else 400
    body = json.dumps({"error": error, "error_description": description}).encode()
    return HttpResponse(status, body, [*_JSON, ("Cache-Control", "no-store")])
