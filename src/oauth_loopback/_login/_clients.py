"""Which client an interactive login uses, and whether a stored registration still works.

The order is the MCP authorization specification's (and, in effect, the only sensible one):

1. a **pre-registered** client: ``client_id=`` (with ``client_secret=`` for a confidential one);
2. a **client ID metadata document**: a ``client_id`` that is an https URL, when the server
   advertises ``client_id_metadata_document_supported`` (nothing is registered; the live
   redirect URI is sent and matched against the document's portless loopback URIs);
3. a **registration from an earlier login** (``client=``, e.g. ``token.client`` or a token
   store's), reused when the server accepts this run's redirect URI;
4. **dynamic registration** (RFC 7591) with the live redirect URI.

Reusing a registration on another loopback port relies on RFC 8252 §7.3 ("The authorization
server MUST allow any port to be specified at the time of the request for loopback IP redirect
URIs"), which many servers ignore. A server that does not accept the redirect URI must not
redirect back (RFC 6749 §4.1.2.1): it shows the user an error page and the login could only
time out. So before the browser opens, :func:`server_accepts` asks the authorization endpoint
once, with a throwaway ``state`` and PKCE challenge, and reads the answer: a redirect or a page
means "accepted", a 4xx means "refused". A refused dynamic registration is replaced, once, by a
new one; anything else that is refused raises :class:`ClientRejected`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable
from typing import Literal

import httpx2
from authlib.common.security import generate_token

from .._errors import ClientRejected, ServerUnreachable
from .._store._records import ClientRegistration
from ._cimd import is_metadata_document_url
from ._client import VERIFIER_LENGTH, Client, optional_str, unlogged_query
from ._metadata import Metadata
from ._registration import register

__all__ = ["Acceptance", "choose_client", "server_accepts", "with_secret"]

logger = logging.getLogger("oauth_loopback.oauth")

#: ``on_step(name, detail)`` as authorize() takes it.
_Step = Callable[[str, str], object]

#: What the authorization endpoint said about a (client_id, redirect_uri) pair.
Acceptance = Literal["accepted", "refused", "unknown"]


async def choose_client(
    client: Client,
    server: Metadata,
    redirect_uri: str,
    *,
    issuer: str,
    app_name: str,
    client_id: str | None,
    client_secret: str | None,
    registration: ClientRegistration | None,
    scope: str | None,
    resource: str | None,
    on_step: _Step | None,
) -> tuple[ClientRegistration, bool]:
    """Pick (or register) the client for this login, set it on ``client`` and return it.

    The flag says whether the server has just vouched for it (registered now, or asked about
    it with this redirect URI); when False, ``authorize()`` asks once before the browser opens.
    """
    chosen, vouched = await _choose(
        client,
        server,
        redirect_uri,
        issuer=issuer,
        app_name=app_name,
        client_id=client_id,
        client_secret=client_secret,
        registration=registration,
        scope=scope,
        resource=resource,
        on_step=on_step,
    )
    _use(client, chosen)
    return chosen, vouched


async def _choose(
    client: Client,
    server: Metadata,
    redirect_uri: str,
    *,
    issuer: str,
    app_name: str,
    client_id: str | None,
    client_secret: str | None,
    registration: ClientRegistration | None,
    scope: str | None,
    resource: str | None,
    on_step: _Step | None,
) -> tuple[ClientRegistration, bool]:
    def step(detail: str) -> None:
        if on_step is not None:
            on_step("registration", detail)

    async def register_new() -> ClientRegistration:
        return await register(
            client, server, redirect_uri, issuer=issuer, app_name=app_name, scope=scope
        )

    if client_id is not None and not is_metadata_document_url(client_id, issuer=issuer):
        if registration is not None and registration.client_id == client_id:
            step("skipped: using the given client_id")
            if client_secret is None:
                return registration, False
            return with_secret(registration, client_secret), False
        step("skipped: using the given client_id")
        given = ClientRegistration(
            issuer=issuer,
            client_id=client_id,
            obtained="preregistered",
            client_secret=client_secret,
            token_endpoint_auth_method=secret_method(server) if client_secret else "",
        )
        return given, False
    if client_id is not None:
        document = _metadata_document_client(issuer, client_id)
        if server.supports_metadata_documents:
            step(f"skipped: client ID metadata document {client_id}")
            return document, False
        if server.registration_endpoint is None:
            # Neither advertised nor a fallback: the server may still fetch documents
            # without saying so; if it does not, its error page says why.
            logger.info(
                "the server does not advertise client_id_metadata_document_supported and "
                "offers no registration; trying the client ID metadata document anyway"
            )
            step(f"skipped: client ID metadata document {client_id} (not advertised)")
            return document, False
        logger.info(
            "the server does not advertise client_id_metadata_document_supported; "
            "falling back to dynamic registration (the MCP specification's order)"
        )
        if registration is not None and registration.client_id == client_id:
            registration = None  # the document itself, which this server does not take
    if registration is not None:
        if registration.obtained != "dynamic":
            step(f"skipped: reusing the {registration.obtained.replace('_', ' ')} client")
            return registration, False
        if registration.secret_expired():
            logger.info("the stored client secret has expired; registering again")
        elif redirect_uri in registration.redirect_uris:
            step("skipped: reusing the stored registration (same redirect URI)")
            return registration, False
        else:
            answer, reason = await server_accepts(client, server, registration, resource)
            if answer != "refused":
                step(
                    f"skipped: reusing the stored registration for {redirect_uri} "
                    f"(RFC 8252 §7.3, any loopback port)"
                )
                return registration, answer == "accepted"
            if server.registration_endpoint is None:
                raise _rejected(registration, redirect_uri, reason)
            logger.info(
                "the server refused the stored registration for this redirect URI (%s); "
                "registering again",
                reason,
            )
            new = await register_new()
            step(
                f"the server refused the stored registration for {redirect_uri}; "
                f"registered a new native public client"
            )
            return new, True
    new = await register_new()
    step(f"registered a native public client for {redirect_uri}")
    return new, True


def _use(client: Client, registration: ClientRegistration) -> None:
    client.set_client(
        registration.client_id,
        registration.client_secret,
        registration.token_endpoint_auth_method,
    )


def secret_method(server: Metadata) -> str:
    """How a pre-registered confidential client authenticates at the token endpoint.

    ``client_secret_basic``, RFC 6749 §2.3.1's must-support and RFC 8414 §2's default, unless
    the server's ``token_endpoint_auth_methods_supported`` leaves it out and names
    ``client_secret_post``: then the secret goes in the form, as that server asks.
    """
    methods = server.document.get("token_endpoint_auth_methods_supported")
    if (
        isinstance(methods, list)
        and "client_secret_basic" not in methods
        and "client_secret_post" in methods
    ):
        return "client_secret_post"
    return "client_secret_basic"


def with_secret(registration: ClientRegistration, secret: str) -> ClientRegistration:
    """``registration`` with the secret the caller passed (it wins over a stored one)."""

    method = registration.token_endpoint_auth_method
    if method == "none":
        method = "client_secret_basic"  # RFC 7591 §2's default for a client with a secret
    return dataclasses.replace(
        registration, client_secret=secret, token_endpoint_auth_method=method
    )


def _metadata_document_client(issuer: str, url: str) -> ClientRegistration:
    return ClientRegistration(
        issuer=issuer,
        client_id=url,
        obtained="metadata_document",
        token_endpoint_auth_method="none",  # noqa: S106  (an RFC 7591 method name)
    )


async def server_accepts(
    client: Client,
    server: Metadata,
    registration: ClientRegistration,
    resource: str | None,
) -> tuple[Acceptance, str]:
    """Ask the authorization endpoint whether it takes ``registration`` with the redirect URI
    ``client`` was built with (this run's receiver).

    One GET of an authorization request with a throwaway ``state`` and PKCE challenge (whose
    verifier is discarded, so no code it might yield can ever be exchanged, RFC 7636 §4.6), no
    cookies and no redirects followed. Returns ``("accepted" | "refused" | "unknown", why)``.
    """
    _use(client, registration)
    url = client.authorization_url(
        server.authorization_endpoint,
        state=generate_token(32),
        code_verifier=generate_token(VERIFIER_LENGTH),
        resource=resource,
    )
    endpoint = server.authorization_endpoint.partition("?")[0]
    try:
        with unlogged_query(url):  # a throwaway state, but an authorization request all the same
            response = await client.get(url)
    except httpx2.TransportError as exc:
        msg = (
            f"Could not reach the authorization endpoint {endpoint} ({type(exc).__name__}: "
            f"{exc}). Check the network (and proxy settings), then log in again."
        )
        raise ServerUnreachable(msg) from exc
    status = response.status_code
    if 300 <= status < 400:
        # To a login page, or straight back to the receiver: either way the pair was taken.
        return "accepted", f"HTTP {status} redirect"
    if 200 <= status < 300:
        return "accepted", f"HTTP {status}"
    if 400 <= status < 500 and status != 429:
        return "refused", _error_text(response)
    logger.info("could not tell whether the server accepts the redirect URI (HTTP %s)", status)
    return "unknown", f"HTTP {status}"


def _error_text(response: httpx2.Response) -> str:
    """``HTTP 400 error='invalid_request': ...`` from a JSON error, else the status alone."""
    text = f"HTTP {response.status_code}"
    try:
        document = json.loads(response.content[:65536])
    except ValueError:
        return text
    if isinstance(document, dict) and isinstance(document.get("error"), str):
        text += f" error={document['error']!r}"
        description = optional_str(document.get("error_description"))
        if description:
            text += f": {description[:200]}"
    return text


def _rejected(registration: ClientRegistration, redirect_uri: str, reason: str) -> ClientRejected:
    msg = (
        f"The authorization server refused client {registration.client_id!r} with the "
        f"redirect URI {redirect_uri} ({reason}), and it offers no registration endpoint to "
        f"register again. Register http://127.0.0.1/callback (any port, RFC 8252 §7.3) for "
        f"the client at the server, or listen on the port it was registered with "
        f"(CallbackConfig(port=...) / --port), or forget the stored login."
    )
    return ClientRejected(msg, client_id=registration.client_id, redirect_uri=redirect_uri)
