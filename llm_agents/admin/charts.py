"""Server-side SVG charts for the admin: no JavaScript, no external files.

Each function returns markup to place inline in a page. Colours come from CSS classes (see
``static/llm_agents/admin.css``), which use the admin's own variables, so charts follow the light and
dark themes. Every bar is a link (with an accessible name) into a filtered list.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from django.utils.html import escape, format_html
from django.utils.safestring import SafeString, mark_safe

Number = int | float | Decimal


@dataclass
class Bar:
    """One bar: its axis label, value, link and tooltip (the tooltip defaults to label and value)."""

    label: str
    value: Number
    url: str = ""
    title: str = ""
    css_class: str = ""


@dataclass
class Segment:
    """One part of a stacked column (``series`` names the CSS class, e.g. a status)."""

    series: str
    value: Number
    url: str = ""


@dataclass
class Column:
    label: str
    segments: list[Segment] = field(default_factory=list)
    title: str = ""

    @property
    def total(self) -> float:
        return sum(float(segment.value) for segment in self.segments)


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 × 10ⁿ at or above ``value`` (an axis maximum)."""
    if value <= 0:
        return 1.0
    exponent = math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        candidate = step * 10**exponent
        if candidate >= value * (1 - 1e-9):
            return float(candidate)
    return float(10 ** (exponent + 1))


def axis_step(maximum: float, whole_numbers: bool = False) -> float:
    """The gap between the four gridlines above zero: a round number, and a whole one for counts."""
    step = nice_ceiling(maximum / 4)
    if whole_numbers:
        step = max(1.0, step if step != 2.5 else 5.0)
    return step


def _svg(width: int, height: int, label: str, body: list[str], css_class: str) -> SafeString:
    return format_html(
        '<svg class="llm-chart {}" viewBox="0 0 {} {}" role="img" aria-label="{}" '
        'xmlns="http://www.w3.org/2000/svg">{}</svg>',
        css_class,
        width,
        height,
        label,
        mark_safe("".join(body)),
    )


def _link(url: str, name: str, inner: str) -> str:
    if not url:
        return f"<g>{inner}</g>"
    return f'<a href="{escape(url)}" aria-label="{escape(name)}">{inner}</a>'


def _grid(left: int, top: int, width: int, plot_height: int, maximum: float, fmt: Callable) -> list[str]:
    parts = []
    for step in range(5):
        value = maximum * step / 4
        y = top + plot_height - plot_height * step / 4
        parts.append(
            f'<line class="grid" x1="{left}" x2="{left + width}" y1="{y:.1f}" y2="{y:.1f}"></line>'
            f'<text class="tick" x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{escape(fmt(value))}</text>'
        )
    return parts


def _x_labels(labels: Sequence[str], left: int, slot: float, y: float) -> list[str]:
    every = max(1, math.ceil(len(labels) / 12))
    parts = []
    for index, label in enumerate(labels):
        if index % every and index != len(labels) - 1:
            continue
        x = left + slot * index + slot / 2
        parts.append(
            f'<text class="tick" x="{x:.1f}" y="{y:.1f}" text-anchor="middle">{escape(label)}</text>'
        )
    return parts


def column_chart(
    bars: Sequence[Bar],
    *,
    label: str,
    value_format: Callable[[float], str] = str,
    width: int = 640,
    height: int = 220,
    css_class: str = "",
    whole_numbers: bool = False,
) -> SafeString:
    """Vertical bars over a category axis (days, hours)."""
    left, top, bottom = 64, 10, 26
    plot_width, plot_height = width - left - 8, height - top - bottom
    maximum = 4 * axis_step(max((float(bar.value) for bar in bars), default=0), whole_numbers)
    slot = plot_width / max(len(bars), 1)
    body = _grid(left, top, plot_width, plot_height, maximum, value_format)
    for index, bar in enumerate(bars):
        x = left + slot * index
        bar_height = plot_height * float(bar.value) / maximum
        title = bar.title or f"{bar.label}: {value_format(float(bar.value))}"
        inner = (
            f'<rect class="hit" x="{x:.1f}" y="{top}" width="{slot:.1f}" height="{plot_height}"></rect>'
            f'<rect class="bar {escape(bar.css_class)}" x="{x + slot * 0.15:.1f}" '
            f'y="{top + plot_height - bar_height:.1f}" width="{slot * 0.7:.1f}" height="{bar_height:.1f}"></rect>'
            f"<title>{escape(title)}</title>"
        )
        body.append(_link(bar.url, title, inner))
    body += _x_labels([bar.label for bar in bars], left, slot, height - 8)
    return _svg(width, height, label, body, css_class)


def stacked_column_chart(
    columns: Sequence[Column],
    *,
    label: str,
    value_format: Callable[[float], str] = str,
    width: int = 640,
    height: int = 220,
    css_class: str = "",
    whole_numbers: bool = True,
) -> SafeString:
    """Vertical columns made of coloured segments (one per series), stacked from the axis up."""
    left, top, bottom = 64, 10, 26
    plot_width, plot_height = width - left - 8, height - top - bottom
    maximum = 4 * axis_step(max((column.total for column in columns), default=0), whole_numbers)
    slot = plot_width / max(len(columns), 1)
    body = _grid(left, top, plot_width, plot_height, maximum, value_format)
    for index, column in enumerate(columns):
        x = left + slot * index + slot * 0.15
        base = float(top + plot_height)
        for segment in column.segments:
            if not segment.value:
                continue
            segment_height = plot_height * float(segment.value) / maximum
            base -= segment_height
            title = f"{column.label}: {value_format(float(segment.value))} {segment.series}"
            inner = (
                f'<rect class="bar series-{escape(segment.series)}" x="{x:.1f}" y="{base:.1f}" '
                f'width="{slot * 0.7:.1f}" height="{segment_height:.1f}"></rect><title>{escape(title)}</title>'
            )
            body.append(_link(segment.url, title, inner))
    body += _x_labels([column.label for column in columns], left, slot, height - 8)
    return _svg(width, height, label, body, css_class)


def bar_list_chart(
    bars: Sequence[Bar],
    *,
    label: str,
    value_format: Callable[[float], str] = str,
    width: int = 640,
    row_height: int = 28,
    label_width: int = 170,
    css_class: str = "",
) -> SafeString:
    """Horizontal bars, one labelled row each (models, percentiles)."""
    value_width = 90
    plot_width = width - label_width - value_width - 8
    maximum = max((float(bar.value) for bar in bars), default=0) or 1.0
    height = max(len(bars), 1) * row_height + 4
    body = []
    for index, bar in enumerate(bars):
        y = index * row_height + 2
        bar_width = plot_width * float(bar.value) / maximum
        shown = value_format(float(bar.value))
        title = bar.title or f"{bar.label}: {shown}"
        text = bar.label if len(bar.label) <= 26 else bar.label[:25] + "…"
        inner = (
            f'<rect class="hit" x="0" y="{y}" width="{width}" height="{row_height}"></rect>'
            f'<text class="label" x="{label_width - 8}" y="{y + row_height / 2 + 4:.1f}" '
            f'text-anchor="end">{escape(text)}</text>'
            f'<rect class="bar {escape(bar.css_class)}" x="{label_width}" y="{y + 5}" '
            f'width="{max(bar_width, 1):.1f}" height="{row_height - 10}"></rect>'
            f'<text class="value" x="{label_width + bar_width + 6:.1f}" y="{y + row_height / 2 + 4:.1f}">'
            f"{escape(shown)}</text><title>{escape(title)}</title>"
        )
        body.append(_link(bar.url, title, inner))
    return _svg(width, height, label, body, css_class)


@dataclass
class Interval:
    """One row of an interval chart: a mean and its 95% interval (``low``/``high``; None: no interval)."""

    label: str
    value: Number | None
    low: Number | None = None
    high: Number | None = None
    title: str = ""
    css_class: str = ""


def interval_chart(
    rows: Sequence[Interval],
    *,
    label: str,
    value_format: Callable[[float], str] = str,
    width: int = 640,
    row_height: int = 30,
    label_width: int = 170,
    css_class: str = "",
) -> SafeString:
    """Horizontal bars from zero to each mean with a whisker across its interval, one labelled row
    each (a mean below zero grows left of the zero line; a row without a value is left empty)."""
    value_width = 190
    plot_width = width - label_width - value_width - 8
    points = [0.0] + [float(v) for row in rows for v in (row.value, row.low, row.high) if v is not None]
    lowest, highest = min(points), max(points)
    span = (highest - lowest) or 1.0

    def x(value: float) -> float:
        return label_width + plot_width * (value - lowest) / span

    zero = x(0.0)
    height = max(len(rows), 1) * row_height + 4
    body = [f'<line class="grid" x1="{zero:.1f}" x2="{zero:.1f}" y1="0" y2="{height}"></line>']
    for index, row in enumerate(rows):
        y = index * row_height + 2
        middle = y + row_height / 2
        text = row.label if len(row.label) <= 26 else row.label[:25] + "…"
        parts = [
            f'<text class="label" x="{label_width - 8}" y="{middle + 4:.1f}" text-anchor="end">{escape(text)}</text>'
        ]
        if row.value is None:
            shown = "–"
            end = zero
        else:
            value = float(row.value)
            start, stop = sorted((zero, x(value)))
            parts.append(
                f'<rect class="bar {escape(row.css_class)}" x="{start:.1f}" y="{y + 7}" '
                f'width="{max(stop - start, 1):.1f}" height="{row_height - 14}"></rect>'
            )
            shown = value_format(value)
            end = stop
            if row.low is not None and row.high is not None:
                low, high = x(float(row.low)), x(float(row.high))
                parts.append(
                    f'<g class="whisker" stroke="currentColor" stroke-width="1.5">'
                    f'<line x1="{low:.1f}" x2="{high:.1f}" y1="{middle:.1f}" y2="{middle:.1f}"></line>'
                    f'<line x1="{low:.1f}" x2="{low:.1f}" y1="{y + 4}" y2="{y + row_height - 4}"></line>'
                    f'<line x1="{high:.1f}" x2="{high:.1f}" y1="{y + 4}" y2="{y + row_height - 4}"></line></g>'
                )
                shown += f" [{value_format(float(row.low))}, {value_format(float(row.high))}]"
                end = max(end, high)
        title = row.title or f"{row.label}: {shown}"
        parts.append(
            f'<text class="value" x="{end + 6:.1f}" y="{middle + 4:.1f}">{escape(shown)}</text>'
            f"<title>{escape(title)}</title>"
        )
        body.append(f"<g>{''.join(parts)}</g>")
    return _svg(width, height, label, body, css_class)
