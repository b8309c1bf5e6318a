"""The sans-I/O core: every decision about a callback request, with no sockets and no loop.

This module must not import anyio, socket or authlib (a test enforces it). The anyio shell in
``_server.py`` moves bytes through h11 and calls in here to decide; ``deliver()`` calls in here
with a pasted URL and gets the very same checks.

Request handling order (DESIGN §3), each step answered before the next is looked at:

1. wrong path                  -> 404, whatever the method; nothing consumed
2. right path, not GET         -> 405 with ``Allow: GET``; nothing consumed
3. foreign ``Host``            -> 421 (DNS-rebinding guard); nothing consumed
4. state missing or repeated   -> 400; nothing consumed
5. state unknown/used/expired  -> 400 that says which; nothing consumed
6. known state, but no ``code`` nor ``error``, both, or a repeated parameter
                               -> 400; the login stays pending
7. ``error=...``               -> the waiter gets AuthorizationError/-Denied; 400 page
8. ``issuer=`` set, ``iss`` missing or different -> the waiter gets IssuerMismatch; 400 page
9. ``code=...``                -> the waiter gets an AuthorizationResponse; 200 page
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Generic, Protocol, TypeVar

from ._errors import (
    AuthorizationDenied,
    AuthorizationError,
    CallbackRejected,
    IssuerMismatch,
    OAuthLoopbackError,
)

__all__ = ["AuthorizationResponse"]


@dataclass(frozen=True)
class AuthorizationResponse:
    """A successful authorization response (RFC 6749 §4.1.2).

    ``iss`` is the RFC 9207 issuer identifier when the server sent one (checked against
    ``expect(issuer=...)`` when you gave one). ``params`` holds every query parameter.
    """

    code: str
    state: str
    iss: str | None
    params: Mapping[str, str]

    def __repr__(self) -> str:
        # Never show the code or the state: reprs end up in logs and tracebacks.
        return f"AuthorizationResponse(code=<redacted>, state=<redacted>, iss={self.iss!r})"


Outcome = AuthorizationResponse | OAuthLoopbackError


class Waiter(Protocol):
    """What the registry holds per pending state: the shell's PendingCallback."""

    @property
    def issuer(self) -> str | None: ...


W = TypeVar("W", bound=Waiter)

# RFC 6749 §4.1.2: the parameters of an authorization response. Servers add more
# (session_state, scope, iss); those are passed through in ``params``.
_MAX_FIELDS = 64
# Remember this many finished states, so a reload of the result page gets "already
# received" instead of a scary "unknown state". Bounded: a flood cannot grow it.
_FINISHED_MEMORY = 1024


class StateRegistry(Generic[W]):
    """The pending logins of one receiver, keyed by ``state``; O(1) per lookup.

    States are single-use: a delivered, timed-out or cancelled state leaves the pending table
    for good, and is remembered (bounded) only to word the page for a late or repeated hit.
    """

    __slots__ = ("_finished", "_pending")

    def __init__(self) -> None:
        self._pending: dict[str, W] = {}
        self._finished: OrderedDict[str, str] = OrderedDict()

    def __len__(self) -> int:
        return len(self._pending)

    def __contains__(self, state: object) -> bool:
        return state in self._pending

    def add(self, state: str, waiter: W) -> None:
        """Register ``state``; ``ValueError`` if it is pending already (states are unique)."""
        if state in self._pending:
            msg = (
                "This state is already pending on this receiver. States must be unique per "
                "login: call expect() without a state to get a fresh random one."
            )
            raise ValueError(msg)
        self._pending[state] = waiter

    def forget(self, state: str, waiter: W, why: str) -> None:
        """Drop ``state`` if ``waiter`` still owns it; remember ``why`` for a late hit."""
        if self._pending.get(state) is waiter:
            del self._pending[state]
            self._remember(state, why)

    def drain(self) -> list[W]:
        """Remove and return every pending waiter (the receiver is closing)."""
        waiters = list(self._pending.values())
        self._pending.clear()
        return waiters

    def _remember(self, state: str, why: str) -> None:
        finished = self._finished
        finished[state] = why
        if len(finished) > _FINISHED_MEMORY:
            finished.popitem(last=False)

    def match(self, query: str, app_name: str) -> tuple[W, Outcome]:
        """Decide what the query of a callback means; consume the state if it is final.

        Returns the waiter to wake and what to wake it with, or raises
        :class:`CallbackRejected` (nothing consumed, every login still pending).
        """
        from urllib.parse import parse_qsl

        try:
            pairs = parse_qsl(
                query,
                keep_blank_values=True,
                encoding="utf-8",
                errors="strict",
                max_num_fields=_MAX_FIELDS,
            )
        except (UnicodeDecodeError, ValueError) as exc:
            msg = (
                "The sign-in response could not be read: its parameters are not valid UTF-8 "
                f"form data, or there are more than {_MAX_FIELDS}. Start the sign-in again "
                f"from {app_name}."
            )
            raise CallbackRejected(msg, 400, title="Unreadable response") from exc
        params: dict[str, str] = {}
        repeated: set[str] = set()
        for key, value in pairs:
            if key in params:
                repeated.add(key)
            params[key] = value

        state = params.get("state")
        if "state" in repeated:
            msg = (
                "This sign-in response carries more than one 'state' parameter, so it cannot "
                f"be matched to a login. Nothing was accepted. Start the sign-in again from "
                f"{app_name} if it does not complete."
            )
            raise CallbackRejected(msg, 400, title="Ambiguous response")
        if not state:
            msg = (
                "This address expects a sign-in response with a 'state' parameter, and this "
                "request has none. Nothing was accepted. If you were signing in, start again "
                f"from {app_name}."
            )
            raise CallbackRejected(msg, 400, title="Not a sign-in response")
        waiter = self._pending.get(state)
        if waiter is None:
            raise _not_pending(self._finished.get(state), app_name)
        if repeated:
            msg = (
                f"This sign-in response repeats the parameter(s) {', '.join(sorted(repeated))}, "
                "so it is ambiguous and was not accepted. The login is still waiting: finish "
                "it from the authorization server's page."
            )
            raise CallbackRejected(msg, 400, title="Ambiguous response")
        code, error = params.get("code"), params.get("error")
        if bool(code) == bool(error):
            what = "both 'code' and 'error'" if code else "neither 'code' nor 'error'"
            msg = (
                f"This sign-in response has {what} (RFC 6749 §4.1.2), so it was not "
                "accepted. The login is still waiting: finish it from the authorization "
                "server's page."
            )
            raise CallbackRejected(msg, 400, title="Incomplete response")

        iss = params.get("iss")
        frozen = MappingProxyType(params)
        outcome: Outcome
        expected = waiter.issuer
        if expected is not None and iss != expected:
            # RFC 9207 §2.4: with an expected issuer, a missing or different iss is refused,
            # on error responses too (an attacker could otherwise forge the error path).
            outcome = IssuerMismatch(expected, iss)
        elif error:
            cls = AuthorizationDenied if error == "access_denied" else AuthorizationError
            outcome = cls(
                error,
                params.get("error_description"),
                params.get("error_uri"),
                iss=iss,
                state=state,
                params=frozen,
            )
        else:
            assert code  # bool(code) != bool(error) and not error  # noqa: S101
            outcome = AuthorizationResponse(code=code, state=state, iss=iss, params=frozen)
        del self._pending[state]
        self._remember(state, "used")
        return waiter, outcome


def _not_pending(why: str | None, app_name: str) -> CallbackRejected:
    if why == "used":
        msg = (
            "This sign-in response was already received. If the sign-in worked, you can "
            f"close this tab and return to {app_name}."
        )
        return CallbackRejected(msg, 400, title="Already received")
    if why == "timeout":
        msg = (
            f"This sign-in took too long: {app_name} stopped waiting for it. Start the "
            f"sign-in again from {app_name}."
        )
        return CallbackRejected(msg, 400, title="Sign-in expired")
    if why is not None:
        msg = f"{app_name} is no longer waiting for this sign-in. Start it again from {app_name}."
        return CallbackRejected(msg, 400, title="Sign-in abandoned")
    msg = (
        "No login is waiting for this response on this port. It may belong to another "
        f"program, or {app_name} was restarted since the sign-in began. Nothing was "
        f"accepted. Start the sign-in again from {app_name}."
    )
    return CallbackRejected(msg, 400, title="Unknown sign-in")


def split_target(target: str) -> tuple[str, str]:
    """Split a request target (origin or absolute form) into (path, query)."""
    if target.startswith("/"):
        path, _, query = target.partition("?")
        return path, query.partition("#")[0]
    from urllib.parse import urlsplit

    parts = urlsplit(target)
    return parts.path or "/", parts.query


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
        from urllib.parse import urlsplit

        parts = urlsplit(text)
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


# --- Pages ---------------------------------------------------------------------------------

_STYLE = (
    "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;background:#f6f7f9;"
    "color:#1f2328;display:flex;min-height:100vh;margin:0;align-items:center;"
    "justify-content:center}"
    "main{background:#fff;border-radius:12px;box-shadow:0 2px 12px rgba(0,0,0,.08);"
    "padding:2rem 2.5rem;max-width:34rem}"
    "h1{font-size:1.4rem;margin:0 0 .75rem}"
    ".ok h1{color:#1a7f37}.err h1{color:#cf222e}"
    "p{line-height:1.5;margin:.5rem 0}small{color:#656d76}"
)
# sha256 of _STYLE for the CSP, precomputed so importing the core loads no hash library
# (tests/test_core.py recomputes it: change both together).
_STYLE_HASH = "kWua4uNZpBbvN2TC6fNCKD9lo1msnyCZFydC5YGWGPc="
# A strict CSP: no scripts, no loads, no framing, no forms; only our own inline style.
CONTENT_SECURITY_POLICY = (
    f"default-src 'none'; style-src 'sha256-{_STYLE_HASH}'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
).encode()

PAGE_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"Content-Type", b"text/html; charset=utf-8"),
    # The page may reflect a state or an error description: keep it out of every cache,
    # and never let a link on it carry the callback URL (with the code) in Referer.
    (b"Cache-Control", b"no-store"),
    (b"Pragma", b"no-cache"),
    (b"Referrer-Policy", b"no-referrer"),
    (b"Content-Security-Policy", CONTENT_SECURITY_POLICY),
    (b"X-Content-Type-Options", b"nosniff"),
    (b"X-Frame-Options", b"DENY"),
    (b"Connection", b"close"),
)


def render_page(title: str, message: str, *, ok: bool, detail: str | None = None) -> bytes:
    """An HTML page; every reflected string is escaped."""
    from html import escape as esc  # loaded on the first page, not at import

    extra = f"<p><small>{esc(detail)}</small></p>" if detail else ""
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width,initial-scale=1">'
        '<meta name=referrer content="no-referrer">'
        f"<title>{esc(title)}</title><style>{_STYLE}</style></head>"
        f'<body><main class={"ok" if ok else "err"}><h1>{esc(title)}</h1>'
        f"<p>{esc(message)}</p>{extra}</main></body></html>"
    ).encode()


def page_for(outcome: Outcome, app_name: str) -> tuple[int, bytes]:
    """The status and page for a delivered outcome."""
    if isinstance(outcome, AuthorizationResponse):
        return 200, render_page(
            "Signed in",
            f"Signed in \N{EM DASH} you can close this tab and return to {app_name}.",
            ok=True,
        )
    if isinstance(outcome, AuthorizationDenied):
        return 400, render_page(
            "Sign-in cancelled",
            f"The sign-in was denied, so {app_name} was not given access. You can close "
            f"this tab; to try again, start the sign-in from {app_name}.",
            ok=False,
            detail=outcome.description,
        )
    if isinstance(outcome, AuthorizationError):
        return 400, render_page(
            "Sign-in failed",
            f"The authorization server reported an error ({outcome.error}). {app_name} "
            "has been told; you can close this tab.",
            ok=False,
            detail=outcome.description,
        )
    if isinstance(outcome, IssuerMismatch):
        return 400, render_page(
            "Sign-in refused",
            "This response did not come from the server the sign-in was started with, so "
            f"it was discarded to protect your account. Start the sign-in again from {app_name}.",
            ok=False,
        )
    return 400, render_page("Sign-in failed", str(outcome), ok=False)


def page_for_rejection(exc: CallbackRejected) -> tuple[int, bytes]:
    """The status and page for a refused request."""
    return exc.status_hint, render_page(exc.title, exc.message, ok=False)


def page_for_protocol_error(status: int) -> bytes:
    """A page for a request h11 could not parse (status from h11's error_status_hint)."""
    if status == 431:
        return render_page("Request too large", "The request headers are too large.", ok=False)
    if status == 408:
        return render_page("Request timeout", "The request took too long to arrive.", ok=False)
    return render_page("Bad request", "The request could not be understood.", ok=False)
