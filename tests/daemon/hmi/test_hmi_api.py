"""The D-Bus API's pure core: argument checks, property state from events, signal throttling,
and its configuration section."""

from __future__ import annotations

import pytest

from carlinkd.hmi.settings import HmiConfig
from carlinkd.config import build_config, env_overrides
from carlinkd.errors import ConfigError, HmiInvalidArgs
from carlinkd.events import (AlertRaised, BusState, CloudState, GroupsListed, IntentRecognized,
                             OutboxStats, SignalValue, VehicleIdentified, VoiceActivity,
                             VoiceState)
from carlinkd.hmi.api import (MAX_TEXT, VOICE_STATES, HmiState, SignalThrottle, check_booking,
                              check_group, check_key, check_text, intent_args, signal_tuple)


def sv(name: str, value: float | str, t: float = 1.0) -> SignalValue:
    return SignalValue(name, value, "km/h" if name == "Vehicle.Speed" else None, t)


def test_text_is_stripped_non_empty_and_bounded() -> None:
    assert check_text("  hello \n") == "hello"
    assert check_text("x" * MAX_TEXT) == "x" * MAX_TEXT
    for bad, why in (("", "empty"), ("   ", "empty"), ("x" * (MAX_TEXT + 1), "at most 500"),
                     ("a\x00b", "control")):
        with pytest.raises(HmiInvalidArgs, match=why):
            check_text(bad)


def test_group_matches_case_insensitively_and_lists_the_known_ones() -> None:
    assert check_group("Car Club", ["family", "car club"]) == "car club"
    with pytest.raises(HmiInvalidArgs,
                       match="unknown group 'bowling'; known groups: car club, family"):
        check_group("bowling", ["family", "car club"])
    with pytest.raises(HmiInvalidArgs, match="none known"):
        check_group("family", [])


@pytest.mark.parametrize("service, day, time, problem", [
    ("oil change", "monday", "09:30", "unknown service"),
    ("oil_change", "someday", "09:30", "unknown day"),
    ("oil_change", "monday", "24:00", "HH:MM"),
    ("oil_change", "monday", "9:30", "HH:MM"),
    ("oil_change", "monday", "09:60", "HH:MM"),
])
def test_booking_rejects_each_bad_argument_by_name(service: str, day: str, time: str,
                                                   problem: str) -> None:
    with pytest.raises(HmiInvalidArgs, match=problem):
        check_booking(service, day, time)


def test_booking_normalises_case_and_accepts_every_listed_value() -> None:
    assert check_booking(" Tire_Rotation", "Tomorrow ", "23:59") == {
        "service": "tire_rotation", "day": "tomorrow", "time": "23:59"}
    for day in ("today", "sunday", "wednesday"):
        assert check_booking("car_wash", day, "00:00")["day"] == day
    with pytest.raises(HmiInvalidArgs, match="must not be empty"):
        check_key(" ")


def test_voice_states_documented_for_dbus_are_the_ones_voice_reports() -> None:
    assert VOICE_STATES == tuple(a.value for a in VoiceActivity)


def test_state_follows_events_and_reports_only_what_changed() -> None:
    s0 = HmiState()
    s1 = s0.apply(CloudState("online")).apply(BusState("up")).apply(VoiceState("confirming"))
    assert s1.changed(s0) == {"CloudState": "online", "BusState": "up", "VoiceState": "confirming"}
    for state in VOICE_STATES:  # all five voice states reach the property as they are
        assert s0.apply(VoiceState(state)).VoiceState == state
    assert s1.apply(VoiceState("dreaming")).VoiceState == "dreaming"  # unknown: passed through
    stats = OutboxStats({"chat": {"items": 2.0, "oldest_age_s": 4.4},
                         "status": {"items": 1.0, "oldest_age_s": 61.7},
                         "emergency": {"items": 0.0, "oldest_age_s": 0.0}}, 0.0)
    s2 = s1.apply(stats)
    assert s2.changed(s1) == {"OutboxDepth": 3, "OldestOutboxAgeSeconds": 62.0}
    assert s2.apply(stats).changed(s2) == {}
    assert s2.apply(GroupsListed(("runners",), ("chess",))).cloud_groups == {"runners", "chess"}
    assert s2.apply(VehicleIdentified("WVWZZZ1KZ6W000001", 0x7E8, 0.0)).changed(s2) == {
        "Vin": "WVWZZZ1KZ6W000001"}
    raised = AlertRaised("k", "tire", "warning", "spoken", "text", 0.0)
    assert s2.apply(raised) == s2  # alerts are read from the alert service, not from events


def test_signal_values_keep_their_type_and_unit() -> None:
    assert signal_tuple(sv("Vehicle.Speed", 88.5)) == ("d", 88.5, "km/h", 1.0)
    assert signal_tuple(sv("Vehicle.Gear", 3)) == ("x", 3, "", 1.0)
    assert signal_tuple(sv("Vehicle.Mode", "ON")) == ("s", "ON", "", 1.0)
    assert signal_tuple(SignalValue("Vehicle.Flag", True, None, 2)) == ("b", True, "", 2.0)


def test_intent_arguments_carry_slots_as_json() -> None:
    event = IntentRecognized("book an oil change", "book_service", {"service": "oil_change"}, "en")
    assert intent_args(event) == ("book_service", '{"service": "oil_change"}',
                                  "book an oil change")
    assert intent_args(IntentRecognized("blah", None, {}, "en"))[:2] == ("", "{}")


def test_throttle_sends_at_most_one_batch_per_interval_and_coalesces() -> None:
    t = SignalThrottle(0.5)
    assert t.due_in(0.0) is None
    t.offer({"Vehicle.Speed": sv("Vehicle.Speed", 1.0)})
    assert t.due_in(10.0) == 0.0  # first batch goes at once
    assert list(t.take(10.0)) == ["Vehicle.Speed"]
    t.offer({"Vehicle.Speed": sv("Vehicle.Speed", 2.0)})
    t.offer({"Vehicle.Speed": sv("Vehicle.Speed", 3.0), "Vehicle.Gear": sv("Vehicle.Gear", 4)})
    assert t.due_in(10.1) == pytest.approx(0.4)
    batch = t.take(10.5)
    assert batch["Vehicle.Speed"].value == 3.0 and set(batch) == {"Vehicle.Speed", "Vehicle.Gear"}
    assert t.take(10.6) == {} and t.last_sent == 10.5  # an empty take does not restart the clock


def test_config_section_validates_bus_and_interval() -> None:
    assert HmiConfig().bus == "system"
    cfg = build_config([("environment", env_overrides({
        "CARLINKD_HMI_BUS": "unix:path=/run/hmi", "CARLINKD_HMI_SIGNALS_INTERVAL_S": "0.25"}))])
    assert cfg.hmi == HmiConfig(bus="unix:path=/run/hmi", signals_interval_s=0.25)
    with pytest.raises(ConfigError, match="hmi: bus must be 'system', 'session' or a D-Bus"):
        build_config([("f.toml", {"hmi": {"bus": "sytem"}})])
    with pytest.raises(ConfigError, match="hmi.signals_interval_s: must be greater than 0"):
        build_config([("f.toml", {"hmi": {"signals_interval_s": 0}})])


def test_refusals_become_named_one_line_dbus_errors(caplog: pytest.LogCaptureFixture) -> None:
    from dbus_fast import DBusError

    from carlinkd.errors import HmiUnknownAlert
    from carlinkd.hmi.interface import dbus_errors

    with pytest.raises(DBusError) as refused, dbus_errors("AcknowledgeAlert"):
        raise HmiUnknownAlert("no active alert 'x'; active: none\nsecond line")
    assert refused.value.type == "org.carlinkd.Daemon1.Error.UnknownAlert"
    assert refused.value.text == "no active alert 'x'; active: none"
    with pytest.raises(DBusError) as failed, dbus_errors("Say"):
        raise RuntimeError("bug")
    assert failed.value.type == "org.carlinkd.Daemon1.Error.Unavailable"
    assert failed.value.text == "Say failed inside carlinkd; see its log"
    assert "D-Bus Say failed" in caplog.text and "RuntimeError: bug" in caplog.text
