"""systemd service notifications (sd_notify protocol) and a watchdog fed from the event loop.

No libsystemd dependency: the protocol is a datagram of ``KEY=VALUE`` lines sent to the
``AF_UNIX`` socket named by ``$NOTIFY_SOCKET`` (a leading ``@`` means the abstract namespace).
See sd_notify(3). Outside systemd every call is a no-op.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger(__name__)


class Notifier:
    """Sends READY/STATUS/STOPPING/WATCHDOG messages to the service manager, if there is one."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.address = env.get("NOTIFY_SOCKET") or None
        self.watchdog_interval = _watchdog_interval(env)
        self._sock: socket.socket | None = None
        if self.address is not None:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    @property
    def enabled(self) -> bool:
        """Whether a service manager listens."""
        return self._sock is not None

    def notify(self, **fields: str | int) -> bool:
        """Send one notification, e.g. ``notify(READY=1, STATUS="bus up")``; never raises."""
        if self._sock is None or self.address is None:
            return False
        text = "\n".join(f"{k}={_one_line(str(v))}" for k, v in fields.items())
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            self._sock.sendto(text.encode(), target)
        except OSError as err:
            log.warning("cannot notify the service manager at %s: %s", self.address, err)
            return False
        return True

    def ready(self, status: str) -> None:
        """READY=1 with a status line."""
        self.notify(READY=1, STATUS=status, MAINPID=os.getpid())

    def status(self, text: str) -> None:
        """A STATUS= line, shown by ``systemctl status``."""
        self.notify(STATUS=text)

    def stopping(self, status: str = "stopping") -> None:
        """STOPPING=1 at the start of a graceful shutdown."""
        self.notify(STOPPING=1, STATUS=status)

    async def feed_watchdog(self) -> None:
        """Send WATCHDOG=1 at half the configured interval, from the event loop itself, so a
        loop that stops running stops feeding it and systemd restarts the service."""
        if self.watchdog_interval is None or not self.enabled:
            return
        period = self.watchdog_interval / 2
        while True:
            self.notify(WATCHDOG=1)
            await asyncio.sleep(period)

    def close(self) -> None:
        """Close the socket."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _watchdog_interval(env: Mapping[str, str]) -> float | None:
    usec = env.get("WATCHDOG_USEC")
    pid = env.get("WATCHDOG_PID")
    if not usec or (pid and pid.isdigit() and int(pid) != os.getpid()):
        return None
    try:
        value = int(usec)
    except ValueError:
        log.warning("ignoring WATCHDOG_USEC=%r: not an integer", usec)
        return None
    return value / 1e6 if value > 0 else None


def _one_line(text: str) -> str:
    return " ".join(text.split())
