"""`carlinkd demo`: simulator, daemon and view together; signals change as the scenario plays."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_demo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "carlinkd", "--log-level", "warning", "demo",
                           *args], capture_output=True, text=True, cwd=ROOT, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_plain_view_shows_signals_changing() -> None:
    proc = run_demo("--scenario", "city-drive", "--time-scale", "20", "--duration", "7")
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if "speed=" in line]
    speeds = [int(m.group(1)) for line in lines if (m := re.search(r"speed=(\d+) km/h", line))]
    assert len(speeds) >= 2 and len(set(speeds)) >= 2, proc.stdout
    assert "CAN bus up" in proc.stdout
    assert "tyres=" in lines[-1] and "ignition=Run" in lines[-1]
    assert "Traceback" not in proc.stderr


def test_tire_leak_alert_appears_over_socketcand() -> None:
    proc = run_demo("--scenario", "tire-leak", "--time-scale", "60", "--duration", "12",
                    "--bus", "socketcand")
    assert proc.returncode == 0, proc.stderr
    assert "ALERT warning: Possible slow leak in the rear left tire" in proc.stdout, proc.stdout


def test_unknown_scenario_is_a_usage_error() -> None:
    proc = run_demo("--scenario", "moon-landing", "--duration", "1")
    assert proc.returncode == 2
    assert "invalid choice: 'moon-landing'" in proc.stderr and "Traceback" not in proc.stderr
