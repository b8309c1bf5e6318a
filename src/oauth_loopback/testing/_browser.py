"""A headless stand-in for the browser, for tests and ``oauth-loopback demo``."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

from .._errors import OAuthLoopbackError
from ._authlib import (
    is_loopback_http,
)

if TYPE_CHECKING:
    pass

logger = logging.getLogger("oauth_loopback.testing")


_REDIRECTS = frozenset({301, 302, 303, 307, 308})
CONSENT_HEADER = "X-OAuth-Loopback-Consent"


async def follow_redirects(url: str, *, max_hops: int = 10) -> str:
    """Play the browser for a headless login: GET ``url`` and follow its redirects.

    Only loopback ``http`` URLs are requested (the test server and your receiver); a redirect
    anywhere else raises :class:`OAuthLoopbackError` before anything is sent there. It stops
    at the first response that is not a redirect, which for a login against
    ``AuthorizationServer(auto_approve=True)`` is your receiver's callback page, so the
    waiting login wakes. Returns that last URL with ``code`` and ``state`` redacted.

    A test server with ``auto_approve=False`` answers with its consent page instead, which
    needs a real browser: that raises :class:`OAuthLoopbackError` saying so, rather than
    leaving the login waiting.
    """
    import httpx2  # deferred: only this helper needs an HTTP client

    from .._login._client import unlogged_query

    if isinstance(max_hops, bool) or not isinstance(max_hops, int) or max_hops < 0:
        msg = f"max_hops must be a non-negative whole number, not {max_hops!r}."
        raise ValueError(msg)
    current = url
    async with httpx2.AsyncClient(trust_env=False, follow_redirects=False, timeout=10.0) as client:
        for _ in range(max_hops + 1):
            if not is_loopback_http(current):
                msg = (
                    f"follow_redirects() only visits loopback http URLs (127.0.0.1, [::1], "
                    f"localhost) and was sent to {_redact(current)!r}. Use a real browser for "
                    f"other authorization servers."
                )
                raise OAuthLoopbackError(msg)
            try:
                # Like the login's preflight: the request log line leaves out the query (the
                # authorization request's state, the callback's code).
                with unlogged_query(current):
                    response = await client.get(current)
            except httpx2.HTTPError as exc:
                msg = (
                    f"follow_redirects() could not load {_redact(current)!r}: {exc}. Is the "
                    f"server (or receiver) still running?"
                )
                raise OAuthLoopbackError(msg) from exc
            if response.headers.get(CONSENT_HEADER) == "required":
                msg = (
                    "follow_redirects() reached the test server's consent page, which needs "
                    "someone to press Approve or Deny. Start the server with "
                    "AuthorizationServer(auto_approve=True) for headless runs, or drive a "
                    "real browser."
                )
                raise OAuthLoopbackError(msg)
            location = response.headers.get("location")
            if response.status_code not in _REDIRECTS or not location:
                return _redact(current)
            current = urljoin(current, location)
    msg = f"follow_redirects() gave up after {max_hops} redirects; raise max_hops= if expected."
    raise OAuthLoopbackError(msg)


def _redact(url: str) -> str:
    """The URL with ``code`` and ``state`` values replaced: both end up in logs otherwise."""
    parts = urlsplit(url)
    if not parts.query:
        return url
    query = urlencode(
        [
            (k, "REDACTED" if k in ("code", "state") else v)
            for k, v in parse_qsl(parts.query, keep_blank_values=True)
        ],
        safe="/:",
    )
    return urlunsplit(parts._replace(query=query))
