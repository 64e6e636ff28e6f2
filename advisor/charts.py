"""Small SVG charts for the run report: bars with intervals and line curves.

Drawn here and embedded as ``data:image/svg+xml`` images, so the report needs no
plotting library and works on the base install. Text in a chart is escaped (model
text is hostile) and control characters are dropped.
"""

from __future__ import annotations

import base64
import html
import math
import re
from dataclasses import dataclass
from typing import Any


@dataclass
class Plot:
    title: str
    uri: str
    width: int
    height: int


PALETTE = ("#4c78a8", "#f58518", "#54a24b", "#b279a2", "#e45756", "#72b7b2")
WIDTH, HEIGHT = 560, 260
LEFT, RIGHT, TOP, BOTTOM = 58, 16, 48, 34
XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f]")


def as_number(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def as_interval(value: Any) -> tuple[float, float] | None:
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(as_number(v) is not None for v in value):
        return float(value[0]), float(value[1])
    return None


def _ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    if hi - lo < 1e-12:
        lo, hi = lo - (abs(lo) * 0.1 or 0.5), hi + (abs(hi) * 0.1 or 0.5)
    raw = (hi - lo) / count
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw * 0.999)
    start, end = math.floor(lo / step + 1e-9) * step, math.ceil(hi / step - 1e-9) * step
    return [start + i * step for i in range(round((end - start) / step) + 1)]


def _text(x: float, y: float, s: str, anchor: str = "middle", size: int = 11, extra: str = "") -> str:
    s = html.escape(XML_INVALID.sub("", s))  # a control character would make the whole SVG unreadable
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-size="{size}" {extra}>{s}</text>'


def _frame(title: str, names: list[str], yticks: list[float], percent: bool) -> tuple[list[str], Any]:
    """Title, legend, y grid and labels; returns the elements and a value-to-pixel function."""
    y0, y1 = yticks[0], yticks[-1]
    bottom = HEIGHT - BOTTOM

    def ypx(v: float) -> float:
        return bottom - (v - y0) / (y1 - y0) * (bottom - TOP)

    out = [_text(WIDTH / 2, 18, title, size=13, extra='font-weight="bold"')]
    x = LEFT
    for i, name in enumerate(names):
        out.append(f'<rect x="{x}" y="28" width="10" height="10" fill="{PALETTE[i % len(PALETTE)]}"/>')
        out.append(_text(x + 14, 37, name, anchor="start"))
        x += 24 + 6.5 * len(name)
    for t in yticks:
        out.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{ypx(t):.1f}" y2="{ypx(t):.1f}" stroke="#ddd"/>')
        out.append(_text(LEFT - 6, ypx(t) + 4, f"{t:.0%}" if percent else f"{t:.3g}", anchor="end", size=10))
    out.append(f'<line x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{bottom}" stroke="#444"/>')
    out.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{bottom}" y2="{bottom}" stroke="#444"/>')
    return out, ypx


def _plot(title: str, body: list[str]) -> Plot:
    svg = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif">'
        f'<rect width="100%" height="100%" fill="white"/>{"".join(body)}</svg>'
    )
    uri = "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode()
    return Plot(title, uri, WIDTH, HEIGHT)


def bar_chart(
    title: str,
    categories: list[str],
    series: dict[str, list[float | None]],
    errors: dict[str, list[Any]] | None = None,
    top: float | None = None,
    gate: float | None = None,
) -> Plot:
    """Grouped bars in percent, one group per category, optional (lo, hi) error bars and a gate line."""
    errors = {name: [as_interval(e) for e in es] for name, es in (errors or {}).items()}
    values = [v for vs in series.values() for v in vs if v is not None]
    highs = [e[1] for es in errors.values() for e in es if e]
    yticks = _ticks(0.0, top if top is not None else max(values + highs + [0.01]))
    out, ypx = _frame(title, list(series), yticks, percent=True)
    group = (WIDTH - LEFT - RIGHT) / len(categories)
    bar = min(group * 0.8 / len(series), 90)
    if gate is not None:
        out.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{ypx(gate):.1f}" y2="{ypx(gate):.1f}" ')
        out[-1] += 'stroke="#e45756" stroke-dasharray="4 3"/>'
        out.append(
            _text(WIDTH - RIGHT, ypx(gate) - 4, f"gate {gate:.0%}", anchor="end", size=10, extra='fill="#e45756"')
        )
    for c, category in enumerate(categories):
        gx = LEFT + c * group + (group - bar * len(series)) / 2 - group * 0.1
        out.append(_text(LEFT + (c + 0.5) * group, HEIGHT - BOTTOM + 16, category, size=10))
        for s, (name, vs) in enumerate(series.items()):
            v = vs[c]
            if v is None:
                continue
            x = gx + group * 0.1 + s * bar
            color = PALETTE[s % len(PALETTE)]
            out.append(f'<rect x="{x:.1f}" y="{ypx(v):.1f}" width="{bar * 0.92:.1f}" ')
            out[-1] += f'height="{max(ypx(0) - ypx(v), 0):.1f}" fill="{color}"/>'
            e = (errors.get(name) or [None] * len(categories))[c]
            if e:
                mid = x + bar * 0.46
                out.append(f'<path d="M{mid:.1f},{ypx(e[0]):.1f}V{ypx(e[1]):.1f}M{mid - 4:.1f},{ypx(e[0]):.1f}')
                out[-1] += f'h8M{mid - 4:.1f},{ypx(e[1]):.1f}h8" stroke="#222" fill="none"/>'
            if len(categories) * len(series) <= 12:
                out.append(_text(x + bar * 0.46, min(ypx(v), ypx(e[1]) if e else ypx(v)) - 4, f"{v:.0%}", size=10))
    return _plot(title, out)


def line_chart(
    title: str, series: dict[str, list[tuple[float, float]]], percent: bool = False, mark: float | None = None
) -> Plot:
    """Lines over steps; ``mark`` draws a dashed vertical line (the chosen checkpoint)."""
    xs = [x for pts in series.values() for x, _ in pts]
    ys = [y for pts in series.values() for _, y in pts]
    xticks = _ticks(min(xs), max(xs))
    yticks = _ticks(0.0, max(max(ys), 0.01)) if percent else _ticks(min(ys), max(ys))
    out, ypx = _frame(title, list(series), yticks, percent)
    x0, x1 = xticks[0], xticks[-1]

    def xpx(v: float) -> float:
        return LEFT + (v - x0) / (x1 - x0) * (WIDTH - LEFT - RIGHT)

    for t in xticks:
        out.append(_text(xpx(t), HEIGHT - BOTTOM + 16, f"{t:g}", size=10))
    out.append(_text(WIDTH - RIGHT, HEIGHT - 4, "step", anchor="end", size=10))
    if mark is not None:
        out.append(f'<line x1="{xpx(mark):.1f}" x2="{xpx(mark):.1f}" y1="{TOP}" y2="{HEIGHT - BOTTOM}" ')
        out[-1] += 'stroke="#e45756" stroke-dasharray="4 3"/>'
        out.append(_text(xpx(mark) + 4, TOP + 10, "chosen", anchor="start", size=10, extra='fill="#e45756"'))
    for i, pts in enumerate(series.values()):
        color = PALETTE[i % len(PALETTE)]
        path = " ".join(f"{xpx(x):.1f},{ypx(y):.1f}" for x, y in pts)
        out.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="1.8"/>')
        if len(pts) <= 40:
            out += [f'<circle cx="{xpx(x):.1f}" cy="{ypx(y):.1f}" r="2.5" fill="{color}"/>' for x, y in pts]
    return _plot(title, out)
