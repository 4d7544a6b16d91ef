"""The daemon's whole configuration: process-wide settings, the hub, and each feature's
settings from its own package (``carlinkd/<feature>/settings.py``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from .alerts.settings import AlertsConfig
from .can.obd.settings import ObdConfig
from .can.settings import CanConfig, DecodeConfig
from .hmi.settings import HmiConfig
from .store.settings import StoreConfig
from .sync.settings import SocialConfig, SyncConfig
from .voice.settings import VoiceConfig

LogLevel = Literal["debug", "info", "warning", "error"]

@dataclass(frozen=True)
class HubConfig:
    """Event hub sizing."""

    queue_size: int = 1000


@dataclass(frozen=True)
class DaemonConfig:
    """Process-wide settings."""

    state_dir: Path = Path("/var/lib/carlinkd")
    log_level: LogLevel = "info"


@dataclass(frozen=True)
class Config:
    """The whole effective configuration."""

    daemon: DaemonConfig = field(default_factory=DaemonConfig)
    can: CanConfig = field(default_factory=CanConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    hub: HubConfig = field(default_factory=HubConfig)
    alerts: AlertsConfig = field(default_factory=AlertsConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    voice: VoiceConfig = field(default_factory=VoiceConfig)
    sync: SyncConfig = field(default_factory=SyncConfig)
    obd: ObdConfig = field(default_factory=ObdConfig)
    hmi: HmiConfig = field(default_factory=HmiConfig)
    social: SocialConfig = field(default_factory=SocialConfig)
