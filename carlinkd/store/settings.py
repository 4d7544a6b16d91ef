"""Store configuration: database and device-key paths, batching, retention, outbox classes.

Each outbox class is its own dataclass type so that overriding one key in a file keeps the
other defaults (see carlinkd.alerts.settings for why). ``__post_init__`` raises TypeError,
which the generic merge reports as a one-line ConfigError naming file and key path.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Literal

DB_FILENAME = "carlinkd.db"
KEY_FILENAME = "device-key.pem"
MIB = 1024 * 1024


@dataclass(frozen=True)
class OutboxClass:
    """Byte cap and loss policy of one outbox class."""

    max_bytes: int = MIB
    # Lossless: a full class refuses new entries with OutboxFull. Lossy: oldest entries go first.
    lossless: bool = False
    # Entries older than this are dropped unsent (None: never expire).
    ttl_s: float | None = None

    def __post_init__(self) -> None:
        if self.max_bytes <= 0:
            raise TypeError("max_bytes must be > 0")
        if self.ttl_s is not None and self.ttl_s <= 0:
            raise TypeError("ttl_s must be > 0 (or unset)")


@dataclass(frozen=True)
class TelemetryOutbox(OutboxClass):
    """Periodic telemetry: newest matters, a day old is worthless."""

    max_bytes: int = 4 * MIB
    lossless: bool = False
    ttl_s: float | None = 86400.0


@dataclass(frozen=True)
class AlertsOutbox(OutboxClass):
    """Alert lifecycle events: the cloud must see each one."""

    max_bytes: int = MIB
    lossless: bool = True


@dataclass(frozen=True)
class ServiceOutbox(OutboxClass):
    """Service-history records and DTC reports: never lost."""

    max_bytes: int = MIB
    lossless: bool = True


@dataclass(frozen=True)
class OutboxConfig:
    """The outbox classes the sync client drains, by name."""

    telemetry: TelemetryOutbox = field(default_factory=TelemetryOutbox)
    alerts: AlertsOutbox = field(default_factory=AlertsOutbox)
    service: ServiceOutbox = field(default_factory=ServiceOutbox)

    def classes(self) -> dict[str, OutboxClass]:
        """Every class by name."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class StoreConfig:
    """Where the database and the device key live, how writes are batched, what is kept."""

    # Default: <daemon.state_dir>/carlinkd.db and <daemon.state_dir>/device-key.pem.
    path: Path | None = None
    device_key: Path | None = None
    flush_interval_s: float = 1.0
    batch_max: int = 500
    integrity_check: Literal["quick", "full"] = "quick"
    # Samples: all kept this long, then thinned to one per name and hour, deleted after keep.
    samples_full_days: float = 7.0
    samples_keep_days: float = 365.0
    # Alert and DTC logs: rows older than this, or beyond the row cap, are deleted.
    log_keep_days: float = 365.0
    log_max_rows: int = 100_000
    retention_interval_s: float = 3600.0
    outbox: OutboxConfig = field(default_factory=OutboxConfig)

    def __post_init__(self) -> None:
        if self.flush_interval_s <= 0 or self.batch_max <= 0:
            raise TypeError("flush_interval_s and batch_max must be > 0")
        if self.samples_full_days > self.samples_keep_days:
            raise TypeError("samples_full_days must not exceed samples_keep_days")

    def db_path(self, state_dir: Path) -> Path:
        """The database file."""
        return self.path if self.path is not None else state_dir / DB_FILENAME

    def key_path(self, state_dir: Path) -> Path:
        """The device's Ed25519 private key file."""
        return self.device_key if self.device_key is not None else state_dir / KEY_FILENAME
