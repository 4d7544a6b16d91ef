"""What carlinkd says: prompt templates per language, each short enough for one breath.

Templates use ``str.format`` fields filled from slot values rendered by :func:`say_slot`.
A test checks every template against the one-breath limit (``MAX_WORDS`` English words,
``MAX_HANZI`` characters for Mandarin) with the longest slot values filled in.
"""

from __future__ import annotations

from collections.abc import Mapping

MAX_WORDS = 12
MAX_HANZI = 24

PROMPTS: Mapping[str, Mapping[str, str]] = {
    "en": {
        "ask_group": "Which group? Say family, friends or car club.",
        "ask_text": "What message? For example, running late.",
        "ask_service": "Which service? For example, oil change or car wash.",
        "ask_day": "Which day?",
        "ask_time": "At what time?",
        "ask_item": "Which item? For example, fuel, range or tire pressure.",
        "confirm_send_message": "Send '{text}' to {group}? Say yes or cancel.",
        "confirm_book_service": "Book {service} {day} at {time}? Yes or cancel?",
        "confirm_emergency_help": "Call roadside help with your location? Say yes or cancel.",
        "done_send_message": "Sent to {group}.",
        "done_book_service": "Booking requested.",
        "done_emergency_help": "Calling roadside help now.",
        "cancelled": "Cancelled.",
        "not_understood": "Sorry, I didn't get that. Please say it again.",
        "gave_up": "Sorry, I couldn't help. Cancelled.",
        "say_yes_or_cancel": "Please say yes or cancel.",
        "nothing_to_confirm": "There is nothing to confirm.",
        "no_messages": "No new messages.",
        "message": "{sender} in {group}: {text}",
        "listening": "Yes?",
    },
    "zh": {
        "ask_group": "发给谁？家人、朋友还是车友会？",
        "ask_text": "发什么？比如：我马上到。",
        "ask_service": "预约什么服务？比如换机油或洗车。",
        "ask_day": "哪一天？",
        "ask_time": "几点？",
        "ask_item": "查什么？比如油量、续航或胎压。",
        "confirm_send_message": "给{group}发送“{text}”？请说确认或取消。",
        "confirm_book_service": "预约{day}{time}{service}？请说确认或取消。",
        "confirm_emergency_help": "呼叫道路救援并发送位置？请说确认或取消。",
        "done_send_message": "已发送给{group}。",
        "done_book_service": "已提交预约。",
        "done_emergency_help": "正在呼叫道路救援。",
        "cancelled": "已取消。",
        "not_understood": "抱歉，没听清，请再说一遍。",
        "gave_up": "抱歉，没能帮到你，已取消。",
        "say_yes_or_cancel": "请说确认或取消。",
        "nothing_to_confirm": "没有需要确认的事。",
        "no_messages": "没有新消息。",
        "message": "{group}的{sender}：{text}",
        "listening": "请讲。",
    },
}

SERVICE_NAMES: Mapping[str, Mapping[str, str]] = {
    "en": {"oil_change": "an oil change", "tire_rotation": "a tire rotation",
           "inspection": "an inspection", "brake_service": "a brake service",
           "car_wash": "a car wash", "repair": "a repair"},
    "zh": {"oil_change": "换机油", "tire_rotation": "轮胎换位", "inspection": "年检",
           "brake_service": "刹车保养", "car_wash": "洗车", "repair": "维修"},
}

DAY_NAMES: Mapping[str, Mapping[str, str]] = {
    "en": {"today": "today", "tomorrow": "tomorrow", **{
        d: f"on {d.capitalize()}" for d in ("monday", "tuesday", "wednesday", "thursday",
                                              "friday", "saturday", "sunday")}},
    "zh": {"today": "今天", "tomorrow": "明天", "monday": "周一", "tuesday": "周二",
           "wednesday": "周三", "thursday": "周四", "friday": "周五", "saturday": "周六",
           "sunday": "周日"},
}


def say_time(hhmm: str, lang: str) -> str:
    """ "14:30" as said aloud: "2:30 PM" / "下午2点30分"."""
    hour, minute = (int(x) for x in hhmm.split(":"))
    if lang == "zh":
        period = "上午" if hour < 12 else "下午" if hour < 18 else "晚上"
        h12 = hour if hour <= 12 else hour - 12
        return f"{period}{h12}点" + (f"{minute}分" if minute else "")
    suffix = "AM" if hour < 12 else "PM"
    h12 = hour % 12 or 12
    return f"{h12}:{minute:02d} {suffix}" if minute else f"{h12} {suffix}"


def say_slot(name: str, value: str, lang: str) -> str:
    """A slot value as it is read back to the driver."""
    if name == "service":
        return SERVICE_NAMES[lang].get(value, value.replace("_", " "))
    if name == "day":
        return DAY_NAMES[lang].get(value, value)
    if name == "time":
        return say_time(value, lang)
    return value


def render(key: str, lang: str, slots: Mapping[str, str] | None = None) -> str:
    """The prompt ``key`` in a language with slot values read back."""
    table = PROMPTS.get(lang, PROMPTS["en"])
    values = {k: say_slot(k, v, lang) for k, v in (slots or {}).items()}
    return table[key].format_map(_Blank(values))


class _Blank(dict[str, str]):
    """format_map helper: a missing field renders empty rather than raising."""

    def __missing__(self, key: str) -> str:
        return ""


def breath_length(text: str, lang: str) -> int:
    """Words (English) or characters without punctuation (Mandarin) in a prompt."""
    if lang == "zh":
        return sum(1 for c in text if c.isalnum())
    return len(text.replace("'", "").split())
