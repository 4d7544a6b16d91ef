"""The report in the running daemon: the ``export_report`` hub command (voice "prepare a report of
my car", D-Bus ``ExportReport(path)``) writes it and says where."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, UTC
from pathlib import Path
from typing import TYPE_CHECKING

from ..aio import cancel_all
from ..errors import CarlinkError
from ..events import Command, SpeakRequest

if TYPE_CHECKING:
    from ..hub import Hub, Subscription
    from ..records.history import ServiceHistory

log = logging.getLogger(__name__)

COMMAND = "export_report"


def default_path(reports_dir: Path, now: float) -> Path:
    """``<reports_dir>/car-report-YYYY-MM-DD.html``."""
    day = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d")
    return reports_dir / f"car-report-{day}.html"


def check_report_path(text: str) -> str:
    """A report path from outside (D-Bus): '' or an absolute .html/.htm/.pdf path (ValueError
    saying what is wrong)."""
    if not text:
        return ""
    if len(text) > 4096 or any(ord(c) < 32 for c in text):
        raise ValueError("the report path is too long or contains control characters")
    path = Path(text)
    if not path.is_absolute() or path.suffix.lower() not in (".html", ".htm", ".pdf"):
        raise ValueError(f"report path {text[:200]!r}: give an absolute FILE.html or FILE.pdf")
    return str(path)


def spoken_where(path: Path, lang: str) -> str:
    """What the car says when the report is written."""
    if lang == "zh":
        return f"车况报告已保存：{path.name}，在 {path.parent} 文件夹。"
    return f"Your car report is ready: {path.name}, in the folder {path.parent}."


class ReportService:
    """Writes reports on command, one at a time (they are rare and take a second or two)."""

    def __init__(self, hub: Hub, history: ServiceHistory, reports_dir: Path,
                 clock: Callable[[], float], lang: str = "en") -> None:
        self.hub, self.history, self.reports_dir = hub, history, reports_dir
        self.clock, self.lang = clock, lang
        self._lock = asyncio.Lock()
        self._sub: Subscription | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Follow ``export_report`` commands."""
        self._sub = self.hub.subscribe(Command, name="report")
        self._tasks.append(asyncio.create_task(self._consume(self._sub), name="report"))

    async def stop(self) -> None:
        """Stop following commands."""
        await cancel_all(self._tasks)
        if self._sub is not None:
            self._sub.close()

    async def export(self, path: Path | None = None) -> Path:
        """Write the report (``path``: .html or .pdf; default in the reports folder)."""
        from . import write_report

        now = self.clock()
        out = path if path is not None else default_path(self.reports_dir, now)
        async with self._lock:
            written = await write_report(self.history, out, None, now)
        return written[0]

    async def _consume(self, sub: Subscription) -> None:
        async for event in sub:
            if not isinstance(event, Command) or event.name != COMMAND:
                continue
            try:
                text = spoken_where(await self.export(_path_arg(event.args.get("path"))),
                                    self.lang)
            except CarlinkError as err:
                log.warning("report not written: %s", err)
                text = ("车况报告未能生成。" if self.lang == "zh"
                        else f"The report could not be written: {err}")
            if not self.hub.closed:
                self.hub.publish(SpeakRequest(text, "reply", self.lang))


def _path_arg(value: str | None) -> Path | None:
    return Path(value) if value else None
