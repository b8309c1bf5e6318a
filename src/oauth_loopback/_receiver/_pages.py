"""The sans-I/O core, part 3: the pages the browser is shown, escaped, with strict headers."""

from __future__ import annotations

from .._errors import (
    AuthorizationDenied,
    AuthorizationError,
    CallbackRejected,
    IssuerMismatch,
)
from ._registry import AuthorizationResponse, Outcome

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
        f"<body><main class={'ok' if ok else 'err'}><h1>{esc(title)}</h1>"
        f"<p>{esc(message)}</p>{extra}</main></body></html>"
    ).encode()


def page_for(outcome: Outcome, app_name: str) -> tuple[int, bytes]:
    """The status and page for a delivered outcome."""
    if isinstance(outcome, AuthorizationResponse):
        return page_for_signed_in(app_name)
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


def page_for_finished(verdict: tuple[bool, str | None] | None, app_name: str) -> tuple[int, bytes]:
    """The page of a held login (``expect(hold_page=...)``): what ``finish()`` said, if anything.

    ``(True, _)``: a token arrived. ``(False, message)``: it did not, and ``message`` says why
    and what to do. ``None``: no word within the hold, so the page promises nothing.
    """
    if verdict is None:
        return 200, render_page(
            "Almost done",
            f"{app_name} is finishing the sign-in. You can close this tab; {app_name} will "
            "tell you whether it worked.",
            ok=True,
        )
    ok, message = verdict
    if ok:
        return page_for_signed_in(app_name)
    return 400, render_page(
        "Sign-in failed",
        "Sign-in failed \N{EM DASH} "
        + (message or f"{app_name} did not get a token. Start the sign-in again from {app_name}."),
        ok=False,
    )


def page_for_signed_in(app_name: str) -> tuple[int, bytes]:
    return 200, render_page(
        "Signed in",
        f"Signed in \N{EM DASH} you can close this tab and return to {app_name}.",
        ok=True,
    )


def page_for_rejection(exc: CallbackRejected) -> tuple[int, bytes]:
    """The status and page for a refused request."""
    return exc.status_hint, render_page(exc.title, exc.message, ok=False)


def page_for_protocol_error(status: int) -> bytes:
    """A page for a request h11 could not parse (status from h11's error_status_hint)."""
    if status == 431:
        return render_page(
            "Request too large",
            "The request headers are too large, so the request was not read. Clear the "
            "cookies and site data your browser keeps for 127.0.0.1 and localhost (they are "
            "sent to every port), then start the sign-in again.",
            ok=False,
        )
    if status == 408:
        return render_page("Request timeout", "The request took too long to arrive.", ok=False)
    return render_page("Bad request", "The request could not be understood.", ok=False)
