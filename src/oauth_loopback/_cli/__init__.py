"""The ``oauth-loopback`` command (also ``python -m oauth_loopback``).

Only this package prints (``doctor``, ``demo``, ``login``: one module per command). Sub-commands:

* ``doctor [--port N]``: bind ephemeral receivers on 127.0.0.1 (and ::1 when the machine has
  it), complete one callback round trip through a real local HTTP request, time it, and
  check who holds the legacy port 19876 (or ``--port``). Exit status 0 means healthy.
* ``demo``: start the embedded authorization server (:mod:`oauth_loopback.testing`) and run a
  complete :func:`authorize` against it with a headless browser stand-in, printing each step
  with its time and the token redacted. Exit status 0 means the whole login worked.
* ``login ISSUER [...]``: a real login through the user's browser (or, with ``--no-browser``,
  by pasting the address the browser was redirected to); the token goes to stdout as JSON
  (``--json``) or to a file written atomically with mode 0600 (``--output``).
* ``cimd write|check``: the app's client ID metadata document (:mod:`._cimd`).

**Decision:** the parser (:mod:`._options`) is built from argparse alone; the module that does
a command's work (and anyio, h11, authlib, httpx2 with it) is imported only when that command
runs, so ``oauth-loopback --help`` is fast. ``oauth-loopback token ISSUER`` with a valid
stored token imports no event loop library, and in the plain shape scripts write it (full
option names, no ``--backend``) not even argparse: it reads one file and prints
(``_stored.token_request``, ``_stored.token_fast``).
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

from . import _stored

if TYPE_CHECKING:
    import argparse

__all__ = ["BACKENDS", "main", "version"]

#: The event loops ``--backend`` offers (trio needs the ``trio`` extra).
BACKENDS = ("asyncio", "trio")


def version(dist: str) -> str:
    """The installed version of ``dist``, or ``unknown`` (a source checkout)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "unknown"


def _parser() -> argparse.ArgumentParser:
    """The whole parser (:mod:`._options`, which imports argparse)."""
    from ._options import parser

    return parser()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``oauth-loopback`` console script."""
    failure: BaseException
    try:
        return _main(sys.argv[1:] if argv is None else list(argv))
    except KeyboardInterrupt:
        failure = KeyboardInterrupt()
    except BaseExceptionGroup as group:  # trio's nurseries wrap even Ctrl-C
        failure = group
    except Exception as exc:  # noqa: BLE001  (the CLI boundary: one error line, never a traceback)
        failure = exc
    from ._messages import fail, interrupted

    if interrupted(failure):
        print("interrupted", file=sys.stderr)
        return 130
    return fail(failure)


def _main(argv: list[str]) -> int:
    # `oauth-loopback token ISSUER [--scope S] ...` as scripts write it, answered by a valid
    # stored token: no argparse either (it is most of what such a process would import).
    request = _stored.token_request(argv)
    if request is not None:
        status = _stored.token_fast(request)
        if status is not None:
            return status
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if args.backend == "trio":
        import importlib.util

        if importlib.util.find_spec("trio") is None:
            print("--backend trio needs trio: pip install 'oauth-loopback[trio]'", file=sys.stderr)
            return 2
    if args.command == "doctor":
        from ._doctor import doctor

        return _run(args.backend, doctor, args.port, args.backend)
    if args.command == "demo":
        from ._demo import demo

        return _run(args.backend, demo, args.backend, args.device)
    if args.command == "login":
        from ._login import login

        return _run(args.backend, login, args)
    if args.command == "cimd":
        from . import _cimd

        return _cimd.run(args, parser)
    if args.command == "token":
        status = _stored.token_fast(args)
        if status is not None:
            return status
        return _run(args.backend, _stored.token, args)
    if args.command == "status":
        return _run(args.backend, _stored.status, args)
    if args.command == "logout":
        return _run(args.backend, _stored.logout, args)
    parser.error(f"unknown command {args.command!r}")
    return 2  # pragma: no cover  (parser.error exits)


def _run(backend: str, command: Callable[..., Awaitable[int]], *args: Any) -> int:
    """``anyio.run`` of one command: anyio is imported for the commands that need a loop."""
    import anyio

    return anyio.run(command, *args, backend=backend)
