"""D-Bus ExportReport(path) through the real daemon on a private bus: the report is written and
the car says where; a bad path is an InvalidArgs error naming it."""

from __future__ import annotations

from pathlib import Path

from carlinkd.events import SpeakRequest
from support.wait import eventually
from test_hmi_dbus import PrivateBus, busctl, ok, run, running_car, session_bus

__all__ = ["session_bus"]  # the fixture, shared with test_hmi_dbus


async def test_export_report_over_dbus(tmp_path: Path, session_bus: PrivateBus) -> None:
    addr = session_bus.address
    out = tmp_path / "out" / "car.html"
    async with running_car(tmp_path / "state", addr) as car:
        said = car.daemon.hub.subscribe(SpeakRequest, name="test-said")
        await ok(*busctl(addr, "call", "ExportReport", "s", str(out)))
        await eventually(out.exists, "the report file", timeout=60)
        assert "Vehicle condition report" in out.read_text(encoding="utf-8")
        assert (tmp_path / "out" / "car.bundle.json").exists()
        texts: list[str] = []

        def heard() -> bool:
            while (event := said.get_nowait()) is not None:
                texts.append(event.text)
            return any("car.html" in t for t in texts)
        await eventually(heard, "the car says where")
        assert f"Your car report is ready: car.html, in the folder {out.parent}." in texts
        code, _, err = await run(*busctl(addr, "call", "ExportReport", "s", "relative.txt"))
        assert code != 0 and "report path 'relative.txt': give an absolute FILE.html" in err
        said.close()
