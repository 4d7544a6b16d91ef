"""Rate-limited logging, used by both ends of the protocol (a bad peer at 100 Hz must not
flood the journal)."""

from __future__ import annotations

import logging
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
