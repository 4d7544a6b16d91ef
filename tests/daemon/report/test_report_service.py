"""The export_report hub command (voice, D-Bus) writes the report and says where."""

from __future__ import annotations

import asyncio
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from carlink_protocol.chain import ServiceRecord
from carlinkd.events import Command, SpeakRequest
from carlinkd.hub import Hub
from carlinkd.records.history import ServiceHistory
from carlinkd.report.service import COMMAND, ReportService
from carlinkd.store.db import Store

NOW = 1_764_000_000.0


async def test_command_writes_the_report_and_the_car_says_where(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "carlinkd.db", background=False)
    history = ServiceHistory(store, Ed25519PrivateKey.generate())
    await history.add(ServiceRecord("2025-11-20", 48_000, "Me", ("oil",)), NOW)
    hub = Hub(16)
    heard = hub.subscribe(SpeakRequest, name="test")
    svc = ReportService(hub, history, tmp_path / "reports", lambda: NOW)
    await svc.start()
    try:
        hub.publish(Command(COMMAND, {}, "voice"))
        said = await asyncio.wait_for(anext(aiter(heard)), 60)
        assert isinstance(said, SpeakRequest)
        assert said.text == ("Your car report is ready: car-report-2025-11-24.html, in the "
                             f"folder {tmp_path / 'reports'}.")
        page = (tmp_path / "reports" / "car-report-2025-11-24.html").read_text()
        assert "owner-entered" in page and "48,000" in page
        assert (tmp_path / "reports" / "car-report-2025-11-24.bundle.json").exists()
        hub.publish(Command(COMMAND, {"path": str(tmp_path / "x.txt")}, "dbus"))
        said = await asyncio.wait_for(anext(aiter(heard)), 60)
        assert isinstance(said, SpeakRequest) and "could not be written" in said.text
        assert "FILE.html or FILE.pdf" in said.text
    finally:
        await svc.stop()
        hub.close()
        await store.close()
