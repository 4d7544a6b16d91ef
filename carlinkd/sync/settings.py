"""Settings of the cloud sync ([sync], docs/protocol.md)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

@dataclass(frozen=True)
class SyncConfig:
    """Cloud sync (docs/protocol.md): where, who we are, and how hard to try. No url = offline."""

    # ws://host:port/ or wss://host:port/; unset keeps the daemon offline (outbox still fills).
    url: str | None = None
    # Device token sent as "Authorization: Bearer <token>"; token_file is read at start-up.
    token: str | None = None
    token_file: Path | None = None
    # TLS: verification stays on unless verify_tls = false; ca_file replaces the system CAs.
    verify_tls: bool = True
    ca_file: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    # Outbox and inbound log database; default <daemon.state_dir>/sync.db.
    db: Path | None = None
    # Reconnect backoff: first delay, growth factor, cap, and the connected time after which a
    # connection counts as healthy and the backoff starts again from the first delay.
    backoff_initial_s: float = 1.0
    backoff_factor: float = 2.0
    backoff_max_s: float = 300.0
    healthy_after_s: float = 30.0
    # After the cloud refused our token/certificate, or speaks another protocol version.
    auth_retry_s: float = 900.0
    version_retry_s: float = 3600.0
    # Unacknowledged upstream items in flight; also advertised for downstream items.
    window: int = 64
    # websockets limits: largest incoming message, frames buffered, write-buffer high-water mark.
    max_size: int = 1024 * 1024
    max_queue: int = 16
    write_limit: int = 64 * 1024
    ping_interval_s: float = 20.0
    ping_timeout_s: float = 20.0
    open_timeout_s: float = 10.0
    # Clean shutdown waits this long for queued items to be acknowledged.
    flush_timeout_s: float = 5.0
    # How often the car's latest status snapshot is queued (coalesced per key).
    status_interval_s: float = 60.0
    # What leaves the car about where it is (README "What leaves the car"): "off" never,
    # "help" only in a help request the driver confirmed and then in status items for
    # help_share_s, "always" in every status item.
    location: Literal["off", "help", "always"] = "help"
    help_share_s: float = 1800.0

    def __post_init__(self) -> None:
        if self.url is not None and not self.url.startswith(("ws://", "wss://")):
            raise TypeError("url must start with ws:// or wss://")
        if self.window <= 0 or self.max_size <= 0 or self.max_queue <= 0:
            raise TypeError("window, max_size and max_queue must be > 0")
        if not 0 < self.backoff_initial_s <= self.backoff_max_s or self.backoff_factor < 1:
            raise TypeError("need 0 < backoff_initial_s <= backoff_max_s and backoff_factor >= 1")
        if self.ping_interval_s >= 30:
            raise TypeError("ping_interval_s must be < 30 (NAT and carrier idle timeouts)")
        if not 0 <= self.help_share_s <= 86400:
            raise TypeError("help_share_s must be between 0 and 86400 seconds")

    def db_path(self, state_dir: Path) -> Path:
        """The sync database file."""
        return self.db if self.db is not None else state_dir / "sync.db"


@dataclass(frozen=True)
class SocialConfig:
    """[social]: helping other drivers. A helper shares only a coarse ~5 km cell for matching;
    "I can help others" / "stop offering help" (or D-Bus SetHelper) change it at run time, and
    that choice is kept in the sync database (it wins over this default after a restart)."""

    helper: bool = False
