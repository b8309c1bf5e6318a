"""The embedded authorization server's routes: metadata, authorize + consent, token, register.

Synchronous (nothing here blocks): the HTTP layer (``_http``) hands each parsed request to
:meth:`Routes.handle`; the OAuth protocol work is authlib's (``_authlib``). The switches that
make the server misbehave on purpose arrive as one frozen :class:`Switches`.
"""

from __future__ import annotations

import html
import json
import secrets
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from ._authlib import (
    OAuthBackend,
    token_error_response,
)
from ._http import HttpRequest, HttpResponse

if TYPE_CHECKING:
    pass

from ._browser import CONSENT_HEADER
from ._par import LIFETIME as PAR_LIFETIME
from ._par import PushedRequests

# Consent tickets waiting for approve/deny: single-use, bounded, short-lived.
_MAX_TICKETS = 256
_TICKET_LIFETIME = 600.0
_PAGE_HEADERS = (
    ("Content-Type", "text/html; charset=utf-8"),
    ("Cache-Control", "no-store"),
    # Not no-referrer: browsers then send "Origin: null" with the consent form, which would
    # defeat the origin check below. same-origin still sends nothing to other origins (the
    # receiver is one: another port).
    ("Referrer-Policy", "same-origin"),
    ("X-Frame-Options", "DENY"),  # the consent page must not be framed (clickjacking)
    (
        "Content-Security-Policy",
        "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'",
    ),
)


@dataclass(frozen=True)
class Switches:
    """How the routes behave (the constructor arguments of ``AuthorizationServer``)."""

    path_prefix: str
    registration: bool
    deny: bool
    auto_approve: bool
    token_error: str | None
    par: bool = False
    require_par: bool = False


class Routes:
    """Answers one request at a time for one running server."""

    def __init__(
        self, switches: Switches, backend: OAuthBackend, port: int, metadata: Mapping[str, Any]
    ) -> None:
        self._switches = switches
        self._backend = backend
        self._port = port
        self._metadata = metadata
        #: (method, path) of every request, in order, for assertions in tests.
        self.requests: list[tuple[str, str]] = []
        self._tickets: OrderedDict[str, tuple[str, float]] = OrderedDict()
        self._pushed = PushedRequests()

    def handle(self, request: HttpRequest) -> HttpResponse:
        path = request.path
        self.requests.append((request.method, path))
        backend = self._backend
        # DNS-rebinding guard: only our own loopback authority.
        host = request.headers.get("host", "")
        if host not in (f"127.0.0.1:{self._port}", f"localhost:{self._port}"):
            return _page(421, "Wrong host", "This test server answers only on 127.0.0.1.")
        prefix = self._switches.path_prefix
        if path == f"/.well-known/oauth-authorization-server{prefix}":
            if request.method not in ("GET", "HEAD"):
                return _not_allowed("GET")
            return _json(200, dict(self._metadata))
        if path == f"{prefix}/authorize":
            if request.method == "GET":
                return self._authorize(backend, request)
            if request.method == "POST":
                return self._consent_decision(backend, request)
            return _not_allowed("GET, POST")
        if path == f"{prefix}/token":
            if request.method != "POST":
                return _not_allowed("POST")
            if self._switches.token_error is not None:
                return token_error_response(
                    self._switches.token_error,
                    "This test server was started with token_error= and answers every token "
                    "request with it.",
                )
            return backend.token(request)
        if self._switches.par and path == f"{prefix}/par":
            if request.method != "POST":
                return _not_allowed("POST")
            return self._push(backend, request)
        if self._switches.registration and path == f"{prefix}/register":
            if request.method != "POST":
                return _not_allowed("POST")
            return backend.register(request)
        return _page(404, "Not found", "There is nothing at this path on the test server.")

    def _push(self, backend: OAuthBackend, request: HttpRequest) -> HttpResponse:
        """RFC 9126 §2: check the pushed parameters as a front-channel request, keep them."""
        client = backend.authenticate(request)
        if client is None:
            return _json(
                401,
                {
                    "error": "invalid_client",
                    "error_description": "Unknown client, or its authentication failed.",
                },
            )
        params = parse_qsl(request.body.decode("utf-8", "replace"), keep_blank_values=True)
        if any(name == "request_uri" for name, _ in params):
            return _json(
                400,
                {
                    "error": "invalid_request",
                    "error_description": "request_uri may not be pushed (RFC 9126 §2.1).",
                },
            )
        if [v for k, v in params if k == "client_id"] not in ([], [client.client_id]):
            return _json(
                400,
                {
                    "error": "invalid_request",
                    "error_description": "client_id differs from the authenticated client.",
                },
            )
        params = [(k, v) for k, v in params if k not in ("client_id", "client_secret")]
        params.append(("client_id", client.client_id))
        checked = HttpRequest(
            "GET", f"{self._switches.path_prefix}/authorize?{urlencode(params)}", request.headers
        )
        outcome = backend.authorize(checked)
        if outcome.error_page is not None:
            error, description = outcome.error_page
            return _json(400, {"error": error, "error_description": description})
        if outcome.response is not None:  # an error the front channel would redirect with
            location = dict(parse_qsl(urlsplit(outcome.response.location or "").query))
            return _json(
                400,
                {
                    "error": location.get("error", "invalid_request"),
                    "error_description": location.get("error_description", ""),
                },
            )
        request_uri = self._pushed.push(client.client_id, params)
        return _json(201, {"request_uri": request_uri, "expires_in": PAR_LIFETIME})

    def _authorize(self, backend: OAuthBackend, request: HttpRequest) -> HttpResponse:
        if self._switches.par and "request_uri=" in request.query:
            resolved = self._pushed.resolve(request)
            if isinstance(resolved, str):
                return _page(400, "Authorization request refused: invalid_request_uri", resolved)
            request = resolved
        elif self._switches.require_par:
            return _page(
                400,
                "Authorization request refused: invalid_request",
                "This server requires pushed authorization requests (RFC 9126 §5): push the "
                "request to its pushed_authorization_request_endpoint first.",
            )
        outcome = backend.authorize(request)
        if outcome.response is not None:
            return outcome.response
        if outcome.error_page is not None:
            error, description = outcome.error_page
            # RFC 6749 §4.1.2.1: no redirect when the client or redirect URI is invalid.
            return _page(400, f"Authorization request refused: {error}", description)
        if self._switches.deny:
            return backend.decide(request, approve=False)
        if self._switches.auto_approve:
            return backend.decide(request, approve=True)
        ticket = self._new_ticket(request.target)
        client = outcome.client
        if client is None:  # authorize() returns one of the three outcomes
            return _page(500, "Server bug", "No client after a valid authorization request.")
        return _consent_page(
            action=f"{self._switches.path_prefix}/authorize",
            ticket=ticket,
            client_name=client.client_name or client.client_id,
            scope=outcome.scope,
            redirect_uri=outcome.redirect_uri,
        )

    def _new_ticket(self, target: str) -> str:
        now = time.monotonic()
        while self._tickets and (
            len(self._tickets) >= _MAX_TICKETS or next(iter(self._tickets.values()))[1] < now
        ):
            self._tickets.popitem(last=False)
        ticket = secrets.token_urlsafe(32)
        self._tickets[ticket] = (target, now + _TICKET_LIFETIME)
        return ticket

    def _consent_decision(self, backend: OAuthBackend, request: HttpRequest) -> HttpResponse:
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/x-www-form-urlencoded":
            return _page(415, "Unsupported form", "Submit the consent form from this server.")
        origin = request.headers.get("origin")
        if origin is not None and origin != f"http://127.0.0.1:{self._port}":
            # A cross-site form post: refuse it even with a valid ticket.
            return _page(403, "Cross-site request refused", "Submit the form from this page.")
        fields = parse_qsl(request.body.decode("utf-8", "replace"), keep_blank_values=True)
        values: dict[str, list[str]] = {}
        for name, value in fields:
            values.setdefault(name, []).append(value)
        tickets, decisions = values.get("ticket", []), values.get("decision", [])
        if len(tickets) != 1 or len(decisions) != 1 or decisions[0] not in ("approve", "deny"):
            return _page(400, "Bad consent form", "Choose Approve or Deny on the consent page.")
        entry = self._tickets.pop(tickets[0], None)
        if entry is None or entry[1] < time.monotonic():
            return _page(
                400,
                "This consent request is no longer valid",
                "It was already answered or has expired. Start the login again from your app.",
            )
        original = HttpRequest("GET", entry[0], request.headers)
        response = backend.decide(original, approve=decisions[0] == "approve")
        if response.status == 302:
            response.status = 303  # RFC 9110 §15.4.4: after a POST, GET the redirect target
        return response


def _json(status: int, body: Mapping[str, Any]) -> HttpResponse:
    return HttpResponse(
        status,
        json.dumps(body).encode(),
        [("Content-Type", "application/json"), ("Cache-Control", "no-store")],
    )


def _not_allowed(allow: str) -> HttpResponse:
    response = _page(405, "Method not allowed", f"This endpoint accepts {allow}.")
    response.headers.append(("Allow", allow))
    return response


def _html(status: int, title: str, body: str) -> HttpResponse:
    document = (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>{html.escape(title)}</title>"
        "<style>body{font:16px system-ui,sans-serif;max-width:36em;margin:3em auto;"
        "padding:0 1em}button{font:inherit;padding:.5em 1.5em;margin-right:1em}"
        "code{word-break:break-all}</style></head>"
        f"<body>{body}</body></html>"
    )
    return HttpResponse(status, document.encode("utf-8"), list(_PAGE_HEADERS))


def _page(status: int, title: str, message: str) -> HttpResponse:
    return _html(status, title, f"<h1>{html.escape(title)}</h1><p>{html.escape(message)}</p>")


def _consent_page(
    *, action: str, ticket: str, client_name: str, scope: str, redirect_uri: str
) -> HttpResponse:
    e = html.escape
    scopes = "".join(f"<li><code>{e(s)}</code></li>" for s in scope.split()) or "<li>none</li>"
    body = (
        f"<h1>Authorize {e(client_name)}?</h1>"
        "<p>This is the oauth-loopback test authorization server.</p>"
        f"<p>Requested scopes:</p><ul>{scopes}</ul>"
        f"<p>You will be sent back to <code>{e(redirect_uri)}</code>.</p>"
        f'<form method="post" action="{e(action)}">'
        f'<input type="hidden" name="ticket" value="{e(ticket)}">'
        '<button type="submit" name="decision" value="approve" id="approve">Approve</button>'
        '<button type="submit" name="decision" value="deny" id="deny">Deny</button>'
        "</form>"
    )
    response = _html(200, "Authorize access", body)
    # Lets follow_redirects() tell "a person must click here" from a final page.
    response.headers.append((CONSENT_HEADER, "required"))
    return response
