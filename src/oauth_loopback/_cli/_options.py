"""The ``oauth-loopback`` parser: argparse, its formatter, and each command's arguments.

Imported when argparse is needed, which is every run but one: ``oauth-loopback token`` in the
shape scripts write it is read by ``_stored.token_request`` without argparse (and the gettext
and locale imports argparse brings) when a valid stored token answers it.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, cast

from . import BACKENDS, _cimd, _stored, version

__all__ = ["Commands", "parser"]


class _Version(argparse._VersionAction):
    """``--version``, looked up when it is asked for: ``importlib.metadata`` is a slow import
    that every other command would pay for."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        self.version = f"%(prog)s {version('oauth-loopback')}"
        super().__call__(parser, namespace, values, option_string)


def _columns() -> int:
    """``shutil.get_terminal_size().columns``, the width argparse formats help for, without
    importing shutil: argparse builds a formatter for every argument it is given, and shutil
    (with its compression modules) is a slow import that a command printing no help pays for.
    The same rules: ``$COLUMNS`` if set, else the terminal of ``sys.__stdout__``, else 80."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns > 0:
        return columns
    stdout = sys.__stdout__
    try:
        return 80 if stdout is None else os.get_terminal_size(stdout.fileno()).columns or 80
    except (AttributeError, ValueError, OSError):
        return 80


class _Formatter(argparse.HelpFormatter):
    """argparse's help formatter, with the width found by :func:`_columns`."""

    def __init__(
        self,
        prog: str,
        indent_increment: int = 2,
        max_help_position: int = 24,
        width: int | None = None,
    ) -> None:
        if width is None:
            width = _columns() - 2
        super().__init__(prog, indent_increment, max_help_position, width)


if TYPE_CHECKING:
    _SubParsers = argparse._SubParsersAction[argparse.ArgumentParser]
else:
    _SubParsers = argparse._SubParsersAction  # generic only in typeshed


class Commands(_SubParsers):
    """The sub-commands, each getting its arguments when it is the one chosen.

    ``--help`` lists the commands from their names and help texts alone, and only the chosen
    command's arguments are ever parsed, so the others' (dozens, for ``login``) are not built:
    a few milliseconds of a process like ``oauth-loopback token`` that lives for fifty.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._arguments: dict[str, Callable[[argparse.ArgumentParser], None]] = {}

    def add_command(
        self,
        name: str,
        arguments: Callable[[argparse.ArgumentParser], None],
        *,
        help: str,
        description: str | None = None,
    ) -> None:
        """``add_parser(name, help=, description=)``; ``arguments(parser)`` adds the rest (and
        the description, when it needs what only the command imports)."""
        self.add_parser(name, help=help, description=description, formatter_class=_Formatter)
        self._arguments[name] = arguments

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        if isinstance(values, list) and values:
            arguments = self._arguments.pop(values[0], None)
            if arguments is not None:
                arguments(self.choices[values[0]])
        super().__call__(parser, namespace, values, option_string)


def _port(text: str) -> int:
    """``--port``, the same rules in every command: a fixed port from 1 to 65535."""
    try:
        port = int(text)
    except ValueError:
        port = -1
    if port == 0:
        msg = "0 is not needed: leave --port out and the OS picks a free port"
        raise argparse.ArgumentTypeError(msg)
    if not 0 < port < 65536:
        msg = f"must be a port number from 1 to 65535 (leave --port out for a free port the OS picks), not {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return port


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        msg = f"must be a positive number of seconds, not {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="oauth-loopback",
        description="Receive OAuth 2.0 authorization responses on a loopback redirect URI.",
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action=_Version)
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default="asyncio",
        help="event loop to run on (trio needs: pip install 'oauth-loopback[trio]')",
    )
    sub = cast(
        "Commands", parser.add_subparsers(dest="command", metavar="COMMAND", action=Commands)
    )
    sub.add_command(
        "doctor",
        _doctor_arguments,
        help="check that loopback callbacks work here, and who holds the legacy port",
    )
    sub.add_command(
        "demo",
        _demo_arguments,
        help="run a complete login against an embedded authorization server",
        description="Start an embedded OAuth 2.0 authorization server on 127.0.0.1 and log in "
        "to it with authorize() and a headless browser stand-in, printing each step (bind, "
        "discovery, registration, redirect, callback, token) with its time. Nothing external "
        "is contacted. Exit status 0 means the whole login worked.",
    )
    sub.add_command(
        "login",
        _login_arguments,
        help="log in to an authorization server through your browser",
        description="Log in to ISSUER: discover its metadata, register a client (unless "
        "--client-id), open the browser with PKCE, receive the callback on a loopback port "
        "and exchange the code. The token goes to stdout with --json, or to --output FILE.",
    )
    _cimd.add_command(sub)
    _stored.add_commands(sub)
    return parser


def _doctor_arguments(doctor: argparse.ArgumentParser) -> None:
    from .._config import LEGACY_CALLBACK_PORT

    doctor.description = (
        "Bind ephemeral receivers, complete a callback round trip, and check "
        f"whether port {LEGACY_CALLBACK_PORT} (or --port) is free. Exit status 0 means healthy."
    )
    doctor.add_argument(
        "--port",
        type=_port,
        default=None,
        help=f"check this fixed port instead of the legacy {LEGACY_CALLBACK_PORT}; "
        "exit status 1 if it is busy",
    )


def _demo_arguments(demo: argparse.ArgumentParser) -> None:
    demo.add_argument(
        "--device", action="store_true", help="show the device login (RFC 8628) instead"
    )


def _login_arguments(login: argparse.ArgumentParser) -> None:
    from .._config import LEGACY_CALLBACK_PORT

    login.add_argument(
        "issuer",
        metavar="ISSUER",
        nargs="?",
        help="the authorization server's issuer URL (or give --resource alone: the server is "
        "then found through the resource's RFC 9728 metadata)",
    )
    login.add_argument(
        "--client-id",
        metavar="ID",
        help="a pre-registered client (default: register one dynamically, RFC 7591); "
        "write --client-id=ID when ID begins with -",
    )
    login.add_argument(
        "--client-secret",
        metavar="S",
        help="the client's secret, for a "
        "confidential client; other local users can see command lines, so "
        "prefer the OAUTH_LOOPBACK_CLIENT_SECRET environment variable",
    )
    login.add_argument("--scope", metavar="S", help="space-separated scopes to ask for")
    login.add_argument(
        "--resource", metavar="R", help="RFC 8707 resource indicator (for MCP: the server's URL)"
    )
    where = login.add_mutually_exclusive_group()
    where.add_argument(
        "--port",
        type=_port,
        metavar="N",
        help="listen on this fixed port (default: a free port the OS picks)",
    )
    where.add_argument(
        "--legacy-port",
        action="store_true",
        help=f"listen on the legacy port "
        f"{LEGACY_CALLBACK_PORT}, for servers whose registration pins it",
    )
    where.add_argument(
        "--redirect-uri",
        metavar="URI",
        help="listen on this loopback redirect URI, e.g. http://127.0.0.1:8765/callback",
    )
    login.add_argument(
        "--no-browser",
        action="store_true",
        help="do not open a browser: "
        "print the URL and ask for the address the browser was redirected to "
        "(SSH, containers); the loopback callback still works if it arrives",
    )
    login.add_argument(
        "--json", action="store_true", help="print the token response as JSON on stdout"
    )
    login.add_argument(
        "--device",
        action="store_true",
        help="log in with a code entered on any device (RFC 8628 device grant): for SSH and "
        "containers; chosen by itself when no browser can open here and nobody can paste",
    )
    login.add_argument(
        "--public-redirect-uri",
        metavar="URL",
        help="forwarded setups (Codespaces, ssh -L, a proxy): send the server this redirect URI "
        "('{port}' is filled in) while listening on loopback only, e.g. "
        "'https://{port}-name.app.github.dev/callback' or 'http://127.0.0.1:9000/callback'",
    )
    login.add_argument(
        "--browser-command",
        metavar="CMD",
        help="open the browser with this command (e.g. 'firefox --new-window'); it is given "
        "a private sign-in page's file:// URL, never the authorization URL (default: "
        "$BROWSER, wslview/explorer.exe in WSL, else the system's)",
    )
    login.add_argument(
        "--no-store",
        action="store_true",
        help="do not save the login in the token store (by default it is saved, so "
        "'oauth-loopback token ISSUER' gives a valid token later without a browser)",
    )
    login.add_argument(
        "--store",
        metavar="DIR",
        help="the token store's directory (default: your user state directory)",
    )
    login.add_argument(
        "--output",
        metavar="FILE",
        help="write the token response as JSON to "
        "FILE, atomically and readable by you only (mode 0600)",
    )
    login.add_argument(
        "--metadata",
        metavar="FILE",
        help="the server's metadata as a JSON file (RFC 8414 fields: authorization_endpoint, "
        "token_endpoint, ...), for servers that publish none; discovery is skipped",
    )
    login.add_argument(
        "--timeout",
        type=_positive_seconds,
        metavar="SECONDS",
        help="give up after this long without a callback (default 300)",
    )
