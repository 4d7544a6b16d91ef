"""`carlinkd doctor`: required checks fail with a fix, optional ones warn, exit code follows."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from carlinkd.cli import main


def test_doctor_reports_missing_interface_and_state_dir(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("CAN_INTERFACE", "CAN_CHANNEL", "CAN_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/can.conf
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "c.toml"
    config.write_text(f'[daemon]\nstate_dir = "{tmp_path / "missing"}"\n')
    assert main(["--config", str(config), "doctor"]) == 1
    out = capsys.readouterr().out
    assert "[FAIL] CAN interface: no usable CAN interface configured" in out
    assert f"[FAIL] state directory: {tmp_path / 'missing'} does not exist" in out
    assert "fix: create it: install -d -m 0700" in out
    assert "[ok  ] CAN databases: the demo car's DBC" in out
    assert out.rstrip().endswith("2 required check(s) failed")


def test_doctor_passes_with_virtual_bus_and_private_state_dir(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    config = tmp_path / "c.toml"
    config.write_text(f'[daemon]\nstate_dir = "{state}"\n[can]\ninterface = "virtual"\n'
                      f'channel = "doctor-{os.getpid()}"\n')
    assert main(["--config", str(config), "doctor"]) == 0
    out = capsys.readouterr().out
    assert "[ok  ] CAN interface: virtual doctor-" in out
    assert "[ok  ] state directory" in out and "mode 0700" in out
    assert "[ok  ] speech recognition: pocketsphinx: pocketsphinx" in out
    assert out.rstrip().endswith("all required checks passed")


def test_doctor_names_a_broken_dbc(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.dbc"
    bad.write_text("BO_ 1 2broken: 8 X\n")
    config = tmp_path / "c.toml"
    config.write_text(f'[can]\ninterface = "virtual"\n[decode]\ndbc = ["{bad}"]\n'
                      f'[daemon]\nstate_dir = "{tmp_path}"\n')
    assert main(["--config", str(config), "doctor"]) == 1
    assert f"[FAIL] CAN databases: {bad}: cannot load:" in capsys.readouterr().out


async def test_status_shows_outbox_depth_per_class(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    import time

    from carlinkd.sync.db import SyncDb
    from carlinkd.sync.outbox import Outbox

    db = await SyncDb.open(tmp_path / "sync.db")
    try:
        outbox = Outbox(db)
        await outbox.load()
        await outbox.put_many([("chat", "chat", {"group": "family", "text": "on my way"}, None,
                                f"c-{i}") for i in range(3)], time.time() - 30)
    finally:
        await db.close()
    config = tmp_path / "c.toml"
    config.write_text(f'[daemon]\nstate_dir = "{tmp_path}"\n')
    assert main(["--config", str(config), "status"]) == 0
    out = capsys.readouterr().out
    assert "cloud: (offline: sync.url not set)" in out
    assert "outbox chat: 3 items" in out and "oldest 3" in out


def test_doctor_checks_cloud_reachability(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    dead = closed.getsockname()[1]
    closed.close()
    try:
        for url, expected in ((f"ws://127.0.0.1:{port}/", "[ok  ] cloud: 127.0.0.1:"),
                              (f"ws://127.0.0.1:{dead}/", "[warn] cloud: 127.0.0.1:")):
            config = tmp_path / "c.toml"
            config.write_text(f'[can]\ninterface = "virtual"\n[daemon]\nstate_dir = "{tmp_path}"\n'
                              f'[sync]\nurl = "{url}"\n')
            assert main(["--config", str(config), "doctor"]) == 0  # the cloud is not required
            assert expected in capsys.readouterr().out
    finally:
        listener.close()
