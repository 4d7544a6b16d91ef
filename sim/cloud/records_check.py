"""Service-history uploads: hash chain and Ed25519 signature checks (docs/protocol.md §6).

A minimal, self-contained verifier for the reference backend. Each record is
``{"index": n, "prev": hex, "payload": {...}, "hash": hex, "sig": hex}`` with
``hash = SHA-256(prev || "\\n" || canonical JSON of payload)`` and ``sig`` an Ed25519 signature
over the 32 raw hash bytes; the first record's ``prev`` is 64 zeros. Canonical JSON: sorted keys,
separators ``,`` and ``:``, UTF-8, no NaN.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

GENESIS = "0" * 64


def canonical(payload: Mapping[str, Any]) -> bytes:
    """The canonical JSON bytes a record hash covers."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode()


def record_hash(prev: str, payload: Mapping[str, Any]) -> str:
    """Hex SHA-256 of one record."""
    return hashlib.sha256(prev.encode() + b"\n" + canonical(payload)).hexdigest()


def verify_chain(records: Sequence[Any], public_key_hex: str, head_index: int,
                 head_hash: str) -> str:
    """Why the records do not extend the chain at (head_index, head_hash), or '' if they do."""
    try:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
        key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_key_hex))
    except ImportError:
        return "the backend cannot verify signatures (cryptography is not installed)"
    except ValueError:
        return "public_key is not a hex-encoded raw Ed25519 key"
    if not records:
        return "no records"
    prev, index = head_hash, head_index
    for rec in records:
        if not isinstance(rec, dict):
            return "a record is not an object"
        payload, sig, digest = rec.get("payload"), rec.get("sig"), rec.get("hash")
        if not isinstance(payload, dict) or not isinstance(sig, str) or not isinstance(digest, str):
            return f"record {index + 1}: payload, hash and sig are required"
        if rec.get("index") != index + 1:
            return f"record index {rec.get('index')!r} does not follow {index}"
        if rec.get("prev") != prev:
            return f"record {index + 1}: broken chain (prev does not match the stored head)"
        try:
            expect = record_hash(prev, payload)
        except ValueError:
            return f"record {index + 1}: payload is not canonical JSON"
        if digest != expect:
            return f"record {index + 1}: hash mismatch"
        try:
            key.verify(bytes.fromhex(sig), bytes.fromhex(digest))
        except (InvalidSignature, ValueError):
            return f"record {index + 1}: bad signature"
        prev, index = digest, index + 1
    return ""


def sign_records(private_key: Any, payloads: Sequence[Mapping[str, Any]], head_index: int = 0,
                 head_hash: str = GENESIS) -> list[dict[str, Any]]:
    """Build signed, chained records (for tests, the demo and the benchmark)."""
    out, prev, index = [], head_hash, head_index
    for payload in payloads:
        digest = record_hash(prev, payload)
        index += 1
        out.append({"index": index, "prev": prev, "payload": dict(payload), "hash": digest,
                    "sig": private_key.sign(bytes.fromhex(digest)).hex()})
        prev = digest
    return out
