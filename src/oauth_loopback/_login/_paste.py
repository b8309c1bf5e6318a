"""The paste fallback: the user pastes the address the browser was sent to.

For sessions where the browser cannot reach this machine's loopback (SSH, containers). The
pasted address goes through the receiver's own checks (``deliver()``), racing the real
callback: whichever arrives first wins.
"""

from __future__ import annotations

import inspect
import logging
import os
import stat
import sys
from collections.abc import Awaitable, Callable
from typing import Final

import anyio
import anyio.to_thread

from .._errors import CallbackRejected, InputEnded
from .._receiver._receiver import CallbackReceiver, PendingCallback
from .._receiver._registry import AuthorizationResponse
from .._receiver._tasks import background

logger = logging.getLogger("oauth_loopback.oauth")


#: ``read_line(prompt) -> line``: show ``prompt`` and return one line the user typed, or
#: ``None`` when the input has ended (EOF). Sync or async.
ReadLine = Callable[[str], "str | None | Awaitable[str | None]"]


PASTE_PROMPT: Final = (
    "Paste the address your browser was redirected to (it starts with {prefix}), then press Enter: "
)


class TerminalLines:
    """The default ``read_line`` of ``paste=True``: prompt on stderr, one line from stdin.

    stdin is read without blocking the event loop and without a thread: we wait until the
    descriptor is readable, then ``os.read`` what is there. A thread blocked in
    ``readline()`` would outlive the login (asyncio's worker threads are not daemons, so the
    program could not exit until the user pressed Enter). On Windows, where console handles
    cannot be polled, a worker thread is used after all.
    """

    def __init__(self) -> None:
        self._buffer = b""
        self._eof = False

    async def __call__(self, prompt: str) -> str | None:
        # paste=True asks for terminal interaction; stderr keeps stdout clean for program
        # output (``oauth-loopback login --json`` prints the token there).
        sys.stderr.write(prompt)
        sys.stderr.flush()
        try:
            fd = sys.stdin.fileno()
        except (AttributeError, OSError, ValueError):
            return None  # no usable stdin (e.g. replaced, closed): nothing will be pasted
        while b"\n" not in self._buffer and not self._eof:
            chunk = await self._read(fd)
            if chunk:
                self._buffer += chunk
            else:
                self._eof = True
        if not self._buffer:
            sys.stderr.write("\n")  # end the prompt's line: what follows starts a line
            return None
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode("utf-8", "replace")

    @staticmethod
    async def _read(fd: int) -> bytes:
        if sys.platform == "win32":  # pragma: no cover
            return await anyio.to_thread.run_sync(os.read, fd, 65536, abandon_on_cancel=True)
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # a file never blocks, and cannot be polled
            await anyio.wait_readable(fd)
        return os.read(fd, 65536)


async def _read_pasted(read_line: ReadLine, prompt: str) -> str | None:
    result = read_line(prompt)
    if inspect.isawaitable(result):
        result = await result
    if result is not None and not isinstance(result, str):
        msg = f"read_line must return a string or None, not {type(result).__name__}."
        raise TypeError(msg)
    return result


async def _paste_loop(
    receiver: CallbackReceiver,
    pending: PendingCallback,
    read_line: ReadLine,
    first_prompt: str,
    prompt_after: anyio.Event | None = None,
) -> None:
    """Ask for the pasted redirect address until one is accepted or the input ends."""
    if prompt_after is not None:
        await prompt_after.wait()
    prompt = first_prompt
    ask = PASTE_PROMPT.format(prefix=receiver.redirect_uri)
    while True:
        line = await _read_pasted(read_line, prompt)
        if line is None:
            # Nobody can paste any more: end the login now rather than at its deadline.
            logger.info("paste input ended; the login is stopped")
            pending.cancel(InputEnded())
            return
        if not line.strip():
            prompt = ask
            continue
        try:
            receiver.deliver(line)
        except CallbackRejected as exc:
            # The same checks as a real request; tell the user why and ask again.
            # The browser page's advice to start again does not fit a prompt that asks again.
            reason = exc.message.split(" Start the sign-in again")[0]
            prompt = (
                f"That address was not accepted ({exc.title.lower()}): {reason} Paste the "
                f"whole address from the browser's address bar after signing in, or press "
                f"Ctrl-C to stop.\n{ask}"
            )
            continue
        return


async def wait_for_response(
    receiver: CallbackReceiver,
    pending: PendingCallback,
    wait_seconds: float | None,
    read_line: ReadLine | None,
    first_prompt: str,
    prompt_after: anyio.Event | None = None,
) -> AuthorizationResponse:
    """The browser's callback, or a pasted address: whichever arrives first wins.

    ``prompt_after``: ask only once it is set (the browser launch returned), so the prompt
    does not race a browser that is still starting; the callback is awaited meanwhile.
    """
    if read_line is None:
        return await pending.wait(wait_seconds)
    async with background() as tg:
        tg.start_soon(_paste_loop, receiver, pending, read_line, first_prompt, prompt_after)
        return await pending.wait(wait_seconds)
