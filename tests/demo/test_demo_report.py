"""`carlinkd demo --report FILE.html`: the demo car's condition report after the run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_demo_writes_car1s_report(tmp_path: Path) -> None:
    out = tmp_path / "demo-car.html"
    proc = subprocess.run([sys.executable, "-m", "carlinkd", "--log-level", "warning", "demo",
                           "--scenario", "tire-leak", "--time-scale", "60", "--duration", "10",
                           "--no-cloud", "--report", str(out)], capture_output=True, text=True,
                          cwd=ROOT, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
    assert f"wrote {out}" in proc.stdout
    page = out.read_text(encoding="utf-8")
    assert "Vehicle condition report" in page and "车况报告" in page
    # the run's own evidence: the odometer read at ignition on, and the leak's alert
    assert "car (CAN)" in page and "Rear left tire is losing about" in page
    assert (tmp_path / "demo-car.bundle.json").exists()
