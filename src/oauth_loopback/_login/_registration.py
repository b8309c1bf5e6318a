"""Dynamic client registration (RFC 7591) of a native public client for the live redirect URI."""

from __future__ import annotations

import logging

import httpx2

from .._errors import (
    RegistrationError,
    ServerUnreachable,
    UnsupportedServer,
)
from .._store._records import ClientRegistration
from ._client import Client, json_object, optional_str
from ._metadata import Metadata

logger = logging.getLogger("oauth_loopback.oauth")


async def register(
    client: Client,
    metadata: Metadata,
    redirect_uri: str,
    *,
    issuer: str,
    app_name: str,
    scope: str | None,
) -> ClientRegistration:
    """RFC 7591 §3.1: register this app with the redirect URI it is really listening on.

    Returns the registration as the server answered it (RFC 7591 §3.2.1), for ``issuer``.
    """
    endpoint = metadata.registration_endpoint
    if endpoint is None:
        msg = (
            f"The authorization server does not offer dynamic client registration (no "
            f"registration_endpoint in {metadata.url}, RFC 7591). Register the app with the "
            f"server yourself and pass its client_id= (CLI: --client-id), with the redirect "
            f"URI pinned by port= / --port / --redirect-uri."
        )
        raise UnsupportedServer(msg)
    body: dict[str, object] = {
        "redirect_uris": [redirect_uri],
        # OpenID Connect Dynamic Client Registration §2: a native app, whose loopback
        # redirect URIs the server accepts on any port (RFC 8252 §7.3).
        "application_type": "native",
        # A public client: it keeps no secret; PKCE protects the code (RFC 8252 §8.4).
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "client_name": app_name,
    }
    if scope is not None:
        body["scope"] = scope
    try:
        response = await client.post_json(endpoint, body)
    except httpx2.TransportError as exc:
        msg = (
            f"Could not reach the registration endpoint {endpoint} ({type(exc).__name__}: "
            f"{exc}). Check the network (and proxy settings), or pass a pre-registered "
            f"client_id=."
        )
        raise ServerUnreachable(msg) from exc
    document = json_object(response)
    if response.status_code not in (200, 201) or document is None:
        error = optional_str(document.get("error")) if document else None
        description = optional_str(document.get("error_description")) if document else None
        said = f" error={error!r}" + (f": {description}" if description else "") if error else ""
        if response.status_code == 429:
            # Servers limit registrations (the TypeScript MCP SDK's: 20 an hour per address);
            # a client that registers on every login locks its user out.
            fix = (
                "The server limits how often clients may register: wait before trying again "
                "(Retry-After), and keep the registration between runs (get_token(store=...), "
                "or authorize(client=token.client)) so that logins stop registering anew"
            )
        else:
            fix = "Register the app with the server yourself and pass its client_id= (CLI: --client-id)"
        msg = (
            f"Dynamic client registration at {endpoint} failed with HTTP "
            f"{response.status_code}{said} (RFC 7591 §3.2.2). {fix}."
        )
        raise RegistrationError(
            msg, error=error, description=description, status_code=response.status_code
        )
    client_id = document.get("client_id")
    if not isinstance(client_id, str) or not client_id:
        msg = f"The registration response from {endpoint} has no client_id (RFC 7591 §3.2.1)."
        raise RegistrationError(msg, status_code=response.status_code)
    registered = document.get("redirect_uris")
    if isinstance(registered, list) and redirect_uri not in registered:
        # RFC 7591 §3.2.1 lets the server change what we asked for; a login with another
        # redirect URI would fail at the server, so say so now.
        msg = (
            f"The server registered the client with redirect_uris={registered}, not the "
            f"receiver's {redirect_uri}. Register the app yourself with a fixed port "
            f"(port= / --port) and pass client_id=."
        )
        raise RegistrationError(msg, status_code=response.status_code)
    if not isinstance(registered, list):
        # RFC 7591 §3.2.1 says the reply holds every registered field; a server that leaves
        # the URIs out registered the ones we sent.
        document = {**document, "redirect_uris": [redirect_uri]}
    try:
        return ClientRegistration.from_registration_response(document, issuer=issuer)
    except ValueError as exc:
        msg = f"The registration response from {endpoint} cannot be used: {exc}"
        raise RegistrationError(msg, status_code=response.status_code) from exc
