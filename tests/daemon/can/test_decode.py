"""Decoding: compiled extractors equal cantools, change cache, odd frames, the catalog."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import can
import cantools
import pytest

from carlinkd.can.catalog import Catalog, CatalogEntry
from carlinkd.can.database import demo_dbc_path, load_database
from carlinkd.can.decode import Decoder, compile_database, frame_key, select_all
from carlinkd.errors import DatabaseLoadError


def reference(db: Any, msg: Any, data: bytes) -> dict[str, Any] | None:
    """What a plain cantools decode gives, value-table entries as strings."""
    try:
        decoded = msg.decode(data, decode_choices=True)
    except Exception:
        return None
    return {k: v if isinstance(v, int | float) else str(v) for k, v in decoded.items()}


def nan_safe(values: dict[str, Any]) -> dict[str, Any]:
    """NaN never equals itself; compare it as a marker."""
    return {k: "NaN" if isinstance(v, float) and v != v else v for k, v in values.items()}


def assert_parity(db: Any, rng: random.Random, rounds: int) -> int:
    plans = compile_database(db, select_all)
    checked = 0
    for message in db.messages:
        plan = plans[frame_key(message.frame_id, message.is_extended_frame)]
        if plan is None:
            continue
        for _ in range(rounds):
            data = rng.randbytes(message.length)
            ref = reference(db, message, data)
            if ref is None:  # cantools refuses (e.g. overlapping signals); ours may still decode
                continue
            ours = {f.name: v for f, v in plan.extract(data).values}
            assert nan_safe(ours) == nan_safe(ref), message.name
            assert {k: type(v) for k, v in ours.items()} == {k: type(v) for k, v in ref.items()}
            if plan.ensure_fast() is not None:  # the generated fast path computes the same
                fast = dict(zip(plan.names, plan.values_of(data)))
                assert {k: (v, type(v)) for k, v in nan_safe(fast).items()} == \
                    {k: (v, type(v)) for k, v in nan_safe(ours).items()}, message.name
            checked += 1
    return checked


def test_parity_with_cantools_on_feature_dbc(fixtures: Path) -> None:
    db = load_database([fixtures / "dbc" / "features.dbc"])
    assert assert_parity(db, random.Random(1), 400) > 2000


@pytest.mark.parametrize("name", ["toyota_prius_2010_pt.dbc", "tesla_model3_party.dbc",
                                  "vw_mqb.dbc", "toyota_nodsu_pt_generated.dbc"])
def test_parity_with_cantools_on_real_dbcs(realworld: Path, name: str) -> None:
    db = load_database([realworld / "dbc" / name])
    assert assert_parity(db, random.Random(name), 40) > 500


def test_multiplexed_extended_fd_and_float(fixtures: Path) -> None:
    db = load_database([fixtures / "dbc" / "features.dbc"])
    plans = compile_database(db, select_all)
    mux = plans[0x300]
    assert mux is not None
    page1 = bytes([1, 0xE8, 0x03, 80, 0, 0, 0, 7])
    values = {f.name: v for f, v in mux.extract(page1).values}
    assert values == {"Page": 1, "PressureB": 100.0, "TempB": 40, "Common": 7}
    bad_page = mux.extract(bytes([9, 0, 0, 0, 0, 0, 0, 0]))
    assert bad_page.error == "unknown multiplexer value 9"
    ext = plans[frame_key(0x18FF0300, True)]
    assert ext is not None and 0x18FF0300 not in plans  # 29-bit ids are kept apart
    values = {f.name: v for f, v in ext.extract(bytes([0x40, 0x1F, 3, 0, 0, 0, 0, 0])).values}
    assert values == {"Rpm": 1000.0, "Gear": "D"}
    fd = plans[0x400]
    assert fd is not None
    data = bytearray(64)
    data[0:4] = (123456).to_bytes(4, "little")
    data[8:12] = bytes.fromhex("0000c03f")  # 1.5 as little-endian IEEE float32
    data[60:62] = (1001).to_bytes(2, "little")
    values = {f.name: v for f, v in fd.extract(bytes(data)).values}
    assert values == {"FirstValue": 123456, "FloatValue": 1.5, "FarValue": 500.5}


def test_short_and_long_frames_decode_what_fits(fixtures: Path) -> None:
    db = load_database([fixtures / "dbc" / "features.dbc"])
    plan = compile_database(db, select_all)[0x100]
    assert plan is not None
    short = plan.extract(bytes([0x10, 0x27, 100]))
    assert short.short and {f.name: v for f, v in short.values} == {"Speed": 100.0, "Temp": 60}
    long = plan.extract(bytes(8) + b"\xff\xff")
    assert long.long and not long.short and len(long.values) == 5


def catalog_for_features() -> Catalog:
    return Catalog({"Plain.Speed": CatalogEntry("Vehicle.Speed", "km/h"),
                    "Plain.Mode": CatalogEntry("Vehicle.Mode"),
                    "Muxed.PressureA": CatalogEntry("Tire.A.Pressure", "kPa"),
                    "Muxed.PressureB": CatalogEntry("Tire.B.Pressure", "kPa"),
                    "Short4.B": CatalogEntry("B")})


def frame(arb: int, data: bytes, ts: float = 0.0, ext: bool = False) -> can.Message:
    return can.Message(arbitration_id=arb, data=data, timestamp=ts, is_extended_id=ext)


def test_decoder_emits_only_catalogued_changes_and_counts(fixtures: Path) -> None:
    db = load_database([fixtures / "dbc" / "features.dbc"])
    dec = Decoder(db, catalog_for_features())
    speed_100 = (10000).to_bytes(2, "little") + bytes([0, 0, 0x20, 0, 0, 0])  # Mode=2 Normal
    out = dec.ingest([frame(0x100, speed_100, 1.0)])
    assert {k: v.value for k, v in out.items()} == {"Vehicle.Speed": 100.0, "Vehicle.Mode": "Normal"}
    assert out["Vehicle.Speed"].unit == "km/h" and out["Vehicle.Speed"].timestamp == 1.0
    assert dec.ingest([frame(0x100, speed_100, 1.1)]) == {}  # unchanged payload: cache hit
    # Only the rolling counter changed: decoded, but no catalogued value changed.
    assert dec.ingest([frame(0x100, speed_100[:7] + b"\x10", 1.2)]) == {}
    out = dec.ingest([frame(0x300, bytes([0, 10, 0, 0, 0, 0, 0, 0])),
                      frame(0x300, bytes([1, 20, 0, 0, 0, 0, 0, 0])),
                      frame(0x300, bytes([0, 10, 0, 0, 0, 0, 0, 0])),  # page 0 again: cached
                      frame(0x7FF, bytes(8)), frame(0x200, bytes(8)),
                      frame(0x500, bytes([1])), frame(0x300, bytes([7] + [0] * 7)),
                      can.Message(is_error_frame=True),
                      frame(0x100, bytes(8), ext=True)])
    assert {k: v.value for k, v in out.items()} == {"Tire.A.Pressure": 1.0, "Tire.B.Pressure": 2.0}
    c = dec.counters
    assert (c["frames"], c["decoded"], c["unchanged"]) == (12, 5, 2)
    assert (c["unknown_id"], c["ignored"], c["short"], c["decode_errors"]) == (2, 1, 1, 1)
    assert c["error_frames"] == 1


def test_change_cache_gives_the_same_values_as_a_plain_decode(fixtures: Path) -> None:
    """A stream with many repeated payloads: the decoder's view equals cantools' frame by frame."""
    db = load_database([fixtures / "dbc" / "features.dbc"])
    catalog = catalog_for_features()
    dec = Decoder(db, catalog)
    rng = random.Random(7)
    payloads = {0x100: [rng.randbytes(8) for _ in range(3)],
                0x300: [bytes([p]) + rng.randbytes(7) for p in (0, 1, 0, 1)]}
    state: dict[str, Any] = {}
    for i in range(3000):
        arb = rng.choice([0x100, 0x300])
        data = rng.choice(payloads[arb])
        dec.ingest([frame(arb, data, float(i))])
        message = db.get_message_by_frame_id(arb)
        for name, value in reference(db, message, data).items():  # type: ignore[union-attr]
            entry = catalog.lookup(message.name, name)
            if entry is not None:
                state[entry.name] = value
        assert dec.latest() == state
    assert dec.counters["unchanged"] > 800  # about a third of frames repeat their last payload


def test_demo_dbc_loads_strictly_and_catalog_covers_it() -> None:
    db = cantools.database.load_file(str(demo_dbc_path()), strict=True)
    names = {f"{m.name}.{s.name}" for m in db.messages for s in m.signals}
    missing = [key for key in Catalog().entries if key not in names]
    assert missing == []


def test_load_errors_are_one_line(tmp_path: Path, realworld: Path) -> None:
    with pytest.raises(DatabaseLoadError, match="no such CAN database file"):
        load_database([tmp_path / "missing.dbc"])
    with pytest.raises(DatabaseLoadError) as info:
        load_database([realworld / "dbc" / "mazda_2017.dbc"])
    assert "mazda_2017.dbc: cannot load:" in str(info.value) and "\n" not in str(info.value)


def test_an_oversized_dbc_is_refused_before_parsing(tmp_path: Path) -> None:
    huge = tmp_path / "huge.dbc"
    line = b'CM_ "' + b"x" * 1000 + b'";\n'
    huge.write_bytes(demo_dbc_path().read_bytes() + line * (9 * 1024))  # ~9 MiB
    with pytest.raises(DatabaseLoadError) as info:
        load_database([huge])
    assert "huge.dbc: 8.9 MiB is larger than a CAN database can be (8 MiB)" in str(info.value)


def test_lenient_fallback_warns(realworld: Path, caplog: pytest.LogCaptureFixture) -> None:
    db = load_database([realworld / "dbc" / "vw_mqb.dbc"])
    assert len(db.messages) > 100
    assert "loaded leniently" in caplog.text
    with pytest.raises(DatabaseLoadError):
        load_database([realworld / "dbc" / "vw_mqb.dbc"], strict=False) if False else \
            load_database([realworld / "dbc" / "gm_global_a_powertrain_generated.dbc"])


def test_ingest_of_real_log_equals_cantools_frame_by_frame(realworld: Path) -> None:
    """A real car's log through Decoder.ingest (fast paths included): every latest value as cantools'."""
    from carlinkd.can.logfile import DecodeSummary, read_frames

    db = load_database([realworld / "dbc" / "toyota_prius_2010_pt.dbc"])
    dec = Decoder(db, Catalog({f"{m.name}.{s.name}": CatalogEntry(f"{m.name}.{s.name}", s.unit)
                               for m in db.messages for s in m.signals}))
    expected: dict[str, Any] = {}
    frames = list(read_frames(str(realworld / "logs" / "accellog.log"), DecodeSummary()))
    for frame in frames:
        dec.ingest([frame])
        try:
            message = db.get_message_by_frame_id(frame.arbitration_id)
        except KeyError:
            continue
        ref = reference(db, message, bytes(frame.data))
        for name, value in (ref or {}).items():
            expected[f"{message.name}.{name}"] = value
        latest = nan_safe(dec.latest())  # may hold more: ours decodes what fits of a short frame
        assert {k: latest.get(k) for k in expected} == nan_safe(expected), message.name
    assert dec.counters["decoded"] + dec.counters["unchanged"] > 100 and len(expected) >= 10
