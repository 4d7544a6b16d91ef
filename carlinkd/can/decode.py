"""DBC decoding for the hot path: per-message compiled extractors and a payload change cache.

A naive ``db.decode_message()`` unpacks and scales every signal of every frame. The daemon
only needs the catalogued signals, and most frames repeat the previous payload of their ID,
so :class:`Decoder` (a pure core: frames in, changed signal values out)

- skips a frame whose payload equals the last one seen for that ID (and multiplexer value),
- extracts only the wanted signals with integer shifts compiled once per message,
- reports a value only when it differs from the last value reported for that name.

Values are computed exactly as cantools computes them (``raw * scale + offset``, value-table
names as strings); the tests compare both on real vehicles' DBCs.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ..events import SignalValue
from ..logutil import RateLimitedLogger
from .catalog import Catalog, CatalogEntry

log = logging.getLogger(__name__)

EXTENDED_FLAG = 1 << 31
Value = float | int | str
Selector = Callable[[Any, Any], CatalogEntry | None]


def frame_key(arbitration_id: int, is_extended: bool) -> int:
    """Lookup key of a frame: the id, with bit 31 set for 29-bit ids (as DBC files write it)."""
    return arbitration_id | EXTENDED_FLAG if is_extended else arbitration_id


class Field:
    """One signal compiled to shifts and masks, plus where its value goes."""

    __slots__ = ("name", "out", "unit", "little", "pos", "end", "mask", "sign", "float_fmt",
                 "scale", "offset", "choices", "mux_ids")

    def __init__(self, signal: Any, out: str, unit: str | None) -> None:
        self.name: str = signal.name
        self.out = out
        self.unit = unit
        self.little = signal.byte_order == "little_endian"
        start = signal.start
        if self.little:
            self.pos = start  # bit index of the LSB in the little-endian integer of the payload
            self.end = start + signal.length
        else:
            msb = 8 * (start // 8) + (7 - start % 8)  # ISO numbering from the first byte's MSB
            self.pos = msb + signal.length - 1      # LSB index in that numbering
            self.end = msb + signal.length
        self.mask = (1 << signal.length) - 1
        self.sign = 1 << (signal.length - 1) if signal.is_signed and not signal.is_float else 0
        self.float_fmt = {32: ">f", 64: ">d", 16: ">e"}.get(signal.length) if signal.is_float else None
        # A value-table conversion wraps the numeric one, whose int/float types cantools keeps.
        numeric = getattr(signal.conversion, "_conversion", signal.conversion)
        self.scale = numeric.scale
        self.offset = numeric.offset
        self.choices = {int(k): str(v) for k, v in (signal.choices or {}).items()}
        self.mux_ids = frozenset(signal.multiplexer_ids) if signal.multiplexer_ids else None

    def raw(self, le: int, be: int, nbits: int) -> int | float:
        """The raw (unscaled) value: shifted, masked, sign-extended or IEEE-decoded."""
        if self.little:
            raw: int = (le >> self.pos) & self.mask
        else:
            raw = (be >> (nbits - 1 - self.pos)) & self.mask
        if self.sign and raw & self.sign:
            return raw - (self.sign << 1)
        if self.float_fmt is not None:
            size = (self.mask.bit_length() + 7) // 8
            decoded: float = struct.unpack(self.float_fmt, raw.to_bytes(size, "big"))[0]
            return decoded
        return raw

    def value(self, le: int, be: int, nbits: int) -> Value:
        """Extract and scale this signal; value-table entries become their names."""
        raw = self.raw(le, be, nbits)
        if self.choices:
            name = self.choices.get(int(raw))
            if name is not None:
                return name
        return raw * self.scale + self.offset  # type: ignore[no-any-return]

    def mux_number(self, le: int, be: int, nbits: int) -> int:
        """The multiplexer page number, as cantools derives it from the decoded value."""
        raw = self.raw(le, be, nbits)
        if self.choices and int(raw) in self.choices:
            return int(raw)
        return int(raw * self.scale + self.offset)


@dataclass(slots=True)
class Outcome:
    """What extracting one frame gave: (field, value) pairs and what was odd about it."""

    values: list[tuple[Field, Value]] = field(default_factory=list)
    short: bool = False
    long: bool = False
    error: str | None = None


class MessagePlan:
    """Compiled decoder of one message's wanted signals (single-level multiplexing)."""

    def __init__(self, message: Any, fields: list[Field], mux: Field | None) -> None:
        self.message = message
        self.name: str = message.name
        self.length: int = message.length
        self.fields = fields
        self.names = tuple(f.name for f in fields if f.end <= 8 * self.length)  # values_of's keys
        self.mux = mux
        self.mux_known = frozenset(i for f in message.signals for i in (f.multiplexer_ids or ()))
        self.any_little = any(f.little for f in fields) or bool(mux and mux.little)
        self.any_big = any(not f.little for f in fields) or bool(mux and not mux.little)
        self.fast: Callable[..., bool] | None = None
        self.values_of: Callable[[bytes], tuple[Value, ...]] | None = None
        # Generated on the first frame of this id: a bus carries a fraction of a DBC's messages.
        self.lazy = mux is None and all(f.float_fmt is None for f in fields)

    def ensure_fast(self) -> Callable[..., bool] | None:
        """The generated fast path, compiled on first use (None when this plan has none)."""
        if self.lazy:
            self.lazy = False
            self.fast, self.values_of = compile_fast(self)
        return self.fast

    def extract(self, data: bytes) -> Outcome:
        """Decode the wanted signals of one payload (truncated payloads: what fits)."""
        out = Outcome()
        n = len(data)
        if n > self.length:
            data, n, out.long = data[: self.length], self.length, True
        nbits = 8 * n
        if n < self.length:
            out.short = True
        le = int.from_bytes(data, "little") if self.any_little else 0
        be = int.from_bytes(data, "big") if self.any_big else 0
        mux_value = None
        if self.mux is not None:
            if self.mux.end > nbits:
                out.error = "multiplexer outside a truncated payload"
                return out
            mux_value = self.mux.mux_number(le, be, nbits)
            if mux_value not in self.mux_known:
                out.error = f"unknown multiplexer value {mux_value}"
                return out
        values = out.values
        for f in self.fields:
            if f.end > nbits or (f.mux_ids is not None and mux_value not in f.mux_ids):
                continue
            values.append((f, f.value(le, be, nbits)))
        return out

    def cache_key(self, data: bytes) -> int | None:
        """Multiplexer raw value of a payload, used to keep one cache entry per multiplexed page."""
        if self.mux is None or self.mux.end > 8 * len(data):
            return None
        if self.mux.little:
            page: int = (int.from_bytes(data, "little") >> self.mux.pos) & self.mux.mask
        else:
            page = (int.from_bytes(data, "big") >> (8 * len(data) - 1 - self.mux.pos)) & self.mux.mask
        return page


def _field_expr(i: int, f: Field, nbits: int) -> list[str]:
    """Source lines computing field i of a full-length payload into ``v{i}``."""
    if f.little:
        lines = [f"r = (le >> {f.pos}) & {f.mask}"]
    else:
        lines = [f"r = (be >> {nbits - 1 - f.pos}) & {f.mask}"]
    if f.sign:
        lines.append(f"if r & {f.sign}: r -= {f.sign << 1}")
    scaled = f"r * S{i} + O{i}"
    if f.choices:
        lines.append(f"v{i} = C{i}.get(r)")
        lines.append(f"if v{i} is None: v{i} = {scaled}")
    else:
        lines.append(f"v{i} = {scaled}")
    return lines


def compile_fast(plan: MessagePlan) -> tuple[Callable[..., bool], Callable[[bytes], tuple[Value, ...]]]:
    """Generate straight-line Python for a plain message's full-length payloads.

    ``fast(data, ts, last, changed)`` updates ``last``/``changed`` like the generic path;
    ``values_of(data)`` returns the field values in order. Both compute exactly what
    :meth:`MessagePlan.extract` computes (same expressions, same int/float types).
    """
    nbits = 8 * plan.length
    env: dict[str, Any] = {"SV": SignalValue, "M": _MISSING, "fb": int.from_bytes}
    body = []
    if plan.any_little:
        body.append("le = fb(data, 'little')")
    if plan.any_big:
        body.append("be = fb(data, 'big')")
    for i, f in enumerate(plan.fields):
        env.update({f"S{i}": f.scale, f"O{i}": f.offset, f"C{i}": f.choices,
                    f"N{i}": f.out, f"U{i}": f.unit})
        if f.end > nbits:
            body.append(f"v{i} = M")  # never fits: skipped like extract() does
            continue
        body.extend(_field_expr(i, f, nbits))
    update = []
    for i, f in enumerate(plan.fields):
        if f.end <= nbits:
            update += [f"if last.get(N{i}, M) != v{i}:",
                       f"    last[N{i}] = v{i}; changed[N{i}] = SV(N{i}, v{i}, U{i}, ts)"]
    fit = ", ".join(f"v{i}" for i, f in enumerate(plan.fields) if f.end <= nbits)
    src = ("def fast(data, ts, last, changed):\n" + "".join(f"    {x}\n" for x in body + update)
           + "    return True\n"
           + "def values_of(data):\n" + "".join(f"    {x}\n" for x in body)
           + f"    return ({fit}{',' if fit else ''})\n")
    exec(compile(src, f"<plan {plan.name}>", "exec"), env)  # noqa: S102 - our own generated code
    return env["fast"], env["values_of"]


class FallbackPlan(MessagePlan):
    """Messages the compiler does not handle (nested multiplexing, containers): cantools decodes."""

    def __init__(self, message: Any, fields: list[Field]) -> None:
        super().__init__(message, fields, None)
        self.lazy = False  # cantools decodes these
        self._by_name = {f.name: f for f in fields}

    def extract(self, data: bytes) -> Outcome:
        """Decode with cantools (choices as strings), keeping only the wanted signals."""
        out = Outcome(short=len(data) < self.length, long=len(data) > self.length)
        try:
            decoded = self.message.decode(bytes(data), decode_choices=True, allow_truncated=True)
        except Exception as err:  # cantools DecodeError and friends
            out.error = " ".join(str(err).split()) or type(err).__name__
            return out
        for name, value in decoded.items():
            f = self._by_name.get(name)
            if f is not None:
                out.values.append((f, value if isinstance(value, int | float) else str(value)))
        return out

    def cache_key(self, data: bytes) -> int | None:
        """Nested multiplexing: no cheap page key, so the cache keys on the whole payload."""
        return hash(bytes(data))


def compile_message(message: Any, select: Selector) -> MessagePlan | None:
    """Build the plan for one message, or None when none of its signals is wanted."""
    fields = []
    for signal in message.signals:
        entry = select(message, signal)
        if entry is not None:
            fields.append(Field(signal, entry.name, entry.unit))
    if not fields:
        return None
    muxers = [s for s in message.signals if s.is_multiplexer]
    nested = any(s.multiplexer_ids for s in muxers)
    if getattr(message, "is_container", False) or nested or len(muxers) > 1:
        return FallbackPlan(message, fields)
    mux = Field(muxers[0], muxers[0].name, None) if muxers else None
    if any(s.is_float and s.length not in (16, 32, 64) for s in message.signals):
        return FallbackPlan(message, fields)
    return MessagePlan(message, fields, mux)


def compile_database(db: Any, select: Selector) -> dict[int, MessagePlan | None]:
    """Plans for every message of a database, keyed by :func:`frame_key`."""
    return {frame_key(m.frame_id, m.is_extended_frame): compile_message(m, select)
            for m in db.messages}


def select_all(message: Any, signal: Any) -> CatalogEntry:
    """Selector that keeps every signal under its own DBC name."""
    return CatalogEntry(signal.name, signal.unit or None)


def catalog_selector(catalog: Catalog) -> Selector:
    """Selector that keeps catalogued (and subscribed) signals under their canonical names."""
    def select(message: Any, signal: Any) -> CatalogEntry | None:
        return catalog.lookup(message.name, signal.name, signal.unit or None)
    return select


COUNTERS = ("frames", "decoded", "unchanged", "unknown_id", "ignored", "short", "long",
            "decode_errors", "error_frames", "remote_frames")


class Decoder:
    """Frames in, changed catalogued signal values out; counts everything odd it sees."""

    def __init__(self, db: Any, catalog: Catalog, warn_interval: float = 10.0) -> None:
        self.plans = compile_database(db, catalog_selector(catalog))
        self.counters = dict.fromkeys(COUNTERS, 0)
        self._cache: dict[Any, bytes] = {}
        self._last: dict[str, Value] = {}
        self._warn = RateLimitedLogger(log, warn_interval)

    def wanted_names(self) -> dict[str, str | None]:
        """Canonical names this decoder can produce, with their units."""
        return {f.out: f.unit for p in self.plans.values() if p for f in p.fields}

    def ingest(self, frames: Iterable[Any]) -> dict[str, SignalValue]:
        """Decode a batch of python-can messages; return the signals whose value changed."""
        changed: dict[str, SignalValue] = {}
        counters = self.counters
        plans = self.plans
        cache = self._cache
        last = self._last
        for msg in frames:
            counters["frames"] += 1
            if msg.is_error_frame or msg.is_remote_frame:
                counters["error_frames" if msg.is_error_frame else "remote_frames"] += 1
                continue
            key = msg.arbitration_id | EXTENDED_FLAG if msg.is_extended_id else msg.arbitration_id
            plan = plans.get(key)
            if plan is None:
                counters["ignored" if key in plans else "unknown_id"] += 1
                continue
            data = bytes(msg.data)
            fast = plan.fast
            if fast is None and plan.lazy:
                fast = plan.ensure_fast()
            if fast is not None and len(data) == plan.length:
                if cache.get(key) == data:
                    counters["unchanged"] += 1
                    continue
                cache[key] = data
                counters["decoded"] += 1
                fast(data, msg.timestamp, last, changed)
                continue
            page = (key, plan.cache_key(data)) if plan.mux is not None or \
                isinstance(plan, FallbackPlan) else key
            if cache.get(page) == data:
                counters["unchanged"] += 1
                continue
            cache[page] = data
            outcome = plan.extract(data)
            if outcome.error is not None or outcome.short or outcome.long:
                self._note_oddity(plan, msg, outcome)
                if outcome.error is not None:
                    continue
            counters["decoded"] += 1
            ts = msg.timestamp
            for f, value in outcome.values:
                if last.get(f.out, _MISSING) != value:
                    last[f.out] = value
                    changed[f.out] = SignalValue(f.out, value, f.unit, ts)
        return changed

    def _note_oddity(self, plan: MessagePlan, msg: Any, outcome: Outcome) -> None:
        if outcome.error is not None:
            self.counters["decode_errors"] += 1
            what = outcome.error
        elif outcome.short:
            self.counters["short"] += 1
            what = f"{len(msg.data)} bytes where the DBC says {plan.length} (decoded what fits)"
        else:
            self.counters["long"] += 1
            what = f"{len(msg.data)} bytes where the DBC says {plan.length} (extra bytes ignored)"
        self._warn.warning((plan.name, outcome.error is None, outcome.short), "frame 0x%X (%s): %s",
                           msg.arbitration_id, plan.name, what)

    def latest(self) -> dict[str, Value]:
        """The last value seen for every produced name."""
        return dict(self._last)


_MISSING = object()
