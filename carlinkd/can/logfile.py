"""Reading CAN log files, and decoding them to JSON Lines (``carlinkd decode``)."""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import can
import orjson

from ..errors import LogFileError
from .decode import EXTENDED_FLAG, MessagePlan, compile_database, select_all

log = logging.getLogger(__name__)


@dataclass
class DecodeSummary:
    """Counts for the one-line summary ``carlinkd decode`` prints on stderr."""

    read: int = 0
    decoded: int = 0
    unknown_id: int = 0
    malformed: int = 0
    error_frames: int = 0
    remote_frames: int = 0
    bad_lines: int = 0
    notes: list[str] = field(default_factory=list)

    def line(self, source: str) -> str:
        """The summary as one line."""
        text = (f"{source}: {self.read} frames read, {self.decoded} decoded, "
                f"{self.unknown_id} unknown-ID, {self.malformed} malformed")
        extra = [f"{n} {what}" for n, what in ((self.error_frames, "error frames"),
                                               (self.remote_frames, "remote frames"),
                                               (self.bad_lines, "unparsable lines")) if n]
        return text + "".join(f", {e}" for e in extra) + "".join(f"; {n}" for n in self.notes)


def parse_candump_line(line: str) -> can.Message | None:
    """Parse one ``candump -L`` line (``(ts) iface ID#DATA``, ``ID##FDATA``, ``ID#R``)."""
    parts = line.split()
    if len(parts) < 3 or not (parts[0].startswith("(") and parts[0].endswith(")")):
        raise ValueError("expected '(timestamp) interface ID#DATA'")
    timestamp = float(parts[0][1:-1])
    ident, sep, data = parts[2].partition("#")
    if not sep or not ident:
        raise ValueError(f"no '#' in frame {parts[2]!r}")
    can_id = int(ident, 16)
    extended = len(ident) > 3
    if can_id & 0x20000000:  # CAN_ERR_FLAG in linux/can.h
        return can.Message(timestamp=timestamp, is_error_frame=True)
    kwargs: dict[str, Any] = {"timestamp": timestamp, "arbitration_id": can_id & 0x1FFFFFFF,
                              "is_extended_id": extended, "channel": parts[1]}
    if data.startswith("#"):
        kwargs["is_fd"] = True
        kwargs["bitrate_switch"] = bool(int(data[1], 16) & 1)
        data = data[2:]
    if data[:1] in ("R", "r"):
        return can.Message(is_remote_frame=True, dlc=int(data[1:] or 0), **kwargs)
    if len(data) % 2:
        raise ValueError(f"odd number of hex digits in {data!r}")
    return can.Message(data=bytes.fromhex(data), **kwargs)


def _candump_frames(stream: IO[str], summary: DecodeSummary, source: str) -> Iterator[can.Message]:
    for number, line in enumerate(stream, 1):
        if not line.strip():
            continue
        try:
            msg = parse_candump_line(line)
        except ValueError as err:
            summary.bad_lines += 1
            if summary.bad_lines <= 3:
                log.warning("%s:%d: skipped unparsable line: %s", source, number, err)
            continue
        if msg is not None:
            yield msg


def read_frames(path: str, summary: DecodeSummary) -> Iterator[can.Message]:
    """Frames from a log file in any format python-can reads; ``-`` is a candump log on stdin."""
    import sys

    if path == "-":
        yield from _candump_frames(sys.stdin, summary, "<stdin>")
        return
    p = Path(path)
    if not p.is_file():
        raise LogFileError(f"{path}: no such log file")
    if p.suffix.lower() == ".log":
        with open(p, encoding="ascii", errors="replace") as fh:
            yield from _candump_frames(fh, summary, path)
        return
    try:
        reader = can.LogReader(str(p))
    except (ValueError, OSError) as err:
        raise LogFileError(f"{path}: cannot read as a CAN log: {err}") from err
    count = 0
    try:
        for msg in reader:
            count += 1
            yield msg
    except Exception as err:  # python-can readers raise ValueError, struct.error, BLFParseException
        summary.notes.append(f"stopped at frame {count + 1}: {' '.join(str(err).split())[:120]}")
    finally:
        reader.stop()


def decode_log(db: Any, path: str, out: IO[str] | IO[bytes]) -> DecodeSummary:
    """Decode every frame of a log with ``db``, writing one JSON object per decoded frame."""
    plans = compile_database(db, select_all)
    summary = DecodeSummary()
    write = _binary_writer(out)
    batch: list[bytes] = []
    for msg in read_frames(path, summary):
        summary.read += 1
        record = _decode_one(plans, msg, summary)
        if record is not None:
            batch.append(orjson.dumps(record))
            if len(batch) >= WRITE_BATCH:
                write(b"\n".join(batch) + b"\n")
                batch.clear()
    if batch:
        write(b"\n".join(batch) + b"\n")
    return summary


WRITE_BATCH = 2048  # records joined into one write


def _binary_writer(out: IO[Any]) -> Any:
    """A bytes write function for a text or binary stream (stdout writes its buffer)."""
    buffer = getattr(out, "buffer", None)
    if buffer is not None:
        out.flush()
        return buffer.write
    if isinstance(out, io.TextIOBase):
        return lambda b: out.write(b.decode())
    return out.write


def _decode_one(plans: dict[int, MessagePlan | None], msg: can.Message,
                summary: DecodeSummary) -> dict[str, Any] | None:
    if msg.is_error_frame:
        summary.error_frames += 1
        return None
    if msg.is_remote_frame:
        summary.remote_frames += 1
        return None
    key = msg.arbitration_id | EXTENDED_FLAG if msg.is_extended_id else msg.arbitration_id
    plan = plans.get(key, _UNKNOWN)
    if plan is _UNKNOWN:
        summary.unknown_id += 1
        return None
    ts = msg.timestamp
    if not math.isfinite(ts):  # a log with a nan/inf timestamp: counted, not written
        summary.malformed += 1
        return None
    if plan is None:  # a message without signals
        summary.decoded += 1
        return _record(ts, msg, "", {})
    data = bytes(msg.data)
    if len(data) < plan.length:
        summary.malformed += 1
        return None
    if len(data) == plan.length and (plan.values_of is not None or plan.lazy) \
            and plan.ensure_fast() is not None and plan.values_of is not None:
        signals = dict(zip(plan.names, plan.values_of(data)))
    else:
        outcome = plan.extract(data)
        if outcome.error is not None:
            summary.malformed += 1
            return None
        signals = {f.name: v for f, v in outcome.values}
    summary.decoded += 1
    return _record(ts, msg, plan.name, signals)


_UNKNOWN = object()


def _record(ts: float, msg: can.Message, name: str, signals: dict[str, Any]) -> dict[str, Any]:
    # orjson writes NaN and infinity as null (JSON has neither)
    return {"timestamp": ts, "arbitration_id": msg.arbitration_id,
            "message": name, "signals": signals}
