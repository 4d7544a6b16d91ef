"""Reading CAN log files, and decoding them to JSON Lines (``carlinkd decode``)."""

from __future__ import annotations

import io
import itertools
import logging
import math
import re
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


DATA, ERROR, REMOTE = 0, 1, 2
Frame = tuple[float, int, bool, int, bytes]  # timestamp, id, 29-bit?, DATA/ERROR/REMOTE, payload
# Frame + channel, FD flags nibble (None: classic CAN) and the remote frame's DLC.
_Parts = tuple[float, int, bool, int, bytes, str, "int | None", int]


def _candump_parts(line: str) -> _Parts:
    """Split and check one ``candump -L`` line; ValueError/IndexError say what is wrong."""
    parts = line.split()
    if len(parts) < 3 or not (parts[0].startswith("(") and parts[0].endswith(")")):
        raise ValueError("expected '(timestamp) interface ID#DATA'")
    timestamp = float(parts[0][1:-1])
    ident, sep, data = parts[2].partition("#")
    if not sep or not ident:
        raise ValueError(f"no '#' in frame {parts[2]!r}")
    can_id = int(ident, 16)
    if can_id & 0x20000000:  # CAN_ERR_FLAG in linux/can.h
        return timestamp, 0, False, ERROR, b"", parts[1], None, 0
    fd_flags = None
    if data.startswith("#"):
        fd_flags = int(data[1], 16)
        data = data[2:]
    can_id &= 0x1FFFFFFF
    if data[:1] in ("R", "r"):
        return timestamp, can_id, len(ident) > 3, REMOTE, b"", parts[1], fd_flags, int(data[1:] or 0)
    if len(data) % 2:
        raise ValueError(f"odd number of hex digits in {data!r}")
    return timestamp, can_id, len(ident) > 3, DATA, bytes.fromhex(data), parts[1], fd_flags, 0


def parse_candump_line(line: str) -> can.Message | None:
    """Parse one ``candump -L`` line (``(ts) iface ID#DATA``, ``ID##FDATA``, ``ID#R``)."""
    timestamp, can_id, extended, kind, payload, channel, fd_flags, dlc = _candump_parts(line)
    if kind == ERROR:
        return can.Message(timestamp=timestamp, is_error_frame=True)
    kwargs: dict[str, Any] = {"timestamp": timestamp, "arbitration_id": can_id,
                              "is_extended_id": extended, "channel": channel}
    if fd_flags is not None:
        kwargs["is_fd"] = True
        kwargs["bitrate_switch"] = bool(fd_flags & 1)
    if kind == REMOTE:
        return can.Message(is_remote_frame=True, dlc=dlc, **kwargs)
    return can.Message(data=payload, **kwargs)


def candump_fields(line: str) -> Frame:
    """:func:`parse_candump_line` without building a ``can.Message`` (same checks)."""
    return _candump_parts(line)[:5]


def _candump_tuples(stream: IO[str], summary: DecodeSummary, source: str,
                    first: int = 0) -> Iterator[Frame]:
    for number, line in enumerate(stream, first + 1):
        try:
            yield candump_fields(line)
        except (ValueError, IndexError) as err:
            if not line.strip():
                continue
            summary.bad_lines += 1
            if summary.bad_lines <= 3:
                log.warning("%s:%d: skipped unparsable line: %s", source, number, err)


def read_tuples(path: str, summary: DecodeSummary) -> Iterator[Frame]:
    """:func:`read_frames` as plain tuples; candump logs are parsed without ``can.Message``."""
    import sys

    if path == "-":
        yield from _candump_tuples(sys.stdin, summary, "<stdin>")
        return
    p = Path(path)
    if p.suffix.lower() == ".log" and p.is_file():
        with open(p, encoding="ascii", errors="replace") as fh:
            yield from _candump_tuples(fh, summary, path)
        return
    for m in read_frames(path, summary):
        kind = ERROR if m.is_error_frame else REMOTE if m.is_remote_frame else DATA
        yield m.timestamp, m.arbitration_id, m.is_extended_id, kind, bytes(m.data)


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
    for frames in _frame_batches(path, summary, plans):
        summary.read += len(frames)
        for frame in frames:
            record = _decode_one(plans, frame, summary)
            if record is not None:
                batch.append(orjson.dumps(record))
        if len(batch) >= WRITE_BATCH:
            write(b"\n".join(batch) + b"\n")
            batch.clear()
    if batch:
        write(b"\n".join(batch) + b"\n")
    return summary


# A plain candump -L data frame; a block of lines that all match takes the batch path.
_CANDUMP = re.compile(r"^\((\d+(?:\.\d*)?)\) +\S+ +([0-9A-Fa-f]{3}|[0-9A-Fa-f]{8})"
                      r"#((?:[0-9A-Fa-f]{2})*)[ \t]*\r?$", re.M)


def _frame_batches(path: str, summary: DecodeSummary, plans: dict[int, Any]
                   ) -> Iterator[list[Frame]]:
    """Frames in batches; for candump text, ids no DBC knows are counted, not built."""
    p = Path(path)
    if path != "-" and not (p.suffix.lower() == ".log" and p.is_file()):
        frames = read_tuples(path, summary)
        while batch := list(itertools.islice(frames, 4096)):
            yield batch
        return
    import sys

    with (open(p, encoding="ascii", errors="replace") if path != "-" else sys.stdin) as fh:
        ids: dict[str, Any] = {}
        source, line_no = ("<stdin>" if path == "-" else path), 0
        for block in _text_blocks(fh):
            matches = _CANDUMP.findall(block)
            lines = block.count("\n")
            if len(matches) == lines:
                yield _known_frames(matches, plans, ids, summary)
            else:  # something odd in this block: line by line, with line numbers
                yield [f for f in _candump_tuples(io.StringIO(block), summary, source, line_no)]
            line_no += lines


def _known_frames(matches: list[tuple[str, str, str]], plans: dict[int, Any], ids: dict[str, Any],
                  summary: DecodeSummary) -> list[Frame]:
    """Frames of matched candump lines whose id the database knows (the rest only counted)."""
    out = []
    for stamp, ident, data in matches:
        key = ids.get(ident)
        if key is None:
            can_id = int(ident, 16)
            key = ids[ident] = -1 if can_id & 0x20000000 else can_id  # error flag: see parse
        if key == -1:
            out.append((float(stamp), 0, False, ERROR, b""))
            continue
        extended = len(ident) > 3
        if (key | EXTENDED_FLAG if extended else key) not in plans:
            summary.unknown_id += 1
            summary.read += 1  # read, though never built
            continue
        out.append((float(stamp), key, extended, DATA, bytes.fromhex(data)))
    return out


def _text_blocks(fh: IO[str], size: int = 1 << 20) -> Iterator[str]:
    """The stream in blocks of whole lines (the last one given a newline)."""
    rest = ""
    while block := fh.read(size):
        block = rest + block
        cut = block.rfind("\n") + 1
        rest = block[cut:]
        if cut:
            yield block[:cut]
    if rest:
        yield rest + "\n"


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


def _decode_one(plans: dict[int, MessagePlan | None], frame: Frame,
                summary: DecodeSummary) -> dict[str, Any] | None:
    ts, ident, extended, kind, data = frame
    if kind:
        if kind == ERROR:
            summary.error_frames += 1
        else:
            summary.remote_frames += 1
        return None
    key = ident | EXTENDED_FLAG if extended else ident
    if key not in plans:
        summary.unknown_id += 1
        return None
    plan = plans[key]
    if not math.isfinite(ts):  # a log with a nan/inf timestamp: counted, not written
        summary.malformed += 1
        return None
    if plan is None:  # a message without signals
        summary.decoded += 1
        return _record(ts, ident, "", {})
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
    return _record(ts, ident, plan.name, signals)



def _record(ts: float, ident: int, name: str, signals: dict[str, Any]) -> dict[str, Any]:
    # orjson writes NaN and infinity as null (JSON has neither)
    return {"timestamp": ts, "arbitration_id": ident,
            "message": name, "signals": signals}
