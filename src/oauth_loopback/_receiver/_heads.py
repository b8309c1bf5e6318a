"""The sans-I/O core, part 0: the request head as it reaches h11, without the browser's cookies.

A browser sends every cookie it holds for ``127.0.0.1`` (or ``localhost``) with every request
to that host, *whatever the port* (RFC 6265 §8.5: cookies do not provide isolation by port).
Any page served on any loopback port can therefore fill the Cookie header of our callback:
180 cookies of 4 KiB each is within what browsers keep per host. Counted toward the 8 KiB head
cap, that locks the user out of every login for good. The receiver never reads a cookie, so
:class:`HeadFilter` drops ``Cookie`` header lines (and their obsolete line folds) before h11
sees the bytes, and counts them apart: the head without cookies keeps its exact 8 KiB cap
(``MAX_REQUEST_HEAD``), the cookies get a separate bound (``MAX_COOKIE_BYTES``) far above any
browser's jar; neither is ever buffered, so 64 connections stay cheap whatever they send.

This is not an HTTP parser: h11 parses everything that is passed on. The filter only has to
find line boundaries exactly as h11 does (``h11/_receivebuffer.py``): lines end at LF, a CR
before it is part of the terminator, a line that is empty or just CR ends the head, the first
line is the request line, and a line starting with SP or HTAB continues the previous field
(RFC 9112 §5.2). Bytes after the head are discarded: the receiver answers one request per
connection and reads no body.
"""

from __future__ import annotations

import re

from .._errors import CallbackRejected

__all__ = ["MAX_COOKIE_BYTES", "MAX_REQUEST_HEAD", "HeadFilter"]

# Request line + headers, cookies excepted. h11's default is 16 KiB;
# a callback is one short line plus a browser's ~1 KiB of other headers, so 8 KiB is ample
# and keeps floods cheap.
MAX_REQUEST_HEAD = 8 * 1024
# Cookie lines, which are counted but never kept. Browsers keep up to 180 cookies of 4 KiB
# per host (Chromium's net/cookies limits; RFC 6265 §6.1 asks for at least 50 of 4 KiB), so
# a full jar is ~740 KiB: 1 MiB lets any browser in and still ends a stream of junk early.
MAX_COOKIE_BYTES = 1024 * 1024

_LF = 0x0A
_CR = 0x0D
_FOLD = (0x20, 0x09)  # SP, HTAB: an obsolete line fold (RFC 9112 §5.2)
_COOKIE = b"cookie:"
# Where a head ends, as h11 finds it (h11/_receivebuffer.py: an LF, an optional CR, an LF).
_BLANK_LINE = re.compile(b"\n\r?\n")


def _too_large(*, cookies: bool, app_name: str) -> CallbackRejected:
    if cookies:
        msg = (
            "Your browser sent more than 1 MiB of cookies with this request. Browsers send "
            "every cookie they keep for 127.0.0.1 and localhost to every port, so a local "
            "web app has filled that jar. Clear the cookies your browser keeps for "
            "127.0.0.1 and localhost (site settings, or private browsing), then start the "
            f"sign-in again from {app_name}."
        )
    else:
        msg = (
            "This request's headers are larger than 8 KiB, not counting cookies, so it was "
            "not read. A browser extension that adds headers can cause this: disable it, or "
            "clear the site data your browser keeps for 127.0.0.1 and localhost, then start "
            f"the sign-in again from {app_name}."
        )
    return CallbackRejected(msg, 431, title="Request too large")


class HeadFilter:
    """Feeds a request head through, dropping ``Cookie`` lines; enforces both size caps.

    ``feed(data)`` returns the bytes to hand to h11 (possibly empty: a line start is held back
    until it is clear whether it begins ``cookie:``). It raises :class:`CallbackRejected`
    (431) as soon as the head without cookies exceeds ``MAX_REQUEST_HEAD`` bytes, or the
    cookies ``MAX_COOKIE_BYTES``. After the blank line that ends the head it returns nothing.
    """

    __slots__ = (
        "_app_name",
        "_at_line_start",
        "_dropping",
        "_held",
        "_request_line",
        "done",
        "dropped",
        "passed",
    )

    def __init__(self, app_name: str) -> None:
        self._app_name = app_name
        #: True once the blank line that ends the head has been passed on.
        self.done = False
        self._held = b""  # the start of a line, too short to tell whether it is a cookie
        self._at_line_start = True
        self._request_line = True  # the first line is the request line, never dropped
        self._dropping = False  # inside a Cookie line (or a fold continuing one)
        #: Bytes handed on (the head as h11 sees it) and cookie bytes discarded.
        self.passed = 0
        self.dropped = 0

    def feed(self, data: bytes) -> bytes:
        if self.done:
            return b""
        if not self.passed and not self._held and data[:1] not in (b"\r", b"\n"):
            # The common case, on the accept path: the whole head in the first read, with no
            # Cookie line in it (a line starting "cookie:" always follows an LF, and the
            # request line is never one). Equal to the loop below, at a tenth of its cost.
            blank = _BLANK_LINE.search(data)
            if blank is not None and b"\ncookie:" not in data[: blank.end()].lower():
                self.passed = blank.end()
                self.done = True
                if self.passed > MAX_REQUEST_HEAD:
                    raise _too_large(cookies=False, app_name=self._app_name)
                return data[: self.passed]
        if self._held:
            data, self._held = self._held + data, b""
        out: list[bytes] = []
        size = len(data)
        i = 0
        while i < size:
            if self._at_line_start and not self._request_line:
                first = data[i]
                if first == _LF or (first == _CR and data[i + 1 : i + 2] == b"\n"):
                    end = i + (1 if first == _LF else 2)  # the blank line: the head ends
                    out.append(data[i:end])
                    self.passed += end - i
                    self.done = True
                    break
                if first == _CR and i + 1 == size:
                    self._held = data[i:]  # CR at the end: blank line or not, next time
                    break
                if first not in _FOLD:  # a fold keeps the fate of the line it continues
                    start = data[i : i + len(_COOKIE)].lower()
                    if len(start) < len(_COOKIE) and _COOKIE.startswith(start):
                        self._held = data[i:]  # "Coo" at the end: decide with more bytes
                        break
                    self._dropping = start == _COOKIE
            self._at_line_start = False
            newline = data.find(b"\n", i)
            end = size if newline < 0 else newline + 1
            if self._dropping:
                self.dropped += end - i
            else:
                out.append(data[i:end])
                self.passed += end - i
            if newline >= 0:
                self._at_line_start = True
                self._request_line = False
            i = end
        if self.passed > MAX_REQUEST_HEAD:
            raise _too_large(cookies=False, app_name=self._app_name)
        if self.dropped > MAX_COOKIE_BYTES:
            raise _too_large(cookies=True, app_name=self._app_name)
        return b"".join(out)
