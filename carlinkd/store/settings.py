"""Store configuration: database and device-key paths, batching, retention.

``__post_init__`` raises TypeError, which the generic merge reports as a one-line ConfigError
naming file and key path. The cloud outbox's classes and caps are in carlinkd/sync/outbox.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

DB_FILENAME = "carlinkd.db"
KEY_FILENAME = "device-key.pem"


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
