"""`carlinkd run` under a service manager: READY, STATUS, WATCHDOG and STOPPING over NOTIFY_SOCKET."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def receive_until(sock: socket.socket, predicate: object, timeout: float) -> list[str]:
    got: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            got.append(sock.recv(4096).decode())
        except TimeoutError:
            break
        if predicate(got):  # type: ignore[operator]
            break
    return got


def test_ready_watchdog_stopping_in_order(tmp_path: Path) -> None:
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    env = {**os.environ, "NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "200000",
           "CAN_INTERFACE": "virtual", "CAN_CHANNEL": f"notify-{os.getpid()}",
           "PYTHONPATH": str(ROOT), "CARLINKD_DAEMON_STATE_DIR": str(tmp_path / "state"),
           # Readiness with the D-Bus name is covered by tests/test_hmi_*.py on a private bus.
           "CARLINKD_HMI_ENABLED": "false", "CARLINKD_VOICE_ENABLED": "false"}
    proc = subprocess.Popen([sys.executable, "-m", "carlinkd", "run"], env=env,
                            stderr=subprocess.PIPE, text=True)
    try:
        first = receive_until(sock, lambda g: sum("WATCHDOG=1" in m for m in g) >= 3
                              and any("READY=1" in m for m in g), 30)
        proc.send_signal(signal.SIGTERM)
        rest = receive_until(sock, lambda g: any("STOPPING=1" in m for m in g), 15)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        sock.close()
        assert proc.stderr is not None
        proc.stderr.close()
    messages = first + rest
    ready = next(i for i, m in enumerate(messages) if "READY=1" in m)
    stopping = next(i for i, m in enumerate(messages) if "STOPPING=1" in m)
    watchdogs = [i for i, m in enumerate(messages) if "WATCHDOG=1" in m]
    assert "STATUS=running; CAN bus up" in messages[ready]
    assert f"MAINPID={proc.pid}" in messages[ready]
    assert len(watchdogs) >= 3 and ready < stopping
    assert all(i < stopping for i in watchdogs[:3])


def test_ready_waits_for_the_dbus_name(tmp_path: Path) -> None:
    """With the D-Bus API on, READY=1 comes only once org.carlinkd.Daemon1 is owned."""
    import shutil

    import pytest

    if shutil.which("dbus-daemon") is None:
        pytest.skip("dbus-daemon is not installed")
    bus = subprocess.Popen(["dbus-daemon", "--session", "--nofork", "--print-address"],
                           stdout=subprocess.PIPE, text=True)
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    proc = None
    try:
        assert bus.stdout is not None
        address = bus.stdout.readline().strip()
        env = {**os.environ, "NOTIFY_SOCKET": str(path), "CAN_INTERFACE": "virtual",
               "CAN_CHANNEL": f"notify-dbus-{os.getpid()}", "PYTHONPATH": str(ROOT),
               "CARLINKD_DAEMON_STATE_DIR": str(tmp_path / "state"),
               "CARLINKD_HMI_BUS": address, "CARLINKD_VOICE_ENABLED": "false"}
        proc = subprocess.Popen([sys.executable, "-m", "carlinkd", "run"], env=env,
                                stderr=subprocess.DEVNULL)
        got = receive_until(sock, lambda g: any("READY=1" in m for m in g), 30)
        ready = next(m for m in got if "READY=1" in m)
        assert "D-Bus name org.carlinkd.Daemon1 owned" in ready
        owner = subprocess.run(["busctl", f"--address={address}", "status",
                                "org.carlinkd.Daemon1"], capture_output=True, text=True,
                               timeout=10)
        assert f"PID={proc.pid}" in owner.stdout
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        bus.terminate()
        bus.wait(5)
        assert bus.stdout is not None
        bus.stdout.close()
        sock.close()


def test_journald_gets_syslog_priority_prefixes(tmp_path: Path) -> None:
    """Under journald (JOURNAL_STREAM set) each stderr line starts with <priority>."""
    env = {**os.environ, "JOURNAL_STREAM": "8:12345", "CAN_INTERFACE": "virtual",
           "CAN_CHANNEL": f"journal-{os.getpid()}", "PYTHONPATH": str(ROOT),
           "CARLINKD_DAEMON_STATE_DIR": str(tmp_path / "state"),
           "CARLINKD_HMI_ENABLED": "false", "CARLINKD_VOICE_ENABLED": "false"}
    proc = subprocess.Popen([sys.executable, "-m", "carlinkd", "run"], env=env,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    seen = ""
    while "carlinkd.service: carlinkd" not in seen:  # up and logging, however loaded the machine
        line = proc.stderr.readline()
        if not line:
            break  # it exited: the asserts below say how
        seen += line
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    err = seen + err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines and all(line[:3] in ("<6>", "<4>", "<3>", "<7>", "<2>") for line in lines), err
    assert any(line.startswith("<6>carlinkd.service: carlinkd") for line in lines)
    # the one-line error of a failed start gets the err priority too
    bad = subprocess.run([sys.executable, "-m", "carlinkd", "run"], capture_output=True,
                         text=True, timeout=60, env={**env, "CARLINKD_SYNC_URL": "ws://x:1/"})
    assert bad.returncode == 1 and bad.stderr.strip().splitlines()[-1].startswith("<3>carlinkd: ")
