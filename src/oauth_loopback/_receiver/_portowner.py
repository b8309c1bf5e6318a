"""Who holds a TCP port? Best effort, Linux /proc only; never raises.

Used to word :class:`CallbackPortInUse`: "held by pid 1234 (node server.js)" turns an hour of
chasing a "CSRF" message into a one-line fix. Other systems, or processes of other users
whose file descriptors we may not read, give ``None`` or a partial answer.

A command line is chosen by whoever started that process, possibly another user of the
machine, and ends up on the user's terminal (the error message, ``oauth-loopback doctor``).
:func:`printable` shows its control characters as escapes, so an ``ESC ]52`` (clipboard
write), ``ESC [2K`` (erase the line) or a bidirectional override cannot act on the terminal
or make the text say something else ("port is free").
"""

from __future__ import annotations

import logging
import os

logger = logging.getLogger("oauth_loopback.portowner")

_LISTEN = "0A"  # TCP_LISTEN in include/net/tcp_states.h
_MAX_PIDS = 4096  # bound the /proc walk on very busy hosts


def _listening_inodes(port: int) -> dict[str, str]:
    """Map socket inode -> local address of LISTEN sockets on ``port``."""
    found: dict[str, str] = {}
    for table, family in (("/proc/net/tcp", 4), ("/proc/net/tcp6", 6)):
        try:
            with open(table, encoding="ascii") as fh:
                lines = fh.readlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10 or fields[3] != _LISTEN:
                continue
            address, _, port_hex = fields[1].partition(":")
            if int(port_hex, 16) != port:
                continue
            found[fields[9]] = _describe_address(address, family)
    return found


def _describe_address(hex_address: str, family: int) -> str:
    if family == 4:
        octets = bytes.fromhex(hex_address)[::-1]
        return ".".join(str(b) for b in octets)
    raw = bytes.fromhex(hex_address)
    # /proc prints IPv6 addresses as four host-order 32-bit words.
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
    if words == bytes(16):
        return "[::]"
    if words == bytes(15) + b"\x01":
        return "[::1]"
    return "[" + ":".join(words[i : i + 2].hex() for i in range(0, 16, 2)) + "]"


def describe_port_holder(port: int) -> str | None:
    """Return e.g. ``"pid 4242 (python3 -m http.server 19876) on 0.0.0.0"`` or None."""
    try:
        inodes = _listening_inodes(port)
        if not inodes:
            return None
        wanted = {f"socket:[{inode}]": addr for inode, addr in inodes.items()}
        addresses = ", ".join(sorted(set(inodes.values())))
        try:
            pids = [p for p in os.listdir("/proc") if p.isdigit()][:_MAX_PIDS]
        except OSError:
            return f"a process listening on {addresses}"
        for pid in pids:
            fd_dir = f"/proc/{pid}/fd"
            try:
                fds = os.listdir(fd_dir)
            except OSError:
                continue  # another user's process, or it exited
            for fd in fds:
                try:
                    link = os.readlink(f"{fd_dir}/{fd}")
                except OSError:
                    continue
                if link in wanted:
                    return f"pid {pid} ({_command(pid)}) on {addresses}"
        return f"a process we may not inspect (another user's?) listening on {addresses}"
    except (OSError, ValueError):
        logger.debug("could not look up the holder of port %d", port, exc_info=True)
        return None


def printable(text: str) -> str:
    """``text`` with every character that is not printable shown as ``\\xNN`` / ``\\uNNNN``.

    Not printable: C0 and C1 controls (ESC, BEL, CR, ...), DEL, format characters (the
    bidirectional overrides, zero-width joiners), line and paragraph separators and every
    space but U+0020 (:meth:`str.isprintable`). A backslash is doubled, so an escape
    written by the process itself cannot pass for one of ours.
    """
    if text.isprintable() and "\\" not in text:
        return text
    out = []
    for char in text:
        if char == "\\":
            out.append("\\\\")
        elif char.isprintable():
            out.append(char)
        elif ord(char) <= 0xFF:
            out.append(f"\\x{ord(char):02x}")
        else:
            out.append(f"\\u{ord(char):04x}" if ord(char) <= 0xFFFF else f"\\U{ord(char):08x}")
    return "".join(out)


def _command(pid: str) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            raw = fh.read(512)
    except OSError:
        return "command unknown"
    text = raw.replace(b"\0", b" ").decode("utf-8", "replace").strip()
    return printable(text[:120]) or "command unknown"
