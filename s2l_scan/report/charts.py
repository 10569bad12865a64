"""Inline SVG charts for the HTML report: ROC curves, score histograms, AUC vs blind AUC.

The maths (:func:`roc_points`, :func:`histogram`) are pure functions over score lists; the
``*_svg`` functions only draw. No external assets, no scripts: every chart is a string of SVG.

>>> roc_points([0.9, 0.8], [0.1, 0.85])
[(0.0, 0.0), (0.0, 0.5), (0.5, 0.5), (0.5, 1.0), (1.0, 1.0)]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape
from itertools import pairwise

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2",
           "#17becf", "#bcbd22", "#7f7f7f")
MEMBER_COLOR, NONMEMBER_COLOR, POOLED_COLOR = "#d62728", "#1f77b4", "#222222"


def roc_points(members: Sequence[float], nonmembers: Sequence[float]) -> list[tuple[float, float]]:
    """ROC curve as (FPR, TPR) corners, from (0, 0) to (1, 1); members are the positives.

    Tied scores move together (a diagonal step), as in ``sklearn.metrics.roc_curve``; points in
    the middle of a straight run are dropped, so the curve keeps its shape and area.
    """
    if not members or not nonmembers:
        raise ValueError("roc_points needs at least one member and one non-member score")
    labelled = sorted([(s, 1) for s in members] + [(s, 0) for s in nonmembers], reverse=True)
    positives, negatives = len(members), len(nonmembers)
    points = [(0.0, 0.0)]
    tp = fp = 0
    for index, (score, label) in enumerate(labelled):
        tp += label
        fp += 1 - label
        if index + 1 == len(labelled) or labelled[index + 1][0] != score:
            points.append((fp / negatives, tp / positives))
    return _drop_collinear(points)


def _drop_collinear(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    kept = [points[0]]
    for here, after in pairwise(points[1:]):
        before = kept[-1]
        cross = ((here[0] - before[0]) * (after[1] - here[1])
                 - (here[1] - before[1]) * (after[0] - here[0]))
        if abs(cross) > 1e-12:
            kept.append(here)
    kept.append(points[-1])
    return kept


def trapezoid_area(points: Sequence[tuple[float, float]]) -> float:
    """Area under a polyline (the AUC of :func:`roc_points`)."""
    return sum((x1 - x0) * (y0 + y1) / 2 for (x0, y0), (x1, y1) in pairwise(points))


def histogram(values: Sequence[float], edges: Sequence[float]) -> list[float]:
    """Fraction of ``values`` in each bin ``[edges[i], edges[i+1])`` (the last bin is closed)."""
    counts = [0] * (len(edges) - 1)
    for value in values:
        if edges[0] <= value <= edges[-1]:
            index = min(_bin(edges, value), len(counts) - 1)
            counts[index] += 1
    total = len(values) or 1
    return [count / total for count in counts]


def _bin(edges: Sequence[float], value: float) -> int:
    low, high = 0, len(edges) - 1
    while high - low > 1:
        middle = (low + high) // 2
        if value >= edges[middle]:
            low = middle
        else:
            high = middle
    return low


def shared_edges(*sets: Sequence[float], bins: int = 20) -> list[float]:
    """``bins + 1`` equal-width edges covering every value of every set."""
    values = [v for s in sets for v in s if math.isfinite(v)]
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    if high <= low:
        low, high = low - 0.5, high + 0.5
    return [low + (high - low) * i / bins for i in range(bins + 1)]


# --------------------------------------------------------------------------------------------
# drawing

_SIZE, _PAD = 300, 40


def _xy(x: float, y: float, width: int = _SIZE, height: int = _SIZE, pad: int = _PAD
        ) -> tuple[float, float]:
    return pad + x * (width - 2 * pad), height - pad - y * (height - 2 * pad)


def log_position(value: float, floor: float) -> float:
    """Where ``value`` sits on a log axis from ``floor`` (0) to 1 (1); values at or below
    ``floor`` (zero included) sit at 0.

    >>> log_position(0.01, 1e-3), log_position(0.0, 1e-3), log_position(1.0, 1e-3)
    (0.3333333333333333, 0.0, 1.0)
    """
    return (math.log10(max(value, floor)) - math.log10(floor)) / -math.log10(floor)


def log_floor(n_nonmembers: int) -> float:
    """The lower end of a log-log ROC chart: the decade at or below one non-member (the
    smallest non-zero FPR a set of ``n_nonmembers`` can show), at most 10⁻²."""
    return float(min(1e-2, 10.0 ** math.floor(math.log10(1.0 / max(1, n_nonmembers)))))


def _polyline(points: Sequence[tuple[float, float]], **style: str) -> str:
    coords = " ".join(f"{px:.1f},{py:.1f}" for px, py in (_xy(x, y) for x, y in points))
    attrs = " ".join(f'{k.replace("_", "-")}="{v}"' for k, v in style.items())
    return f'<polyline points="{coords}" fill="none" {attrs}/>'


def roc_svg(title: str, curves: Sequence[tuple[str, str, list[tuple[float, float]]]],
            scale: str = "linear", floor: float = 1e-3) -> str:
    """A square ROC chart; ``curves`` are (label, colour, points). Chance is the dashed line.

    ``scale="log"``: both axes logarithmic from ``floor`` to 1, as membership-inference papers
    read attacks at low FPR (Carlini et al. 2022); points at 0 sit on the floor."""
    if scale not in ("linear", "log"):
        raise ValueError(f"scale must be 'linear' or 'log', got {scale!r}")

    def place(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
        if scale == "linear":
            return list(points)
        return [(log_position(x, floor), log_position(y, floor)) for x, y in points]

    x0, y0 = _xy(0, 0)
    x1, y1 = _xy(1, 1)
    chance = [(0, 0), (1, 1)] if scale == "linear" else [(floor, floor), (1, 1)]
    parts = [f'<svg class="chart roc {scale}" viewBox="0 0 {_SIZE + 170} {_SIZE}" '
             f'width="{_SIZE + 170}" height="{_SIZE}" role="img" aria-label="{escape(title)}">',
             f"<title>{escape(title)}</title>",
             f'<rect x="{x0}" y="{y1}" width="{x1 - x0}" height="{y0 - y1}" fill="#fafafa" '
             'stroke="#999"/>',
             _polyline(place(chance), stroke="#aaa", stroke_dasharray="4 3")]
    ticks = ([0.0, 0.5, 1.0] if scale == "linear" else
             [10.0 ** e for e in range(round(math.log10(floor)), 1)])
    for tick in ticks:
        (at, _), = place([(tick, 0.0)])
        tx, _ = _xy(at, 0)
        _, ty = _xy(0, at)
        label = f"{tick:g}"
        parts.append(f'<text x="{tx:.1f}" y="{y0 + 14:.1f}" text-anchor="middle">{label}</text>')
        parts.append(f'<text x="{x0 - 6:.1f}" y="{ty + 4:.1f}" text-anchor="end">{label}</text>')
        if scale == "log" and 0 < at < 1:
            parts.append(f'<line x1="{tx:.1f}" y1="{y1}" x2="{tx:.1f}" y2="{y0}" '
                         'stroke="#e4e4e4"/>')
            parts.append(f'<line x1="{x0}" y1="{ty:.1f}" x2="{x1}" y2="{ty:.1f}" '
                         'stroke="#e4e4e4"/>')
    axis = " (log)" if scale == "log" else ""
    parts.append(f'<text x="{(x0 + x1) / 2:.1f}" y="{_SIZE - 6}" text-anchor="middle">'
                 f"false positive rate{axis}</text>")
    parts.append(f'<text transform="translate(12 {(y0 + y1) / 2:.1f}) rotate(-90)" '
                 f'text-anchor="middle">true positive rate{axis}</text>')
    parts.append(f'<text x="{x0}" y="{y1 - 10}" class="chart-title">{escape(title)}</text>')
    for index, (label, colour, points) in enumerate(curves):
        parts.append(_polyline(place(points), stroke=colour, stroke_width="2"))
        ly = y1 + 14 + index * 16
        parts.append(f'<line x1="{x1 + 10}" y1="{ly - 4}" x2="{x1 + 26}" y2="{ly - 4}" '
                     f'stroke="{colour}" stroke-width="3"/>')
        parts.append(f'<text x="{x1 + 30}" y="{ly}">{escape(label)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def histogram_svg(title: str, members: Sequence[float], nonmembers: Sequence[float],
                  bins: int = 20) -> str:
    """Member vs non-member score distributions on shared bins (fractions of each set)."""
    width, height, pad = 280, 160, 28
    edges = shared_edges(members, nonmembers, bins=bins)
    sets = ((histogram(nonmembers, edges), NONMEMBER_COLOR, "non-members"),
            (histogram(members, edges), MEMBER_COLOR, "members"))
    top = max(max(h) for h, _, _ in sets) or 1.0
    parts = [f'<svg class="chart hist" viewBox="0 0 {width} {height}" width="{width}" '
             f'height="{height}" role="img" aria-label="{escape(title)}">',
             f"<title>{escape(title)}</title>",
             f'<text x="{pad}" y="12" class="chart-title">{escape(title)}</text>']
    for heights, colour, label in sets:
        path = []
        for index, value in enumerate(heights):
            left, bottom = _xy(index / bins, 0, width, height, pad)
            right, peak = _xy((index + 1) / bins, value / top, width, height, pad)
            path.append(f"M{left:.1f},{bottom:.1f}V{peak:.1f}H{right:.1f}V{bottom:.1f}Z")
        parts.append(f'<path d="{"".join(path)}" fill="{colour}" fill-opacity="0.45" '
                     f'stroke="{colour}" stroke-width="0.6"><title>{label}</title></path>')
    left, bottom = _xy(0, 0, width, height, pad)
    right, _ = _xy(1, 0, width, height, pad)
    parts.append(f'<line x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}" stroke="#666"/>')
    parts.append(f'<text x="{left}" y="{bottom + 13}">{edges[0]:.3g}</text>')
    parts.append(f'<text x="{right}" y="{bottom + 13}" text-anchor="end">{edges[-1]:.3g}</text>')
    parts.append(f'<text x="{(left + right) / 2}" y="{bottom + 26}" text-anchor="middle">'
                 "score (higher = member)</text>")
    legend_x = right - 150
    for index, (_, colour, label) in enumerate(reversed(sets)):
        parts.append(f'<rect x="{legend_x + index * 80}" y="18" width="10" height="10" '
                     f'fill="{colour}" fill-opacity="0.6"/>')
        parts.append(f'<text x="{legend_x + index * 80 + 14}" y="27">{label}</text>')
    parts.append("</svg>")
    return "".join(parts)


def auc_bars_svg(title: str, bars: Sequence[tuple[str, float, float]], max_auc: float) -> str:
    """Per domain: attack AUC next to the blind (model-free) AUC, with the gate's max_auc."""
    row_height, label_width, width = 22, 110, 460
    height = 34 + row_height * len(bars) + 20
    scale = width - label_width - 90  # room on the right for the "0.58 / 0.89" labels

    def x(value: float) -> float:
        return label_width + value * scale

    parts = [f'<svg class="chart bars" viewBox="0 0 {width} {height}" width="{width}" '
             f'height="{height}" role="img" aria-label="{escape(title)}">',
             f"<title>{escape(title)}</title>",
             f'<text x="4" y="14" class="chart-title">{escape(title)}</text>']
    for index, (label, auc, blind) in enumerate(bars):
        y = 26 + index * row_height
        parts.append(f'<text x="{label_width - 6}" y="{y + 12}" text-anchor="end">'
                     f"{escape(label)}</text>")
        parts.append(f'<rect x="{x(0)}" y="{y}" width="{auc * scale:.1f}" height="8" '
                     f'fill="{MEMBER_COLOR}"><title>AUC {auc:.3f}</title></rect>')
        parts.append(f'<rect x="{x(0)}" y="{y + 9}" width="{blind * scale:.1f}" height="8" '
                     f'fill="#999"><title>blind AUC {blind:.3f}</title></rect>')
        parts.append(f'<text x="{x(max(auc, blind)) + 4:.1f}" y="{y + 13}">{auc:.2f} / '
                     f"{blind:.2f}</text>")
    bottom = 26 + row_height * len(bars)
    for value, style in ((0.5, 'stroke="#aaa" stroke-dasharray="3 3"'),
                         (max_auc, 'stroke="#000" stroke-width="1.5"')):
        parts.append(f'<line x1="{x(value):.1f}" y1="22" x2="{x(value):.1f}" y2="{bottom}" '
                     f"{style}/>")
    parts.append(f'<text x="{x(max_auc) + 3:.1f}" y="{bottom + 14}">max_auc {max_auc:g}</text>')
    parts.append(f'<text x="{x(0.5) - 3:.1f}" y="{bottom + 14}" text-anchor="end">chance</text>')
    parts.append("</svg>")
    return "".join(parts)
