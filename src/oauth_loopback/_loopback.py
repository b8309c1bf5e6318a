"""The one answer to "is this loopback?", for every room of the package.

RFC 8252 §7.3 and §8.3: a native app's redirect goes to a loopback IP literal (``127.0.0.1``,
``[::1]``), and ``localhost`` is tolerated. We never resolve names: ``localhost`` itself is
loopback, but ``x.localhost`` is not (RFC 6761 §6.3 lets resolvers differ, so a browser or a
server may send it elsewhere). Any address in ``127.0.0.0/8`` and ``::1`` is loopback. Which
of those the *receiver* binds is a narrower choice, made in ``_config``.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["LoopbackURI", "is_loopback_host", "loopback_http_uri"]


def is_loopback_host(host: str) -> bool:
    """``localhost`` (any case) or a loopback IP literal; brackets around IPv6 are allowed."""
    name = host.lower()
    if name == "localhost":
        return True
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    if name.startswith("127.") or ":" in name:
        import ipaddress  # loaded only for literals that may be loopback

        try:
            return ipaddress.ip_address(name).is_loopback
        except ValueError:
            return False
    return False


class LoopbackURI(NamedTuple):
    """The parts of an ``http://<loopback>[:port]/path`` URI that a server compares."""

    host: str
    port: int | None
    path: str
    query: str


def loopback_http_uri(uri: str) -> LoopbackURI | None:
    """The parts of ``uri`` if it is plain ``http`` to a loopback host without userinfo or
    fragment (RFC 8252 §7.3); otherwise None. The host is lower-cased, IPv6 unbracketed."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError:
        return None
    host = parts.hostname or ""
    if (
        parts.scheme.lower() != "http"
        or parts.fragment
        or parts.username is not None
        or not is_loopback_host(host)
    ):
        return None
    return LoopbackURI(host, port, parts.path or "/", parts.query)
