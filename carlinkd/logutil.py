"""Logging helpers: rate-limited warnings and the process-wide setup used by main()."""

from __future__ import annotations

import logging
import os
import sys

from carlink_protocol.ratelog import RateLimitedLogger as RateLimitedLogger


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
