"""A long-lived receiver: an hour's worth of logins through one ``open_receiver()``.

A receiver that stays open (an MCP gateway, a desktop app's session) sees logins for as
long as it runs. 100,000 completed logins is what a busy shared receiver sees in about an
hour (28 a second); here they run back to back, ``concurrency`` at a time, through real
HTTP callbacks on fresh connections. The mix, by login number:

* 90 %: the browser brings a code; ``wait()`` must return exactly that code (page 200);
* 4 %: ``error=access_denied``; ``wait()`` raises :class:`AuthorizationDenied` (page 400);
* 3 %: the code arrives, then the browser reloads the page: the second callback gets 400
  ("already received") and changes nothing;
* 3 %: abandoned: ``expect()`` then ``cancel()``, no callback ever comes.

Every login leaves its state in the registry's finished-state memory (capped at 1,024
entries in ``_receiver/_registry.py``), which is what could grow without bound.

tracemalloc makes each login about 3.4 times slower, so it traces two windows rather than all
100,000: the ``window`` logins right after the warm-up (which fills the finished-state memory)
and the last ``window``. Within a window the traced memory is what was allocated there and is
still referenced; once the finished-state memory has turned over (1,024 logins) it stays flat
but for older, untraced objects being replaced by traced ones, so its growth per login from
there on (``retained_bytes_per_login``) is an upper bound of what each login leaves behind.
``sys.getallocatedblocks()`` (the whole process, no tracing) is read throughout, and compared
at the same point of the two windows. The cyclic GC runs as usual and is collected
before each reading, so only what is still referenced is counted.
"""

from __future__ import annotations

import gc
import sys
import tracemalloc
from typing import TypedDict

import anyio

from oauth_loopback import AuthorizationDenied, CallbackReceiver, open_receiver

from ._client import callback_request, code_for, connect_and_send, read_all, status_of
from ._stats import ns

# Out of every 100 logins, by ``number % 100``.
_DENIED = range(90, 94)
_RELOADED = range(94, 97)
_ABANDONED = range(97, 100)
# The finished-state memory of one receiver (``_registry._FINISHED_MEMORY``).
FINISHED_CAP = 1024


class Checkpoint(TypedDict):
    """One reading, taken after ``completed`` logins (counted from the end of the warm-up)."""

    completed: int
    #: tracemalloc's traced bytes, inside a traced window; None between the windows.
    traced_bytes: int | None
    allocated_blocks: int
    finished_states: int
    pending: int


class LongLivedFigures(TypedDict):
    """An hour of logins through one receiver (see the module docstring)."""

    completed: int
    abandoned: int
    reloaded: int
    concurrency: int
    warmup: int
    window: int
    seconds: float
    logins_per_second: float
    wrong: int
    first_window: list[Checkpoint]
    between: list[Checkpoint]
    last_window: list[Checkpoint]
    #: Traced bytes at the end of each window (the same state, 0 bytes apart when bounded).
    first_window_bytes: int
    last_window_bytes: int
    #: Growth inside the last window after the finished-state memory turned over, per login
    #: (least-squares slope of the traced bytes over the readings taken in flight).
    retained_bytes_per_login: float
    #: sys.getallocatedblocks() growth between the same points of the first and the last
    #: window, per login in between.
    retained_blocks_per_login: float
    finished_states_max: int


class _Run:
    def __init__(
        self, receiver: CallbackReceiver, total: int, marks: list[int], base: int = 0
    ) -> None:
        self.receiver = receiver
        self.total = total
        self.base = base
        self.next = base * 2  # login numbers go on across phases (distinct codes)
        self.started = 0
        self.completed = 0
        self.abandoned = 0
        self.reloaded = 0
        self.wrong = 0
        self.finished_max = 0
        self.marks = marks
        self.checkpoints: list[Checkpoint] = []

    def read(self) -> None:
        """A reading, taken synchronously: no other task runs meanwhile."""
        gc.collect()
        registry = self.receiver._registry
        self.checkpoints.append(
            Checkpoint(
                completed=self.base + self.completed,
                traced_bytes=tracemalloc.get_traced_memory()[0]
                if tracemalloc.is_tracing()
                else None,
                allocated_blocks=sys.getallocatedblocks(),
                finished_states=len(registry._finished),
                pending=len(registry),
            )
        )

    async def worker(self) -> None:
        receiver = self.receiver
        port, path = receiver.port, receiver.config.path
        registry = receiver._registry
        while self.started < self.total:
            number = self.next
            self.next += 1
            kind = number % 100
            if kind in _ABANDONED:
                receiver.expect().cancel()
                self.abandoned += 1
                continue
            self.started += 1
            pending = receiver.expect()
            if kind in _DENIED:
                query = f"error=access_denied&state={pending.state}"
            else:
                query = f"code={code_for(number)}&state={pending.state}"
            request = callback_request(port, path, query)
            # Sent before wait() parks (loopback: the kernel completes it); the receiver reads
            # it once the loop runs, so the login is waiting when its callback is handled.
            with connect_and_send(port, request) as sock:
                try:
                    response = await pending.wait(timeout=30)
                except AuthorizationDenied:
                    good = kind in _DENIED
                else:
                    good = kind not in _DENIED and response.code == code_for(number)
                page = await read_all(sock)
            if not good or status_of(page) != (400 if kind in _DENIED else 200):
                self.wrong += 1
            if kind in _RELOADED:
                with connect_and_send(port, request) as sock:
                    again = await read_all(sock)
                if status_of(again) != 400:
                    self.wrong += 1
                self.reloaded += 1
            self.completed += 1
            self.finished_max = max(self.finished_max, len(registry._finished))
            while self.marks and self.completed >= self.marks[0]:
                self.marks.pop(0)
                self.read()


async def _phase(
    receiver: CallbackReceiver,
    logins: int,
    concurrency: int,
    marks: list[int],
    base: int,
    *,
    traced: bool,
) -> _Run:
    run = _Run(receiver, logins, marks, base)
    gc.collect()
    if traced:
        tracemalloc.start()
    try:
        async with anyio.create_task_group() as tg:
            for _ in range(concurrency):
                tg.start_soon(run.worker)
        run.read()
    finally:
        if traced:
            tracemalloc.stop()
    if run.wrong:
        raise RuntimeError(f"{run.wrong} of {logins} logins went wrong")
    return run


async def long_lived(
    total: int,
    *,
    window: int = 6000,
    step: int = 1000,
    concurrency: int = 16,
    warmup: int = 1500,
) -> LongLivedFigures:
    """``total`` completed logins through one receiver, after ``warmup`` more.

    Each traced window is read every ``step`` logins; the readings from ``FINISHED_CAP``
    logins into the window on (at least two) give the slope. ``total`` must be at least
    twice ``window``.
    """
    marks = list(range(step, window, step))
    if total < 2 * window or warmup <= FINISHED_CAP or sum(m >= FINISHED_CAP for m in marks) < 2:
        msg = "long_lived() needs total >= 2 * window, warmup > 1024, two readings past 1024"
        raise ValueError(msg)
    middle_logins = total - 2 * window
    middle_marks = [middle_logins * k // 4 for k in range(1, 4) if middle_logins * k // 4]
    async with open_receiver() as receiver:
        await _phase(receiver, warmup, concurrency, [], 0, traced=False)
        t0 = ns()
        first = await _phase(receiver, window, concurrency, list(marks), 0, traced=True)
        middle = await _phase(
            receiver, middle_logins, concurrency, middle_marks, window, traced=False
        )
        last = await _phase(receiver, window, concurrency, list(marks), total - window, traced=True)
        seconds = (ns() - t0) / 1e9
    runs = (first, middle, last)
    completed = sum(r.completed for r in runs)
    abandoned = sum(r.abandoned for r in runs)
    # The readings in flight past the turnover of the finished-state memory (the last one is
    # taken with nothing in flight): least-squares slope.
    start = total - window
    settled = [c for c in last.checkpoints[:-1] if c["completed"] - start >= FINISHED_CAP]
    # Blocks (all of the process, untraced) at the same point of the first and last window.
    same = marks.index(next(m for m in marks if m >= FINISHED_CAP))
    blocks_from, blocks_to = first.checkpoints[same], last.checkpoints[same]
    return LongLivedFigures(
        completed=completed,
        abandoned=abandoned,
        reloaded=sum(r.reloaded for r in runs),
        concurrency=concurrency,
        warmup=warmup,
        window=window,
        seconds=seconds,
        logins_per_second=(completed + abandoned) / seconds if seconds else 0.0,
        wrong=sum(r.wrong for r in runs),
        first_window=first.checkpoints,
        between=middle.checkpoints,
        last_window=last.checkpoints,
        first_window_bytes=first.checkpoints[-1]["traced_bytes"] or 0,
        last_window_bytes=last.checkpoints[-1]["traced_bytes"] or 0,
        retained_bytes_per_login=_slope(
            [c["completed"] for c in settled], [c["traced_bytes"] or 0 for c in settled]
        ),
        retained_blocks_per_login=(blocks_to["allocated_blocks"] - blocks_from["allocated_blocks"])
        / max(1, blocks_to["completed"] - blocks_from["completed"]),
        finished_states_max=max(r.finished_max for r in runs),
    )


def _slope(xs: list[int], ys: list[int]) -> float:
    """Least-squares slope of ys over xs (0 with fewer than two points)."""
    n = len(xs)
    if n < 2:
        return 0.0
    mx, my = sum(xs) / n, sum(ys) / n
    var = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var if var else 0.0
