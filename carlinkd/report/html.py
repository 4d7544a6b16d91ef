"""The condition report as one self-contained HTML page (inline CSS and SVG, no scripts)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from html import escape

from carlink_protocol.audit import ROLLBACK
from carlink_protocol.shopsig import SHOP_SIGNED

from . import plots
from .data import ReportData
from .labels import plain, t

CSS = """
body{font-family:"Noto Sans","Noto Sans CJK SC","DejaVu Sans",sans-serif;margin:24px auto;
max-width:900px;color:#222;font-size:13px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:16px;border-bottom:1px solid #ccc;
padding-bottom:3px;margin-top:26px}
.zh{color:#666;font-weight:normal}.meta{color:#444}.meta b{color:#000}
table{border-collapse:collapse;width:100%;margin-top:6px}
th,td{border-bottom:1px solid #e3e3e3;padding:4px 6px;text-align:left;vertical-align:top}
th{background:#f4f4f4;font-size:12px}
td:first-child,td.num{white-space:nowrap}td.num{text-align:right;font-variant-numeric:tabular-nums}
.ok{background:#e8f5e9;border-left:5px solid #2e7d32;padding:8px 12px}
.bad{background:#ffebee;border-left:5px solid #c62828;padding:8px 12px}
.warn{color:#b71c1c;font-weight:bold}.shop{color:#1b5e20}.owner{color:#8a6d00}
code{font-size:11px;word-break:break-all}svg{width:100%;height:auto}
@media print{body{margin:0 12mm}h2{break-after:avoid}svg,table{break-inside:avoid}}
"""


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]], empty: str = "") -> str:
    """A table; cells are HTML already (callers escape)."""
    body = "".join("<tr>" + "".join(rows_cell(c) for c in row) + "</tr>" for row in rows)
    if not body:
        return f"<p>{empty or t('none')}</p>"
    head = "".join(f"<th>{t(h)}</th>" for h in headers)
    return f"<table><tr>{head}</tr>{body}</table>"


def rows_cell(cell: str) -> str:
    """One cell; a cell starting with '#' is right-aligned (a number)."""
    if cell.startswith("#"):
        return f'<td class="num">{cell[1:]}</td>'
    return f"<td>{cell}</td>"


def _summary(d: ReportData) -> str:
    r = d.report
    state = "ok" if r.clean else "bad"
    head = t("verified") if r.ok else t("not_verified")
    said = (f"{r.count} entries, every hash, link and signature intact; device key {r.signer}"
            if r.ok else r.problem)
    lines = [f'<div class="{state}"><b>{head}</b> — {escape(said)}']
    if r.findings:
        lines.append(f'<p class="warn">{t("warnings")}:</p><ul>')
        lines += [f'<li class="warn">{escape(kind)}: {escape(text)}</li>'
                  for kind, text in r.findings]
        lines.append("</ul>")
    lines.append("</div>")
    return "".join(lines)


def _services(d: ReportData) -> str:
    rows = []
    for s in d.services:
        cls = "shop" if s.check.status == SHOP_SIGNED else "owner" if s.check.ok else "warn"
        who = (f'{t("shop_signed")}: {escape(s.check.shop)}' if s.check.status == SHOP_SIGNED
               else t("owner_entered") if s.check.ok else escape(s.check.label()))
        rows.append((escape(s.date), f"#{s.km:,}", escape(s.shop), escape(s.work),
                     escape(s.parts), f'<span class="{cls}">{who}</span>'))
    return _table(("date", "km", "shop", "work", "parts", "signed"), rows)


def _faults(d: ReportData) -> str:
    rows = [(f"<b>{escape(f.code)}</b>", escape(f.description), escape(f.set_on),
             escape(f.cleared_on) if f.cleared_on else f'<span class="warn">{t("still_set")}'
             "</span>") for f in d.faults]
    return _table(("code", "description", "set_on", "cleared_on"), rows)


def _alerts(d: ReportData) -> str:
    open_rows = [(escape(day), escape(sev), escape(text)) for sev, text, day in d.open_alerts]
    log_rows = [(escape(day), escape(ev), escape(sev), escape(text))
                for day, ev, sev, text in d.alert_log]
    return (f"<h2>{t('alerts')}</h2>" + _table(("date", "severity", "description"), open_rows)
            + f"<h2>{t('alert_log')}</h2>"
            + _table(("date", "event", "severity", "description"), log_rows))


def _verification(d: ReportData) -> str:
    r = d.report
    shop_signed = sum(1 for s in d.services if s.check.status == SHOP_SIGNED)
    owner = sum(1 for s in d.services if s.check.status != SHOP_SIGNED)
    rolled = sum(1 for kind, _ in r.findings if kind == ROLLBACK)
    checked = [
        f"every entry's SHA-256 hash and its link to the one before ({r.count} entries)",
        f"the car's Ed25519 signature on every entry (device key {d.device_key})",
        "the signed head: entry count and last hash, so nothing was cut off the end",
        f"{shop_signed} shop signature(s), each shop key certified by the registry key "
        f"{d.registry_key or '(none received)'}",
        f"whether the odometer ever went down across {len(d.readings)} reading(s): "
        + (f"{rolled} rollback(s) found, see the warnings" if rolled else "it never did")]
    unchecked = [
        f"that device key {d.device_key} is this car's: compare it with the head unit "
        "(carlinkd records list)",
        "that the registry key is the backend's: compare it with `carlink-cloud registry-key`",
        f"{owner} owner-entered record(s): only the owner vouches for them",
        "anything before the first entry, or while carlinkd was not running",
        "whoever holds the device key could present an older copy of the whole history"]
    items = "".join(f"<li>{escape(x)}</li>" for x in checked)
    not_items = "".join(f"<li>{escape(x)}</li>" for x in unchecked)
    bundle = (f'<p>{t("bundle")}: <code>{escape(d.bundle_name)}</code> — '
              f'<code>carlinkd records verify {escape(d.bundle_name)}</code></p>'
              if d.bundle_name else "")
    return (f"<h2>{t('verification')}</h2><p>Chain head <code>{escape(d.head_hash)}</code></p>"
            f"<h3>{t('checked')}</h3><ul>{items}</ul><h3>{t('unchecked')}</h3>"
            f"<ul>{not_items}</ul>{bundle}")


def _plot_or_empty(make: Callable[[], str], has_data: bool) -> str:
    return make() if has_data else f"<p>{t('no_data')}</p>"


def render(d: ReportData) -> str:
    """The whole page."""
    period = f"{t('from')} {escape(d.since)}" if d.since else t("all")
    tyres_present = any(d.tyres.values())
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(plain('title'))} {escape(d.vin)}</title><style>{CSS}</style>",
        "</head><body>", f"<h1>{t('title')}</h1>",
        f'<p class="meta">{t("vin")}: <b id="vin">{escape(d.vin or "unknown")}</b> · '
        f"{t('generated')}: {escape(d.generated)} · {t('period')}: {period}</p>",
        f"<h2>{t('summary')}</h2>", _summary(d),
        f"<h2>{t('odometer')}</h2>",
        _plot_or_empty(lambda: plots.odometer_svg(d.readings), bool(d.readings)),
        f"<h2>{t('services')}</h2>", _services(d),
        f"<h2>{t('faults')}</h2>", _faults(d),
        f"<h2>{t('battery')}</h2>",
        _plot_or_empty(lambda: plots.trend_svg("Battery", "V", {"battery": d.battery},
                                               "battery", low=11.8), bool(d.battery)),
        f"<h2>{t('tyres')}</h2>",
        _plot_or_empty(lambda: plots.trend_svg("Tyres", "kPa", d.tyres, "tyres",
                                               low=200.0), tyres_present),
        _alerts(d), _verification(d), "</body></html>"]
    return "\n".join(parts)
