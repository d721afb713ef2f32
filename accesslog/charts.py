"""Charts as inline SVG markup, drawn in Python for the HTML report (accesslog.report).

No script, no stylesheet, no external resource: every colour and size is a presentation
attribute, so a chart looks the same with CSS off and in any browser. Each data mark (a bar
`<rect>` or a point `<circle>`) carries `data-series`, `data-label` and `data-value` and a
`<title>` tooltip, so tests and screen readers find the numbers. Every value that reaches the
markup goes through `esc` (labels are URL paths and referrer hosts: user input).
"""
from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

AXIS = "#555555"
GRID = "#dddddd"
TEXT = "#222222"
PALETTE = ("#2b6cb0", "#dd6b20", "#2f855a", "#c53030", "#6b46c1", "#b7791f", "#319795", "#97266d")
FONT = 'font-family="system-ui, sans-serif" font-size="12"'


def esc(value: object) -> str:
    """Text or attribute value made safe for HTML and inline SVG (quotes included)."""
    return html.escape(str(value), quote=True)


@dataclass(frozen=True)
class Bar:
    """One bar: label (axis text), value (length), text (the value as shown), colour or None."""

    label: str
    value: float
    text: str
    colour: str | None = None


def nice_ticks(top: float, count: int = 5) -> list[float]:
    """0 and round steps (1, 2, 2.5 or 5 x 10^k) up to the first tick >= top, at most count + 1."""
    if top <= 0 or not math.isfinite(top):
        return [0.0, 1.0]
    raw = top / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    return [i * step for i in range(math.ceil(top / step - 1e-9) + 1)]


def tick_text(value: float) -> str:
    if value >= 1_000_000:
        return f"{value / 1_000_000:g}M"
    if value >= 10_000:
        return f"{value / 1_000:g}k"
    return f"{value:,.0f}" if value == int(value) else f"{value:g}"


def _shorten(label: str, limit: int) -> str:
    return label if len(label) <= limit else label[: limit - 1] + "…"


def bar_chart(series: str, bars: Sequence[Bar], *, description: str, unit: str = "",
              width: int = 640, label_chars: int = 30) -> str:
    """Horizontal bars, one row per Bar, with a value axis and grid lines.

    series names the data (`data-series` on every bar); description is the chart's accessible
    name; unit follows each value in the tooltips ("page views"). Returns `<svg>` markup.
    """
    row, top, left, right = 24, 8, 8 + 7 * label_chars, 90
    plot = width - left - right
    ticks = nice_ticks(max((b.value for b in bars), default=0))
    scale = plot / ticks[-1]
    height = top + row * len(bars) + 28
    parts = [_svg_open(width, height, description)]
    for tick in ticks:
        x = left + tick * scale
        parts.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{top + row * len(bars)}" stroke="{GRID}"/>'
                     f'<text x="{x:.1f}" y="{top + row * len(bars) + 16}" text-anchor="middle" '
                     f'fill="{AXIS}">{esc(tick_text(tick))}</text>')
    for i, bar in enumerate(bars):
        y = top + i * row
        length = max(bar.value * scale, 0.0)
        colour = bar.colour or PALETTE[0]
        parts.append(
            f'<text x="{left - 6}" y="{y + row / 2 + 4:.1f}" text-anchor="end" fill="{TEXT}">'
            f'{esc(_shorten(bar.label, label_chars))}</text>'
            f'<rect data-series="{esc(series)}" data-label="{esc(bar.label)}" data-value="{esc(bar.value)}" '
            f'x="{left}" y="{y + 3}" width="{length:.1f}" height="{row - 6}" fill="{colour}">'
            f'<title>{esc(bar.label)}: {esc(bar.text)} {esc(unit)}</title></rect>'
            f'<text x="{left + length + 4:.1f}" y="{y + row / 2 + 4:.1f}" fill="{TEXT}">{esc(bar.text)}</text>')
    parts.append(f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + row * len(bars)}" stroke="{AXIS}"/></svg>')
    return "".join(parts)


def line_chart(labels: Sequence[str], series: dict[str, Sequence[float]], *, description: str,
               y_title: str, x_title: str, right: dict[str, Sequence[float]] | None = None,
               right_title: str = "", value_text: Callable[[float], str] = tick_text,
               width: int = 760, height: int = 300) -> str:
    """Lines with point markers over categorical x positions (e.g. days), with axes, grid lines,
    axis titles and a legend. series: name -> one value per label, scaled on the left axis;
    right: series with their own scale on a right axis (titled right_title), so a small series
    (visitors) is not drawn flat against a large one (requests). Series take PALETTE colours in
    order, left then right; each line and point carries `data-axis`. Returns `<svg>` markup."""
    right = right or {}
    left, margin_right, top, bottom = 64, 64 if right else 48, 34, 56
    plot_w, plot_h = width - left - margin_right, height - top - bottom
    ticks = nice_ticks(max((v for values in series.values() for v in values), default=0))
    right_ticks = nice_ticks(max((v for values in right.values() for v in values), default=0))

    def x_at(i: int) -> float:
        return left + (plot_w / 2 if len(labels) == 1 else i * plot_w / (len(labels) - 1))

    def y_on(axis: list[float]) -> Callable[[float], float]:
        return lambda value: top + plot_h - value * plot_h / axis[-1]

    y_at, y_right = y_on(ticks), y_on(right_ticks)
    parts = [_svg_open(width, height, description)]
    for tick in ticks:
        parts.append(f'<line x1="{left}" y1="{y_at(tick):.1f}" x2="{left + plot_w}" y2="{y_at(tick):.1f}" '
                     f'stroke="{GRID}"/><text x="{left - 6}" y="{y_at(tick) + 4:.1f}" text-anchor="end" '
                     f'fill="{AXIS}">{esc(tick_text(tick))}</text>')
    every = max(1, math.ceil(len(labels) / 12))  # at most ~12 x labels, whatever the range
    for i, label in enumerate(labels):
        if i % every == 0 or i == len(labels) - 1:
            parts.append(f'<line x1="{x_at(i):.1f}" y1="{top + plot_h}" x2="{x_at(i):.1f}" y2="{top + plot_h + 4}" '
                         f'stroke="{AXIS}"/><text x="{x_at(i):.1f}" y="{top + plot_h + 18}" text-anchor="middle" '
                         f'fill="{AXIS}">{esc(label)}</text>')
    parts.append(f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="{AXIS}"/>'
                 f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="{AXIS}"/>'
                 f'<text x="{left + plot_w / 2:.1f}" y="{height - 8}" text-anchor="middle" fill="{TEXT}">'
                 f'{esc(x_title)}</text>'
                 f'<text transform="translate(14 {top + plot_h / 2:.1f}) rotate(-90)" text-anchor="middle" '
                 f'fill="{PALETTE[0] if right else TEXT}">{esc(y_title)}</text>')
    if right:
        colour = PALETTE[len(series) % len(PALETTE)]
        edge = left + plot_w
        parts.append(f'<line x1="{edge}" y1="{top}" x2="{edge}" y2="{top + plot_h}" stroke="{AXIS}"/>'
                     f'<text transform="translate({width - 10} {top + plot_h / 2:.1f}) rotate(90)" '
                     f'text-anchor="middle" fill="{colour}">{esc(right_title)}</text>')
        parts += [f'<text x="{edge + 6}" y="{y_right(tick) + 4:.1f}" fill="{colour}">{esc(tick_text(tick))}</text>'
                  for tick in right_ticks]
    drawn = [(name, values, "left", y_at) for name, values in series.items()]
    drawn += [(name, values, "right", y_right) for name, values in right.items()]
    for n, (name, values, axis, y_of) in enumerate(drawn):
        colour = PALETTE[n % len(PALETTE)]
        points = " ".join(f"{x_at(i):.1f},{y_of(v):.1f}" for i, v in enumerate(values))
        parts.append(f'<polyline data-series="{esc(name)}" data-axis="{axis}" points="{points}" fill="none" '
                     f'stroke="{colour}" stroke-width="2"/>')
        for i, (label, value) in enumerate(zip(labels, values)):
            parts.append(f'<circle data-series="{esc(name)}" data-axis="{axis}" data-label="{esc(label)}" '
                         f'data-value="{esc(value)}" cx="{x_at(i):.1f}" cy="{y_of(value):.1f}" r="3.5" '
                         f'fill="{colour}"><title>{esc(label)}: {esc(value_text(value))} {esc(name)}</title></circle>')
        legend_x = left + n * 220
        legend = f"{name} ({axis} axis)" if right else name
        parts.append(f'<rect x="{legend_x}" y="8" width="14" height="14" fill="{colour}"/>'
                     f'<text x="{legend_x + 20}" y="19" fill="{TEXT}">{esc(legend)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _svg_open(width: int, height: int, description: str) -> str:
    # No xmlns: inline SVG in HTML does not need it, and the page then holds no URL at all.
    return (f'<svg role="img" aria-label="{esc(description)}" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" {FONT}><title>{esc(description)}</title>')
