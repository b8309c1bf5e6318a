"""The device authorization grant (RFC 8628): log in where no browser can reach this machine.

For SSH sessions, containers and Codespaces without a forwarded port: the server gives a short
``user_code`` and a ``verification_uri``; the user opens it on any device (a phone will do),
enters the code and signs in, while this process polls the token endpoint at the interval the
server asks for (§3.4, §3.5). Nothing listens on this machine at all.

The one wait that is not event-driven in this package is here, because the protocol mandates
it: the server answers polls only, ``interval`` seconds apart (``slow_down`` adds 5 s to it for
this and all later polls, §3.5), until the code expires (``expires_in``).
"""

from __future__ import annotations

import inspect
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio

from .._errors import (
    AuthorizationDenied,
    DeviceCodeExpired,
    ServerUnreachable,
    TokenError,
    UnsupportedServer,
)
from .._store._records import ClientRegistration
from ._client import Client, json_object, optional_str
from ._metadata import Metadata, check_issuer, discover, given_metadata
from ._token import Token

if TYPE_CHECKING:
    import httpx2

__all__ = ["DEVICE_GRANT", "DeviceCode", "ShowCode", "device_login"]

logger = logging.getLogger("oauth_loopback.oauth")

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
#: RFC 8628 §3.5: "the interval MUST be increased by 5 seconds" on ``slow_down``.
SLOW_DOWN_STEP = 5.0
#: RFC 8628 §3.2: "If no value is provided, clients MUST use 5 as the default."
DEFAULT_INTERVAL = 5.0


@dataclass(frozen=True)
class DeviceCode:
    """What the user needs to finish a device login (RFC 8628 §3.2), to show them.

    It holds only what is meant to be shown: the ``device_code`` (the client's secret while
    the login is pending) never reaches ``show_code``. Both strings were checked: the user
    code is printable text, the URIs are https (or http to loopback), so a hostile server
    cannot write escape sequences to the terminal or send the user to a ``javascript:`` URL.
    """

    user_code: str
    verification_uri: str
    verification_uri_complete: str | None
    expires_in: float
    interval: float


#: ``show_code(code)``: tell the user the code and URL (sync or async; library code never
#: prints, so this is how they reach the terminal).
ShowCode = Callable[[DeviceCode], "Awaitable[object] | object"]


async def device_login(
    issuer: str,
    *,
    show_code: ShowCode,
    client_id: str | None = None,
    client_secret: str | None = None,
    scope: str | None = None,
    resource: str | None = None,
    transport: httpx2.AsyncBaseTransport | None = None,
    metadata: Mapping[str, object] | None = None,
    app_name: str = "the application",
) -> Token:
    """Log in with the device authorization grant and return the token.

    :param show_code: called once with the :class:`DeviceCode` before polling starts.
    :param client_id: a pre-registered client; None registers a public native device client
        (RFC 7591, grant types device_code and refresh_token, no redirect URI).
    :raises UnsupportedServer: the server has no ``device_authorization_endpoint``: log in
        through the browser instead (or paste the redirect: ``paste=True``, ``--no-browser``).
    :raises AuthorizationDenied: the user said no (``access_denied``).
    :raises DeviceCodeExpired: nobody finished before the code expired (``expired_token``).
    :raises TokenError: the token endpoint answered another error.
    """
    issuer = check_issuer(issuer)
    async with Client(issuer=issuer, redirect_uri=None, scope=scope, transport=transport) as oauth:
        server = (
            given_metadata(metadata, issuer)
            if metadata is not None
            else await discover(oauth, issuer)
        )
        endpoint = server.document.get("device_authorization_endpoint")
        if not isinstance(endpoint, str) or not endpoint:
            msg = (
                f"The server's metadata ({server.url}) offers no device_authorization_endpoint "
                f"(RFC 8628 §4), so a device login is not possible there. Log in through the "
                f"browser instead, or paste the redirected address (paste=True; CLI: "
                f"--no-browser)."
            )
            raise UnsupportedServer(msg)
        registration = await _client(
            oauth, server, issuer, client_id, client_secret, app_name, scope
        )
        oauth.set_client(
            registration.client_id,
            registration.client_secret,
            registration.token_endpoint_auth_method,
        )
        code, device_code = await _authorize_device(oauth, endpoint, scope, resource)
        shown = show_code(code)
        if inspect.isawaitable(shown):
            await shown
        token = await _poll(oauth, server.token_endpoint, code, device_code, resource)
    token.client = registration
    return token


async def _client(
    oauth: Client,
    server: Metadata,
    issuer: str,
    client_id: str | None,
    client_secret: str | None,
    app_name: str,
    scope: str | None,
) -> ClientRegistration:
    if client_id is not None:
        return ClientRegistration(
            issuer=issuer,
            client_id=client_id,
            obtained="preregistered",
            client_secret=client_secret,
        )
    if server.registration_endpoint is None:
        msg = (
            "The server offers no dynamic client registration (RFC 7591), so a client_id is "
            "needed: register the app with the server (as a device client) and pass its "
            "client_id= (CLI: --client-id)."
        )
        raise UnsupportedServer(msg)
    body: dict[str, object] = {
        "client_name": app_name,
        # Empty, not absent: servers default a missing response_types to ["code"] and then
        # insist on redirect URIs (RFC 7591 §2).
        "redirect_uris": [],
        "response_types": [],
        "grant_types": [DEVICE_GRANT, "refresh_token"],
        "token_endpoint_auth_method": "none",
        "application_type": "native",
    }
    if scope:
        body["scope"] = scope
    from .._errors import RegistrationError

    reply = await oauth.post_json(server.registration_endpoint, body)
    document = json_object(reply)
    if reply.status_code not in (200, 201) or document is None or "client_id" not in document:
        error = optional_str(document.get("error")) if document else None
        msg = (
            f"Dynamic client registration at {server.registration_endpoint} failed with HTTP "
            f"{reply.status_code}" + (f" error={error!r}" if error else "") + ". Register the app "
            "with the server yourself and pass its client_id= (CLI: --client-id)."
        )
        raise RegistrationError(msg, error=error, status_code=reply.status_code)
    return ClientRegistration.from_registration_response(document, issuer=issuer)


async def _authorize_device(
    oauth: Client, endpoint: str, scope: str | None, resource: str | None
) -> tuple[DeviceCode, str]:
    """RFC 8628 §3.1-3.2: ask for a device code; the code to show, and the device_code."""
    form: dict[str, str] = {}
    if scope:
        form["scope"] = scope
    if resource is not None:
        form["resource"] = resource  # RFC 8707 §2.1
    reply = await oauth.post_form(endpoint, form)
    document = json_object(reply)
    if reply.status_code != 200 or document is None:
        error = optional_str(document.get("error")) if document else None
        raise TokenError(
            error or "invalid_device_authorization_response",
            optional_str(document.get("error_description")) if document else None,
            status_code=reply.status_code,
            grant_type=DEVICE_GRANT,
        )
    device_code, user_code = document.get("device_code"), document.get("user_code")
    uri = document.get("verification_uri")
    if not all(isinstance(v, str) and v for v in (device_code, user_code, uri)):
        error = "invalid_device_authorization_response"
        raise TokenError(
            error,
            "device_code, user_code and verification_uri are required (RFC 8628 §3.2)",
            grant_type=DEVICE_GRANT,
        )
    complete = document.get("verification_uri_complete")
    shown = DeviceCode(
        user_code=_printable(str(user_code), "user_code"),
        verification_uri=_safe_uri(str(uri), "verification_uri"),
        verification_uri_complete=_safe_uri(complete, "verification_uri_complete")
        if isinstance(complete, str)
        else None,
        expires_in=_number(document.get("expires_in"), 1800.0),
        interval=_number(document.get("interval"), DEFAULT_INTERVAL),
    )
    return shown, str(device_code)


def _printable(text: str, what: str) -> str:
    if not text.isprintable() or len(text) > 64:
        msg = f"The server's {what} is not short printable text, so it was not shown."
        raise UnsupportedServer(msg)
    return text


def _safe_uri(uri: str, what: str) -> str:
    from urllib.parse import urlsplit

    from .._loopback import is_loopback_host

    parts = urlsplit(uri)
    ok = parts.scheme == "https" or (
        parts.scheme == "http" and is_loopback_host(parts.hostname or "")
    )
    if not ok or not parts.hostname or not uri.isprintable():
        msg = (
            f"The server's {what} {uri[:80]!r} is not an https URL, so the user is not sent "
            f"there (RFC 8628 §3.2)."
        )
        raise UnsupportedServer(msg)
    return uri


def _number(value: object, default: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return default
    # A zero or negative interval would make a tight polling loop: use the default (§3.2).
    return float(value) if math.isfinite(value) and value > 0 else default


async def _poll(
    oauth: Client, token_endpoint: str, code: DeviceCode, device_code: str, resource: str | None
) -> Token:
    """RFC 8628 §3.4-3.5: poll at the interval until the user answers or the code expires."""
    interval = code.interval
    expires_at = time.monotonic() + code.expires_in
    form = {"device_code": device_code}
    if resource is not None:
        form["resource"] = resource
    while True:
        if time.monotonic() + interval > expires_at:
            raise DeviceCodeExpired(code.expires_in)
        await anyio.sleep(interval)  # the server's own pace (§3.5): protocol-mandated
        try:
            return await oauth.token_request(token_endpoint, grant_type=DEVICE_GRANT, form=form)
        except ServerUnreachable:
            # §3.5: a connection timeout asks for exponential back-off, not an abort.
            interval *= 2
            logger.info("the token endpoint did not answer; polling every %.1f s now", interval)
            continue
        except TokenError as exc:
            if exc.error == "authorization_pending":
                continue
            if exc.error == "slow_down":
                interval += SLOW_DOWN_STEP
                logger.info("the server asks to poll more slowly; every %.1f s now", interval)
                continue
            if exc.error == "access_denied":
                raise AuthorizationDenied(exc.error, exc.description) from exc
            if exc.error == "expired_token":
                raise DeviceCodeExpired(code.expires_in) from exc
            raise
