"""The admin page's usage charts, drawn as SVG on the server: no script, no outside request.

Each function returns one ``<svg>`` element (text escaped) for the page to place inline.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from html import escape

PALETTE = ("#4f6bed", "#e8833a", "#3aa76d", "#c43d64", "#8c6bd6", "#2b9eb3")
WIDTH = 560


def _svg(title: str, height: int, body: str) -> str:
    label = escape(title, quote=True)
    return (f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
            f'viewBox="0 0 {WIDTH} {height}" role="img" aria-label="{label}"><title>{label}</title>'
            f'<text x="8" y="18" class="chart-title" font-size="14" font-weight="600" fill="currentColor">'
            f"{escape(title)}</text>{body}</svg>")


def bars(title: str, items: Sequence[tuple[str, float]], fmt: Callable[[float], str], *, top: int = 8) -> str:
    """Horizontal bars, largest first (the ``top`` largest)."""
    shown = sorted(items, key=lambda kv: -kv[1])[:top]
    if not shown:
        return _svg(title, 50, '<text x="8" y="40" font-size="12" fill="currentColor">No data yet</text>')
    most = max(v for _, v in shown) or 1.0
    row, left, right = 24, 150, 90
    body = []
    for index, (label, value) in enumerate(shown):
        y = 32 + index * row
        width = max(1.0, (WIDTH - left - right) * value / most)
        color = PALETTE[index % len(PALETTE)]
        body.append(f'<text x="{left - 6}" y="{y + 14}" font-size="12" text-anchor="end" fill="currentColor">'
                    f"{escape(label[:22])}</text>"
                    f'<rect x="{left}" y="{y + 2}" width="{width:.1f}" height="{row - 8}" fill="{color}">'
                    f"<title>{escape(label)}: {escape(fmt(value))}</title></rect>"
                    f'<text x="{left + width + 6:.1f}" y="{y + 14}" font-size="12" fill="currentColor">'
                    f"{escape(fmt(value))}</text>")
    return _svg(title, 40 + len(shown) * row, "".join(body))


def columns(title: str, days: Sequence[str], series: Sequence[tuple[str, Sequence[float]]],
            fmt: Callable[[float], str]) -> str:
    """One column per day for each series, side by side, with a legend; the axis shows the largest."""
    height, left, bottom, top = 220, 60, 36, 40
    plot_h = height - top - bottom
    most = max([v for _, values in series for v in values] + [0.0]) or 1.0
    slot = (WIDTH - left - 10) / max(1, len(days))
    bar_w = max(2.0, slot * 0.8 / max(1, len(series)))
    body = [f'<line x1="{left}" y1="{top + plot_h}" x2="{WIDTH - 10}" y2="{top + plot_h}" stroke="#999"/>',
            f'<text x="{left - 6}" y="{top + 10}" font-size="11" text-anchor="end" fill="currentColor">'
            f"{escape(fmt(most))}</text>",
            f'<text x="{left - 6}" y="{top + plot_h}" font-size="11" text-anchor="end" fill="currentColor">0</text>']
    for s_index, (name, values) in enumerate(series):
        color = PALETTE[s_index % len(PALETTE)]
        body.append(f'<rect x="{left + s_index * 110}" y="{height - 14}" width="10" height="10" fill="{color}"/>'
                    f'<text x="{left + 14 + s_index * 110}" y="{height - 5}" font-size="11" fill="currentColor">'
                    f"{escape(name)}</text>")
        for d_index, value in enumerate(values):
            h = plot_h * value / most
            x = left + d_index * slot + slot * 0.1 + s_index * bar_w
            body.append(f'<rect x="{x:.1f}" y="{top + plot_h - h:.1f}" width="{bar_w:.1f}" height="{h:.1f}" '
                        f'fill="{color}"><title>{escape(days[d_index])} {escape(name)}: {escape(fmt(value))}'
                        "</title></rect>")
    for d_index, day in enumerate(days):
        if len(days) <= 8 or d_index % max(1, len(days) // 7) == 0 or d_index == len(days) - 1:
            x = left + d_index * slot + slot / 2
            body.append(f'<text x="{x:.1f}" y="{top + plot_h + 14}" font-size="10" text-anchor="middle" '
                        f'fill="currentColor">{escape(day[5:])}</text>')
    return _svg(title, height, "".join(body))


def ratios(title: str, items: Sequence[tuple[str, int, int]]) -> str:
    """Thumbs up and down as one stacked bar per label (green share = up), with the counts."""
    if not items:
        return _svg(title, 50, '<text x="8" y="40" font-size="12" fill="currentColor">No ratings yet</text>')
    row, left, right = 24, 150, 110
    span = WIDTH - left - right
    body = []
    for index, (label, up, down) in enumerate(items[:10]):
        y = 32 + index * row
        total = up + down or 1
        up_w = span * up / total
        body.append(f'<text x="{left - 6}" y="{y + 14}" font-size="12" text-anchor="end" fill="currentColor">'
                    f"{escape(label[:22])}</text>"
                    f'<rect x="{left}" y="{y + 2}" width="{up_w:.1f}" height="{row - 8}" fill="#3aa76d"/>'
                    f'<rect x="{left + up_w:.1f}" y="{y + 2}" width="{span - up_w:.1f}" height="{row - 8}" '
                    f'fill="#c43d64"/>'
                    f'<text x="{left + span + 6}" y="{y + 14}" font-size="12" fill="currentColor">'
                    f"{round(100 * up / total)}% 👍 ({up}/{up + down})</text>")
    return _svg(title, 40 + len(items[:10]) * row, "".join(body))
