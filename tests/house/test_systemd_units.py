"""The shipped systemd units verify, and the service's exposure stays at or below 2.0."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from carlinkd.cli import main

SYSTEMD = Path(__file__).resolve().parents[2] / "systemd"
EXPOSURE_TARGET = 2.0

pytestmark = pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                                reason="systemd-analyze is not installed")


def unit_copy(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at an executable that exists here."""
    text = (SYSTEMD / "carlinkd.service").read_text()
    text = text.replace("ExecStart=/opt/carlinkd/bin/carlinkd", f"ExecStart={sys.executable} -m carlinkd")
    unit = tmp_path / "carlinkd.service"
    unit.write_text(text)
    return unit


def test_units_verify(tmp_path: Path) -> None:
    unit = unit_copy(tmp_path)
    proc = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                          text=True, timeout=60)
    problems = [line for line in proc.stderr.splitlines() if "carlinkd" in line]
    assert proc.returncode == 0 and problems == [], proc.stderr


def test_exposure_at_or_below_target(tmp_path: Path) -> None:
    proc = subprocess.run(["systemd-analyze", "security", "--offline=true", str(unit_copy(tmp_path))],
                          capture_output=True, text=True, timeout=60)
    match = re.search(r"Overall exposure level for carlinkd\.service: (\d+\.\d+)", proc.stdout)
    assert match, proc.stdout + proc.stderr
    assert float(match.group(1)) <= EXPOSURE_TARGET, proc.stdout


def test_example_configuration_is_valid(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "check", str(SYSTEMD / "carlinkd.toml")]) == 0
    assert 'interface = "socketcan"' in capsys.readouterr().out


def test_unit_declares_notify_watchdog_and_dedicated_user() -> None:
    text = (SYSTEMD / "carlinkd.service").read_text()
    for line in ("Type=notify", "WatchdogSec=", "Restart=on-failure", "User=carlinkd",
                 "StateDirectory=carlinkd", "ConfigurationDirectory=carlinkd"):
        assert f"\n{line}" in text, line
    assert "u carlinkd" in (SYSTEMD / "carlinkd.sysusers").read_text()
