"""The cloud sync wire format (docs/protocol.md): message types, validation, close codes.

Pure: no sockets, no clock. Every parser raises :class:`ProtocolError` with a reason a log
line can carry; nothing a peer sends can raise anything else from here.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import ProtocolError

# Protocol 2 (docs/protocol.md §9): help requests keyed per device with a life cycle, helpers
# matched by a coarse cell, closed groups, booking choice and cancel. Protocol 1 is refused.
PROTOCOL_VERSION = 2
SUPPORTED_VERSIONS = frozenset({2})

# Close codes. 1000/1001/1009/1011/1013 are RFC 6455 / IANA registry codes; 4000-4999 are
# reserved for applications (RFC 6455 section 7.4.2).
# Every downstream item is encoded (no NaN/Infinity) and bounded before it is stored, so an item
# that could be stored can always be delivered: one hostile car cannot stall another's stream.
MAX_DOWN_ITEM_BYTES = 64 * 1024

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_TOO_BIG = 1009
CLOSE_INTERNAL_ERROR = 1011
CLOSE_TRY_AGAIN_LATER = 1013     # server overloaded; reason may carry "retry-after=<s>"
CLOSE_UNSUPPORTED_VERSION = 4001  # hello.protocol not spoken by the server
CLOSE_PROTOCOL_ERROR = 4002       # a message broke the protocol (reason says which rule)
CLOSE_AUTH_FAILED = 4003          # token/certificate revoked or refused after the handshake
CLOSE_REPLACED = 4009             # a newer connection of the same device took over

UPSTREAM_CLASSES = ("emergency", "alert", "chat", "booking", "service_record", "status")
ID_MAX_LEN = 64
KIND_MAX_LEN = 32


@dataclass(frozen=True, slots=True)
class Hello:
    """Client -> server, first message: protocol version and the inbound cursor."""

    protocol: int
    cursor: int
    epoch: str | None
    window: int
    agent: str = ""


@dataclass(frozen=True, slots=True)
class UpItem:
    """Client -> server: one upstream item with a client-generated id."""

    id: str
    cls: str
    kind: str
    body: Mapping[str, Any]
    created: float


@dataclass(frozen=True, slots=True)
class CursorAck:
    """Client -> server: every downstream item up to ``cursor`` is durably stored."""

    cursor: int


@dataclass(frozen=True, slots=True)
class Welcome:
    """Server -> client: hello accepted; ``cursor`` is where replay starts after."""

    protocol: int
    device: str
    epoch: str
    cursor: int
    last_seq: int


@dataclass(frozen=True, slots=True)
class ItemAck:
    """Server -> client: item ``id`` is durably handled (stored or rejected); a retransmitted
    id gets the same answer again."""

    id: str
    status: str
    reason: str
    result: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class DownItem:
    """Server -> client: one downstream item with its per-device sequence number."""

    seq: int
    kind: str
    body: Mapping[str, Any]
    created: float


@dataclass(frozen=True, slots=True)
class Gap:
    """Server -> client: items ``first``..``last`` are gone; continue after ``last``."""

    first: int
    last: int


ClientMessage = Hello | UpItem | CursorAck
ServerMessage = Welcome | ItemAck | DownItem | Gap
ACK_STATUSES = frozenset({"stored", "rejected"})


def encode(msg: ClientMessage | ServerMessage) -> str:
    """Serialize one message to its JSON text frame."""
    data: dict[str, Any]
    if isinstance(msg, Hello):
        data = {"type": "hello", "protocol": msg.protocol, "cursor": msg.cursor,
                "epoch": msg.epoch, "window": msg.window, "agent": msg.agent}
    elif isinstance(msg, UpItem):
        data = {"type": "item", "id": msg.id, "class": msg.cls, "kind": msg.kind,
                "body": msg.body, "created": msg.created}
    elif isinstance(msg, CursorAck):
        data = {"type": "ack", "cursor": msg.cursor}
    elif isinstance(msg, Welcome):
        data = {"type": "welcome", "protocol": msg.protocol, "device": msg.device,
                "epoch": msg.epoch, "cursor": msg.cursor, "last_seq": msg.last_seq}
    elif isinstance(msg, ItemAck):
        data = {"type": "ack", "id": msg.id, "status": msg.status}
        if msg.reason:
            data["reason"] = msg.reason
        if msg.result:
            data["result"] = msg.result
    elif isinstance(msg, DownItem):
        data = {"type": "item", "seq": msg.seq, "kind": msg.kind, "body": msg.body,
                "created": msg.created}
    else:
        data = {"type": "gap", "from": msg.first, "to": msg.last}
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _load(text: str | bytes) -> dict[str, Any]:
    if isinstance(text, bytes):
        raise ProtocolError("binary frame; the protocol uses JSON text frames only")
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as err:
        raise ProtocolError(f"invalid JSON: {str(err)[:80]}") from err
    if not isinstance(data, dict):
        raise ProtocolError("a message must be a JSON object")
    kind = data.get("type")
    if not isinstance(kind, str):
        raise ProtocolError("missing or non-string 'type'")
    return data


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _int(data: Mapping[str, Any], key: str, minimum: int = 0) -> int:
    value = data.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ProtocolError(f"'{key}' must be an integer >= {minimum}")
    if value > 2**63 - 1:
        raise ProtocolError(f"'{key}' is out of range")
    return value


def _str(data: Mapping[str, Any], key: str, max_len: int, optional: bool = False) -> str:
    value = data.get(key)
    if value is None and optional:
        return ""
    if not isinstance(value, str) or not value or len(value) > max_len:
        raise ProtocolError(f"'{key}' must be a non-empty string of at most {max_len} chars")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate (\ud800) arrived as a JSON escape
            raise ProtocolError(f"'{key}' is not valid Unicode (a lone surrogate)") from None
    return value


def _time(data: Mapping[str, Any], key: str) -> float:
    value = data.get(key)
    if (not isinstance(value, int | float) or isinstance(value, bool)
            or not math.isfinite(value) or value < 0):
        raise ProtocolError(f"'{key}' must be a non-negative number of seconds")
    return float(value)


def _body(data: Mapping[str, Any]) -> Mapping[str, Any]:
    body = data.get("body")
    if not isinstance(body, dict):
        raise ProtocolError("'body' must be a JSON object")
    return body


def parse_client(text: str | bytes) -> ClientMessage:
    """Parse and validate one client -> server message."""
    data = _load(text)
    kind = data["type"]
    if kind == "hello":
        epoch = data.get("epoch")
        if epoch is not None and (not isinstance(epoch, str) or len(epoch) > ID_MAX_LEN):
            raise ProtocolError("'epoch' must be a string or null")
        agent = data.get("agent", "")
        return Hello(_int(data, "protocol", 1), _int(data, "cursor"), epoch,
                     _int(data, "window", 1), agent if isinstance(agent, str) else "")
    if kind == "item":
        cls = _str(data, "class", KIND_MAX_LEN)
        if cls not in UPSTREAM_CLASSES:
            raise ProtocolError(f"unknown item class {cls[:32]!r}")
        return UpItem(_str(data, "id", ID_MAX_LEN), cls, _str(data, "kind", KIND_MAX_LEN),
                      _body(data), _time(data, "created"))
    if kind == "ack":
        return CursorAck(_int(data, "cursor"))
    raise ProtocolError(f"unknown message type {kind[:32]!r}")


def parse_server(text: str | bytes) -> ServerMessage:
    """Parse and validate one server -> client message."""
    data = _load(text)
    kind = data["type"]
    if kind == "welcome":
        return Welcome(_int(data, "protocol", 1), _str(data, "device", 128),
                       _str(data, "epoch", ID_MAX_LEN), _int(data, "cursor"),
                       _int(data, "last_seq"))
    if kind == "ack":
        status = data.get("status")
        if status not in ACK_STATUSES:
            raise ProtocolError("'status' must be 'stored' or 'rejected'")
        reason = data.get("reason", "")
        result = data.get("result", {})
        if not isinstance(reason, str) or not isinstance(result, dict):
            raise ProtocolError("'reason' must be a string and 'result' an object")
        return ItemAck(_str(data, "id", ID_MAX_LEN), str(status), reason[:500], result)
    if kind == "item":
        return DownItem(_int(data, "seq", 1), _str(data, "kind", KIND_MAX_LEN), _body(data),
                        _time(data, "created"))
    if kind == "gap":
        first, last = _int(data, "from", 1), _int(data, "to", 1)
        if last < first:
            raise ProtocolError("gap 'to' is before 'from'")
        return Gap(first, last)
    raise ProtocolError(f"unknown message type {kind[:32]!r}")


def retry_after(reason: str) -> float | None:
    """The ``retry-after=<seconds>`` hint in a 1013 close reason, if any."""
    for part in reason.split(";"):
        key, _, value = part.strip().partition("=")
        if key == "retry-after":
            try:
                seconds = float(value)
            except ValueError:
                return None
            return seconds if math.isfinite(seconds) and seconds >= 0 else None
    return None


def version_refusal(protocol: int, supported: frozenset[int]) -> str:
    """The 4001 close reason for a hello speaking ``protocol`` (at most 123 bytes)."""
    if protocol == 1 and PROTOCOL_VERSION in supported:
        return ("protocol 1 is not supported (help requests and location changed in 2); "
                "update")
    return (f"protocol {protocol} unsupported; server speaks "
            f"{','.join(map(str, sorted(supported)))}")


def encode_down_body(kind: str, body: Mapping[str, Any]) -> str:
    """A downstream item's body as stored: strict JSON (no NaN/Infinity, valid UTF-8) of at
    most :data:`MAX_DOWN_ITEM_BYTES`; raises ProtocolError saying which rule it breaks."""
    try:
        text = json.dumps(body, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        size = len(text.encode("utf-8"))
    except (ValueError, TypeError, RecursionError) as err:  # NaN/Infinity, lone surrogate, ...
        raise ProtocolError(f"{kind} item cannot be encoded: {err}") from err
    if size > MAX_DOWN_ITEM_BYTES:
        raise ProtocolError(f"{kind} item is {size} bytes, over the {MAX_DOWN_ITEM_BYTES}-byte "
                            "limit for a downstream item")
    return text
