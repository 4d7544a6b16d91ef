"""``carlinkd obd ...``: decode OBD-II traffic in logs; query PIDs, DTCs and the VIN on a live bus.

Every command prints JSON Lines on stdout, one object per ECU answer::

    {"kind": "pid", "timestamp": t, "ecu": 2024, "pid": 12, "name": "engine_speed",
     "value": 1234.5, "unit": "rpm"}
    {"kind": "vin", "timestamp": t, "ecu": 2024, "vin": "..."}
    {"kind": "dtc", "timestamp": t, "ecu": 2024, "mode": 3, "codes": ["P0420"], "descriptions": [...]}

``decode`` adds a one-line summary on stderr. ``clear`` (mode 04) is the only way carlinkd ever
clears trouble codes, and it refuses to run without ``--confirm``. Wired into the main parser by
:func:`register`; :func:`run` returns an exit code and raises CarlinkError subclasses.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import IO, TYPE_CHECKING, Any

from ...errors import BusUnavailable
from ..logfile import DecodeSummary, read_frames
from .addressing import is_request_id, parse_response_id
from .codec import (
    ClearDtcsResponse, ObdResponse, current_data_requests, decode_response, request_clear_dtcs,
    request_pending_dtcs, request_permanent_dtcs, request_stored_dtcs, request_vin,
)
from .current_data import CurrentDataResponse
from .dtc import DtcResponse
from .dtc_descriptions import describe
from .errors import ObdDecodeError, ObdError, ObdRequestError, ObdTimeout
from .pids import PIDS_BY_NAME, MonitorStatus, ObdStandard
from .reassembly import Payload, Reassembler
from .services import NegativeResponse
from .vehicle_info import CalibrationIdsResponse, VinResponse

if TYPE_CHECKING:
    from ...config import Config
    from ..source import SourceState
    from .transport import Exchange, ObdTransport

BUS_UP_TIMEOUT_S = 5.0


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``obd`` and its actions to the main parser's subparsers."""
    obd: argparse.ArgumentParser = subparsers.add_parser(
        "obd", help="OBD-II: decode logs; query PIDs, trouble codes and the VIN")
    sub = obd.add_subparsers(dest="obd_command", required=True, metavar="ACTION")
    dec = sub.add_parser("decode", help="decode the OBD-II answers in a CAN log to JSON Lines")
    dec.add_argument("logfile", help="log python-can reads (.log .asc .blf .trc ...), - for "
                     "a candump log on stdin")
    live = argparse.ArgumentParser(add_help=False)
    live.add_argument("--ecu", type=_can_id, help="ask one ECU by its response id (0x7E8, "
                      "0x18DAF110); default: every ECU (functional request)")
    live.add_argument("--timeout", type=float, help="seconds to wait for answers "
                      "(default [obd] response_timeout_s)")
    live.add_argument("--addressing", choices=["11bit", "29bit"], help="default [obd] addressing")
    query = sub.add_parser("query", parents=[live], help="read mode 01 PIDs on the live bus")
    query.add_argument("pids", nargs="+", metavar="PID", type=_pid,
                       help="hex PID (0C, 0x0D) or name (engine_speed)")
    sub.add_parser("dtc", parents=[live], help="read stored, pending and permanent trouble codes")
    sub.add_parser("vin", parents=[live], help="read the VIN (mode 09)")
    clear = sub.add_parser("clear", parents=[live], help="CLEAR trouble codes, freeze frames and "
                           "readiness monitors (mode 04); needs --confirm")
    clear.add_argument("--confirm", action="store_true", required=True,
                       help="yes, clear the ECUs' emission diagnostic data")
    return obd


def _can_id(text: str) -> int:
    try:
        return int(text, 16)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a hex CAN id") from None


def _pid(text: str) -> int:
    spec = PIDS_BY_NAME.get(text.lower())
    if spec is not None:
        return spec.pid
    try:
        value = int(text, 16)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither a hex PID nor a PID name") from None
    if not 0 <= value <= 0xFF:
        raise argparse.ArgumentTypeError(f"PID {text!r} is not 00-FF")
    return value


async def run(args: argparse.Namespace, cfg: Config) -> int:
    """Execute one parsed ``obd`` command; return the exit code."""
    if args.obd_command == "decode":
        try:
            summary = decode_obd_log(args.logfile, sys.stdout)
        except BrokenPipeError:  # e.g. piped into `head`
            return 0
        print(summary.line(args.logfile), file=sys.stderr)
        return 0
    if args.obd_command == "clear" and args.confirm is not True:
        raise ObdRequestError("obd clear needs --confirm")
    obd = cfg.obd
    if args.timeout is not None:
        obd = replace(obd, response_timeout_s=args.timeout,
                      pending_timeout_s=max(obd.pending_timeout_s, args.timeout))
    if args.addressing is not None:
        obd = replace(obd, addressing=args.addressing)
    return await _live(args, replace(cfg, obd=obd), sys.stdout)


# ---- decode -----------------------------------------------------------------------------------


@dataclass
class ObdDecodeSummary:
    """Counts for the stderr summary of ``obd decode``."""

    frames: DecodeSummary = field(default_factory=DecodeSummary)
    requests: int = 0
    answers: int = 0
    records: int = 0
    undecodable: Counter[str] = field(default_factory=Counter)

    def line(self, source: str) -> str:
        """The summary as one line."""
        bad = sum(self.undecodable.values())
        why = ", ".join(f"{n} {reason}" for reason, n in sorted(self.undecodable.items()))
        text = (f"{source}: {self.frames.read} frames read, {self.requests} OBD-II requests, "
                f"{self.answers} answers decoded ({self.records} records), "
                f"{bad} could not be decoded" + (f" ({why})" if why else ""))
        return text + "".join(f"; {n}" for n in self.frames.notes)


def decode_obd_log(path: str, out: IO[str]) -> ObdDecodeSummary:
    """Reassemble and decode every OBD-II answer in a log, writing JSON Lines to ``out``."""
    summary = ObdDecodeSummary()
    reassembler = Reassembler()
    for msg in read_frames(path, summary.frames):
        summary.frames.read += 1
        if msg.is_error_frame or msg.is_remote_frame:
            continue
        can_id, extended = msg.arbitration_id, msg.is_extended_id
        if is_request_id(can_id, extended) or parse_response_id(can_id, extended) is not None:
            for payload in reassembler.feed(can_id, bytes(msg.data), msg.timestamp):
                _take(payload, summary, out)
    for payload in reassembler.flush():
        _take(payload, summary, out)
    return summary


def _take(payload: Payload, summary: ObdDecodeSummary, out: IO[str]) -> None:
    """Count a request, or decode and print an answer."""
    if parse_response_id(payload.arbitration_id) is None:
        summary.requests += payload.complete
        return
    _emit_payload(payload.arbitration_id, payload.data, payload.end_timestamp, payload.problem,
                  summary, out)


def _emit_payload(ecu: int, data: bytes, timestamp: float, problem: str | None,
                  summary: ObdDecodeSummary, out: IO[str]) -> None:
    if problem is not None:
        summary.undecodable["cut short"] += 1
        return
    try:
        answer = decode_response(data, source=ecu)
    except ObdDecodeError:
        summary.undecodable["malformed"] += 1
        return
    summary.answers += 1
    for record in answer_records(answer, ecu, timestamp):
        summary.records += 1
        out.write(json.dumps(record, allow_nan=False) + "\n")


def answer_records(answer: ObdResponse, ecu: int, timestamp: float) -> list[dict[str, Any]]:
    """The JSON objects for one decoded ECU answer."""
    base: dict[str, Any] = {"timestamp": timestamp, "ecu": ecu}
    if isinstance(answer, CurrentDataResponse):
        return [{"kind": "pid", **base, "pid": v.pid, "name": v.name, "value": _json(v.value),
                 "unit": v.unit} for v in answer.values]
    if isinstance(answer, DtcResponse):
        return [{"kind": "dtc", **base, "mode": answer.service, "codes": list(answer.codes),
                 "descriptions": [describe(c) for c in answer.codes]}]
    if isinstance(answer, VinResponse):
        return [{"kind": "vin", **base, "vin": answer.vin,
                 "check_digit_valid": answer.check_digit_valid}]
    if isinstance(answer, NegativeResponse):
        return [{"kind": "negative", **base, "mode": answer.service, "nrc": answer.nrc,
                 "nrc_name": answer.nrc_name}]
    if isinstance(answer, CalibrationIdsResponse):
        return [{"kind": "calibration_ids", **base, "ids": list(answer.ids)}]
    if isinstance(answer, ClearDtcsResponse):
        return [{"kind": "cleared", **base}]
    return [{"kind": "info", **base, "answer": type(answer).__name__}]


def _json(value: object) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, frozenset):
        return sorted(value)
    if isinstance(value, MonitorStatus):
        return {"mil_on": value.mil_on, "dtc_count": value.dtc_count}
    if isinstance(value, ObdStandard):
        return value.name
    if isinstance(value, bytes):
        return value.hex()
    return value


# ---- live commands ----------------------------------------------------------------------------


async def _live(args: argparse.Namespace, cfg: Config, out: IO[str]) -> int:
    from ..source import CanSource, check_interface
    from .transport import ObdTransport

    detail: list[str] = []

    def on_state(state: SourceState, text: str) -> None:
        detail.append(text)

    source = CanSource(cfg.can, lambda _batch: None, on_state)
    check_interface(source.kwargs)
    transport = ObdTransport(source.send, extended=cfg.obd.addressing == "29bit",
                             response_timeout=cfg.obd.response_timeout_s,
                             pending_timeout=cfg.obd.pending_timeout_s,
                             frame_timeout=cfg.obd.frame_timeout_s)
    source.add_consumer(transport.feed)
    source.start()
    try:
        await _wait_up(source, detail)
        return await _command(args, transport, out)
    finally:
        await source.stop()


async def _wait_up(source: Any, detail: list[str]) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + BUS_UP_TIMEOUT_S
    while source.state.value != "up":
        if source.state.value == "down" or loop.time() > deadline:
            why = detail[-1] if detail and detail[-1] else "timed out opening the bus"
            raise BusUnavailable(f"CAN bus not available: {why}")
        await asyncio.sleep(0.01)


async def _command(args: argparse.Namespace, transport: ObdTransport, out: IO[str]) -> int:
    target = args.ecu
    if args.obd_command == "query":
        requests = current_data_requests(args.pids)
    elif args.obd_command == "dtc":
        requests = [request_stored_dtcs(), request_pending_dtcs(), request_permanent_dtcs()]
    elif args.obd_command == "vin":
        requests = [request_vin()]
    else:
        # The one place carlinkd builds a mode 04 request: the user typed --confirm.
        request = request_clear_dtcs(confirmed=args.confirm is True)
        return _print(await transport.clear_dtcs(request, target=target), out)
    for request in requests:
        _print(await transport.request(request, target=target), out)
    return 0


def _print(exchange: Exchange, out: IO[str]) -> int:
    if not exchange.answers:
        where = f"ECU 0x{exchange.target:X}" if exchange.target is not None else "ECU"
        raise ObdTimeout(f"no {where} answered request {exchange.request.hex(' ').upper()} "
                         f"within {exchange.elapsed:.2f} s")
    stamp = _now()
    for ecu, payload in sorted(exchange.answers.items()):
        try:
            answer = decode_response(payload, request=exchange.request, source=ecu)
        except ObdError as err:
            print(f"carlinkd obd: {err}", file=sys.stderr)
            continue
        for record in answer_records(answer, ecu, stamp):
            out.write(json.dumps(record, allow_nan=False) + "\n")
    out.flush()
    return 0


def _now() -> float:
    import time

    return time.time()
