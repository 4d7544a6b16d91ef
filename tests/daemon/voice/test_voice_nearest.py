"""Free text onto the grammar (carlinkd.voice.nearest): pure, on text, no model."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from carlinkd.voice.intents import IntentParser
from carlinkd.voice.nearest import GrammarMatcher, WordGraph, cjk_chars, en_words, token_distance

FIX = Path(__file__).resolve().parents[2] / "fixtures" / "voice"


@pytest.fixture(scope="module")
def en() -> GrammarMatcher:
    return GrammarMatcher(IntentParser("en"))


@pytest.fixture(scope="module")
def zh() -> GrammarMatcher:
    return GrammarMatcher(IntentParser("zh"))


def parsed(matcher: GrammarMatcher, text: str, context: str | None = None,
           ) -> tuple[str | None, dict[str, str]]:
    match = matcher.match(text, context)
    if match is None:
        return None, {}
    result = matcher.parser.parse(match.text)
    return result.intent, dict(result.slots)


def test_words_keep_typed_times_and_spell_counts() -> None:
    assert en_words("Book it at 9:30 a.m., please!") == ["book", "it", "at", "9:30", "a.m.",
                                                         "please"]
    assert en_words("There in 15 minutes.") == ["there", "in", "fifteen", "minutes"]
    assert en_words("at 2pm", spell_numbers=False) == ["at", "2", "pm"]
    assert cjk_chars("给家人 发消息：好的。") == list("给家人发消息好的")
    assert cjk_chars("下午3:45") == list("下午3:45")


def test_text_hassil_understands_passes_through(en: GrammarMatcher) -> None:
    match = en.match("Read my messages.")
    assert match is not None and match.exact and match.distance == 0.0
    assert match.text == "read my messages"


@pytest.mark.parametrize(("heard", "intent", "slots"), [
    # (the same sentences without the slips are typed-text sentences, see test_voice_phrasings)
    ("Please book and oil change for tomorrow at 9 a.m.", "book_service",
     {"service": "oil_change", "day": "tomorrow", "time": "09:00"}),
    ("and the message to family I'm running late.", "send_message",
     {"group": "family", "text": "Running late"}),
    ("Check my tire pressure, please.", "vehicle_status", {"item": "tire_pressure"}),
    ("Schedule the tire rotation on Friday at 2 pm.", "book_service",
     {"service": "tire_rotation", "day": "friday", "time": "14:00"}),
    ("Send the message to friends, I'll be there in 10 minutes.", "send_message",
     {"group": "friends", "text": "There in 10 minutes"}),
    ("Call road side assistance.", "emergency_help", {}),  # two words heard as one
    ("Book a car wash on Sundae.", "book_service", {"service": "car_wash", "day": "sunday"}),
])
def test_near_sentences_map_with_slots_from_the_sentence(
        en: GrammarMatcher, heard: str, intent: str, slots: dict[str, str]) -> None:
    match = en.match(heard)
    assert match is not None and not match.exact and 0 < match.distance <= en.max_distance
    assert parsed(en, heard) == (intent, slots)


def test_out_of_grammar_speech_is_rejected(en: GrammarMatcher) -> None:
    lines = [line for line in (FIX / "out_of_grammar.txt").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    lines += ["what is the weather like today", "I can't make any messages.",
              "We'll can oil change tomorrow to item.", "Set it message."]
    assert [(line, parsed(en, line)[0]) for line in lines] == [(line, None) for line in lines]


@pytest.mark.parametrize("heard", [
    "send a message to family there in minutes",  # five? ten? not said: never guessed
    "Send a message to friends on home.",  # "home" left unexplained: the text is not dropped
    "Book an oil rotation at nine a.m. on Monday.",  # oil change? tire rotation? neither
    "and thank you to Color Club.",  # "color" is not "car": the group is not filled in
    "book a car wash on Sonday",  # monday or sunday? the day is left open -> rejected
])
def test_a_slot_is_never_guessed(en: GrammarMatcher, heard: str) -> None:
    assert en.match(heard) is None


def test_a_slot_left_out_stays_out(en: GrammarMatcher) -> None:
    assert parsed(en, "book a car wash on") == ("book_service", {"service": "car_wash"})


def test_answer_context_limits_the_sentences(en: GrammarMatcher) -> None:
    assert parsed(en, "Famly.", "group") == ("answer", {"group": "family"})
    assert parsed(en, "Yes, please do.", "confirm")[0] == "confirm"
    assert en.match("Famly.", "confirm") is None


def test_groups_follow_the_parser() -> None:
    parser = IntentParser("en", ["family", "book club"])
    matcher = GrammarMatcher(parser)
    assert parsed(matcher, "send a message to the book clubs on my way") == (
        "send_message", {"group": "book club", "text": "On my way"})
    parser.set_groups(["family", "chess club"])
    assert parsed(matcher, "send a message to the chess clubs on my way")[1]["group"] == \
        "chess club"


def test_mandarin_by_sound_and_in_traditional_characters(zh: GrammarMatcher) -> None:
    assert parsed(zh, "給家人發消息我馬上到") == ("send_message",
                                               {"group": "家人", "text": "我马上到"})
    # 道 for 到: the same syllable and tone
    assert parsed(zh, "给家人发消息，我马上道") == ("send_message",
                                                {"group": "家人", "text": "我马上到"})
    assert zh.match("今天天气怎么样") is None
    assert zh.match("播放音乐") is None


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_every_path_of_the_word_graph_is_a_sentence_hassil_parses(lang: str) -> None:
    matcher = GrammarMatcher(IntentParser(lang))
    graph = matcher.graphs[None]
    rng = random.Random(7)
    joiner = "" if matcher.cjk else " "
    for _ in range(40):
        words = random_path(graph, rng)
        assert matcher.parser.parse(joiner.join(words)).intent is not None, words


def random_path(graph: WordGraph, rng: random.Random) -> list[str]:
    out: dict[int, list[int]] = {}
    for e, a in enumerate(graph.src.tolist()):
        out.setdefault(a, []).append(e)
    state, words = 0, []
    while state != graph.end:
        e = rng.choice(out[state])
        if graph.word[e] >= 0:
            words.append(graph.words[int(graph.word[e])])
        state = int(graph.dst[e])
    return words


def test_token_distance() -> None:
    same = lambda a, b: 0.0 if a == b else 1.0  # noqa: E731
    assert token_distance(["a", "b", "c"], ["a", "c"], same) == 1.0
    assert token_distance([], ["a", "b"], same) == 2.0
    assert token_distance(["x", "y", "z"], ["a"], same, bound=1.0) >= 1.0
