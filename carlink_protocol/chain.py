"""Service-history hash chain (pure): canonical encoding, SHA-256 links, Ed25519 signatures.

Entry *body* (what is hashed)::

    {"v": 1, "seq": n, "prev": <hash of entry n-1, or 64 zeros>, "recorded_at": <unix s>,
     "record": {"date", "odometer_km", "shop", "items", "parts", "cost", "currency", "notes"},
     "shop_sig": {...}}            # optional: the shop's co-signature (carlink_protocol.shopsig)

or, for evidence the car records itself (no ``record``)::

    {..., "odometer": {"km": N, "source": "dbc"|"obd", "date": "YYYY-MM-DD"}}
    {..., "dtc": {"code": "P0171", "ecu": n, "event": "set"|"cleared", "description", "date"}}

- canonical encoding: JSON with sorted keys, no whitespace, UTF-8 (``ensure_ascii=False``);
  bodies contain no floats (odometer in whole km, cost as a decimal string), so the encoding is
  unambiguous across languages;
- ``hash`` = SHA-256 hex of the canonical body; ``seq`` and ``prev`` are inside it, so editing,
  deleting, inserting or reordering entries breaks a hash or a link;
- ``signature`` = Ed25519 over ``ENTRY_DOMAIN + bytes.fromhex(hash)`` with the device key;
  ``key_id`` = first 16 bytes (hex) of SHA-256 of the raw public key;
- a signed *head* ``{"count", "last"}`` (plus ``vin`` and ``exported_at`` in a bundle) catches
  entries cut off the end, which no link can.

Limit: whoever holds the device key can rewrite history, and a whole older copy (head
included) can be presented as current; a buyer should compare the key fingerprint with the
one the car's head unit shows (``carlinkd records list``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from .errors import RecordsError

FORMAT_VERSION = 1
GENESIS = "0" * 64
ENTRY_DOMAIN = b"carlinkd service record v1\x00"
HEAD_DOMAIN = b"carlinkd service head v1\x00"
_ITEM = re.compile(r"[a-z0-9_]{1,40}")


def canonical(obj: Any) -> bytes:
    """Sorted-key, compact, UTF-8 JSON: the bytes that are hashed and signed."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def sha256_hex(data: bytes) -> str:
    """SHA-256 as lowercase hex."""
    return hashlib.sha256(data).hexdigest()


def raw_public(public: Ed25519PublicKey) -> bytes:
    """The 32 raw bytes of a public key."""
    return public.public_bytes(Encoding.Raw, PublicFormat.Raw)


def key_id(public: Ed25519PublicKey) -> str:
    """Short identifier of a public key: first 16 bytes of SHA-256 of its raw bytes, hex."""
    return hashlib.sha256(raw_public(public)).hexdigest()[:32]


def fingerprint(public: Ed25519PublicKey) -> str:
    """The key id grouped for reading aloud or comparing: ``ab12 cd34 ...``."""
    kid = key_id(public)
    return " ".join(kid[i:i + 4] for i in range(0, len(kid), 4))


@dataclass(frozen=True)
class ServiceRecord:
    """What was done at one service visit."""

    date: str
    odometer_km: int
    shop: str
    items: tuple[str, ...]
    parts: tuple[str, ...] = ()
    cost: str | None = None
    currency: str | None = None
    notes: str = ""

    def __post_init__(self) -> None:
        try:
            date.fromisoformat(self.date)
        except (TypeError, ValueError):
            raise RecordsError(f"date {self.date!r} is not YYYY-MM-DD") from None
        if isinstance(self.odometer_km, bool) or not isinstance(self.odometer_km, int) \
                or self.odometer_km < 0:
            raise RecordsError(f"odometer {self.odometer_km!r} is not a whole number of km >= 0")
        if not self.shop.strip():
            raise RecordsError("shop must not be empty")
        if not self.items:
            raise RecordsError("a service record needs at least one item")
        for item in self.items:
            if not _ITEM.fullmatch(item):
                raise RecordsError(f"item {item!r}: use lowercase letters, digits and _ "
                                   "(e.g. oil, tire_rotation, brake_fluid, inspection)")
        if self.cost is not None:
            try:
                amount = Decimal(self.cost)
            except InvalidOperation:
                raise RecordsError(f"cost {self.cost!r} is not a decimal number") from None
            if not amount.is_finite() or amount < 0:
                raise RecordsError(f"cost {self.cost!r} must be a finite amount >= 0")

    def to_json(self) -> dict[str, Any]:
        """The record as it appears inside a hashed body."""
        return {"date": self.date, "odometer_km": self.odometer_km, "shop": self.shop,
                "items": list(self.items), "parts": list(self.parts), "cost": self.cost,
                "currency": self.currency, "notes": self.notes}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ServiceRecord:
        """Parse a record (RecordsError when fields are missing or of the wrong type)."""
        try:
            return cls(str(data["date"]), data["odometer_km"], str(data["shop"]),
                       tuple(data["items"]), tuple(data.get("parts", ())), data.get("cost"),
                       data.get("currency"), str(data.get("notes", "")))
        except (KeyError, TypeError) as err:
            raise RecordsError(f"malformed record: {err}") from err


@dataclass(frozen=True)
class Entry:
    """One chain entry: its body (hashed), hash, signature (base64) and signer's key id."""

    body: dict[str, Any]
    hash: str
    signature: str
    key_id: str

    @property
    def seq(self) -> int:
        """Sequence number inside the body (1-based)."""
        return int(self.body.get("seq", 0))

    @property
    def kind(self) -> str:
        """What the entry holds: service, odometer, dtc (or unknown)."""
        for name in ("record", "odometer", "dtc"):
            if isinstance(self.body.get(name), Mapping):
                return "service" if name == "record" else name
        return "unknown"

    @property
    def record(self) -> ServiceRecord:
        """The parsed service record."""
        return ServiceRecord.from_json(self.body.get("record", {}))

    def to_json(self) -> dict[str, Any]:
        """As written in a bundle (and uploaded to the cloud)."""
        return {"body": self.body, "hash": self.hash, "signature": self.signature,
                "key_id": self.key_id}

    @classmethod
    def from_json(cls, data: Any) -> Entry:
        """Parse :meth:`to_json` output (RecordsError when a field is missing or mistyped);
        the content is not checked here, :func:`verify` does that."""
        if not isinstance(data, Mapping) or not isinstance(data.get("body"), Mapping):
            raise RecordsError("an entry must be an object with a 'body' object")
        fields = [data.get(k) for k in ("hash", "signature", "key_id")]
        if not all(isinstance(v, str) for v in fields):
            raise RecordsError("an entry needs 'hash', 'signature' and 'key_id' strings")
        seq = data["body"].get("seq")
        if isinstance(seq, bool) or not isinstance(seq, int):
            raise RecordsError("an entry body needs an integer 'seq'")
        return cls(dict(data["body"]), *(str(v) for v in fields))


def make_entry(prev: Entry | None, record: ServiceRecord | None, recorded_at: int,
               key: Ed25519PrivateKey, extra: Mapping[str, Any] | None = None) -> Entry:
    """The next entry after ``prev`` (None: the first), hashed and signed.

    ``extra``: more body fields: ``shop_sig`` beside a record, or ``odometer`` / ``dtc``
    evidence instead of one (``record`` None)."""
    body: dict[str, Any] = {"v": FORMAT_VERSION, "seq": prev.seq + 1 if prev else 1,
                            "prev": prev.hash if prev else GENESIS,
                            "recorded_at": int(recorded_at)}
    if record is not None:
        body["record"] = record.to_json()
    body.update(extra or {})
    if not any(k in body for k in ("record", "odometer", "dtc")):
        raise RecordsError("an entry holds a service record, an odometer reading or a DTC")
    digest = sha256_hex(canonical(body))
    sig = key.sign(ENTRY_DOMAIN + bytes.fromhex(digest))
    return Entry(body, digest, base64.b64encode(sig).decode(), key_id(key.public_key()))


def sign_head(fields: Mapping[str, Any], key: Ed25519PrivateKey) -> dict[str, Any]:
    """A signed statement about the chain's end (``count``, ``last``; optionally more)."""
    sig = key.sign(HEAD_DOMAIN + canonical(dict(fields)))
    return {**fields, "signature": base64.b64encode(sig).decode()}


def _valid(public: Ed25519PublicKey, signature: str, message: bytes) -> bool:
    try:
        public.verify(base64.b64decode(signature, validate=True), message)
    except (InvalidSignature, ValueError):
        return False
    return True


@dataclass
class Report:
    """Outcome of a verification: ok, or the first problem, naming the record."""

    ok: bool
    count: int
    problem: str = ""
    position: int | None = None  # 1-based position in storage order of the first bad entry
    kind: str = ""  # edited, deleted, inserted, reordered, wrong-key, truncated, malformed
    signer: str = ""
    head: dict[str, Any] = field(default_factory=dict)
    # Found in an intact chain (carlink_protocol.audit): (kind, text) such as
    # ("odometer-rollback", ...), ("shop-signature", ...), ("forged-shop-key", ...).
    findings: list[tuple[str, str]] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        """Intact and nothing found."""
        return self.ok and not self.findings

    def names(self) -> list[str]:
        """Every problem by name: the chain's kind (if broken), then the findings'."""
        return ([] if self.ok else [self.kind]) + [k for k, _ in self.findings]

    def line(self) -> str:
        """One line for people."""
        if self.ok and not self.findings:
            return (f"OK: {self.count} service record(s), chain intact, signed by key "
                    f"{self.signer}")
        if self.ok:
            return (f"WARNING: chain of {self.count} entr(ies) intact, but "
                    + "; ".join(f"{k}: {t}" for k, t in self.findings))
        return f"INVALID: {self.problem}"


def _label(entry: Entry, position: int) -> str:
    rec = entry.body.get("record")
    what = ""
    if isinstance(rec, Mapping):
        what = f" ({rec.get('date', '?')}, {rec.get('odometer_km', '?')} km, {rec.get('shop', '?')})"
    return f"record #{entry.seq if entry.seq else position}{what} at position {position}"


def verify(entries: Sequence[Entry], public: Ed25519PublicKey,
           head: Mapping[str, Any] | None) -> Report:
    """Check every hash, link, sequence number and signature, then the signed head."""
    report = verify_links(entries, public)
    if not report.ok:
        return report
    return check_head(report, len(entries), entries[-1].hash if entries else GENESIS, public,
                      head)


def verify_links(entries: Sequence[Entry], public: Ed25519PublicKey, base: int = 0,
                 prev_hash: str = GENESIS) -> Report:
    """Check every hash, link, sequence number and signature, without a signed head.

    ``base``, ``prev_hash``: how many entries precede these, verified earlier, and the hash of
    the last one (0 and GENESIS: they start the chain). For a receiver that gets the chain in
    parts (the cloud, docs/protocol.md §6): it checks each new part against what it kept, so
    the cost does not grow with the history. Positions in the report count from the start of
    the chain."""
    expected_kid = key_id(public)
    seqs = [e.seq for e in entries]
    for i, entry in enumerate(entries):
        want = base + i + 1
        problem = _check_entry(entry, entries, seqs, i, want, prev_hash, public, expected_kid)
        if problem is not None:
            kind, why = problem
            return Report(False, base + len(entries), f"{_label(entry, want)}: {why}", want,
                          kind, fingerprint(public))
        prev_hash = entry.hash
    return Report(True, base + len(entries), signer=fingerprint(public))


def _check_entry(entry: Entry, entries: Sequence[Entry], seqs: list[int], i: int, want: int,
                 prev_hash: str, public: Ed25519PublicKey,
                 expected_kid: str) -> tuple[str, str] | None:
    try:
        digest = sha256_hex(canonical(entry.body))
    except (TypeError, ValueError):
        return "malformed", "its body cannot be encoded"
    if digest != entry.hash:
        return "edited", "edited: its content does not match its hash"
    if not _valid(public, entry.signature, ENTRY_DOMAIN + bytes.fromhex(entry.hash)):
        if any(s == entry.seq for j, s in enumerate(seqs) if j > i):
            return "inserted", ("inserted: not signed by this device, and another record "
                                "carries the same number")
        if entry.key_id != expected_kid:
            return "wrong-key", (f"signed with another key (key id {entry.key_id[:16]}..., "
                                 f"expected {expected_kid[:16]}...)")
        return "edited", "edited and re-hashed: the device signature does not match"
    if entry.seq != want:
        if entry.seq > want and want not in seqs:
            return "deleted", f"record #{want} before it is missing (deleted)"
        if want in seqs[i + 1:]:
            return "reordered", f"reordered: found where record #{want} belongs"
        return "reordered", f"duplicated or out of order: record #{want} expected here"
    if entry.body.get("prev") != prev_hash:
        return "inserted", "its link to the previous record is broken (a record was inserted "\
                           "or replaced before it)"
    if want == 1 and entry.body.get("prev") != GENESIS:
        return "deleted", "the chain does not start at its first record"
    return None


def check_head(report: Report, count: int, last_hash: str, public: Ed25519PublicKey,
               head: Mapping[str, Any] | None) -> Report:
    """Complete a :func:`verify_links` report with the signed head of a chain of ``count``
    entries ending in ``last_hash``: it must be signed by ``public`` and state both."""
    if head is None:
        if count:
            report.ok = False
            report.kind = "truncated"
            report.problem = "the signed head (record count and last hash) is missing"
        return report
    fields = {k: v for k, v in head.items() if k != "signature"}
    if not _valid(public, str(head.get("signature", "")), HEAD_DOMAIN + canonical(fields)):
        report.ok, report.kind = False, "wrong-key"
        report.problem = "the head (record count and last hash) is not signed by this key"
        return report
    claimed = head.get("count")
    if claimed != count or head.get("last", GENESIS) != last_hash:
        report.ok, report.kind = False, "deleted" if isinstance(claimed, int) and \
            claimed > count else "truncated"
        report.position = count + 1
        report.problem = (f"the signed head says {claimed} record(s) ending in "
                          f"{str(head.get('last', ''))[:12]}..., but {count} are present: "
                          + (f"record #{count + 1} onward deleted" if
                             isinstance(claimed, int) and claimed > count
                             else "records were added without the device key"))
        return report
    report.head = dict(fields)
    return report
