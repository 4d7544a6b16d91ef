"""A simulated OBD-II emissions ECU: J1979 requests in, J1979 answers out, no I/O.

The simulator wraps :class:`ObdEcu` in a can-isotp transport: it calls :meth:`ObdEcu.respond`
with each reassembled request and sends back whatever bytes come out (``None``: stay silent).
Answers are built with carlinkd's own OBD encoders, so a decoder test can round-trip through here.
Like real ECUs, it stays silent on a functional request for PIDs it does not support; to a
physical request it answers 0x7F ... 0x31 (requestOutOfRange) instead (ISO 14229-1 style).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

from carlinkd.can.obd.current_data import encode_current_data_response
from carlinkd.can.obd.dtc import encode_dtc_response, normalize_dtc
from carlinkd.can.obd.errors import ObdEncodeError
from carlinkd.can.obd.pids import (
    PIDS, SUPPORTED_PID_BASES, MonitorStatus, encode_supported_bitmap, supported_bitmap_pids,
)
from carlinkd.can.obd.services import POSITIVE_RESPONSE_OFFSET, Nrc, Service, encode_negative_response
from carlinkd.can.obd.vehicle_info import (
    InfoType, encode_calibration_ids_response, encode_infotypes_supported_response, encode_vin_response,
)

PidSource = Mapping[int, float | bytes] | Callable[[], Mapping[int, float | bytes]]
"""Current PID values: a mapping, or a callable returning one (called once per request)."""

_MAX_PIDS = 6
_MONITOR_STATUS = 0x01
_BAD_LENGTH = Nrc.INCORRECT_MESSAGE_LENGTH_OR_INVALID_FORMAT


class ObdEcu:
    """One simulated ECU: supported PIDs, current values, DTC lists, VIN and calibration ids."""

    def __init__(
        self, name: str, rx_id: int, tx_id: int, supported_pids: Iterable[int], vin: str | None = None,
        values: PidSource | None = None, dtcs: Iterable[str] = (), *,
        pending_dtcs: Iterable[str] = (), permanent_dtcs: Iterable[str] = (),
        calibration_ids: Sequence[str] = (), mil_on: bool | None = None,
    ) -> None:
        """Create an ECU; ``mil_on=None`` lights the MIL exactly when stored DTCs exist."""
        self.name, self.rx_id, self.tx_id = name, rx_id, tx_id
        self._data_pids = frozenset(supported_pids) - frozenset(SUPPORTED_PID_BASES)
        self._bitmap_pids = supported_bitmap_pids(self._data_pids)
        self._values: PidSource = values if values is not None else {}
        self._vin_answer = encode_vin_response(vin) if vin is not None else None
        self._cal_answer = encode_calibration_ids_response(calibration_ids) if calibration_ids else None
        self.mil_on = mil_on
        self.stored_dtcs: list[str] = []
        self.pending_dtcs: list[str] = []
        self.permanent_dtcs: list[str] = []
        self.set_dtcs(stored=dtcs, pending=pending_dtcs, permanent=permanent_dtcs)

    @property
    def supported_pids(self) -> frozenset[int]:
        """Return every mode 01 PID this ECU answers, bitmap PIDs included."""
        return self._data_pids | self._bitmap_pids

    @property
    def infotypes(self) -> frozenset[int]:
        """Return the mode 09 InfoTypes this ECU answers besides the bitmap."""
        have = ((InfoType.VIN, self._vin_answer), (InfoType.CALIBRATION_IDS, self._cal_answer))
        return frozenset(int(t) for t, answer in have if answer is not None)

    def set_dtcs(
        self, *, stored: Iterable[str] | None = None, pending: Iterable[str] | None = None,
        permanent: Iterable[str] | None = None,
    ) -> None:
        """Replace any of the three DTC lists (codes are validated and normalised)."""
        if stored is not None:
            self.stored_dtcs = _checked_codes(stored)
        if pending is not None:
            self.pending_dtcs = _checked_codes(pending)
        if permanent is not None:
            self.permanent_dtcs = _checked_codes(permanent)

    def monitor_status(self) -> MonitorStatus:
        """Return the PID 01 record: MIL and the count of stored DTCs."""
        mil = bool(self.stored_dtcs) if self.mil_on is None else self.mil_on
        return MonitorStatus(mil_on=mil, dtc_count=len(self.stored_dtcs))

    def respond(self, request: bytes, *, functional: bool = True) -> bytes | None:
        """Return the answer payload to ``request``, or None where a real ECU would stay silent."""
        if not request:
            return None
        service = request[0]
        if service == Service.CURRENT_DATA:
            return self._current_data(request[1:], functional)
        if service in (Service.STORED_DTCS, Service.PENDING_DTCS, Service.PERMANENT_DTCS):
            return encode_dtc_response(service, self._dtc_list(service))
        if service == Service.CLEAR_DTCS:
            self.set_dtcs(stored=(), pending=())
            return bytes((Service.CLEAR_DTCS + POSITIVE_RESPONSE_OFFSET,))
        if service == Service.VEHICLE_INFO:
            return self._vehicle_info(request[1:], functional)
        return encode_negative_response(service, Nrc.SERVICE_NOT_SUPPORTED)

    def _dtc_list(self, service: int) -> list[str]:
        if service == Service.STORED_DTCS:
            return self.stored_dtcs
        return self.pending_dtcs if service == Service.PENDING_DTCS else self.permanent_dtcs

    def _current_data(self, pids: bytes, functional: bool) -> bytes | None:
        if not 1 <= len(pids) <= _MAX_PIDS:
            return _refuse(Service.CURRENT_DATA, _BAD_LENGTH, functional)
        snapshot = self._values() if callable(self._values) else self._values
        encoded = ((pid, self._pid_data(pid, snapshot)) for pid in dict.fromkeys(pids))
        items = [(pid, data) for pid, data in encoded if data is not None]
        if not items:
            return _refuse(Service.CURRENT_DATA, Nrc.REQUEST_OUT_OF_RANGE, functional)
        return encode_current_data_response(items)

    def _pid_data(self, pid: int, snapshot: Mapping[int, float | bytes]) -> bytes | None:
        """Encode one PID's current value; None when unsupported or (momentarily) without a value."""
        if pid in self._bitmap_pids:
            return encode_supported_bitmap(pid, self.supported_pids)
        if pid not in self._data_pids:
            return None
        if pid == _MONITOR_STATUS:
            return self.monitor_status().encode()
        value = snapshot.get(pid)
        spec = PIDS.get(pid)
        if value is None:
            return None
        if spec is not None:
            return spec.encode(value, clamp=True)
        if isinstance(value, bytes):
            return value
        raise ObdEncodeError(f"{self.name}: PID 0x{pid:02X} is not in the table, give raw bytes")

    def _vehicle_info(self, infotypes: bytes, functional: bool) -> bytes | None:
        if len(infotypes) != 1:
            return _refuse(Service.VEHICLE_INFO, _BAD_LENGTH, functional)
        infotype = infotypes[0]
        if infotype == InfoType.SUPPORTED_01_20:
            return encode_infotypes_supported_response(infotype, self.infotypes)
        answers: dict[int, bytes | None] = {
            InfoType.VIN: self._vin_answer, InfoType.CALIBRATION_IDS: self._cal_answer,
        }
        answer = answers.get(infotype)
        if answer is None:
            return _refuse(Service.VEHICLE_INFO, Nrc.REQUEST_OUT_OF_RANGE, functional)
        return answer


def _checked_codes(codes: Iterable[str]) -> list[str]:
    checked = [normalize_dtc(code) for code in codes]
    encode_dtc_response(Service.STORED_DTCS, checked)  # raises on P0000 or more than 255 codes
    return checked


def _refuse(service: int, nrc: int, functional: bool) -> bytes | None:
    """Negative answer to a physical request; silence to a functional one (J1979 / ISO 14229-1)."""
    return None if functional else encode_negative_response(service, nrc)
