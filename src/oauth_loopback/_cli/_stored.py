"""``oauth-loopback token``, ``status`` and ``logout``: the logins kept in the token store.

* ``token ISSUER``: print a valid access token, like ``gh auth token``: the stored one while
  it is valid (no network, no authlib or httpx2 imported), else refreshed, else a browser
  login. For scripts: ``curl -H "Authorization: Bearer $(oauth-loopback token ISSUER)"``.
* ``status``: the stored logins, one line each, with no secret (issuer, resource, client,
  how it was registered, scope, when the token expires, whether it can be refreshed).
* ``logout ISSUER``: forget the login; when the server offers RFC 7009 revocation, the
  refresh and access tokens are revoked there first (a failure to revoke is reported, and the
  local login is deleted anyway: the user asked to be logged out here).

``--store DIR`` picks the store's directory (default: the user's state directory, see
``FileTokenStore``).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from types import SimpleNamespace
from typing import TYPE_CHECKING, TypeAlias

if TYPE_CHECKING:
    import argparse

    from .._store._file_store import FileTokenStore
    from .._store._records import StoredLogin
    from ._options import Commands

    #: What argparse parsed, or what ``token_request`` read without it.
    Args: TypeAlias = argparse.Namespace | SimpleNamespace

__all__ = [
    "add_commands",
    "logout",
    "status",
    "store_for",
    "token",
    "token_fast",
    "token_request",
]

# token's options after ISSUER, in the order --help lists them: (flag, metavar, help). Both
# argparse (_token_arguments) and token_request read them from here.
_TOKEN_OPTIONS = (
    ("--resource", "R", "RFC 8707 resource indicator the login is for"),
    ("--scope", "S", "space-separated scopes the token needs"),
    ("--client-id", "ID", "a pre-registered client (--client-id=ID when ID begins with -)"),
    (
        "--metadata",
        "FILE",
        "the server's metadata document (RFC 8414), for a server that publishes none; used "
        "only to refresh or log in",
    ),
    ("--store", "DIR", "the token store's directory (default: your user state directory)"),
)


def add_commands(sub: Commands) -> None:
    """Add ``token``, ``status`` and ``logout`` (their arguments when they are chosen)."""
    sub.add_command(
        "token",
        _token_arguments,
        help="print a valid access token for ISSUER (stored, refreshed, or after a login)",
        description="Print a valid access token for ISSUER on stdout: the stored one while it "
        "is valid, else a refreshed one, else log in through the browser first. Exit status 0 "
        "means the line printed is a usable token.",
    )
    sub.add_command(
        "status",
        _store_argument,
        help="list the stored logins (no secrets)",
        description="List the logins in the token store: issuer, resource, client, scope, "
        "expiry. No token or secret is shown.",
    )
    sub.add_command(
        "logout",
        _logout_arguments,
        help="forget the stored login to ISSUER (revoking its tokens where the server can)",
        description="Delete the stored login to ISSUER (and --resource). When the server "
        "offers RFC 7009 revocation, its tokens are revoked there first.",
    )


def _token_arguments(token: argparse.ArgumentParser) -> None:
    token.add_argument(
        "issuer",
        metavar="ISSUER",
        nargs="?",
        help="the authorization server's issuer URL (or give --resource alone: the server is "
        "then found through the resource's RFC 9728 metadata)",
    )
    for flag, metavar, help_text in _TOKEN_OPTIONS:
        token.add_argument(flag, metavar=metavar, help=help_text)


def _logout_arguments(logout: argparse.ArgumentParser) -> None:
    logout.add_argument("issuer", metavar="ISSUER", help="the authorization server's issuer URL")
    logout.add_argument("--resource", metavar="R", help="the resource the login is for")
    _store_argument(logout)


def _store_argument(parser: argparse.ArgumentParser) -> None:
    flag, metavar, help_text = _TOKEN_OPTIONS[-1]
    parser.add_argument(flag, metavar=metavar, help=help_text)


def token_request(argv: Sequence[str]) -> SimpleNamespace | None:
    """``token``'s arguments read without argparse, when ``argv`` is in the shape scripts
    write: ``token``, at most one ISSUER, and the options of :data:`_TOKEN_OPTIONS` by their
    full names (``--scope S`` with a value not starting with ``-``, or ``--scope=S``; the last
    one given counts). The result is what argparse would give. None for anything else (help,
    ``--backend``, abbreviations, values starting with ``-``, mistakes), which argparse then
    parses, with its messages.
    """
    if not argv or argv[0] != "token":
        return None
    dests = {flag: flag[2:].replace("-", "_") for flag, _, _ in _TOKEN_OPTIONS}
    values: dict[str, str | None] = dict.fromkeys(dests.values())
    issuer: str | None = None
    rest = iter(argv[1:])
    for arg in rest:
        if not arg.startswith("-"):
            if issuer is not None:
                return None  # argparse: unrecognized arguments
            issuer = arg
            continue
        flag, equals, value = arg.partition("=")
        dest = dests.get(flag)
        if dest is None:
            return None
        if not equals:
            value = next(rest, "-")
            if value.startswith("-"):
                return None  # missing, or a value argparse would take for an option
        values[dest] = value
    return SimpleNamespace(command="token", backend="asyncio", issuer=issuer, **values)


def store_for(args: Args) -> FileTokenStore:
    from .._store._file_store import FileTokenStore

    return FileTokenStore(getattr(args, "store", None))


def token_fast(args: Args) -> int | None:
    """``token`` without an event loop, when the stored token will do: the exit status after
    printing it (or the DPoP error); None when a refresh or a login (or a resource-first
    discovery) is needed, which ``token`` then does.

    The common case of a CLI that runs ``oauth-loopback token`` before each request: read
    one 0600 file on this thread, check the expiry, print. The checks and the rule for a
    usable token are ``get_token()``'s own (``_get_token.stored_now``); no anyio, asyncio,
    h11, authlib or httpx2 is imported.
    """
    if args.issuer is None:
        return None  # resource-first: the issuer comes from the resource, over the network
    from .._login._get_token import stored_now

    found = stored_now(
        store_for(args),
        args.issuer,
        client_id=args.client_id,
        scope=args.scope,
        resource=args.resource,
    )
    if found is None:
        return None
    login, tokens = found
    if login.dpop_key is not None:
        print(_DPOP_BOUND, file=sys.stderr)
        return 1
    sys.stdout.write(tokens.access_token + "\n")
    return 0


_DPOP_BOUND = (
    "error: the stored token is DPoP-bound (RFC 9449): it is useless without its key, "
    "which is kept in the store. Use oauth_loopback.TokenAuth from Python, or log in "
    "again with 'oauth-loopback login --no-store' for a bearer token."
)


async def token(args: argparse.Namespace) -> int:
    """``oauth-loopback token``: the access token on stdout, nothing else there."""
    from .._login._get_token import get_token

    if args.issuer is None and args.resource is None:
        print(
            "error: give ISSUER, or --resource URL to find its server (RFC 9728)", file=sys.stderr
        )
        return 2

    def show_url(url: str) -> None:
        print(
            f"Sign in to continue. If the browser does not open, visit:\n\n  {url}\n",
            file=sys.stderr,
        )

    metadata = None
    if args.metadata is not None:
        from ._login import read_metadata

        metadata = read_metadata(args.metadata)
    result = await get_token(
        args.issuer,
        store=store_for(args),
        client_id=args.client_id,
        scope=args.scope,
        resource=args.resource,
        show_url=show_url,
        metadata=metadata,
    )
    if result.dpop_key is not None:
        print(_DPOP_BOUND, file=sys.stderr)
        return 1
    sys.stdout.write(result.access_token + "\n")
    return 0


def _describe(login: StoredLogin, now: float) -> str:
    parts = [login.issuer]
    if login.resource:
        parts.append(f"resource {login.resource}")
    if login.client is not None:
        parts.append(f"client {login.client.client_id} ({login.client.obtained.replace('_', ' ')})")
    tokens = login.tokens
    if tokens is None:
        parts.append("no token (log in with 'oauth-loopback login')")
    else:
        if tokens.scope:
            parts.append(f"scope {tokens.scope!r}")
        if tokens.expires_at is None:
            parts.append("token without a known expiry")
        elif tokens.expires_at > now:
            parts.append(f"token valid for {int(tokens.expires_at - now)} s")
        else:
            parts.append("token expired")
        parts.append("refreshable" if tokens.refresh_token else "not refreshable")
        if login.dpop_key is not None:
            parts.append("DPoP-bound")
    return ", ".join(parts)


async def status(args: argparse.Namespace) -> int:
    store = store_for(args)
    logins = await store.logins()
    if not logins:
        print(f"No stored logins in {store.path}.")
        return 0
    now = time.time()
    for login in logins:
        print(_describe(login, now))
    return 0


async def logout(args: argparse.Namespace) -> int:
    from .._store._records import LoginKey

    store = store_for(args)
    key = LoginKey(args.issuer, args.resource)
    async with store.lock(key):
        login = await store.load(key)
        if login is None:
            print(
                f"error: no stored login to {args.issuer}; 'oauth-loopback status' lists them.",
                file=sys.stderr,
            )
            return 1
        problem = await _revoke(login)
        await store.delete(key)
    if problem is not None:
        print(
            f"Logged out here; the server could not revoke the tokens ({problem}).", file=sys.stderr
        )
    else:
        print(f"Logged out of {args.issuer}.", file=sys.stderr)
    return 0


async def _revoke(login: StoredLogin) -> str | None:
    """RFC 7009: revoke the refresh token (and the access token) if the server offers it."""
    if login.tokens is None or login.client is None:
        return None
    document = login.metadata.document if login.metadata is not None else None
    from .._login._refresh import revoke

    return await revoke(login.issuer, login.client, login.tokens, metadata=document)
