"""A car condition report for a buyer: one self-contained HTML page or a PDF, with the bundle.

``gather`` (data.py) reads the signed chain, its verification and audit, trends and alerts;
``render`` (html.py) makes the page with inline SVG plots (plots.py, matplotlib) and bilingual
labels (labels.py); :func:`write_report` writes it, printing the PDF with headless Chromium
(Debian's ``chromium``), and writes the exported bundle beside it. Nothing is sent anywhere.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import subprocess
import tempfile
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import CarlinkError

if TYPE_CHECKING:
    from ..records.history import ServiceHistory

log = logging.getLogger(__name__)

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
PRINT_TIMEOUT_S = 120.0
# Without these, Chromium tries to reach Google's hosts at every start (no network here, and
# none wanted: the report stays on this machine).
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--disable-quic", "--no-pdf-header-footer")


class ReportError(CarlinkError):
    """The report could not be written."""


def bundle_path(out: Path) -> Path:
    """Where the bundle goes beside a report: ``car.html`` -> ``car.bundle.json``."""
    return out.with_name(out.stem + ".bundle.json")


def chromium() -> str:
    """The Chromium binary (ReportError naming the Debian package when there is none)."""
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    raise ReportError("a PDF report is printed by headless Chromium: apt-get install chromium "
                      "(or write FILE.html)")


def print_pdf(html: Path, pdf: Path) -> None:
    """Print an HTML file to PDF with headless Chromium."""
    with tempfile.TemporaryDirectory(prefix="carlinkd-report-") as profile:
        cmd = [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
               f"--print-to-pdf={pdf}", html.resolve().as_uri()]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=PRINT_TIMEOUT_S,
                                  check=False)
        except (OSError, subprocess.TimeoutExpired) as err:
            raise ReportError(f"{pdf}: printing with Chromium failed: {err}") from err
    if done.returncode != 0 or not pdf.exists() or pdf.stat().st_size == 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise ReportError(f"{pdf}: Chromium did not print the report ({last[:200]})")


def _write(page: str, out: Path) -> None:
    """The page as ``out``: the HTML itself, or printed to PDF."""
    if out.suffix.lower() != ".pdf":
        out.write_text(page, encoding="utf-8")
        return
    with tempfile.TemporaryDirectory(prefix="carlinkd-report-") as tmp:
        html = Path(tmp) / "report.html"
        html.write_text(page, encoding="utf-8")
        print_pdf(html, out)


async def write_report(history: ServiceHistory, out: Path, since: date | None,
                       now: float) -> list[Path]:
    """Write ``out`` (.html or .pdf) and its bundle; return the files written."""
    from .data import gather
    from .html import render

    suffix = out.suffix.lower()
    if suffix not in (".html", ".htm", ".pdf"):
        raise ReportError(f"{out}: the report is FILE.html or FILE.pdf")
    data = await gather(history, since, now)
    bundle = bundle_path(out)
    data.bundle_name = bundle.name
    page = await asyncio.to_thread(render, data)  # plotting takes a second: not on the loop
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        exported = await history.export(data.vin or None, now=now) if data.report.ok else None
        if exported is not None:
            bundle.write_text(json.dumps(exported, indent=1, ensure_ascii=False) + "\n",
                              encoding="utf-8")
        await asyncio.to_thread(_write, page, out)
    except OSError as err:
        raise ReportError(f"{out}: cannot write the report: {err.strerror}") from err
    log.info("report written to %s (%d entries)", out, data.report.count)
    return [out, bundle] if exported is not None else [out]
