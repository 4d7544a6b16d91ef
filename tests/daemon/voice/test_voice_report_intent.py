"""Voice "prepare a report of my car" (en + zh): the export_report command, said without a
read-back (the report stays on the car; the daemon then says where it is)."""

from __future__ import annotations

import pytest

from carlinkd.voice.dialog import Dialog, EmitCommand, Say
from carlinkd.voice.intents import IntentParser


@pytest.mark.parametrize(("lang", "text", "done"), [
    ("en", "prepare a report of my car", "Preparing a report of your car."),
    ("en", "make a car report", "Preparing a report of your car."),
    ("zh", "生成一份车况报告", "正在生成车况报告。"),
])
def test_prepare_report_becomes_the_export_command(lang: str, text: str, done: str) -> None:
    parsed = IntentParser(lang).parse(text)
    assert parsed.intent == "prepare_report" and not parsed.slots
    dialog = Dialog(lang)
    dialog.push_to_talk(0.0)
    actions = dialog.heard(parsed, 1.0)
    assert EmitCommand("export_report", {}) in actions and Say(done) in actions


def test_a_report_is_not_heard_in_other_phrases() -> None:
    assert IntentParser("en").parse("report a problem with the road").intent != "prepare_report"
