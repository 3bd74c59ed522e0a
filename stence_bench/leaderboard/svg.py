"""Inline SVG charts from the data model: label-efficiency curves and encoder x objective heatmaps.

Plain SVG strings (every text from a result file escaped), scaled by their ``viewBox``: each chart has a title and
description for screen readers, axis labels, a legend, and a ``<title>`` tooltip on every point and cell.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from markupsafe import Markup, escape

from .build import CONTROL, TableCell, TaskPage, fraction_label

#: Colour-blind-safe-ish categorical colours (Tableau 10), by objective; the ``none`` control is black, dashed.
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22",
           "#7f7f7f")
CONTROL_COLOUR = "#111111"


def objective_colours(objectives: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    i = 0
    for name in objectives:
        if name == CONTROL:
            out[name] = CONTROL_COLOUR
        else:
            out[name] = PALETTE[i % len(PALETTE)]
            i += 1
    return out


def _f(v: float) -> str:
    return f"{v:.1f}".rstrip("0").rstrip(".")


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round tick values covering [lo, hi]."""
    if not math.isfinite(lo) or not math.isfinite(hi):
        return [0.0, 1.0]
    if hi - lo < 1e-9:
        lo, hi = lo - 0.05, hi + 0.05
    raw = (hi - lo) / max(1, n - 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    ticks = []
    t = start
    while t <= hi + step * 0.999:
        ticks.append(round(t, 10))
        t += step
    return ticks


def _tick_labels(ticks: Sequence[float]) -> list[str]:
    """Tick labels with the decimals their step needs (0.2, 0.4, ... 1.0)."""
    step = abs(ticks[1] - ticks[0]) if len(ticks) > 1 else 1.0
    decimals = 0
    while decimals < 6 and abs(round(step, decimals) - step) > 1e-9:
        decimals += 1
    return [f"{t:.{decimals}f}" for t in ticks]


def curves(task: TaskPage, stage_index: int, encoder: str, colours: dict[str, str], uid: str) -> Markup:
    """Metric vs label fraction (log x axis) for one stage and encoder: one line per objective, with its CI band."""
    group = task.stages[stage_index]
    cols = [(j, c) for j, c in enumerate(task.columns) if c.id in group.columns and c.fraction is not None]
    rows = [r for r in task.rows if r.encoder == encoder]
    W, left, right, top = 520, 56, 16, 36
    plot_h = 220
    legend_cols = 2
    legend_rows = math.ceil(len(rows) / legend_cols)
    H = top + plot_h + 50 + 20 * legend_rows + 10
    bottom_y = top + plot_h
    title = f"{task.name}: {group.label}, {encoder}: {task.metric} by label fraction"
    desc = (f"Mean {task.metric} over label draws at each fraction of the training labels (log scale), one line per "
            f"objective, shaded: 95% bootstrap CI. {'Lower' if task.lower_is_better else 'Higher'} is better.")
    values = [v for r in rows for j, _ in cols for v in (r.cells[j].mean, r.cells[j].ci_low, r.cells[j].ci_high)
              if v is not None]
    out = [f'<svg class="chart" viewBox="0 0 {W} {H}" role="img" aria-labelledby="{uid}-t {uid}-d" '
           f'xmlns="http://www.w3.org/2000/svg">',
           f'<title id="{uid}-t">{escape(title)}</title><desc id="{uid}-d">{escape(desc)}</desc>',
           f'<text class="ctitle" x="{W / 2}" y="18" text-anchor="middle">'
           f'{escape(group.label)} · {escape(encoder)}</text>']
    if not cols or not values:
        out.append(f'<text x="{W / 2}" y="{top + plot_h / 2}" text-anchor="middle" class="empty">'
                   'no results</text></svg>')
        return Markup("".join(out))
    ticks = nice_ticks(min(values), max(values))
    y_lo, y_hi = ticks[0], ticks[-1]
    logs = [math.log10(c.fraction) for _, c in cols]  # type: ignore[arg-type]
    x_lo, x_hi = min(logs), max(logs)
    pad = 0.08 * (x_hi - x_lo) if x_hi > x_lo else 0.5
    x_lo, x_hi = x_lo - pad, x_hi + pad

    def X(fraction: float) -> float:
        return left + (math.log10(fraction) - x_lo) / (x_hi - x_lo) * (W - left - right)

    def Y(v: float) -> float:
        return bottom_y - (v - y_lo) / (y_hi - y_lo) * plot_h

    # axes, grid, tick labels
    out.append('<g class="axis">')
    for t, label in zip(ticks, _tick_labels(ticks), strict=True):
        out.append(f'<line class="grid" x1="{left}" x2="{W - right}" y1="{_f(Y(t))}" y2="{_f(Y(t))}"/>'
                   f'<text x="{left - 6}" y="{_f(Y(t) + 4)}" text-anchor="end">{label}</text>')
    for _, c in cols:
        x = _f(X(c.fraction))  # type: ignore[arg-type]
        out.append(f'<line class="tick" x1="{x}" x2="{x}" y1="{bottom_y}" y2="{bottom_y + 5}"/>'
                   f'<text x="{x}" y="{bottom_y + 18}" text-anchor="middle">{escape(c.label)}</text>')
    out.append(f'<line class="frame" x1="{left}" x2="{W - right}" y1="{bottom_y}" y2="{bottom_y}"/>'
               f'<line class="frame" x1="{left}" x2="{left}" y1="{top}" y2="{bottom_y}"/>'
               f'<text x="{(left + W - right) / 2}" y="{bottom_y + 36}" text-anchor="middle" class="alabel">'
               f'training labels (fraction, log scale)</text>'
               f'<text transform="translate(14 {top + plot_h / 2}) rotate(-90)" text-anchor="middle" class="alabel">'
               f'{escape(task.metric)} ({"lower" if task.lower_is_better else "higher"} is better)</text></g>')
    # one series per objective: CI band, line segments between present points, points with tooltips
    for row in rows:
        colour = colours.get(row.objective, "#555")
        pts = [(c.fraction, row.cells[j]) for j, c in cols]
        dash = ' stroke-dasharray="6 4"' if row.control else ""
        out.append(f'<g class="series"><title>{escape(row.objective)}</title>')
        segments: list[list[tuple[float, TableCell]]] = [[]]
        for fr, cell in pts:
            if cell.mean is None:
                segments.append([])
            else:
                segments[-1].append((fr, cell))  # type: ignore[arg-type]
        for seg in segments:
            band = [(fr, c) for fr, c in seg if c.ci_low is not None and c.ci_high is not None]
            if len(band) >= 2:
                upper = " ".join(f"{_f(X(fr))},{_f(Y(c.ci_high))}" for fr, c in band)  # type: ignore[arg-type]
                lower = " ".join(f"{_f(X(fr))},{_f(Y(c.ci_low))}" for fr, c in reversed(band))  # type: ignore[arg-type]
                out.append(f'<polygon class="band" points="{upper} {lower}" fill="{colour}"/>')
            elif len(band) == 1:  # a single point: its interval as a bar
                fr, c = band[0]
                out.append(f'<line class="bar" x1="{_f(X(fr))}" x2="{_f(X(fr))}" y1="{_f(Y(c.ci_low))}" '  # type: ignore[arg-type]
                           f'y2="{_f(Y(c.ci_high))}" stroke="{colour}"/>')  # type: ignore[arg-type]
            if len(seg) >= 2:
                line = " ".join(f"{_f(X(fr))},{_f(Y(c.mean))}" for fr, c in seg)  # type: ignore[arg-type]
                out.append(f'<polyline class="line" points="{line}" stroke="{colour}"{dash}/>')
        for fr, cell in pts:
            if cell.mean is None:
                continue
            tip = f"{row.objective}, {fraction_label(fr)}: {cell.title}"
            out.append(f'<circle cx="{_f(X(fr))}" cy="{_f(Y(cell.mean))}" r="3.5" fill="{colour}">'
                       f'<title>{escape(tip)}</title></circle>')
        out.append("</g>")
    # legend below the plot
    out.append('<g class="legend">')
    col_w = (W - left) / legend_cols
    for i, row in enumerate(rows):
        lx = left + (i % legend_cols) * col_w
        ly = bottom_y + 56 + (i // legend_cols) * 20
        colour = colours.get(row.objective, "#555")
        dash = ' stroke-dasharray="6 4"' if row.control else ""
        missing = [c.label for j, c in cols if row.cells[j].mean is None]
        label = row.objective + (f" (missing: {', '.join(missing)})" if missing else "")
        out.append(f'<line x1="{_f(lx)}" x2="{_f(lx + 22)}" y1="{ly - 4}" y2="{ly - 4}" stroke="{colour}" '
                   f'stroke-width="3"{dash}/><text x="{_f(lx + 28)}" y="{ly}">{escape(label)}</text>')
    out.append("</g></svg>")
    return Markup("".join(out))


def _blend(t: float) -> str:
    """A light-to-dark blue scale; ``t`` in [0, 1], 1 = best."""
    lo, hi = (0xEF, 0xF3, 0xFF), (0x08, 0x30, 0x6B)
    r, g, b = (round(a + (z - a) * t) for a, z in zip(lo, hi, strict=True))
    return f"#{r:02x}{g:02x}{b:02x}"


def heatmap(task: TaskPage, stage_index: int, encoders: Sequence[str], objectives: Sequence[str], uid: str) -> Markup:
    """Encoder x objective at the stage's smallest fraction: the mean, coloured (darker is better), ``*`` where the
    paired difference to the control is significant (Holm-adjusted p <= 0.05); missing and failed cells grey with a dash."""
    group = task.stages[stage_index]
    j = next(i for i, c in enumerate(task.columns) if c.id == group.heatmap_column)
    column = task.columns[j]
    cells = {(r.encoder, r.objective): r.cells[j] for r in task.rows}
    label_w = min(220, 12 + 7 * max((len(e) for e in encoders), default=8))
    cw, ch = 66, 34
    head = 12 + int(6.2 * max((len(o) for o in objectives), default=8) * 0.72) + 30  # room for slanted labels
    longest = max((len(o) for o in objectives), default=8)
    W = max(label_w + cw * len(objectives) + int(5 * longest), label_w + 6 * 40) + 20
    H = head + ch * len(encoders) + 74
    where = column.label if column.stage != "zero_shot" else "no training labels"
    title = f"{task.name}: {group.label} at {where}: {task.metric} by encoder and objective"
    desc = (f"Mean {task.metric} per encoder (rows) and objective (columns); darker is better; an asterisk marks a "
            f"paired difference to the {CONTROL} control that is significant after Holm's correction; a dash is a "
            "missing or failed cell.")
    values = [c.mean for c in cells.values() if c.mean is not None]
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    out = [f'<svg class="chart heat" viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" '
           f'aria-labelledby="{uid}-t {uid}-d" '
           f'xmlns="http://www.w3.org/2000/svg">',
           f'<title id="{uid}-t">{escape(title)}</title><desc id="{uid}-d">{escape(desc)}</desc>',
           f'<text class="ctitle" x="6" y="16">{escape(group.label)} · {escape(where)}</text>']
    for k, obj in enumerate(objectives):
        x = label_w + k * cw + cw / 2
        out.append(f'<text class="collabel" transform="translate({_f(x)} {head - 6}) rotate(-40)">{escape(obj)}</text>')
    for i, enc in enumerate(encoders):
        y = head + i * ch
        out.append(f'<text x="{label_w - 6}" y="{y + ch / 2 + 4}" text-anchor="end">{escape(enc)}</text>')
        for k, obj in enumerate(objectives):
            x = label_w + k * cw
            cell = cells.get((enc, obj))
            tip = f"{enc} · {obj}: " + (cell.title if cell is not None else "missing")
            if cell is None or cell.mean is None:
                hatch = "na" if cell is not None and cell.status in ("n/a", "absent") else "missing"
                out.append(f'<g><title>{escape(tip)}</title><rect class="{hatch}" x="{x}" y="{y}" width="{cw - 2}" '
                           f'height="{ch - 2}"/><text x="{x + cw / 2 - 1}" y="{y + ch / 2 + 4}" text-anchor="middle">'
                           f'{"" if hatch == "na" else "–"}</text></g>')
                continue
            t = (cell.mean - lo) / (hi - lo) if hi > lo else 0.5
            if task.lower_is_better:
                t = 1 - t
            fill = _blend(t)
            ink = "light" if t > 0.5 else "dark"
            mark = "*" if cell.significant else ""
            partial = "†" if cell.status == "partial" else ""
            out.append(f'<g><title>{escape(tip)}</title><rect x="{x}" y="{y}" width="{cw - 2}" height="{ch - 2}" '
                       f'fill="{fill}"/><text x="{x + cw / 2 - 1}" y="{y + ch / 2 + 4}" text-anchor="middle" '
                       f'class="{ink}">{cell.mean:.3f}{mark}{partial}</text></g>')
    # colour key
    ky = head + ch * len(encoders) + 18
    out.append(f'<g class="legend"><text x="{label_w - 6}" y="{ky + 12}" text-anchor="end">'
               f'{escape(task.metric)}</text>')
    steps = 6
    for s in range(steps):
        t = s / (steps - 1)
        v = lo + (hi - lo) * (1 - t if task.lower_is_better else t)
        out.append(f'<rect x="{label_w + s * 40}" y="{ky}" width="38" height="16" fill="{_blend(t)}"/>'
                   f'<text x="{label_w + s * 40 + 19}" y="{ky + 30}" text-anchor="middle">{v:.3f}</text>')
    out.append(f'<text x="{label_w}" y="{ky + 48}">darker is better</text></g></svg>')
    return Markup("".join(out))
