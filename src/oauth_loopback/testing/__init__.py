"""An embedded OAuth 2.0 authorization server for demos and for your own tests.

The way ``trustme`` gives tests certificates, :class:`AuthorizationServer` gives them a real
authorization server on ``127.0.0.1`` (port 0), served on the current event loop (asyncio or
trio) by the same anyio + h11 plumbing as the callback receiver::

    from oauth_loopback.testing import AuthorizationServer, follow_redirects

    async with AuthorizationServer() as server:
        client_id = server.register_client(["http://127.0.0.1/callback"])
        ...  # point your client at server.issuer; PKCE S256 is required
        final_url = await follow_redirects(authorization_url)  # a headless "browser"

It speaks the authorization code grant with PKCE (S256 only, required), refresh tokens,
RFC 8414 metadata (path-aware), RFC 7591 dynamic registration, RFC 9207 ``iss``, and matches
loopback redirect URIs on any port (RFC 8252 §7.3). Switches make it misbehave on purpose:
``deny``, ``wrong_iss``, ``token_error``, ``exact_redirect_match``. The protocol work is done by
authlib's server-side components (see ``_testing_authlib``). It is a test double: one fixed
user, everything in memory, loopback only.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from types import MappingProxyType, TracebackType
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import SocketAttribute, SocketListener

from .._receiver._tasks import background
from ._authlib import (
    ClientRecord,
    OAuthBackend,
    is_loopback_http,
    validate_metadata,
)
from ._browser import follow_redirects
from ._http import HttpServer, bind_loopback
from ._resource import ProtectedResource
from ._routes import Routes, Switches

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

__all__ = [
    "AuthorizationServer",
    "IssuedToken",
    "ProtectedResource",
    "RegisteredClient",
    "follow_redirects",
]

logger = logging.getLogger("oauth_loopback.testing")

# RFC 6749 §5.2: the error codes a token endpoint may answer.
TOKEN_ERRORS = frozenset(
    {
        "invalid_request",
        "invalid_client",
        "invalid_grant",
        "unauthorized_client",
        "unsupported_grant_type",
        "invalid_scope",
    }
)
_AUTH_METHODS = ("none", "client_secret_post", "client_secret_basic")
_WRONG_ISS = "https://mix-up.invalid"
_MAX_TICKETS = 256
_TICKET_LIFETIME = 600.0


@dataclass(frozen=True)
class RegisteredClient:
    """A client the server knows, registered by :meth:`AuthorizationServer.register_client`
    or through RFC 7591 dynamic registration (``dynamic=True``)."""

    client_id: str
    redirect_uris: tuple[str, ...]
    application_type: str
    token_endpoint_auth_method: str
    client_secret: str | None
    grant_types: tuple[str, ...]
    client_name: str | None
    dynamic: bool

    def __repr__(self) -> str:
        secret = "<redacted>" if self.client_secret else None
        return (
            f"RegisteredClient(client_id={self.client_id!r}, redirect_uris={self.redirect_uris!r},"
            f" token_endpoint_auth_method={self.token_endpoint_auth_method!r},"
            f" client_secret={secret}, dynamic={self.dynamic})"
        )


@dataclass(frozen=True)
class IssuedToken:
    """One token response the server sent, for assertions in tests."""

    access_token: str
    refresh_token: str | None
    token_type: str
    expires_in: int
    scope: str
    client_id: str
    #: ``authorization_code`` or ``refresh_token``.
    grant_type: str
    #: RFC 8707 ``resource`` values of the authorization request.
    resource: tuple[str, ...]
    #: Revoked by refresh-token rotation, or because its code was used twice.
    revoked: bool

    def __repr__(self) -> str:
        return (
            f"IssuedToken(access_token=<redacted>, client_id={self.client_id!r}, "
            f"grant_type={self.grant_type!r}, scope={self.scope!r}, revoked={self.revoked})"
        )


class AuthorizationServer:
    """An OAuth 2.0 authorization server on ``127.0.0.1``, for tests and demos.

    Use it as ``async with AuthorizationServer() as server:``; it listens on a port the OS
    picks until the block ends. Every keyword is optional:

    :param auto_approve: approve every valid request at once (the default, for headless
        tests). ``False`` serves an approve/deny consent page instead.
    :param issue_iss: RFC 9207: add ``iss`` to authorization responses and advertise
        ``authorization_response_iss_parameter_supported``.
    :param registration: offer RFC 7591 dynamic registration at ``registration_endpoint``.
    :param exact_redirect_match: ``False`` (default) matches loopback redirect URIs on any port
        (RFC 8252 §7.3); ``True`` compares strings exactly, like servers that ignore §7.3.
    :param scopes_supported: advertised and enforced (``invalid_scope`` otherwise).
    :param token_lifetime: ``expires_in`` of access tokens, in seconds.
    :param path_prefix: an issuer with a path, e.g. ``"/tenant1"``: metadata is then served at
        ``/.well-known/oauth-authorization-server/tenant1`` (RFC 8414 §3.1).
    :param deny: answer every valid request with ``error=access_denied``.
    :param wrong_iss: send a wrong ``iss`` (for mix-up tests, RFC 9207 §2.4).
    :param token_error: make the token endpoint answer this RFC 6749 §5.2 error.
    """

    def __init__(
        self,
        *,
        auto_approve: bool = True,
        issue_iss: bool = True,
        registration: bool = True,
        exact_redirect_match: bool = False,
        scopes_supported: Sequence[str] | None = None,
        token_lifetime: int = 3600,
        path_prefix: str = "",
        deny: bool = False,
        wrong_iss: bool = False,
        token_error: str | None = None,
        par: bool = False,
        require_par: bool = False,
    ) -> None:
        if token_error is not None and token_error not in TOKEN_ERRORS:
            msg = (
                f"token_error={token_error!r} is not an RFC 6749 section 5.2 error code; "
                f"use one of {sorted(TOKEN_ERRORS)}."
            )
            raise ValueError(msg)
        if isinstance(token_lifetime, bool) or not isinstance(token_lifetime, int):
            msg = f"token_lifetime must be a whole number of seconds, not {token_lifetime!r}."
            raise TypeError(msg)
        if token_lifetime <= 0:
            msg = f"token_lifetime must be a positive number of seconds, not {token_lifetime}."
            raise ValueError(msg)
        if isinstance(scopes_supported, str):
            msg = "scopes_supported takes a list of scopes, e.g. ['read', 'write'], not a string."
            raise TypeError(msg)
        self._auto_approve = auto_approve
        self._issue_iss = issue_iss or wrong_iss
        self._registration = registration
        self._exact_redirect_match = exact_redirect_match
        self._scopes_supported = list(scopes_supported) if scopes_supported is not None else None
        self._token_lifetime = token_lifetime
        self._path_prefix = _check_path_prefix(path_prefix)
        self._deny = deny
        self._wrong_iss = wrong_iss
        self._token_error = token_error
        # RFC 9126: advertise a pushed authorization request endpoint; require_par implies it.
        self._par = par or require_par
        self._require_par = require_par
        self._backend: OAuthBackend | None = None
        self._port: int | None = None
        self._metadata: Mapping[str, Any] = MappingProxyType({})
        self._routes: Routes | None = None
        self._stack: AsyncExitStack | None = None

    def __repr__(self) -> str:
        where = self.issuer if self._port is not None else "not started"
        return f"<AuthorizationServer {where}>"

    # --- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> AuthorizationServer:
        if self._stack is not None:
            msg = "This AuthorizationServer is already running; create a new one per block."
            raise RuntimeError(msg)
        stack = AsyncExitStack()
        await stack.enter_async_context(self._serve())
        self._stack = stack
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        stack, self._stack = self._stack, None
        if stack is None:
            return None
        return await stack.__aexit__(exc_type, exc, tb)

    @asynccontextmanager
    async def _serve(self) -> AsyncIterator[None]:
        sock = bind_loopback()
        try:
            listener = await SocketListener.from_socket(sock)
        except BaseException:
            sock.close()
            raise
        try:
            self._port = listener.extra(SocketAttribute.local_port)  # noqa: S610  (anyio's)
            self._backend = OAuthBackend(
                origin=f"http://127.0.0.1:{self._port}",
                issuer=self.issuer,
                scopes_supported=self._scopes_supported,
                token_lifetime=self._token_lifetime,
                exact_redirect_match=self._exact_redirect_match,
                iss_value=(_WRONG_ISS if self._wrong_iss else self.issuer)
                if self._issue_iss
                else None,
                registration=self._registration,
            )
            self._metadata = MappingProxyType(self._build_metadata())
            self._backend.metadata = self._metadata
            validate_metadata(self._metadata)
        except BaseException:
            await anyio.aclose_forcefully(listener)
            raise
        self._routes = Routes(
            Switches(
                path_prefix=self._path_prefix,
                registration=self._registration,
                deny=self._deny,
                auto_approve=self._auto_approve,
                token_error=self._token_error,
                par=self._par,
                require_par=self._require_par,
            ),
            self._backend,
            self._port,
            self._metadata,
        )
        http = HttpServer(self._routes.handle)
        logger.debug("test authorization server listening at %s", self.issuer)
        async with background() as tg:
            tg.start_soon(http.accept_loop, listener, tg)
            yield

    # --- what tests read -------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The port the OS assigned."""
        if self._port is None:
            msg = "The server is not running yet: use it inside 'async with AuthorizationServer()'."
            raise RuntimeError(msg)
        return self._port

    @property
    def issuer(self) -> str:
        """``http://127.0.0.1:<port>`` plus ``path_prefix`` (RFC 8414 §2 ``issuer``)."""
        return f"http://127.0.0.1:{self.port}{self._path_prefix}"

    @property
    def metadata_url(self) -> str:
        """Where the RFC 8414 metadata is served: the well-known path goes first (§3.1)."""
        return (
            f"http://127.0.0.1:{self.port}/.well-known/oauth-authorization-server"
            f"{self._path_prefix}"
        )

    @property
    def metadata(self) -> Mapping[str, Any]:
        """The RFC 8414 metadata document this server serves (read-only)."""
        self.port  # noqa: B018  (raises a helpful error when not running)
        return self._metadata

    @property
    def authorization_endpoint(self) -> str:
        return f"{self.issuer}/authorize"

    @property
    def token_endpoint(self) -> str:
        return f"{self.issuer}/token"

    @property
    def registration_endpoint(self) -> str | None:
        """``None`` when the server was created with ``registration=False``."""
        return f"{self.issuer}/register" if self._registration else None

    @property
    def clients(self) -> Mapping[str, RegisteredClient]:
        """Every registered client by ``client_id`` (a snapshot)."""
        backend = self._require_backend()
        return MappingProxyType({cid: _public_client(c) for cid, c in backend.clients.items()})

    @property
    def issued_tokens(self) -> list[IssuedToken]:
        """Every token response sent so far, oldest first (a snapshot)."""
        backend = self._require_backend()
        return [
            IssuedToken(
                access_token=t.access_token,
                refresh_token=t.refresh_token,
                token_type=t.token_type,
                expires_in=t.expires_in,
                scope=t.scope,
                client_id=t.client_id,
                grant_type=t.grant_type,
                resource=t.resource,
                revoked=t.revoked,
            )
            for t in backend.tokens
        ]

    @property
    def requests(self) -> list[tuple[str, str]]:
        """``(method, path)`` of every request handled, oldest first; never a query."""
        return [] if self._routes is None else list(self._routes.requests)

    def register_client(
        self,
        redirect_uris: Sequence[str],
        *,
        application_type: str = "native",
        token_endpoint_auth_method: str = "none",  # noqa: S107  (an RFC 7591 method name)
        client_secret: str | None = None,
        client_name: str | None = None,
    ) -> str:
        """Pre-register a client and return its ``client_id``.

        :param redirect_uris: loopback ``http`` URIs; with the default matching, the port in
            them does not matter (RFC 8252 §7.3), e.g. ``["http://127.0.0.1/callback"]``.
        :param token_endpoint_auth_method: ``none`` (a public client, the default),
            ``client_secret_post`` or ``client_secret_basic``.
        :param client_secret: for the two secret methods; generated when omitted (read it
            from ``server.clients[client_id].client_secret``).
        """
        backend = self._require_backend()
        if isinstance(redirect_uris, str):
            msg = "redirect_uris takes a list, e.g. ['http://127.0.0.1/callback'], not a string."
            raise TypeError(msg)
        uris = tuple(redirect_uris)
        bad = [u for u in uris if not is_loopback_http(u)]
        if not uris or bad:
            msg = (
                f"redirect_uris must be loopback http URIs such as http://127.0.0.1/callback "
                f"(RFC 8252 section 7.3); got {list(uris)!r}. This test server never redirects "
                f"a browser anywhere else."
            )
            raise ValueError(msg)
        if token_endpoint_auth_method not in _AUTH_METHODS:
            msg = (
                f"token_endpoint_auth_method={token_endpoint_auth_method!r} is not supported; "
                f"use one of {list(_AUTH_METHODS)}."
            )
            raise ValueError(msg)
        if application_type not in ("native", "web"):
            msg = f"application_type must be 'native' or 'web', not {application_type!r}."
            raise ValueError(msg)
        if token_endpoint_auth_method == "none":  # noqa: S105  (a method name, not a secret)
            if client_secret is not None:
                msg = (
                    "A public client (token_endpoint_auth_method='none') has no secret; drop "
                    "client_secret= or use 'client_secret_post' / 'client_secret_basic'."
                )
                raise ValueError(msg)
        elif client_secret is None:
            client_secret = secrets.token_urlsafe(32)
        client_id = secrets.token_urlsafe(16)
        backend.add_client(
            ClientRecord(
                client_id=client_id,
                redirect_uris=uris,
                application_type=application_type,
                token_endpoint_auth_method=token_endpoint_auth_method,
                client_secret=client_secret,
                grant_types=("authorization_code", "refresh_token"),
                client_name=client_name,
                dynamic=False,
                exact_redirect_match=self._exact_redirect_match,
            )
        )
        return client_id

    def _require_backend(self) -> OAuthBackend:
        if self._backend is None:
            msg = "The server is not running yet: use it inside 'async with AuthorizationServer()'."
            raise RuntimeError(msg)
        return self._backend

    def _build_metadata(self) -> dict[str, Any]:
        issuer = self.issuer
        metadata: dict[str, Any] = {
            "issuer": issuer,
            "authorization_endpoint": self.authorization_endpoint,
            "token_endpoint": self.token_endpoint,
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "token_endpoint_auth_methods_supported": list(_AUTH_METHODS),
            # RFC 7636 §4.2 / RFC 8414 §2: S256 only; plain is never offered.
            "code_challenge_methods_supported": ["S256"],
        }
        if self._registration:
            metadata["registration_endpoint"] = self.registration_endpoint
        if self._scopes_supported is not None:
            metadata["scopes_supported"] = list(self._scopes_supported)
        if self._issue_iss:
            metadata["authorization_response_iss_parameter_supported"] = True  # RFC 9207 §3
        if self._par:  # RFC 9126 §5
            metadata["pushed_authorization_request_endpoint"] = f"{issuer}/par"
            metadata["require_pushed_authorization_requests"] = self._require_par
        return metadata


def _check_path_prefix(prefix: str) -> str:
    if not isinstance(prefix, str):
        msg = f"path_prefix must be a string such as '/tenant1', not {prefix!r}."
        raise TypeError(msg)
    prefix = prefix.rstrip("/")
    if prefix and (
        not prefix.startswith("/")
        or any(c in prefix for c in "?#%\\ ")
        or any(seg in (".", "..") for seg in prefix.split("/")[1:])
    ):
        msg = (
            f"path_prefix={prefix!r} must be empty or an absolute path such as '/tenant1' "
            f"(no query, fragment, spaces or dot segments)."
        )
        raise ValueError(msg)
    return prefix


def _public_client(record: ClientRecord) -> RegisteredClient:
    return RegisteredClient(
        client_id=record.client_id,
        redirect_uris=record.redirect_uris,
        application_type=record.application_type,
        token_endpoint_auth_method=record.token_endpoint_auth_method,
        client_secret=record.client_secret,
        grant_types=record.grant_types,
        client_name=record.client_name,
        dynamic=record.dynamic,
    )
