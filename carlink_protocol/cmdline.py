"""What every carlink command line shares: argparse without SystemExit, one-line errors."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence


def parse(parser: argparse.ArgumentParser,
          argv: Sequence[str] | None) -> argparse.Namespace | int:
    """Parse ``argv`` (None: ``sys.argv[1:]``); an exit code instead where argparse would exit
    (``--help``: 0, a usage error: 2, already printed)."""
    try:
        return parser.parse_args(sys.argv[1:] if argv is None else list(argv))
    except SystemExit as exc:
        return int(exc.code or 0)


def error_line(text: str) -> None:
    """The one-line error on stderr (whitespace folded); with the err priority prefix ``<3>``
    when journald reads the stream."""
    prefix = "<3>" if os.environ.get("JOURNAL_STREAM") else ""
    print(prefix + " ".join(text.split()), file=sys.stderr)
