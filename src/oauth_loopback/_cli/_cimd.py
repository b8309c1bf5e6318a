"""``oauth-loopback cimd write|check``: the app's client ID metadata document.

A client ID metadata document is the JSON a native app publishes at an https URL that then
serves as its ``client_id`` (the MCP authorization specification prefers it over dynamic
registration: nothing is registered, so nothing goes stale when the loopback port changes).

* ``cimd write URL --name NAME``: the document for an app that logs in through
  oauth-loopback: portless ``http://127.0.0.1/callback`` and ``http://[::1]/callback`` redirect
  URIs (any port matches, RFC 8252 §7.3), ``application_type: native``,
  ``token_endpoint_auth_method: none`` and the ``refresh_token`` grant. To stdout, or
  ``--output FILE``.
* ``cimd check FILE|URL``: reads the document (a URL is fetched; https, or http on loopback
  for a local preview) and reports what servers will refuse (errors, exit 1) and what
  oauth-loopback logins would miss (warnings).

The document code (building, checking) is in ``oauth_loopback._login._cimd``, imported only
when the command runs, so ``oauth-loopback --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._options import Commands

__all__ = ["add_command", "run"]

# Documents are small; the draft suggests servers refuse more than about 5 KB.
_MAX_READ = 64 * 1024


def add_command(sub: Commands) -> None:
    """Add ``cimd`` to the ``oauth-loopback`` parser (its two actions when it is chosen)."""
    sub.add_command(
        "cimd",
        _arguments,
        help="write or check a client ID metadata document (an https client_id)",
        description="Client ID metadata documents: the JSON an app publishes at an https URL "
        "that is its client_id, so that no server needs to register it (the MCP "
        "authorization specification's preferred way).",
    )


def _arguments(cimd: argparse.ArgumentParser) -> None:
    actions = cimd.add_subparsers(dest="cimd_command", metavar="ACTION")
    write = actions.add_parser(
        "write",
        help="write the document for an app that logs in through oauth-loopback",
        description="Print (or --output) the client ID metadata document of a native public "
        "client with portless loopback redirect URIs on 127.0.0.1 and [::1], which servers "
        "match on any port (RFC 8252 §7.3). Publish it at URL and pass client_id=URL.",
    )
    write.add_argument("url", metavar="URL", help="the https URL the document will be served at")
    write.add_argument("--name", required=True, help="the app's name, shown on consent pages")
    write.add_argument(
        "--path",
        default="/callback",
        help="the redirect path the app listens on (CallbackConfig.path; default /callback)",
    )
    write.add_argument("--scope", metavar="S", help="space-separated scopes the app asks for")
    write.add_argument("--client-uri", metavar="URI", help="the app's home page")
    write.add_argument("--logo-uri", metavar="URI", help="the app's logo")
    write.add_argument("--output", metavar="FILE", help="write to FILE instead of stdout")
    check = actions.add_parser(
        "check",
        help="check a document (a file, or a URL to fetch)",
        description="Check a client ID metadata document: errors (exit status 1) are what "
        "servers refuse or what makes loopback logins fail; warnings are advice.",
    )
    check.add_argument(
        "source", metavar="FILE|URL", help="a file, or the https URL it is served at"
    )
    check.add_argument(
        "--client-id",
        metavar="URL",
        help="the URL it will be published at (default: SOURCE when it is a URL); the "
        "document's client_id must equal it",
    )
    check.add_argument(
        "--path", help="the redirect path the app listens on; some redirect URI must use it"
    )


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.cimd_command == "write":
        return _write(args)
    if args.cimd_command == "check":
        return _check(args)
    parser.error("cimd needs an action: write or check")
    return 2  # pragma: no cover  (parser.error exits)


def _write(args: argparse.Namespace) -> int:
    from .._login._cimd import metadata_document

    try:
        document = metadata_document(
            args.url,
            client_name=args.name,
            redirect_path=args.path,
            scope=args.scope,
            client_uri=args.client_uri,
            logo_uri=args.logo_uri,
        )
    except ValueError as exc:
        print(f"error: {exc} Pass the https URL the document will be served at.", file=sys.stderr)
        return 2
    text = json.dumps(document, indent=2) + "\n"
    if args.output is None:
        sys.stdout.write(text)
    else:
        try:
            _write_file(Path(args.output), text)
        except OSError as exc:
            print(f"error: could not write {args.output}: {exc}", file=sys.stderr)
            return 1
    where = "" if args.output is None else f" written to {args.output}"
    print(
        f"Client ID metadata document{where}. Serve it at {args.url} (over https, as "
        f"application/json) and log in with client_id={args.url!r} (CLI: --client-id).",
        file=sys.stderr,
    )
    return 0


def _write_file(path: Path, text: str) -> None:
    """Atomically: a reader (the web server publishing it) never sees half a document."""
    directory = path.parent if str(path.parent) else Path(".")
    import tempfile  # only here: it is a slow import, and every command builds this parser

    fd, temp = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.chmod(temp, 0o644)  # a public document, meant to be served
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def _check(args: argparse.Namespace) -> int:
    from .._login._cimd import check_metadata_document, has_errors

    source: str = args.source
    is_url = source.startswith(("https://", "http://"))
    try:
        raw = _fetch(source) if is_url else _read(Path(source))
    except _Unreadable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        document = json.loads(raw)
    except ValueError as exc:
        print(f"error: {source} is not JSON ({exc}); write one with 'oauth-loopback cimd write'.")
        return 1
    expected = args.client_id or (source if is_url else None)
    findings = check_metadata_document(document, url=expected, redirect_path=args.path)
    for finding in findings:
        print(f"{finding.level}: {finding.field} {finding.message}")
    errors = sum(f.level == "error" for f in findings)
    warnings = len(findings) - errors
    if has_errors(findings):
        print(f"{source}: {errors} error(s), {warnings} warning(s): servers will refuse it")
        return 1
    suffix = f" ({warnings} warning(s))" if warnings else ""
    print(f"{source}: ok{suffix}")
    return 0


class _Unreadable(Exception):
    pass


def _read(path: Path) -> bytes:
    try:
        with path.open("rb") as stream:
            return stream.read(_MAX_READ + 1)[:_MAX_READ]
    except OSError as exc:
        msg = f"could not read {path}: {exc.strerror or exc}"
        raise _Unreadable(msg) from exc


def _fetch(url: str) -> bytes:
    import httpx2

    from .._loopback import loopback_http_uri

    loopback = loopback_http_uri(url) is not None
    if not url.startswith("https://") and not loopback:
        msg = f"{url} is not https; a client ID metadata document is only ever served over https."
        raise _Unreadable(msg)
    try:
        # No redirects: servers fetch the document at its client_id and follow none.
        with httpx2.Client(trust_env=not loopback, follow_redirects=False, timeout=10) as http:
            response = http.get(url, headers={"Accept": "application/json"})
    except httpx2.HTTPError as exc:
        msg = f"could not fetch {url}: {exc}"
        raise _Unreadable(msg) from exc
    if response.status_code != 200:
        msg = (
            f"{url} answered HTTP {response.status_code}; servers need 200 with the document "
            f"(and follow no redirects)."
        )
        raise _Unreadable(msg)
    return bytes(response.content[:_MAX_READ])
