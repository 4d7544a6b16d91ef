"""The report's plots as inline SVG (matplotlib, Agg backend, text kept as SVG text)."""

from __future__ import annotations

import io
import re
from collections.abc import Mapping, Sequence
from datetime import date, datetime, UTC
from typing import Any

from carlink_protocol.audit import Reading, rollbacks

from ..errors import CarlinkError

SIZE = (7.2, 2.6)  # inches; 100 dpi in the SVG's viewBox
# Drawn in this order: the car's own readings first, the service records' on top.
SOURCE_STYLE = {"dbc": ("#1f5fa8", "o", "car (CAN)", 14),
                "obd": ("#5b3fa8", "^", "car (OBD-II)", 14),
                "owner": ("#b8860b", "D", "owner-entered record", 60),
                "shop": ("#1b7f3b", "s", "shop-signed record", 60)}


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise CarlinkError("the report's plots need matplotlib: pip install "
                           "'carlinkd[report]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _svg(fig: Any, salt: str) -> str:
    """The figure as an <svg> element (no XML prolog), ids unique per plot."""
    plt = _pyplot()
    buf = io.StringIO()
    with plt.rc_context({"svg.fonttype": "none", "svg.hashsalt": salt}):
        fig.savefig(buf, format="svg", bbox_inches="tight")
    plt.close(fig)
    text = buf.getvalue()
    text = text[text.index("<svg"):]
    return re.sub(r"<metadata>.*?</metadata>", "", text, flags=re.S)


def _figure(title: str, ylabel: str) -> tuple[Any, Any]:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=SIZE)
    ax.set_title(title, fontsize=10, loc="left")
    ax.set_ylabel(ylabel, fontsize=9)
    ax.grid(True, color="#dddddd", linewidth=0.6)
    ax.tick_params(labelsize=8)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    return fig, ax


def _when(day: str) -> datetime:
    return datetime.combine(date.fromisoformat(day), datetime.min.time())


def odometer_svg(readings: Sequence[Reading]) -> str:
    """Odometer over time, one marker style per source, rollbacks in red."""
    fig, ax = _figure("Odometer", "km")
    dated = [r for r in readings if _is_day(r.date)]
    if dated:
        ax.plot([_when(r.date) for r in dated], [r.km for r in dated], color="#999999",
                linewidth=0.8, zorder=1)
    for source, (color, marker, label, size) in SOURCE_STYLE.items():
        pts = [r for r in dated if r.source == source]
        if pts:
            ax.scatter([_when(r.date) for r in pts], [r.km for r in pts], color=color,
                       marker=marker, s=size, label=label, zorder=2, edgecolors="white",
                       linewidths=0.5)
    for top, low in rollbacks(dated):
        ax.scatter([_when(low.date)], [low.km], color="#c62828", marker="x", s=80, zorder=3)
        ax.annotate(f"rollback {top.km:,} → {low.km:,} km", (_when(low.date), low.km),
                    textcoords="offset points", xytext=(-150, 8), color="#c62828", fontsize=8)
    if dated:
        ax.legend(fontsize=7, loc="upper left", frameon=False)
    fig.autofmt_xdate()
    return _svg(fig, "odometer")


def _is_day(text: str) -> bool:
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return True


def _times(points: Sequence[tuple[float, float]]) -> list[datetime]:
    return [datetime.fromtimestamp(t, UTC).replace(tzinfo=None) for t, _ in points]


def trend_svg(title: str, unit: str, series: Mapping[str, Sequence[tuple[float, float]]],
              salt: str, low: float | None = None) -> str:
    """Samples over time, one line per series; ``low``: a dashed warning level."""
    fig, ax = _figure(title, unit)
    for label, points in series.items():
        if points:
            ax.plot(_times(points), [v for _, v in points], linewidth=1.2, label=label)
    if low is not None:
        ax.axhline(low, color="#c62828", linestyle="--", linewidth=0.8)
    if sum(len(p) for p in series.values()):
        ax.legend(fontsize=7, loc="lower left", frameon=False, ncol=4)
    fig.autofmt_xdate()
    return _svg(fig, salt)
