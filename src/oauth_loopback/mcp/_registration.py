"""Pure decisions about stored client registrations and loopback redirect URIs.

No I/O and no ``mcp`` import: :mod:`oauth_loopback.mcp` asks these questions of the SDK's
stored ``OAuthClientInformationFull`` and acts on the answer.

Two different questions are asked of a stored registration, at two different times:

1. **May it refresh?** Always. A refresh grant (RFC 6749 §6) sends the client's credentials
   and the refresh token, never a redirect URI, so a registration made for another loopback
   port refreshes exactly as well as one made for this port.
2. **May it start an interactive login with this run's redirect URI?** That is what
   :func:`judge_registration` answers. A dynamically registered client (RFC 7591) lists the
   redirect URIs it asked for, ``http://127.0.0.1:PORT_A/callback``; on the next run the
   port is PORT_B. RFC 8252 §7.3 tells servers to accept any port on a loopback redirect URI,
   but many match redirect URIs exactly (RFC 6749 §3.1.2.3 simple string comparison: the MCP
   Python SDK's own server does, even for native clients), so PORT_B is :attr:`Verdict.STALE`
   unless the caller opted in with ``keep_native=True``. A URI registered *without* a port
   (``http://127.0.0.1/callback``, the usual pre-registration under §7.3) names every port.

Whether a stale registration can be replaced is :func:`registration_kind`'s answer: only one
that came from dynamic registration; a pre-registered client or a client ID metadata document
is the user's, and is never thrown away.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from urllib.parse import urlsplit

from .._loopback import LoopbackURI, loopback_http_uri
from .._store._records import RegistrationKind

__all__ = [
    "Verdict",
    "judge_registration",
    "loopback_port",
    "registration_kind",
    "same_redirect_uri",
]


class Verdict(enum.Enum):
    """Whether a stored registration may log in interactively with this run's redirect URI."""

    #: The registration lists this exact redirect URI.
    EXACT = "exact"
    #: It lists this loopback URI without a port, which RFC 8252 §7.3 matches on every port.
    ANY_PORT = "any-port"
    #: It lists no redirect URIs at all (the server did not echo them, or a pre-registered
    #: record left them out): only the server knows, so the registration is used as it is.
    UNLISTED = "unlisted"
    #: Native client, every listed URI is this one on another port, and the caller trusts
    #: the server to follow RFC 8252 §7.3 (``keep_native=True``).
    PORT_ONLY = "port-only"
    #: The server may reject this redirect URI: replace the registration before a browser
    #: login, when it can be replaced (it still refreshes).
    STALE = "stale"

    @property
    def allows_login(self) -> bool:
        """True unless the registration would likely strand a browser login."""
        return self is not Verdict.STALE


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


def _any_port_match(registered: str, current: LoopbackURI) -> bool:
    """RFC 8252 §7.3: a loopback URI registered without a port matches it on every port."""
    stored = _loopback(registered)
    return (
        stored is not None
        and stored.port is None
        and (stored.host, stored.path) == (current.host, current.path)
    )


def judge_registration(
    registered: Iterable[str] | None,
    application_type: str | None,
    redirect_uri: str,
    *,
    keep_native: bool = False,
) -> Verdict:
    """Decide whether a registration listing ``registered`` can log in with ``redirect_uri``.

    Only the interactive login is judged here: every registration may refresh.
    """
    uris = list(registered or ())
    if not uris:
        return Verdict.UNLISTED
    if any(same_redirect_uri(uri, redirect_uri) for uri in uris):
        return Verdict.EXACT
    current = _loopback(redirect_uri)
    if current is None:
        return Verdict.STALE
    if any(_any_port_match(uri, current) for uri in uris):
        return Verdict.ANY_PORT
    if not keep_native or application_type != "native":
        return Verdict.STALE
    for uri in uris:
        stored = _loopback(uri)
        # RFC 8252 §7.3: the port is the only part a server may ignore; host and path stay.
        if stored is None or (stored.host, stored.path) != (current.host, current.path):
            return Verdict.STALE
    return Verdict.PORT_ONLY


def _is_metadata_document_url(client_id: str) -> bool:
    """The shape of a client ID metadata document's ``client_id``: an https URL with a path
    (the MCP authorization spec; the SDK refuses any other ``client_metadata_url``)."""
    try:
        parts = urlsplit(client_id)
    except ValueError:
        return False
    return parts.scheme == "https" and bool(parts.netloc) and parts.path not in ("", "/")


def registration_kind(
    client_id: str,
    *,
    client_id_issued_at: int | None,
    client_metadata_url: str | None = None,
) -> RegistrationKind:
    """How a stored registration came about, as far as its record tells.

    ``metadata_document``: its ``client_id`` is the provider's ``client_metadata_url`` (or,
    without one at hand, has that shape: an https URL with a path) and it carries no
    registration time. ``dynamic``: it carries RFC 7591 §3.2.1 ``client_id_issued_at``,
    which only a registration response sets. Anything else is ``preregistered``: a record
    the user put into the storage, which is theirs to keep.
    """
    if client_metadata_url is not None and client_id == client_metadata_url:
        return "metadata_document"
    if client_id_issued_at is not None:
        return "dynamic"
    if _is_metadata_document_url(client_id):
        return "metadata_document"
    return "preregistered"


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
