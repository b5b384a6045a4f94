"""Charts as inline SVG strings, drawn in Python: the report opens offline and loads nothing.

Two shapes cover the report: labelled horizontal bars (counts per cluster, task, template,
counter, mixing weight) and a length histogram over power-of-two bins. Every label is escaped
(names come from the manifest and text from the records: untrusted), and every bar carries a
<title>, so hovering shows the exact figure.
"""
from __future__ import annotations

from html import escape
from typing import Callable, Sequence

from flanforge.beam_pipelines.stats.histogram import Histogram, bin_range

ROW_HEIGHT = 20
LABEL_WIDTH = 230
BAR_SPACE = 440
VALUE_SPACE = 90
LABEL_CHARS = 34  # a longer label is cut (the full text is in the bar's tooltip)


def count_text(n: float) -> str:
    return f"{n:,.0f}"


def short(label: str, limit: int = LABEL_CHARS) -> str:
    return label if len(label) <= limit else label[: limit - 1] + "…"


def bar_chart(items: Sequence[tuple[str, float]], *, caption: str, value_text: Callable[[float], str] = count_text) -> str:
    """Horizontal bars, one per (label, value), in the order given, scaled to the largest value."""
    if not items:
        return ""
    largest = max(value for _, value in items) or 1
    height = ROW_HEIGHT * len(items) + 4
    width = LABEL_WIDTH + BAR_SPACE + VALUE_SPACE
    parts = [
        f'<svg class="chart" role="img" aria-label="{escape(caption)}" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">'
    ]
    for i, (label, value) in enumerate(items):
        y = i * ROW_HEIGHT + 2
        bar = BAR_SPACE * value / largest
        text = value_text(value)
        parts.append(
            f'<g><title>{escape(label)}: {escape(text)}</title>'
            f'<text class="label" x="{LABEL_WIDTH - 6}" y="{y + 14}" text-anchor="end">{escape(short(label))}</text>'
            f'<rect class="bar" x="{LABEL_WIDTH}" y="{y + 3}" width="{bar:.1f}" height="{ROW_HEIGHT - 6}"/>'
            f'<text class="value" x="{LABEL_WIDTH + bar + 4:.1f}" y="{y + 14}">{escape(text)}</text></g>'
        )
    parts.append("</svg>")
    return "".join(parts)


def bin_label(k: int) -> str:
    """A bin's lower end, compact: 0, 1, 2, 4, …, 512, 1k, 2k, …, 1M."""
    low = bin_range(k)[0]
    for size, suffix in ((1 << 20, "M"), (1 << 10, "k")):
        if low >= size:
            return f"{low // size}{suffix}"
    return str(low)


HIST_BIN_WIDTH = 26
HIST_HEIGHT = 120
HIST_AXIS = 20


def histogram_chart(histogram: Histogram, *, caption: str, unit: str) -> str:
    """Columns over the power-of-two bins from 0 to the longest length seen; each column's tooltip
    gives its range, rows and share."""
    rows = histogram.rows
    if rows == 0:
        return ""
    width = HIST_BIN_WIDTH * len(histogram.counts) + 8
    height = HIST_HEIGHT + HIST_AXIS
    tallest = max(histogram.counts)
    parts = [
        f'<svg class="chart histogram" role="img" aria-label="{escape(caption)}" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">'
    ]
    for k, n in enumerate(histogram.counts):
        x = 4 + k * HIST_BIN_WIDTH
        bar = HIST_HEIGHT * n / tallest
        low, high = bin_range(k)
        span = f"{low:,}" if low == high else f"{low:,}–{high:,}"
        parts.append(
            f'<g><title>{span} {escape(unit)}: {n:,} rows ({n / rows:.1%})</title>'
            f'<rect class="bar" x="{x + 2}" y="{HIST_HEIGHT - bar:.1f}" width="{HIST_BIN_WIDTH - 4}" height="{bar:.1f}"/>'
            f'<text class="axis" x="{x + HIST_BIN_WIDTH / 2}" y="{HIST_HEIGHT + 14}" text-anchor="middle">{bin_label(k)}</text></g>'
        )
    parts.append(f'<line class="baseline" x1="4" y1="{HIST_HEIGHT}" x2="{width - 4}" y2="{HIST_HEIGHT}"/></svg>')
    return "".join(parts)
