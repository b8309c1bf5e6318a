"""Pure decisions about stored client registrations and loopback redirect URIs.

No I/O and no ``mcp`` import: :mod:`oauth_loopback.mcp` asks these questions of the SDK's
stored ``OAuthClientInformationFull`` and acts on the answer.

A dynamically registered client (RFC 7591) lists the redirect URIs it may use. A native app
with an ephemeral port asks for ``http://127.0.0.1:PORT_A/callback``; on the next run the
port is PORT_B. RFC 8252 §7.3 tells authorization servers to accept any port on a loopback
redirect URI of a native client, so such a registration can be kept; a server that matches
redirect URIs exactly (RFC 6749 §3.1.2.3 simple string comparison, which is what many do,
including the MCP Python SDK's own server, even for native clients) rejects PORT_B, and the
client must register again. Keeping is therefore opt-in (``keep_native=True``).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable

from .._loopback import LoopbackURI, loopback_http_uri

__all__ = ["Verdict", "judge_registration", "loopback_port", "same_redirect_uri"]


class Verdict(enum.Enum):
    """What to do with a stored registration, given the redirect URI of this run."""

    #: The registration lists this exact redirect URI: use it.
    EXACT = "exact"
    #: Native client, every listed URI is this one on another loopback port (RFC 8252 §7.3).
    PORT_ONLY = "port-only"
    #: The server may reject this redirect URI: drop the registration and register again.
    STALE = "stale"


def _loopback(uri: str) -> LoopbackURI | None:
    """A loopback ``http`` redirect URI without a query (RFC 8252 §7.3); else None."""
    parts = loopback_http_uri(uri)
    return None if parts is None or parts.query else parts


def same_redirect_uri(a: str, b: str) -> bool:
    """Equal strings, or the same loopback host, port and path (``127.0.0.1`` vs ``[::1]``
    and ``localhost`` stay different: a server compares them as strings)."""
    if a == b:
        return True
    la, lb = _loopback(a), _loopback(b)
    return la is not None and la == lb


def judge_registration(
    registered: Iterable[str] | None,
    application_type: str | None,
    redirect_uri: str,
    *,
    keep_native: bool = False,
) -> Verdict:
    """Decide whether a registration listing ``registered`` can log in with ``redirect_uri``.

    A registration that lists no redirect URIs (the server did not echo them) is STALE: we
    cannot know what the server will accept, and registering again is cheap, while a
    rejected redirect strands the user on the server's error page.
    """
    uris = list(registered or ())
    if any(same_redirect_uri(uri, redirect_uri) for uri in uris):
        return Verdict.EXACT
    current = _loopback(redirect_uri)
    if not keep_native or application_type != "native" or not uris or current is None:
        return Verdict.STALE
    for uri in uris:
        stored = _loopback(uri)
        # RFC 8252 §7.3: the port is the only part a server may ignore; host and path stay.
        if stored is None or (stored.host, stored.path) != (current.host, current.path):
            return Verdict.STALE
    return Verdict.PORT_ONLY


def loopback_port(registered: Iterable[str] | None, host: str, path: str) -> int | None:
    """The port of the first registered loopback URI on ``host`` and ``path``, if any.

    ``host`` is a receiver host as :class:`CallbackConfig` spells it (``::1`` unbracketed).
    """
    for uri in registered or ():
        stored = _loopback(uri)
        if stored is not None and stored.port is not None:
            if (stored.host.strip("[]"), stored.path) == (host, path):
                return stored.port
    return None
