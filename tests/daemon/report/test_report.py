"""The condition report of a simulated car after a scripted year, checked in a real browser.

Headless Chromium (Debian's chromium) takes a screenshot of the HTML and prints the PDF;
poppler-utils' pdftoppm renders its pages and pdftotext reads back what Chromium laid out.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from typing import Any

import pytest

from carlink_protocol.audit import ROLLBACK
from carlinkd.cli import main
from carlinkd.records.history import read_bundle, verify_bundle
from carlinkd.report import CHROMIUM_FLAGS, chromium
from carlink_sim import life

pytestmark = pytest.mark.skipif(shutil.which("chromium") is None or
                                shutil.which("pdftoppm") is None,
                                reason="needs Debian's chromium and poppler-utils "
                                "(system-packages.txt)")

KEY_TEXTS = (life.VIN, "Demo Garage", "owner-entered", "P0171", ROLLBACK, "车况报告",
             "Vehicle condition report", "Tyre pressures", "still set")


@pytest.fixture(scope="module")
def car(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A state directory after the scripted year, and a config file pointing at it."""
    import asyncio

    root = tmp_path_factory.mktemp("car")
    played = asyncio.run(life.play(root / "state"))
    conf = root / "carlinkd.toml"
    conf.write_text(f'[daemon]\nstate_dir = "{root / "state"}"\n')
    return {"root": root, "conf": conf, "life": played}


def test_html_report_has_plots_signers_faults_and_the_rollback(car: dict[str, Any],
                                                                capsys: Any) -> None:
    out = car["root"] / "car.html"
    assert main(["--config", str(car["conf"]), "report", "--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    page = out.read_text(encoding="utf-8")
    for text in KEY_TEXTS:
        assert text in page, text
    # self-contained: three inline plots, no script, nothing loaded from elsewhere
    assert page.count("<svg") == 3 and "<script" not in page
    assert re.search(r'(src|href)\s*=\s*"(?!#)', page) is None
    assert page.count("shop-signed") >= 2
    # rollback named in the summary, with both readings
    assert f"reads {life.ROLLBACK_TO_KM} km after record" in page
    bundle = read_bundle(car["root"] / "car.bundle.json")
    report = verify_bundle(bundle, registry_key=car["life"].registry_fingerprint)
    assert report.ok and report.names() == [ROLLBACK]


def test_since_leaves_out_older_history(car: dict[str, Any]) -> None:
    out = car["root"] / "recent.html"
    assert main(["--config", str(car["conf"]), "report", "--out", str(out),
                 "--since", "2025-06-01"]) == 0
    page = out.read_text(encoding="utf-8")
    assert "P0171" not in page and "5W-30" not in page and "DOT 4" in page
    assert "from</" not in page and "2025-06-01" in page


def test_screenshot_in_headless_chromium(car: dict[str, Any]) -> None:
    html = car["root"] / "car.html"
    if not html.exists():
        assert main(["--config", str(car["conf"]), "report", "--out", str(html)]) == 0
    shot = car["root"] / "car.png"
    subprocess.run([chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={car['root'] / 'profile'}",
                    f"--screenshot={shot}", "--window-size=1000,2600", "--hide-scrollbars",
                    html.as_uri()], check=True, capture_output=True, timeout=120)
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 100_000  # text and three plots
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert (width, height) == (1000, 2600)


def test_pdf_report_pages_render_and_carry_the_texts(car: dict[str, Any]) -> None:
    pdf = car["root"] / "car.pdf"
    assert main(["--config", str(car["conf"]), "report", "--out", str(pdf)]) == 0
    assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 30_000
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], check=True,
                          capture_output=True, text=True, timeout=60).stdout
    for key in KEY_TEXTS:
        assert key in text, key
    subprocess.run(["pdftoppm", "-r", "40", "-png", str(pdf), str(car["root"] / "page")],
                   check=True, timeout=60)
    pages = sorted(car["root"].glob("page-*.png"))
    assert len(pages) >= 2 and all(p.stat().st_size > 5_000 for p in pages)
    assert json.loads((car["root"] / "car.bundle.json").read_text())["vin"] == life.VIN
