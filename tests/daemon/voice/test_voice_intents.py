"""Intents on text (en, zh) and the grammars generated from the same templates."""

from __future__ import annotations

from pathlib import Path

import pytest

from carlinkd.voice.grammar import (
    GrammarBuilder,
    cjk_tokens,
    context_rules,
    english_tokens,
    to_jsgf,
    to_phrases,
)
from carlinkd.voice.intents import IntentParser, en_time_values, zh_time_values
from carlinkd.voice.testset import load_cases

FIX = Path(__file__).resolve().parents[2] / "fixtures" / "voice"


@pytest.fixture(scope="module")
def en() -> IntentParser:
    return IntentParser("en")


@pytest.fixture(scope="module")
def zh() -> IntentParser:
    return IntentParser("zh")


def test_english_test_set_parses_exactly(en: IntentParser) -> None:
    cases = load_cases(FIX / "en_utterances.tsv")
    assert len(cases) >= 150
    intents = {c.intent for c in cases}
    assert {"send_message", "read_messages", "book_service", "vehicle_status",
            "emergency_help", "confirm", "cancel", "repeat"} <= intents
    wrong = [(c.text, en.parse(c.text)) for c in cases
             if (r := en.parse(c.text)).intent != c.intent or dict(r.slots) != c.slots]
    assert not wrong


def test_mandarin_test_set_parses_exactly(zh: IntentParser) -> None:
    cases = load_cases(FIX / "zh_utterances.tsv")
    wrong = [(c.text, zh.parse(c.text)) for c in cases
             if (r := zh.parse(c.text)).intent != c.intent or dict(r.slots) != c.slots]
    assert not wrong


@pytest.mark.parametrize("text", ["what is the weather like today", "play some music", "",
                                  "send a message to the boss running late",
                                  "book a pedicure tomorrow"])
def test_out_of_grammar_text_is_not_understood(en: IntentParser, text: str) -> None:
    assert en.parse(text).intent is None


def test_typed_forms_match_too(en: IntentParser) -> None:
    r = en.parse("Book an oil change tomorrow at 9:30am.")
    assert r.intent == "book_service" and r.slots["time"] == "09:30"
    assert en.parse("book a car wash on friday at 21:15").slots["time"] == "21:15"
    assert en.parse("Send a message to family: I’m running late").slots["text"] == "Running late"


def test_json_shape(en: IntentParser) -> None:
    assert en.parse("read messages from friends").to_json() == {
        "text": "read messages from friends", "intent": "read_messages",
        "slots": {"group": "friends"}}


def test_time_lists_map_to_24h() -> None:
    en_times = dict(en_time_values())
    assert en_times["two p.m."] == "14:00" and en_times["nine"] == "09:00"
    assert en_times["three thirty"] == "15:30" and en_times["twelve a.m."] == "00:00"
    assert en_times["quarter past eleven"] == "11:15" and en_times["noon"] == "12:00"
    zh_times = dict(zh_time_values())
    assert zh_times["下午三点半"] == "15:30" and zh_times["上午九点"] == "09:00"
    assert zh_times["晚上八点一刻"] == "20:15" and zh_times["两点"] == "14:00"


def test_live_groups_change_parser_and_grammar() -> None:
    parser = IntentParser("en", ["family"])
    assert parser.parse("message colleagues on my way").intent is None
    rev = parser.revision
    assert parser.set_groups(["family", "colleagues"])
    assert parser.revision == rev + 1 and not parser.set_groups(["family", "colleagues"])
    r = parser.parse("message colleagues on my way")
    assert r.intent == "send_message" and r.slots["group"] == "colleagues"
    jsgf = to_jsgf(GrammarBuilder(parser, english_tokens(lambda w: True)).build())
    assert "<list_group> = ( family | colleagues ) ;" in jsgf


def test_jsgf_drops_words_the_recognizer_cannot_say() -> None:
    parser = IntentParser("en", ["family", "zorblax"])
    vocab = {"zorblax"}
    jsgf = to_jsgf(GrammarBuilder(parser, english_tokens(lambda w: w not in vocab)).build())
    assert "zorblax" not in jsgf and "family" in jsgf
    assert "9:30" not in jsgf and "public <utterance> = <command> ;" in jsgf
    for intent in ("send_message", "book_service", "vehicle_status", "emergency_help",
                   "confirm", "cancel", "repeat", "answer"):
        assert f"<{intent}> = " in jsgf


def test_vosk_phrases_cover_sentences_and_slot_values(zh: IntentParser) -> None:
    words = {"给", "家人", "朋友", "车友会", "发", "消息", "我", "马上", "到", "取消", "好的",
             "洗车", "明天", "预约"}
    builder = GrammarBuilder(zh, cjk_tokens(lambda w: w in words))
    rules = builder.build()
    phrases = to_phrases(rules, builder.list_rules)
    assert "给 家人 发 消息 我 马上 到" in phrases
    assert "取消" in phrases and "好的" in phrases and "洗车" in phrases
    assert all(set(p.split()) <= words for p in phrases)


def test_answer_contexts_hold_only_the_answers_to_their_question() -> None:
    parser = IntentParser("en", ["family", "friends"])
    builder = GrammarBuilder(parser, english_tokens(lambda w: True))
    rules = builder.build()
    contexts = context_rules(rules)
    assert {"group", "text", "service", "day", "time", "item", "confirm"} <= set(contexts)
    group = to_phrases(rules, builder.list_rules, top=contexts["group"])
    assert {"family", "to friends", "yes", "cancel"} <= set(group)
    assert not {"oil change", "saturday", "on my way", "send a message"} & set(group)
    confirm = to_phrases(rules, builder.list_rules, top=contexts["confirm"])
    assert "yes" in confirm and "never mind" in confirm and "family" not in confirm
    jsgf = to_jsgf(rules, contexts["service"])
    public = jsgf.splitlines()[2]
    assert "<list_service>" in public and "<command>" not in public and "<list_group>" not in public
