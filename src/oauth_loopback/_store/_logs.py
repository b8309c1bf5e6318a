"""The loggers of the stored-token path, which import :mod:`logging` only when it can matter.

Reading a valid stored token is the whole of a short process (``oauth-loopback token``,
``sync.get_token()``), and :mod:`logging` (with threading, traceback and string) is one of its
slowest imports. A DEBUG or INFO record of a process that has not imported logging goes
nowhere: nobody can have configured a handler or a level, and logging's last-resort handler
shows WARNING and above only. So :class:`LazyLogger` drops ``debug`` and ``info`` until
something has imported logging (the application, to configure it; pytest's ``caplog``), and
from then on passes them to ``logging.getLogger(name)`` as they are, naming the caller's line.
Only ``debug`` and ``info`` exist: a warning must always be shown, so it belongs to a real
``logging.getLogger``.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import logging

__all__ = ["LazyLogger"]


class LazyLogger:
    """``logging.getLogger(name)`` for ``debug`` and ``info``, imported when it can matter."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<LazyLogger {self.name}>"

    def _logger(self) -> logging.Logger | None:
        module = sys.modules.get("logging")
        if module is None:
            return None  # never imported: nothing is configured to receive the record
        logger: logging.Logger = module.getLogger(self.name)
        return logger

    def debug(self, msg: str, *args: object) -> None:
        logger = self._logger()
        if logger is not None:
            logger.debug(msg, *args, stacklevel=2)

    def info(self, msg: str, *args: object) -> None:
        logger = self._logger()
        if logger is not None:
            logger.info(msg, *args, stacklevel=2)
