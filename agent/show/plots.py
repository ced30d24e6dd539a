"""The batch page's charts, drawn by pygal as inline SVG.

Why pygal, and why its script is taken out: pygal draws plain SVG with its labels escaped by an XML serializer (no
charting or escaping of ours), but it also embeds a ``<script>`` and points at a tooltip script on the web. The page
must fetch nothing and runs only its own hashed script, so both go; each bar gets an SVG ``<title>`` instead, which
browsers show as a tooltip without any script.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pygal
from markupsafe import Markup
from pygal.etree import etree
from pygal.style import Style

__all__ = ["Chart", "per_batch_box", "per_task_bars", "resolved_rate"]

STATUS_COLORS = {"resolved": "#1a7f37", "unresolved": "#bf8700", "error": "#cf222e"}
MAX_LABELS = 30  # more tasks than this: no task names under the bars (the table has them)


@dataclass(frozen=True)
class Chart:
    title: str
    svg: Markup


def _style(colors: Sequence[str]) -> Style:
    return Style(
        background="transparent",
        plot_background="transparent",
        colors=tuple(colors),
        font_family="system-ui, sans-serif",
        label_font_size=11,
        major_label_font_size=11,
        legend_font_size=12,
        title_font_size=14,
    )


def _svg(chart: Any) -> Markup:
    """The chart as an inline ``<svg>``: pygal's scripts and comments removed, a ``<title>`` on every value."""
    root = chart.render_tree()
    for parent in list(root.iter()):
        for child in list(parent):
            tag = child.tag if isinstance(child.tag, str) else ""
            if not tag or tag.endswith("script"):
                parent.remove(child)
                continue
            values = [d for d in child if isinstance(d.tag, str) and d.get("class") == "value"]
            labels = [d for d in child if isinstance(d.tag, str) and d.get("class") == "x_label"]
            if values and values[0].text:
                title = etree.Element("title")
                title.text = f"{labels[0].text}: {values[0].text}" if labels and labels[0].text else values[0].text
                child.insert(0, title)
    text: str = etree.tostring(root, encoding="unicode")
    return Markup(text)  # serialized by the XML library, which escaped every text node and attribute


def _config(**extra: Any) -> dict[str, Any]:
    return {
        "js": [],
        "disable_xml_declaration": True,
        "no_prefix": True,
        "width": 640,
        "height": 300,
        "show_legend": True,
        "legend_at_bottom": True,
        "truncate_label": 18,
        "x_label_rotation": 30,
        **extra,
    }


def resolved_rate(labels: Sequence[str], rates: Sequence[float]) -> Chart:
    """Resolved % per batch (per setting or model)."""
    chart = pygal.Bar(style=_style(["#0969da"]), range=(0, 100), **_config(show_legend=False))
    chart.x_labels = list(labels)
    chart.add("resolved %", [round(r, 1) for r in rates])
    return Chart("Resolved tasks (%) per batch", _svg(chart))


def per_task_bars(title: str, unit: str, rows: Sequence[tuple[str, str, float]]) -> Chart:
    """One bar per task, largest first, coloured by status; ``rows`` are (task, status, value)."""
    ordered = sorted(rows, key=lambda r: r[2], reverse=True)
    statuses = [s for s in STATUS_COLORS if any(r[1] == s for r in ordered)] or ["resolved"]
    chart = pygal.StackedBar(
        style=_style([STATUS_COLORS[s] for s in statuses]),
        **_config(show_x_labels=len(ordered) <= MAX_LABELS, y_title=unit),
    )
    chart.x_labels = [r[0] for r in ordered]
    for status in statuses:
        chart.add(status, [round(r[2], 1) if r[1] == status else None for r in ordered])
    return Chart(title, _svg(chart))


def per_batch_box(title: str, unit: str, groups: Sequence[tuple[str, Sequence[float]]]) -> Chart:
    """The spread of a per-task value in each batch (several batches side by side)."""
    chart = pygal.Box(style=_style(["#0969da", "#8250df", "#bf3989", "#1a7f37", "#bf8700"]), **_config(y_title=unit))
    for label, values in groups:
        chart.add(label, [round(v, 1) for v in values] or [0])
    return Chart(title, _svg(chart))
