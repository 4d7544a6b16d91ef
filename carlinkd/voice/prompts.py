"""What carlinkd says: prompt templates per language, each short enough for one breath.

Templates use ``str.format`` fields filled from slot values rendered by :func:`say_slot`.
A test checks every template against the one-breath limit (``MAX_WORDS`` English words,
``MAX_HANZI`` characters for Mandarin) with the longest slot values filled in. Texts the car
says on its own (help requests, bookings, chat read-outs) are built here too, from plain data.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

MAX_WORDS = 12
MAX_HANZI = 24
# A chat read-out carries someone else's words: up to this long it is read as it arrives;
# longer ones are announced and wait for "read my messages".
READ_ALOUD_WORDS = 20
READ_ALOUD_HANZI = 40
# A booking's decline reason is cut to its first clause and this many words.
REASON_WORDS = 8

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
        "done_book_service": "Looking for shops with a free slot.",
        "done_emergency_help": "Calling roadside help now.",
        "cancelled": "Cancelled.",
        "not_understood": "Sorry, I didn't get that. Please say it again.",
        "gave_up": "Sorry, I couldn't help. Cancelled.",
        "say_yes_or_cancel": "Please say yes or cancel.",
        "say_which_one": "Please say the first, second or third one.",
        "nothing_to_confirm": "There is nothing to confirm.",
        "no_messages": "No new messages.",
        "message": "{sender} in {group}: {text}",
        "message_announce": "New message from {sender} in {group}. Say read to hear it.",
        "listening": "Yes?",
        "help_request": "{sender} needs roadside help, {distance} away.",
        "help_request_nearby": "{sender} needs roadside help.",
        "help_offer": "Answer on my way? Say yes or cancel.",
        "help_offer_text": "On my way",
        "done_help_respond": "Told {sender} you're on your way.",
        "help_response": "{sender}: {text}",
        "booking_confirmed": "{service_name} booked {day} at {time} at {shop}.",
        "booking_confirmed_no_shop": "{service_name} booked {day} at {time}.",
        "booking_reminder": "Reminder: {service} {day} at {time} at {shop}.",
        "booking_declined": "Booking declined: {reason}.",
        "booking_declined_no_reason": "Booking declined.",
        "booking_cancelled": "Booking cancelled: {service} {day} at {time}.",
        "done_join_group": "Asking to join {group}.",
        "done_leave_group": "Leaving {group}.",
        "done_cancel_help": "Cancelling your help request.",
        "done_prepare_report": "Preparing a report of your car.",
        "done_helper_mode_on": "OK, nearby drivers may ask you for help.",
        "done_helper_mode_off": "OK, you won't be asked to help.",
        "no_booking": "You have no booking to cancel.",
        "confirm_booking_cancel": "Cancel {service} {day} at {time}? Yes or no?",
        "done_booking_cancel": "Cancelling the booking.",
        "more_messages": "{count} more messages. Say read my messages to hear them.",
        "more_message": "One more message. Say read my messages to hear it.",
        "help_no_longer": "{sender} no longer needs help.",
        "help_detail": "{sender} is {distance} from you. Their position is on your screen.",
        "help_detail_no_distance": "{sender}'s position is on your screen.",
        "help_note": "They said: {note}",
        "help_no_position": "Your position is not shared; help can't find you.",
        "help_rejected": "Help request refused: {reason}.",
        "help_none_open": "You have no open help request.",
        "booking_address": "The address is {address}.",
        "no_shop": "No shop has a free slot then.",
        "shop_option": "{option} has a free slot.",
        "shop_options": "{options}?",
        "shop_numbered": "{n}: {option}.",
        "ask_book_shop": "Book it? Say yes or no.",
        "ask_which_shop": "Say the first one or the second one.",
        "ask_which_shop3": "Say the first, second or third one.",
        "done_book_shop": "Booking it now.",
        "group_joined": "You're in {group} now.",
        "group_pending": "Asked to join {group}; waiting for the owner.",
        "join_request": "{sender} asks to join {group}.",
        "ask_approve": "Let {sender} join {group}? Say yes or no.",
        "done_approve": "{sender} may join {group}.",
        "groups_unknown": "I don't know your groups yet. Asking the cloud.",
        "groups_none": "No groups to join right now.",
        "groups_joined": "You're in {joined}.",
        "groups_available": "You can join {available}.",
        "groups_both": "You're in {joined}. You can join {available}.",
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
        "done_book_service": "正在查找有空位的店。",
        "done_emergency_help": "正在呼叫道路救援。",
        "cancelled": "已取消。",
        "not_understood": "抱歉，没听清，请再说一遍。",
        "gave_up": "抱歉，没能帮到你，已取消。",
        "say_yes_or_cancel": "请说确认或取消。",
        "say_which_one": "请说第一个、第二个或第三个。",
        "nothing_to_confirm": "没有需要确认的事。",
        "no_messages": "没有新消息。",
        "message": "{group}的{sender}：{text}",
        "message_announce": "{group}的{sender}发来新消息，说“读消息”收听。",
        "listening": "请讲。",
        "help_request": "{sender}需要道路救援，距离{distance}。",
        "help_request_nearby": "{sender}需要道路救援。",
        "help_offer": "回复“我在路上”？请说确认或取消。",
        "help_offer_text": "我在路上",
        "done_help_respond": "已告诉{sender}你在路上。",
        "help_response": "{sender}：{text}",
        "booking_confirmed": "已预约{day}{time}{shop}的{service_name}。",
        "booking_confirmed_no_shop": "已预约{day}{time}的{service_name}。",
        "booking_reminder": "提醒：{day}{time}{shop}的{service}。",
        "booking_declined": "预约被拒：{reason}。",
        "booking_declined_no_reason": "预约被拒。",
        "booking_cancelled": "预约已取消：{day}{time}的{service}。",
        "done_join_group": "正在申请加入{group}。",
        "done_leave_group": "正在退出{group}。",
        "done_cancel_help": "正在取消你的求救。",
        "done_prepare_report": "正在生成车况报告。",
        "done_helper_mode_on": "好的，附近的司机可以向你求助。",
        "done_helper_mode_off": "好的，不会再请你帮忙。",
        "no_booking": "你没有可取消的预约。",
        "confirm_booking_cancel": "取消{day}{time}的{service}吗？请说是或不。",
        "done_booking_cancel": "正在取消预约。",
        "more_messages": "还有{count}条消息，说“读消息”收听。",
        "more_message": "还有一条消息，说“读消息”收听。",
        "help_no_longer": "{sender}不再需要帮助了。",
        "help_detail": "{sender}距离你{distance}，位置已显示在屏幕上。",
        "help_detail_no_distance": "{sender}的位置已显示在屏幕上。",
        "help_note": "对方说：{note}",
        "help_no_position": "你的位置没有共享，救援找不到你。",
        "help_rejected": "求救被拒绝：{reason}。",
        "help_none_open": "你没有进行中的求救。",
        "booking_address": "地址是{address}。",
        "no_shop": "那个时间没有店有空位。",
        "shop_option": "{option}有空位。",
        "shop_options": "{options}？",
        "shop_numbered": "{n}：{option}。",
        "ask_book_shop": "要预约吗？请说是或不。",
        "ask_which_shop": "请说第一个或第二个。",
        "ask_which_shop3": "请说第一个、第二个或第三个。",
        "done_book_shop": "正在预约。",
        "group_joined": "你已加入{group}。",
        "group_pending": "已申请加入{group}，等待群主同意。",
        "join_request": "{sender}申请加入{group}。",
        "ask_approve": "同意{sender}加入{group}吗？请说是或不。",
        "done_approve": "已同意{sender}加入{group}。",
        "groups_unknown": "还不知道你的群，正在查询。",
        "groups_none": "现在没有可加入的群。",
        "groups_joined": "你在{joined}。",
        "groups_available": "你可以加入{available}。",
        "groups_both": "你在{joined}，可以加入{available}。",
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
    if name == "service_name":  # at the start of a sentence: "Oil change booked ..."
        named = say_slot("service", value, lang)
        if lang == "en":
            named = named.removeprefix("an ").removeprefix("a ")
            return named[:1].upper() + named[1:]
        return named
    if name == "day":
        return DAY_NAMES[lang].get(value, value)
    if name == "time":
        try:
            return say_time(value, lang)
        except ValueError:
            return value
    return value


def say_date(value: str, lang: str, today: dt.date | None) -> str:
    """A booking day: "today", "tomorrow" or a weekday within the week, else the date.

    ``value`` is a day name ("tomorrow") or an ISO date ("2025-03-14") as the cloud sends it.
    """
    try:
        day = dt.date.fromisoformat(value)
    except ValueError:
        return say_slot("day", value, lang)
    ahead = (day - today).days if today is not None else -1
    names = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
    if ahead == 0:
        return say_slot("day", "today", lang)
    if ahead == 1:
        return say_slot("day", "tomorrow", lang)
    if 1 < ahead < 7:
        return say_slot("day", names[day.weekday()], lang)
    if lang == "zh":
        return f"{day.month}月{day.day}日"
    return f"on {day.strftime('%B')} {day.day}"


def say_distance(km: float, lang: str) -> str:
    """A distance as said aloud: 50 m steps under 1 km, tenths under 10 km, whole km above."""
    if km < 0.95:
        metres = max(50, round(km * 20) * 50)
        return f"{metres}米" if lang == "zh" else f"{metres} meters"
    value = f"{km:.1f}".removesuffix(".0") if km < 9.95 else f"{km:.0f}"
    if lang == "zh":
        return f"{value}公里"
    return f"{value} kilometer" + ("" if value == "1" else "s")


def say_reason(reason: str, lang: str) -> str:
    """A decline reason cut to one breath: its first clause, at most REASON_WORDS words."""
    first = reason.split(";")[0].strip().rstrip(".。")
    if lang == "zh":
        return first[:MAX_HANZI // 2]
    return " ".join(first.split()[:REASON_WORDS])


def booking_text(status: str, slots: Mapping[str, str], lang: str,
                 today: dt.date | None) -> str:
    """What the car says about a booking update (confirmed, reminder, declined, cancelled).

    ``slots``: service, day, time, shop and reason as the cloud sent them.
    """
    values = dict(slots)
    values["service_name"] = values.get("service", "")
    if status == "declined":
        reason = say_reason(values.get("reason", ""), lang)
        if not reason:
            return render("booking_declined_no_reason", lang)
        return render("booking_declined", lang, {"reason": reason})
    key = {"confirmed": "booking_confirmed", "reminder": "booking_reminder",
           "cancelled": "booking_cancelled"}.get(status, "booking_confirmed")
    if key == "booking_confirmed" and not values.get("shop"):
        key = "booking_confirmed_no_shop"
    day = say_date(values.pop("day", ""), lang, today)
    return render(key, lang, values, said={"day": day})


def render(key: str, lang: str, slots: Mapping[str, str] | None = None,
           said: Mapping[str, str] | None = None) -> str:
    """The prompt ``key`` in a language with slot values read back (``said``: as they are)."""
    table = PROMPTS.get(lang, PROMPTS["en"])
    values = {k: say_slot(k, v, lang) for k, v in (slots or {}).items()}
    values.update(said or {})
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
