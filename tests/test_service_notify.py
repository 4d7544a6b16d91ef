"""`carlinkd run` under a service manager: READY, STATUS, WATCHDOG and STOPPING over NOTIFY_SOCKET."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


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
