"""Dialog state machine (pure, time passed in), prompt lengths and the speech priority queue."""

from __future__ import annotations

import string

import pytest

from carlinkd.voice.dialog import (
    OFFER_MAX_AGE_S,
    Dialog,
    DialogState,
    EmitCommand,
    Listen,
    ReadMessages,
    ReportStatus,
    Say,
    StopSpeaking,
)
from carlinkd.voice.intents import ParsedIntent
from carlinkd.voice.prompts import MAX_HANZI, MAX_WORDS, PROMPTS, breath_length, render
from carlinkd.voice.tts import Play, Priority, SpeechQueue, Stop


def heard(intent: str | None, **slots: str) -> ParsedIntent:
    return ParsedIntent("(test)", intent, slots)


def says(actions: list[object]) -> list[str]:
    return [a.text for a in actions if isinstance(a, Say)]


def commands(actions: list[object]) -> list[EmitCommand]:
    return [a for a in actions if isinstance(a, EmitCommand)]


def test_send_message_reads_back_then_confirms_into_a_command() -> None:
    d = Dialog()
    d.push_to_talk(0.0)
    out = d.heard(heard("send_message", group="family", text="Running late"), 1.0)
    assert says(out) == ["Send 'Running late' to family? Say yes or cancel."]
    assert d.state is DialogState.CONFIRMING and not commands(out)
    out = d.heard(heard("confirm"), 2.0)
    assert commands(out) == [EmitCommand("send_message", {"group": "family",
                                                          "text": "Running late"})]
    assert d.state is DialogState.IDLE


def test_cancel_at_confirmation_sends_nothing() -> None:
    d = Dialog()
    d.heard(heard("emergency_help"), 0.0)
    out = d.heard(heard("cancel"), 1.0)
    assert says(out) == ["Cancelled."] and not commands(out)
    assert d.state is DialogState.IDLE


def test_cancel_while_filling_slots() -> None:
    d = Dialog()
    d.heard(heard("book_service"), 0.0)
    assert d.state is DialogState.FILLING
    out = d.heard(heard("cancel"), 1.0)
    assert not commands(out) and d.state is DialogState.IDLE


def test_missing_slots_are_asked_for_in_order() -> None:
    d = Dialog()
    out = d.heard(heard("book_service"), 0.0)
    assert says(out) == [render("ask_service", "en")] and Listen() in out
    out = d.heard(heard("answer", service="oil_change"), 1.0)
    assert says(out) == [render("ask_day", "en")]
    out = d.heard(heard("answer", day="tomorrow", time="09:30"), 2.0)
    assert says(out) == ["Book an oil change tomorrow at 9:30 AM? Yes or cancel?"]
    out = d.heard(heard("confirm"), 3.0)
    # a confirmed booking first asks the cloud which shops have the slot (the driver chooses)
    assert commands(out) == [EmitCommand("booking_options", {
        "service": "oil_change", "day": "tomorrow", "time": "09:30"})]


def test_answer_without_the_awaited_slot_reprompts_then_gives_up() -> None:
    d = Dialog()
    d.heard(heard("send_message", group="friends"), 0.0)
    assert d.awaiting == "text"
    out = d.heard(heard("answer", day="monday"), 1.0)
    assert says(out) == [render("ask_text", "en")]
    out = d.heard(heard("answer", day="monday"), 2.0)
    assert says(out) == [render("gave_up", "en")] and not commands(out)
    assert d.state is DialogState.IDLE


def test_silence_reprompts_once_then_gives_up_after_timeout() -> None:
    d = Dialog(silence_timeout_s=8.0)
    d.heard(heard("send_message", group="family", text="On my way"), 100.0)
    assert d.tick(107.9) == []
    out = d.tick(108.0)
    assert says(out) == ["Send 'On my way' to family? Say yes or cancel."]
    assert d.state is DialogState.CONFIRMING
    assert d.tick(115.9) == []
    out = d.tick(116.0)
    assert says(out) == [render("gave_up", "en")] and not commands(out)
    assert d.state is DialogState.IDLE and d.deadline is None


def test_barge_in_stops_speech_and_keeps_the_exchange() -> None:
    d = Dialog()
    d.heard(heard("send_message", group="family", text="Thank you"), 0.0)
    out = d.push_to_talk(1.0)
    assert out == [StopSpeaking()]
    assert d.state is DialogState.CONFIRMING and d.deadline is None
    assert commands(d.heard(heard("confirm"), 2.0))


def test_not_understood_never_acts() -> None:
    d = Dialog()
    d.heard(heard("send_message", group="family", text="Need help"), 0.0)
    out = d.heard(heard(None), 1.0)
    assert says(out) == ["Send 'Need help' to family? Say yes or cancel."] and not commands(out)
    out = d.heard(heard(None), 2.0)
    assert not commands(out) and d.state is DialogState.IDLE


def test_not_understood_from_idle_asks_again() -> None:
    d = Dialog()
    d.push_to_talk(0.0)
    out = d.heard(heard(None), 1.0)
    assert says(out) == [render("not_understood", "en")]


def test_repeat_says_the_last_prompt_again() -> None:
    d = Dialog()
    d.heard(heard("send_message"), 0.0)
    out = d.heard(heard("repeat"), 1.0)
    assert says(out) == [render("ask_group", "en")]


def test_confirm_with_nothing_pending() -> None:
    d = Dialog()
    out = d.heard(heard("confirm"), 0.0)
    assert says(out) == [render("nothing_to_confirm", "en")] and not commands(out)


def test_a_new_command_replaces_one_being_filled() -> None:
    d = Dialog()
    d.heard(heard("book_service"), 0.0)
    out = d.heard(heard("vehicle_status", item="fuel"), 1.0)
    assert out == [ReportStatus("fuel")] and d.state is DialogState.IDLE


def test_status_and_reading_need_no_confirmation() -> None:
    d = Dialog()
    assert d.heard(heard("read_messages", group="family"), 0.0) == [ReadMessages("family")]
    assert d.heard(heard("read_messages"), 1.0) == [ReadMessages(None)]
    out = d.heard(heard("vehicle_status"), 2.0)
    assert says(out) == [render("ask_item", "en")]
    assert d.heard(heard("answer", item="range"), 3.0) == [ReportStatus("range")]


def test_slots_outside_the_intent_are_ignored() -> None:
    d = Dialog()
    d.heard(heard("send_message", group="family", text="Thank you", day="monday"), 0.0)
    out = d.heard(heard("confirm"), 1.0)
    assert commands(out)[0].args == {"group": "family", "text": "Thank you"}


def test_mandarin_dialog() -> None:
    d = Dialog(lang="zh")
    out = d.heard(heard("send_message", group="家人", text="我马上到"), 0.0)
    assert says(out) == ["给家人发送“我马上到”？请说确认或取消。"]
    assert commands(d.heard(heard("confirm"), 1.0))


HELP = EmitCommand("help_respond", {"request_id": "r1", "text": "On my way"})
INTRO = ("car-7 needs roadside help, 2 kilometers away.",)


def offer(d: Dialog, now: float) -> list[object]:
    return list(d.offer(HELP, "Answer on my way? Say yes or cancel.", now, intro=INTRO,
                        done="Told car-7 you're on your way."))


def test_offer_when_idle_asks_at_alert_priority_and_yes_makes_the_command() -> None:
    d = Dialog()
    out = offer(d, 0.0)
    assert out == [Say(INTRO[0], "alert"), Say("Answer on my way? Say yes or cancel.", "alert"),
                   Listen()]
    assert d.state is DialogState.CONFIRMING and d.intent == "help_respond"
    out = d.heard(heard("confirm"), 1.0)
    assert commands(out) == [HELP] and says(out) == ["Told car-7 you're on your way."]
    assert d.state is DialogState.IDLE and d.offer_made is None


def test_offer_cancelled_or_left_unanswered_makes_nothing() -> None:
    d = Dialog(silence_timeout_s=8.0)
    offer(d, 0.0)
    out = d.heard(heard("cancel"), 1.0)
    assert not commands(out) and d.state is DialogState.IDLE
    offer(d, 10.0)
    assert d.tick(17.9) == []
    out = d.tick(18.0)  # silence: dropped at once, without a reprompt or a word
    assert out == [] and d.state is DialogState.IDLE and d.deadline is None
    assert not commands(d.heard(heard("confirm"), 19.0))


def test_offer_not_understood_asks_once_more_then_drops_quietly() -> None:
    d = Dialog()
    offer(d, 0.0)
    out = d.heard(heard(None), 1.0)
    assert says(out) == ["Answer on my way? Say yes or cancel."] and not commands(out)
    out = d.heard(heard("answer", group="family"), 2.0)
    assert out == [] and d.state is DialogState.IDLE


def test_offer_repeat_says_the_request_again() -> None:
    d = Dialog()
    offer(d, 0.0)
    out = d.heard(heard("repeat"), 1.0)
    assert says(out) == [INTRO[0], "Answer on my way? Say yes or cancel."]


def test_offer_during_an_exchange_waits_for_it_to_finish() -> None:
    d = Dialog()
    d.heard(heard("send_message", group="family"), 0.0)
    assert offer(d, 1.0) == []
    assert d.state is DialogState.FILLING and d.intent == "send_message"
    out = d.heard(heard("answer", text="Running late"), 2.0)
    assert says(out) == ["Send 'Running late' to family? Say yes or cancel."]
    out = d.heard(heard("confirm"), 3.0)
    assert commands(out) == [EmitCommand("send_message", {"group": "family",
                                                          "text": "Running late"})]
    assert says(out) == ["Sent to family.", INTRO[0], "Answer on my way? Say yes or cancel."]
    assert d.state is DialogState.CONFIRMING and d.intent == "help_respond"
    assert commands(d.heard(heard("confirm"), 4.0)) == [HELP]


def test_offer_gone_stale_while_waiting_is_dropped() -> None:
    d = Dialog()
    d.heard(heard("book_service"), 0.0)
    offer(d, 0.0)
    out = d.heard(heard("cancel"), OFFER_MAX_AGE_S + 1.0)
    assert says(out) == ["Cancelled."] and d.state is DialogState.IDLE and not d.offers


def test_a_new_command_replaces_an_offer() -> None:
    d = Dialog()
    offer(d, 0.0)
    d.heard(heard("send_message", group="family", text="Thank you"), 1.0)
    out = d.heard(heard("confirm"), 2.0)
    assert commands(out) == [EmitCommand("send_message", {"group": "family",
                                                          "text": "Thank you"})]


def test_the_recognizer_listens_for_the_answer_to_the_question_asked() -> None:
    d = Dialog()
    assert d.expecting() is None
    d.heard(heard("book_service"), 0.0)          # "Which service?"
    assert d.expecting() == "service"
    d.heard(heard("answer", service="oil_change"), 1.0)
    assert d.expecting() == "day"                # "Which day?"
    d.heard(heard("answer", day="tomorrow", time="09:30"), 2.0)
    assert d.expecting() == "confirm"            # read-back: yes or cancel
    d.heard(heard("confirm"), 3.0)
    assert d.expecting() is None
    offer(d, 4.0)                                # the car asks on its own: anything goes
    assert d.expecting() is None


def test_silence_counts_from_the_end_of_speech() -> None:
    d = Dialog(silence_timeout_s=8.0)
    d.heard(heard("send_message", group="family", text="On my way"), 0.0)
    d.spoke(5.0)  # the question took five seconds to say
    assert d.deadline == 13.0 and d.tick(12.0) == []
    d.spoke(1.0)  # never earlier
    assert d.deadline == 13.0


LONGEST = {"group": "car club", "text": "There in 30 minutes", "service": "tire_rotation",
           "day": "wednesday", "time": "12:45", "sender": "Alexandra", "item": "fuel",
           "service_name": "tire_rotation", "shop": "Garage Mueller", "distance": "12.5 kilometers",
           "reason": "Garage Mueller is fully booked at 12:45 PM", "count": "1996",
           "options": "Garage Mueller, 12.5 kilometers, or Garage Mueller, 12.5 kilometers",
           "n": "Second", "option": "Garage Mueller, 12.5 kilometers", "note": "flat tyre",
           "address": "Hauptstrasse 120, Munich", "joined": "family, car club",
           "available": "friends"}
ZH_LONGEST = {"group": "车友会", "text": "二十分钟后到", "service": "刹车保养", "day": "周三",
              "time": "22:45", "sender": "王小明", "item": "fuel", "service_name": "刹车保养",
              "shop": "穆勒汽修", "distance": "12.5公里", "reason": "穆勒汽修该时段已约满",
              "count": "1996", "options": "穆勒汽修，12.5公里，还是穆勒汽修，12.5公里",
              "n": "第二", "option": "穆勒汽修，12.5公里", "note": "爆胎了",
              "address": "北京路12号", "joined": "家人、车友会", "available": "朋友"}


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_every_prompt_passes_the_one_breath_test(lang: str) -> None:
    slots = LONGEST if lang == "en" else ZH_LONGEST
    limit = MAX_WORDS if lang == "en" else MAX_HANZI
    for key in PROMPTS[lang]:
        text = render(key, lang, slots)
        assert breath_length(text, lang) <= limit, (key, text)
        assert "{" not in text and text.strip(string.whitespace) == text


def test_speech_queue_one_at_a_time_by_priority() -> None:
    q = SpeechQueue()
    [first] = q.say("reply one")
    assert isinstance(first, Play)
    assert q.say("chat", Priority.CHAT) == []
    assert q.say("reply two") == []
    [nxt] = q.finished(first.utterance)
    assert isinstance(nxt, Play) and nxt.utterance.text == "reply two"
    [last] = q.finished(nxt.utterance)
    assert last.utterance.text == "chat"


def test_critical_alert_preempts_and_the_preempted_is_said_after() -> None:
    q = SpeechQueue()
    [chat] = q.say("long chat read-out", Priority.CHAT)
    stop, alert = q.say("Tire pressure low", Priority.CRITICAL)
    assert stop == Stop(chat.utterance) and isinstance(alert, Play)
    assert alert.utterance.text == "Tire pressure low"
    [again] = q.finished(alert.utterance)
    assert again.utterance.text == "long chat read-out"


def test_nothing_speaks_while_the_driver_speaks() -> None:
    q = SpeechQueue()
    [reply] = q.say("a reply")
    assert q.driver_started() == [Stop(reply.utterance)]
    assert q.say("alert", Priority.CRITICAL) == []
    assert q.say("chat", Priority.CHAT) == []
    assert q.say("stale reply") == []
    [play] = q.driver_stopped()
    assert play.utterance.text == "alert"
    [nxt] = q.finished(play.utterance)
    assert nxt.utterance.text == "stale reply"


def test_barge_in_drops_pending_replies_but_keeps_chat() -> None:
    q = SpeechQueue()
    q.say("question")
    q.say("follow-up")
    q.say("message", Priority.CHAT)
    q.driver_started()
    [play] = q.driver_stopped()
    assert play.utterance.text == "message"



def test_alerts_go_ahead_of_replies_and_chat_without_cutting_them_short() -> None:
    q = SpeechQueue()
    [chat] = q.say("a chat read-out", Priority.CHAT)
    assert q.say("a reply") == []
    assert q.say("Help needed nearby", Priority.ALERT) == []  # no preemption
    [nxt] = q.finished(chat.utterance)
    assert nxt.utterance.text == "Help needed nearby"
    [last] = q.finished(nxt.utterance)
    assert last.utterance.text == "a reply"


def test_barge_in_keeps_queued_alerts_but_does_not_repeat_a_cut_one() -> None:
    q = SpeechQueue()
    [first] = q.say("alert one", Priority.ALERT)
    q.say("alert two", Priority.ALERT)
    assert q.driver_started() == [Stop(first.utterance)]
    [play] = q.driver_stopped()
    assert play.utterance.text == "alert two" and not q.pending()


def test_withdraw_takes_queued_utterances_back_by_tag() -> None:
    q = SpeechQueue()
    [playing] = q.say("m1", Priority.CHAT, tag="chat-1")
    q.say("m2", Priority.CHAT, tag="chat-2")
    q.say("m3", Priority.CHAT, tag="chat-3")
    gone = q.withdraw({"chat-1", "chat-2"})
    assert [u.text for u in gone] == ["m2"]  # the one playing is not withdrawn
    assert [u.tag for u in q.pending()] == ["chat-3"]
    assert q.current == playing.utterance
