"""One helper for the task groups of this package: background tasks, errors unwrapped.

anyio task groups wrap what escapes them in an ``ExceptionGroup``; our public functions must
raise their typed errors as themselves (users write ``except AuthorizationDenied:``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import anyio

if TYPE_CHECKING:
    from anyio.abc import TaskGroup

__all__ = ["background"]


@asynccontextmanager
async def background() -> AsyncIterator[TaskGroup]:
    """A task group for tasks that serve the block and end with it.

    Leaving the block, normally or by an exception, cancels the tasks; the block's own
    exception is re-raised as itself, outside the task group, never in an ExceptionGroup.
    """
    failure: BaseException | None = None
    async with anyio.create_task_group() as tg:
        try:
            yield tg
        except BaseException as exc:  # noqa: BLE001  (re-raised below, never swallowed)
            failure = exc
        finally:
            tg.cancel_scope.cancel()
    if failure is not None:
        try:
            raise failure
        finally:
            failure = None  # no reference cycle through the traceback
