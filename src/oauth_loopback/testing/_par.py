"""Pushed authorization requests (RFC 9126) for the embedded authorization server.

authlib has no PAR endpoint, so this is the small part it would be: the client posts its
authorization parameters (authenticated as at the token endpoint, §2.1), they are checked
exactly as a front-channel request would be, kept for 60 seconds under a single-use
``urn:ietf:params:oauth:request_uri:…`` (§2.2), and the browser brings only ``client_id``
and ``request_uri`` (§4).
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit

from ._http import HttpRequest

__all__ = ["PushedRequests", "REQUEST_URI_PREFIX"]

# RFC 9126 §2.2: the request_uri is a URN the server makes up.
REQUEST_URI_PREFIX = "urn:ietf:params:oauth:request_uri:"
# RFC 9126 §2.2 suggests a short lifetime: long enough for a browser to get there.
LIFETIME = 60
_MAX_PENDING = 256


@dataclass(frozen=True)
class _Pushed:
    client_id: str
    query: str
    expires_at: float


class PushedRequests:
    """The pushed requests waiting for their browser, bounded and single-use."""

    def __init__(self) -> None:
        self._pending: OrderedDict[str, _Pushed] = OrderedDict()

    def push(self, client_id: str, params: list[tuple[str, str]]) -> str:
        """Keep ``params`` for ``client_id``; return the new ``request_uri``."""
        now = time.monotonic()
        while self._pending and (
            len(self._pending) >= _MAX_PENDING
            or next(iter(self._pending.values())).expires_at < now
        ):
            self._pending.popitem(last=False)
        request_uri = REQUEST_URI_PREFIX + secrets.token_urlsafe(32)
        self._pending[request_uri] = _Pushed(client_id, urlencode(params), now + LIFETIME)
        return request_uri

    def resolve(self, request: HttpRequest) -> HttpRequest | str:
        """The pushed request a front-channel ``request_uri`` stands for, or why not (§4)."""
        params = parse_qsl(request.query, keep_blank_values=True)
        request_uris = [v for k, v in params if k == "request_uri"]
        client_ids = [v for k, v in params if k == "client_id"]
        if len(request_uris) != 1 or len(client_ids) != 1:
            return "the request needs exactly one request_uri and one client_id (RFC 9126 §4)"
        pushed = self._pending.pop(request_uris[0], None)  # single use
        if pushed is None or pushed.expires_at < time.monotonic():
            return "the request_uri is unknown, already used or expired (RFC 9126 §4)"
        if pushed.client_id != client_ids[0]:
            return "the request_uri was pushed by another client (RFC 9126 §4)"
        path = urlsplit(request.target).path
        return HttpRequest("GET", f"{path}?{pushed.query}", request.headers)
