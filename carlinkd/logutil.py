"""Logging helpers: rate-limited warnings and the process-wide setup used by main()."""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Hashable
from typing import Any


class RateLimitedLogger:
    """Logs a message per key at most once per interval, counting what it suppressed."""

    def __init__(self, logger: logging.Logger, interval: float = 10.0) -> None:
        self.logger = logger
        self.interval = interval
        self._last: dict[Hashable, float] = {}
        self._suppressed: dict[Hashable, int] = {}

    def log(self, level: int, key: Hashable, msg: str, *args: Any) -> bool:
        """Log unless the same key was logged within the interval; return whether it was."""
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return False
        self._last[key] = now
        skipped = self._suppressed.pop(key, 0)
        if skipped:
            msg += " (%d similar suppressed)"
            args = (*args, skipped)
        self.logger.log(level, msg, *args)
        return True

    def warning(self, key: Hashable, msg: str, *args: Any) -> bool:
        """Rate-limited warning."""
        return self.log(logging.WARNING, key, msg, *args)


class _JournalFormatter(logging.Formatter):
    """Prefixes each line with its syslog priority (``<4>``) so journald keeps levels."""

    PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3,
                logging.CRITICAL: 2}

    def format(self, record: logging.LogRecord) -> str:
        prio = self.PRIORITY.get(record.levelno, 6)
        return f"<{prio}>" + super().format(record)


def setup_logging(level: str = "info") -> None:
    """Configure the root logger for the process (called only from main())."""
    handler = logging.StreamHandler(sys.stderr)
    if os.environ.get("JOURNAL_STREAM"):
        handler.setFormatter(_JournalFormatter("%(name)s: %(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # python-can logs every failed socketcand connect attempt and traceback; we report
    # bus state changes ourselves, once each.
    logging.getLogger("can.interfaces.socketcand").setLevel(logging.CRITICAL)
