"""Protocol 2 voice intents (groups, help cancel, helper mode, choice, booking cancel), en + zh,
and the dialog commands they become."""

from __future__ import annotations

import pytest

from carlinkd.voice.dialog import Dialog, EmitCommand, Lookup, Say
from carlinkd.voice.intents import IntentParser

EN = [
    ("join the car club", "join_group", {"group": "car club"}),
    ("add me to family", "join_group", {"group": "family"}),
    ("leave the friends group", "leave_group", {"group": "friends"}),
    ("which groups can I join", "list_groups", {}),
    ("I'm OK now", "cancel_help", {}),
    ("cancel the help request", "cancel_help", {}),
    ("I can help others", "helper_mode", {"state": "on"}),
    ("stop offering help", "helper_mode", {"state": "off"}),
    ("the first one", "choose", {"choice": "1"}),
    ("the third one", "choose", {"choice": "3"}),
    ("cancel my booking", "cancel_booking", {}),
    ("cancel", "cancel", {}),  # still the plain cancel
]
ZH = [
    ("加入车友会", "join_group", {"group": "车友会"}),
    ("退出家人", "leave_group", {"group": "家人"}),
    ("我能加入哪些群", "list_groups", {}),
    ("我没事了", "cancel_help", {}),
    ("取消求救", "cancel_help", {}),
    ("我可以帮助别人", "helper_mode", {"state": "on"}),
    ("停止帮助别人", "helper_mode", {"state": "off"}),
    ("第一个", "choose", {"choice": "1"}),
    ("第二家", "choose", {"choice": "2"}),
    ("取消预约", "cancel_booking", {}),
    ("取消", "cancel", {}),
]


@pytest.mark.parametrize(("text", "intent", "slots"), EN)
def test_english_v2_intents(text: str, intent: str, slots: dict[str, str]) -> None:
    parsed = IntentParser("en").parse(text)
    assert (parsed.intent, dict(parsed.slots)) == (intent, slots)


@pytest.mark.parametrize(("text", "intent", "slots"), ZH)
def test_mandarin_v2_intents(text: str, intent: str, slots: dict[str, str]) -> None:
    parsed = IntentParser("zh").parse(text)
    assert (parsed.intent, dict(parsed.slots)) == (intent, slots)


def test_shop_names_are_a_live_list() -> None:
    p = IntentParser("en")
    assert p.parse("Demo Garage").intent != "choose"
    rev = p.revision
    assert p.set_shops(["Demo Garage", "Garage Nord"]) and p.revision == rev + 1
    parsed = p.parse("demo garage")
    assert (parsed.intent, dict(parsed.slots)) == ("choose", {"shop": "Demo Garage"})
    assert not p.set_shops(["Demo Garage", "Garage Nord"])


def test_cloud_groups_replace_the_configured_ones() -> None:
    p = IntentParser("en")
    p.set_groups(["family", "volvo owners"])
    assert dict(p.parse("join volvo owners").slots) == {"group": "volvo owners"}
    assert p.parse("join the car club").intent is None


@pytest.mark.parametrize(("text", "command", "args"), [
    ("join the car club", "join_group", {"group": "car club"}),
    ("leave family", "leave_group", {"group": "family"}),
    ("I'm OK now", "help_cancel", {}),
    ("I can help others", "set_helper", {"state": "on"}),
    ("stop offering help", "set_helper", {"state": "off"}),
])
def test_direct_commands_go_without_read_back(text: str, command: str,
                                              args: dict[str, str]) -> None:
    d = Dialog("en")
    out = d.heard(IntentParser("en").parse(text), 0.0)
    assert out[0] == EmitCommand(command, args)
    assert isinstance(out[1], Say) and out[1].text
    assert d.intent is None  # the exchange is over


def test_lookups_are_left_to_the_adapter() -> None:
    p, d = IntentParser("en"), Dialog("en")
    assert d.heard(p.parse("which groups can I join"), 0.0) == [Lookup("list_groups")]
    assert d.heard(p.parse("cancel my booking"), 1.0) == [Lookup("cancel_booking")]

