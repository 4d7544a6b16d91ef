"""Settings of the OBD-II poller ([obd])."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

@dataclass(frozen=True)
class ObdConfig:
    """OBD-II poller (carlinkd.can.obd): addressing, request budget, per-PID rates, timeouts."""

    enabled: bool = True
    # "11bit": requests on 0x7DF / 0x7E0-0x7E7; "29bit": 0x18DB33F1 / 0x18DA<ecu>F1 (ISO 15765-4).
    addressing: Literal["11bit", "29bit"] = "11bit"
    # At most this many requests per second, all ECUs together (ISO-TP flow control not counted).
    budget_per_s: float = 10.0
    # Poll periods: fast_pids, slow_pids, every other supported PID; stored DTCs (also at ignition on).
    fast_period_s: float = 1.0
    normal_period_s: float = 10.0
    slow_period_s: float = 60.0
    dtc_period_s: float = 300.0
    fast_pids: tuple[int, ...] = (0x0C, 0x0D)
    slow_pids: tuple[int, ...] = (0x1F, 0x21, 0x2F, 0x31, 0x4D, 0x4E, 0xA6)
    # Poll only these PIDs (empty: every supported PID the codec decodes to a number).
    pids: tuple[int, ...] = ()
    # P2 (first answer), P2* (after "response pending", NRC 0x78), N_Cr (between ISO-TP frames).
    response_timeout_s: float = 0.15
    pending_timeout_s: float = 5.0
    frame_timeout_s: float = 1.0
    # Nobody answered: rediscover after backoff_initial_s, doubling up to backoff_max_s.
    backoff_initial_s: float = 5.0
    backoff_max_s: float = 300.0
    # Requests in a row without any answer before the ECUs count as gone (asleep, unplugged).
    max_misses: int = 3
    # Wait this long after start-up before the first request, so the DBC's ignition signal
    # (Vehicle.LowVoltageSystemState) can arrive first and a parked car is never woken.
    startup_delay_s: float = 1.0

    def __post_init__(self) -> None:
        periods = (self.fast_period_s, self.normal_period_s, self.slow_period_s, self.dtc_period_s)
        if not self.budget_per_s > 0 or min(periods) <= 0:
            raise TypeError("budget_per_s and every *_period_s must be > 0")
        if not 0 < self.response_timeout_s <= self.pending_timeout_s or self.frame_timeout_s <= 0:
            raise TypeError("need 0 < response_timeout_s <= pending_timeout_s and frame_timeout_s > 0")
        if not 0 < self.backoff_initial_s <= self.backoff_max_s or self.max_misses < 1:
            raise TypeError("need 0 < backoff_initial_s <= backoff_max_s and max_misses >= 1")
        if any(not 0 < pid <= 0xFF for pid in (*self.fast_pids, *self.slow_pids, *self.pids)):
            raise TypeError("PIDs must be 0x01-0xFF")
