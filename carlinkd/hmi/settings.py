"""Settings of the head-unit D-Bus API ([hmi])."""

from __future__ import annotations

from dataclasses import dataclass

@dataclass(frozen=True)
class HmiConfig:
    """Head-unit D-Bus API (carlinkd.hmi): which bus, and how often SignalsChanged may fire."""

    enabled: bool = True
    # "system", "session", or a D-Bus address such as "unix:path=/run/hmi/bus".
    bus: str = "system"
    # At most one SignalsChanged per interval; values changing in between are coalesced.
    signals_interval_s: float = 0.5

    def __post_init__(self) -> None:
        if self.bus not in ("system", "session") and ":" not in self.bus:
            raise TypeError(f"bus must be 'system', 'session' or a D-Bus address, got {self.bus!r}")
        if not self.signals_interval_s > 0:
            raise TypeError("signals_interval_s must be > 0")
