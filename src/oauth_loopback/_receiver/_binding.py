"""Bind and listen on loopback, synchronously (``bind()`` and ``listen()`` never block).

Why port 0 needs no retry loop (after trio's ``serve_tcp``): the kernel picks a free port at
``bind()``, we keep that very socket listening, and we read the port back from it. Nothing is
probed and re-bound later, so nothing can race us for it. A fixed port that is busy raises
:class:`CallbackPortInUse` at once, naming the holder: never a silent fallback.
"""

from __future__ import annotations

import errno
import logging
import sys
from typing import TYPE_CHECKING

from .._config import CallbackConfig
from .._errors import (
    CallbackPortInUse,
    OAuthLoopbackError,
)

if TYPE_CHECKING:
    # Imported where used instead: anyio.abc and socket cost ~4 ms of `import oauth_loopback`
    # (docs/benchmarks.md), and the event loop imports both anyway once it runs.
    import socket


logger = logging.getLogger("oauth_loopback.server")


# listen() backlog (the kernel caps it at net.core.somaxconn). When the accept queue is full,
# Linux drops the SYN and the client retries only after 1 s: 500 callbacks arriving at once
# (benchmarks/receiver.py burst) took 1.5 s with 128 and take milliseconds with this.
_BACKLOG = 1024


# localhost mode: times to retry when the IPv6 side of an ephemeral port is taken.
_DUAL_STACK_TRIES = 8


def bind(config: CallbackConfig) -> tuple[list[socket.socket], str, int]:
    """Bind and listen (synchronously: bind() and listen() never block).

    Returns the listening sockets, the host and the bound port. ``prefer_port`` (sticky
    port, ephemeral mode only) is tried first; busy, it falls back to an OS-chosen port.
    """
    if config.prefer_port is not None and config.port is None:
        try:
            bound = _bind_port(config, config.prefer_port, fixed=True)
        except (CallbackPortInUse, PermissionError) as exc:
            logger.info(
                "preferred callback port %d is unavailable (%s); listening on a port the OS "
                "picks instead, so the redirect URI changes",
                config.prefer_port,
                "in use" if isinstance(exc, CallbackPortInUse) else "permission denied",
            )
        else:
            logger.info("listening on the preferred callback port %d", config.prefer_port)
            return bound
    return _bind_port(config, config.port or 0, fixed=config.port is not None)


def _bind_port(
    config: CallbackConfig, port: int, *, fixed: bool
) -> tuple[list[socket.socket], str, int]:
    import socket

    host = config.host
    if host != "localhost":
        family = socket.AF_INET6 if host == "::1" else socket.AF_INET
        sock = _listen(family, host, port)
        return [sock], host, sock.getsockname()[1]
    # localhost mode: hold 127.0.0.1 and ::1 on one port, so no other process can answer the
    # browser on the family we did not bind (browsers try both for "localhost").
    for _ in range(_DUAL_STACK_TRIES):
        v4 = _listen(socket.AF_INET, "127.0.0.1", port)
        bound = v4.getsockname()[1]
        try:
            v6 = _listen(socket.AF_INET6, "::1", bound)
        except CallbackPortInUse as exc:
            v4.close()
            if fixed:
                # Look the holder up again now that our own 127.0.0.1 socket is closed: while
                # it was open, /proc named this very process as a holder of the port.
                holder = _holder(bound)
                raise CallbackPortInUse(bound, "::1", holder) from exc.__cause__
            continue  # ephemeral: another process has ::1 on this port; try another
        except OSError as exc:
            if exc.errno not in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):
                v4.close()
                raise
            logger.warning(
                "host='localhost': this machine has no IPv6 loopback (::1), so the receiver "
                "listens on 127.0.0.1 only"
            )
            return [v4], host, bound
        return [v4, v6], host, bound
    msg = (
        f"host='localhost' needs one port free on both 127.0.0.1 and ::1, and "
        f"{_DUAL_STACK_TRIES} ports offered by the OS were taken on ::1. Use host='127.0.0.1'."
    )
    raise OAuthLoopbackError(msg)


def _listen(family: socket.AddressFamily, host: str, port: int) -> socket.socket:
    import socket

    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        # On every listener, ephemeral ones too: the connections a receiver accepts inherit
        # the flag, and the TIME_WAIT they leave behind (we close first) blocks a later bind
        # of the port unless both sides set it. A sticky port (prefer_port) is the port an
        # earlier run got from the OS; without this, a run started right after it would
        # lose that port and the redirect URI its registration names. This never lets two
        # listeners share a port on Linux/macOS (listen() refuses a second one, and we never
        # set SO_REUSEPORT); Windows needs the exclusive flag for that guarantee (as anyio
        # does).
        if sys.platform == "win32":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_EXCLUSIVEADDRUSE, 1)  # type: ignore[attr-defined]
        else:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE or (
                sys.platform == "win32" and exc.errno == errno.EACCES
            ):
                raise CallbackPortInUse(port, host, _holder(port)) from exc
            if exc.errno == errno.EACCES:
                msg = (
                    f"The operating system refused to let this process listen on port {port} "
                    f"of {host} (ports below 1024 usually need privileges). Use an ephemeral "
                    f"port (port=None, no 'callbackPort') or a fixed port from 1024 up."
                )
                raise PermissionError(errno.EACCES, msg) from exc
            raise
        sock.listen(_BACKLOG)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def _holder(port: int) -> str | None:
    # Only when a port is busy: keeps the /proc walker off the import and bind path.
    from ._portowner import describe_port_holder

    return describe_port_holder(port)
