"""Errors in the words of the command line: flags, not Python parameters.

The library's messages name what a Python caller changes (``port=``, ``wait(timeout=...)``,
``expect(issuer=...)``). A CLI user changes flags, so each error the commands can meet is
worded again here, once, with the flag that fixes it. Anything not listed keeps the library's
own message, which never names a Python parameter for the errors a command can meet.
"""

from __future__ import annotations

import errno
import os
import sys
import traceback

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

from .._errors import (
    CallbackPortInUse,
    CallbackTimeout,
    ClientRejected,
    DiscoveryError,
    InvalidCallbackConfig,
    IssuerMismatch,
    OAuthLoopbackError,
    TokenError,
)

__all__ = ["fail", "interrupted", "message_for", "unwrap"]

#: Set to 1 to see the traceback of an unexpected error (a bug worth reporting).
TRACEBACK_ENV = "OAUTH_LOOPBACK_TRACEBACK"


def message_for(exc: BaseException) -> str:
    """One line for ``exc``, naming the flag or action that fixes it."""
    if isinstance(exc, CallbackPortInUse):
        who = f" (held by {exc.holder})" if exc.holder else ""
        return (
            f"callback port {exc.port} on {exc.host} is already in use{who}. oauth-loopback does "
            f"not fall back to another port, because the server would then redirect your "
            f"browser to whatever listens there. Drop --port / --legacy-port so the OS picks "
            f"a free port, choose another with --port N, or stop the process holding it."
        )
    if isinstance(exc, CallbackTimeout):
        return (
            f"no sign-in arrived within {exc.timeout:g} seconds, so the login was abandoned. "
            f"Run the command again and finish in the browser, or allow longer with "
            f"--timeout SECONDS."
        )
    if isinstance(exc, IssuerMismatch):
        got = "no issuer" if exc.received is None else f"issuer {exc.received!r}"
        return (
            f"the sign-in response named {got}, not {exc.expected!r} (RFC 9207), so it was "
            f"refused: it may come from another server (a mix-up attack). Check that ISSUER is "
            f"exactly the server's issuer, and sign in again."
        )
    if isinstance(exc, ClientRejected):
        said = (
            f"redirected with error={exc.error!r}"
            + (f": {exc.description}" if exc.description else "")
            if exc.error is not None
            else f"answered HTTP {exc.status_code} (an error page)"
        )
        return (
            f"the authorization server refused the sign-in request for client "
            f"{exc.client_id!r} before the browser opened ({said}). The client ID may be "
            f"unknown to the server or registered with another redirect URI: leave --client-id "
            f"out so oauth-loopback registers a client, or pass the --client-id the server knows."
        )
    if isinstance(exc, DiscoveryError):
        return f"{exc} For a server that publishes no metadata, pass it with --metadata FILE."
    if isinstance(exc, TokenError):
        detail = f": {exc.description}" if exc.description else ""
        return (
            f"the token endpoint refused the authorization code with error={exc.error!r}"
            f"{detail}. Run the command again; if it keeps failing, check --client-id, "
            f"--client-secret (or OAUTH_LOOPBACK_CLIENT_SECRET) and the redirect URI the "
            f"client is registered with."
        )
    if isinstance(exc, InvalidCallbackConfig):
        return (
            str(exc)
            .replace("redirect_uri", "--redirect-uri")
            .replace("port=None", "no --port")
            .replace("'callbackPort'", "--port")
            .replace("public_redirect_uri", "--public-redirect-uri")
        )
    if isinstance(exc, PermissionError) and exc.errno == errno.EACCES:
        return (
            f"the operating system refused to let this process listen there ({exc.strerror}). "
            f"Ports below 1024 usually need privileges: drop --port (and --redirect-uri's "
            f"port) so the OS picks a free port, or use a port from 1024 up."
        )
    if isinstance(exc, OSError):
        if exc.errno is None:
            return str(exc)  # ours: already a sentence that names the flag
        where = f": {exc.filename}" if exc.filename else ""
        return f"{exc.strerror}{where} (errno {errno.errorcode.get(exc.errno, exc.errno)})."
    return _in_flags(str(exc) or type(exc).__name__)


# Python parameter names in the library's other messages, and the flags that set them.
_FLAGS = (
    ("pass its client_id= (CLI: --client-id)", "pass it with --client-id"),
    ("(port= / --port)", "(--port)"),
    ("the metadata= argument", "the --metadata file"),
    ("client_id=", "--client-id"),
    ("metadata=", "--metadata"),
)


def _in_flags(text: str) -> str:
    for python, flag in _FLAGS:
        text = text.replace(python, flag)
    return text


def unwrap(exc: BaseException) -> BaseException:
    """The one error inside nested exception groups (task groups wrap what escapes them)."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def interrupted(exc: BaseException) -> bool:
    """Ctrl-C, raised directly (asyncio) or inside exception groups (trio's nurseries)."""
    if isinstance(exc, KeyboardInterrupt):
        return True
    if isinstance(exc, BaseExceptionGroup):
        return exc.subgroup(KeyboardInterrupt) is not None
    return False


def fail(exc: BaseException) -> int:
    """Print the one ``error: ...`` line for ``exc`` and return the exit status (1)."""
    exc = unwrap(exc)
    if isinstance(exc, (OAuthLoopbackError, OSError)):
        print(f"error: {message_for(exc)}", file=sys.stderr)
        return 1
    # Not an error the commands expect: a bug. Still one line; the traceback on request.
    print(
        f"error: unexpected {type(exc).__name__}: {exc}. This is a bug in oauth-loopback; "
        f"please report it (run with {TRACEBACK_ENV}=1 to see the traceback).",
        file=sys.stderr,
    )
    if os.environ.get(TRACEBACK_ENV) == "1":
        traceback.print_exception(exc)
    return 1
