"""The sans-I/O core, part 2: which requests reach the registry at all.

Steps 1-3 of the handling order (steps 4-9 are in ``_registry``), each answered before the next is looked at:

1. wrong path                  -> 404, whatever the method; nothing consumed
2. right path, not GET         -> 405 with ``Allow: GET``; nothing consumed
3. foreign ``Host``            -> 421 (DNS-rebinding guard); nothing consumed

The anyio shell (``_serving``) and ``deliver()`` (a pasted URL) call the same functions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._errors import CallbackRejected

if TYPE_CHECKING:
    from urllib.parse import SplitResult


def split_target(target: str) -> tuple[str, str]:
    """Split a request target (origin or absolute form) into (path, query).

    :raises CallbackRejected: 400, for an absolute form ``urlsplit`` cannot read (an
        unclosed ``[`` of an IPv6 literal, a stray ``]``): peer input, never a bug of ours.
    """
    if target.startswith("/"):
        path, _, query = target.partition("?")
        return path, query.partition("#")[0]
    parts = _split_absolute(target)
    return parts.path or "/", parts.query


def _split_absolute(target: str) -> SplitResult:
    from urllib.parse import urlsplit

    try:
        return urlsplit(target)
    except ValueError as exc:  # "Invalid IPv6 URL" and friends
        msg = (
            "The request address is not a well-formed URL (its host part cannot be read), "
            "so nothing was accepted. Copy the whole address from the browser's address bar."
        )
        raise CallbackRejected(msg, 400, title="Bad request") from exc


def route(
    method: bytes,
    target: bytes,
    host: bytes | None,
    *,
    path: str,
    allowed_hosts: frozenset[bytes],
    app_name: str,
) -> str:
    """Steps 1-3 of the handling order; return the query string, or raise CallbackRejected."""
    try:
        text = target.decode("ascii")
    except UnicodeDecodeError as exc:
        msg = "The request address is not valid ASCII. Nothing was accepted."
        raise CallbackRejected(msg, 400, title="Bad request") from exc
    req_path, query = split_target(text)
    if req_path != path:
        msg = "There is nothing at this address. The sign-in callback lives elsewhere."
        raise CallbackRejected(msg, 404, title="Not found")
    if method != b"GET":
        msg = (
            "The sign-in callback only accepts GET requests (RFC 6749 §4.1.2). "
            "Nothing was accepted."
        )
        raise CallbackRejected(msg, 405, title="Method not allowed")
    if not text.startswith("/"):
        # RFC 9112 §3.2.2: for an absolute-form target the server uses the target's authority
        # and ignores Host, so the authority is what the rebinding guard must check. Only an
        # http:// target can reach a plain loopback listener.
        parts = _split_absolute(text)
        if parts.scheme.lower() != "http":
            msg = "The request address is not an http:// address. Nothing was accepted."
            raise CallbackRejected(msg, 400, title="Bad request")
        host = parts.netloc.encode("ascii")
    if host is None or host.lower() not in allowed_hosts:
        # DNS-rebinding guard: a web page whose name resolves to 127.0.0.1 reaches us with its
        # own name in Host; only this receiver's loopback names are accepted.
        msg = (
            "This request was addressed to another host name, so it was refused (a guard "
            "against DNS rebinding). Open the sign-in link exactly as the application gave "
            f"it, using 127.0.0.1 or localhost, or start again from {app_name}."
        )
        raise CallbackRejected(msg, 421, title="Wrong host")
    return query


def allowed_host_headers(bound_host: str, port: int) -> frozenset[bytes]:
    """The ``Host`` values a browser sends for this receiver (lower-case)."""
    literal = "[::1]" if bound_host == "::1" else "127.0.0.1"
    names = {literal, "localhost"}
    if bound_host == "localhost":
        names.add("[::1]")
    hosts = {f"{name}:{port}".encode() for name in names}
    if port == 80:  # RFC 9110 §7.2: the default port may be omitted
        hosts |= {name.encode() for name in names}
    return frozenset(hosts)


def forwarded_host_headers(public_redirect_uri: str) -> frozenset[bytes]:
    """The ``Host`` values of a forwarded redirect URI (``public_redirect_uri``), lower-case.

    Only in forwarded mode: the forwarder passes the browser's ``Host`` on, and it names the
    public address. Its default port may be omitted (RFC 9110 §7.2).
    """
    from urllib.parse import urlsplit

    parts = urlsplit(public_redirect_uri)
    netloc = parts.netloc.lower().rpartition("@")[2]
    hosts = {netloc.encode()}
    default = {"http": 80, "https": 443}.get(parts.scheme)
    if parts.port is None and default is not None:
        hosts.add(f"{netloc}:{default}".encode())
    elif parts.port == default:
        hosts.add(netloc.rsplit(":", 1)[0].encode())
    return frozenset(hosts)
