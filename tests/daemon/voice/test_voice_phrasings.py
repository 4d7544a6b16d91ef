"""Natural phrasing on typed text (en, zh): the phrasing corpora, the issue's examples, clock
times as people say them, out-of-grammar rejection, and what reaches the ASR grammar."""

from __future__ import annotations

from pathlib import Path

import pytest

from carlinkd.voice.grammar import GrammarBuilder, context_rules, english_tokens, to_jsgf
from carlinkd.voice.intents import COMMAND_INTENTS, DIALOG_INTENTS, IntentParser
from carlinkd.voice.testset import Case, load_cases
from carlinkd.voice.times import (en_time_values, period_values, typed_time, with_period,
                                  zh_time_values)

FIX = Path(__file__).resolve().parents[2] / "fixtures" / "voice"
# Measured (scripts/phrasing_accuracy.py): exact intent + slots on the held-out corpora
# 99.5 % en (213), 100 % zh (116); tuning 100 % / 100 %. Floors a little below.
HELDOUT_FLOOR = {"en": 0.97, "zh": 0.97}
TUNING_FLOOR = 0.99
#: Slot names and the values a slot may take where the set is closed.
SLOT_VALUES = {
    "day": {"today", "tomorrow", "monday", "tuesday", "wednesday", "thursday", "friday",
            "saturday", "sunday"},
    "service": {"oil_change", "tire_rotation", "inspection", "brake_service", "car_wash",
                "repair"},
    "item": {"tire_pressure", "fuel", "range", "speed", "engine_temperature", "battery",
             "next_service", "faults", "odometer"},
}


@pytest.fixture(scope="module")
def parsers() -> dict[str, IntentParser]:
    return {"en": IntentParser("en"), "zh": IntentParser("zh")}


def corpus(lang: str, part: str) -> list[Case]:
    return load_cases(FIX / f"phrasings_{lang}_{part}.tsv")


def exact(parser: IntentParser, case: Case) -> bool:
    got = parser.parse(case.text)
    return got.intent == case.intent and dict(got.slots) == case.slots


def test_corpora_are_big_enough_and_well_formed() -> None:
    en = corpus("en", "heldout") + corpus("en", "tuning")
    zh = corpus("zh", "heldout") + corpus("zh", "tuning")
    oog = load_cases(FIX / "phrasings_oog.tsv")
    assert len(en) >= 400 and len(zh) >= 200 and len(oog) >= 60
    assert {c.context for c in oog} == {"en", "zh"} and all(c.intent is None for c in oog)
    known = set(COMMAND_INTENTS) | set(DIALOG_INTENTS)
    for case in en + zh:
        assert case.intent is None or case.intent in known, case
        for slot, value in case.slots.items():
            assert value in SLOT_VALUES.get(slot, {value}), case
            if slot == "time":
                assert len(value) == 5 and value[2] == ":", case
    assert len({c.text for c in en}) == len(en) and len({c.text for c in zh}) == len(zh)


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_heldout_accuracy_floor(parsers: dict[str, IntentParser], lang: str) -> None:
    cases = corpus(lang, "heldout")
    results = [(c, parsers[lang].parse(c.text)) for c in cases]
    misses = [(c.text, r.intent, dict(r.slots)) for c, r in results
              if not (r.intent == c.intent and dict(r.slots) == c.slots)]
    wrong = [m for m in misses if m[1] is not None]
    print(f"\n{lang} held-out: {1 - len(misses) / len(cases):.1%} of {len(cases)}", misses)
    assert 1 - len(misses) / len(cases) >= HELDOUT_FLOOR[lang]
    assert len(wrong) <= len(cases) // 100  # a wrong action is worse than "not understood"


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_tuning_accuracy_floor(parsers: dict[str, IntentParser], lang: str) -> None:
    cases = corpus(lang, "tuning")
    ok = sum(exact(parsers[lang], c) for c in cases)
    assert ok / len(cases) >= TUNING_FLOOR


def test_out_of_grammar_never_becomes_an_action(parsers: dict[str, IntentParser]) -> None:
    accepted = [(c.text, r.intent) for c in load_cases(FIX / "phrasings_oog.tsv")
                if (r := parsers[c.context or "en"].parse(c.text)).intent is not None]
    assert not accepted


ISSUE_EXAMPLES = [
    ("en", "book an oil change tomorrow at nine am", "book_service",
     {"service": "oil_change", "day": "tomorrow", "time": "09:00"}),
    ("en", "schedule a tire rotation on friday at two pm", "book_service",
     {"service": "tire_rotation", "day": "friday", "time": "14:00"}),
    ("en", "my car broke down", "emergency_help", {}),
    ("en", "i need roadside help", "emergency_help", {}),
    ("en", "read the car club messages", "read_messages", {"group": "car club"}),
    ("en", "message the car club I'll call you back", "send_message",
     {"group": "car club", "text": "Call you back"}),
    ("en", "what's the odometer reading", "vehicle_status", {"item": "odometer"}),
    ("en", "I'm stuck", "emergency_help", {}),
    ("en", "I need a tow", "emergency_help", {}),
    ("en", "roadside assistance", "emergency_help", {}),
    ("en", "text family I'm running late", "send_message",
     {"group": "family", "text": "Running late"}),
    ("en", "how many kilometers can I drive", "vehicle_status", {"item": "range"}),
    ("en", "how many miles are on the car", "vehicle_status", {"item": "odometer"}),
    ("en", "yes please", "confirm", {}), ("en", "send it", "confirm", {}),
    ("en", "go ahead", "confirm", {}), ("en", "no", "cancel", {}),
    ("en", "never mind", "cancel", {}), ("en", "forget it", "cancel", {}),
    ("zh", "预约明天上午九点保养", "book_service", {"day": "tomorrow", "time": "09:00"}),
    ("zh", "下次保养是什么时候", "vehicle_status", {"item": "next_service"}),
    ("zh", "给朋友发消息我会晚到", "send_message", {"group": "朋友", "text": "我会晚点到"}),
    ("zh", "车坏了", "emergency_help", {}), ("zh", "需要救援", "emergency_help", {}),
    ("zh", "好的", "confirm", {}), ("zh", "确定", "confirm", {}),
    ("zh", "不用了", "cancel", {}), ("zh", "算了", "cancel", {}),
]


@pytest.mark.parametrize(("lang", "text", "intent", "slots"), ISSUE_EXAMPLES)
def test_issue_examples(parsers: dict[str, IntentParser], lang: str, text: str, intent: str,
                        slots: dict[str, str]) -> None:
    got = parsers[lang].parse(text)
    assert (got.intent, dict(got.slots)) == (intent, slots)


def test_english_clock_times_as_people_say_them() -> None:
    t = dict(en_time_values())
    assert t["nine am"] == t["9 a.m."] == t["9am"] == t["nine in the morning"] == "09:00"
    assert t["two pm"] == t["2 p.m."] == t["two in the afternoon"] == "14:00"
    assert t["half past nine"] == "09:30" and t["ten thirty"] == "10:30"
    assert t["quarter to ten"] == "09:45" and t["quarter to one"] == "12:45"
    assert t["quarter to twelve a.m."] == "23:45" and t["twelve a.m."] == "00:00"
    assert t["noon"] == t["midday"] == "12:00" and t["eleven at night"] == "23:00"
    assert t["seven"] == "07:00" and t["six"] == "18:00"  # service hours without a.m./p.m.
    assert t["21:15"] == "21:15" and t["9:05"] == "09:05"


def test_mandarin_clock_times_as_people_say_them() -> None:
    t = dict(zh_time_values())
    assert t["上午九点"] == t["上午9点"] == t["早上九点"] == "09:00"
    assert t["下午两点半"] == t["下午2点半"] == t["下午两点三十分"] == "14:30"
    assert t["九点半"] == "09:30" and t["中午"] == "12:00" and t["中午一点"] == "13:00"
    assert t["晚上八点一刻"] == "20:15" and t["两点三刻"] == "14:45" and t["十点钟"] == "10:00"
    assert "中午五点" not in t  # 中午 is 12 to 2 p.m.


def test_mandarin_period_is_applied_to_the_clock(parsers: dict[str, IntentParser]) -> None:
    zh = parsers["zh"]
    assert zh.parse("预约周五晚上八点半洗车").slots == {
        "day": "friday", "time": "20:30", "service": "car_wash"}
    assert zh.parse("中午一点").slots == {"time": "13:00"}
    assert zh.parse("预约明天中午五点洗车").intent is None  # 中午 is 12 to 2 p.m.
    assert with_period("pm", "09:00") == "21:00" and with_period("am", "15:00") == "03:00"
    assert with_period("noon", "12:00") is None  # 中午 has its own list of clocks


def test_a_part_of_the_day_moves_the_hour(parsers: dict[str, IntentParser]) -> None:
    assert dict(period_values("en", pm=True))["eight"] == "20:00"
    assert dict(period_values("en", pm=False))["eight"] == "08:00"
    en = parsers["en"]
    assert en.parse("book a car wash tonight at eight").slots == {
        "service": "car_wash", "day": "today", "time": "20:00"}
    assert en.parse("book a car wash tomorrow morning at eight").slots["time"] == "08:00"
    assert en.parse("book a car wash friday evening at six").slots == {
        "service": "car_wash", "day": "friday", "time": "18:00"}
    assert parsers["zh"].parse("预约今晚七点半洗车").slots == {
        "day": "today", "time": "19:30", "service": "car_wash"}


def test_weekdays_with_and_without_on_next(parsers: dict[str, IntentParser]) -> None:
    for text in ("book a car wash friday", "book a car wash on friday",
                 "book a car wash next friday", "book a car wash for this friday"):
        assert parsers["en"].parse(text).slots.get("day") == "friday", text
    for text in ("周五洗车", "下周五洗车", "星期五洗车", "这个礼拜五洗车"):
        assert parsers["zh"].parse(text).slots.get("day") == "friday", text


def test_typed_only_forms_stay_out_of_the_recognition_grammar() -> None:
    assert typed_time("nine am") and typed_time("9:30") and not typed_time("nine a.m.")
    parser = IntentParser("en")
    rules = GrammarBuilder(parser, english_tokens(lambda w: True)).build()
    jsgf = to_jsgf(rules)
    time_rule = next(line for line in jsgf.splitlines() if line.startswith("<list_time> ="))
    assert "a.m." in time_rule and "in the ( morning | afternoon | evening )" in time_rule
    assert " am " not in time_rule and " pm " not in time_rule and " night " not in time_rule
    confirm = next(line for line in jsgf.splitlines() if line.startswith("<confirm> ="))
    assert "go ahead" in confirm and "yup" not in confirm  # "yup" is a typed-only block
    assert parser.parse("yup").intent == "confirm"
    # Bare answers are heard only in the grammar of the question they answer.
    command = next(line for line in jsgf.splitlines() if line.startswith("<command> ="))
    assert "<answer>" not in command and "<book_service>" in command
    assert "<rule_when>" in to_jsgf(rules, context_rules(rules)["day"]).splitlines()[2]
