"""The report's bilingual labels: English first, Chinese beside it."""

from __future__ import annotations

from html import escape

LABELS: dict[str, tuple[str, str]] = {
    "title": ("Vehicle condition report", "车况报告"),
    "vin": ("VIN", "车架号"),
    "generated": ("Generated", "生成日期"),
    "period": ("Period", "时间范围"),
    "all": ("whole history", "全部记录"),
    "from": ("from", "自"),
    "summary": ("Summary", "概要"),
    "verified": ("History verified", "记录已验证"),
    "not_verified": ("History does NOT verify", "记录验证失败"),
    "warnings": ("Warnings", "警告"),
    "odometer": ("Odometer history", "里程记录"),
    "services": ("Service history", "保养记录"),
    "date": ("Date", "日期"),
    "km": ("Odometer (km)", "里程 (公里)"),
    "shop": ("Shop", "维修店"),
    "work": ("Work done", "保养项目"),
    "parts": ("Parts", "零件"),
    "signed": ("Signed by", "签名"),
    "faults": ("Fault codes", "故障码"),
    "code": ("Code", "代码"),
    "description": ("Description", "描述"),
    "set_on": ("Set", "出现"),
    "cleared_on": ("Cleared", "清除"),
    "still_set": ("still set", "仍存在"),
    "battery": ("Battery voltage", "蓄电池电压"),
    "tyres": ("Tyre pressures", "胎压"),
    "alerts": ("Open alerts", "未解除警报"),
    "alert_log": ("Alert history", "警报历史"),
    "event": ("Event", "事件"),
    "severity": ("Severity", "级别"),
    "verification": ("Verification", "验证"),
    "checked": ("What was checked", "已检查"),
    "unchecked": ("What could not be checked", "无法检查"),
    "none": ("none", "无"),
    "owner_entered": ("owner-entered", "车主录入"),
    "shop_signed": ("shop-signed", "维修店签名"),
    "no_data": ("no data yet", "暂无数据"),
    "bundle": ("Verifiable bundle", "可验证数据包"),
}


def t(key: str) -> str:
    """A label as HTML: the English, then the Chinese in a lighter span."""
    en, zh = LABELS[key]
    return f'{escape(en)} <span class="zh" lang="zh">{escape(zh)}</span>'


def plain(key: str) -> str:
    """A label as plain text, ``English · 中文``."""
    en, zh = LABELS[key]
    return f"{en} · {zh}"
