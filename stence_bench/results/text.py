"""The results as plain-text tables (``stence-bench results show``): the aggregated rows and the comparisons."""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # numpy is imported when a table of results is made, not for format_table
    from .aggregate import Difference
    from .schema import CellResult


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table: a header, a rule, left-aligned columns."""
    cells = [[str(h) for h in headers], *[[str(v) for v in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _num(v: float | None, signed: bool = False) -> str:
    if v is None:
        return "-"
    return f"{v:+.3f}" if signed else f"{v:.3f}"


def comparisons_table(differences: list[Difference]) -> str:
    """The comparisons as text: per task, then the means over tasks."""
    from .aggregate import LOWER_IS_BETTER
    table = []
    for d in differences:
        value = (f"{d.mean * 100:+.1f} %" if d.measure == "relative reduction" and d.mean is not None
                 else _num(d.mean, True))
        interval = (f"[{d.low * 100:+.1f}, {d.high * 100:+.1f}] %" if d.measure == "relative reduction"
                    and d.low is not None and d.high is not None else f"[{_num(d.low, True)}, {_num(d.high, True)}]")
        what = d.task if d.task is not None else f"mean of {len(d.tasks)} task{'s' * (len(d.tasks) != 1)}"
        if d.test_dataset is not None:
            what += f" (tested on {d.test_dataset})" if d.task is not None else " (external)"
        measure = d.metric + (" reduction" if d.metric in LOWER_IS_BETTER else " gain")
        table.append([d.comparison, what, d.stage, f"{d.encoder} {d.objective}",
                      f"{d.reference_encoder} {d.reference_objective}", d.leads if d.leads != "all" else "",
                      "-" if d.fraction is None else f"{d.fraction:g}", measure,
                      value + (" *" if d.significant else ""), interval])
    headers = ["comparison", "task", "stage", "row", "reference", "lead", "fraction", "measure", "mean", "95% CI"]
    note = ("\nPaired on the shared resamples (draw by draw); positive = better. * Holm-adjusted p <= 0.05 per "
            "comparison, task and stage. Means over tasks: MAE and RMSE as the relative reduction "
            "(1 - row / reference), other metrics as the difference; their interval is the resample-wise mean of "
            "the tasks' paired differences.")
    return format_table(headers, table) + note


def results_table(results: list[CellResult], *, task_pattern: str | None = None) -> str:
    """The aggregated rows (:func:`stence_bench.results.aggregate.aggregate`) as a table, with a note on the
    intervals and marks."""
    from .aggregate import aggregate

    rows = [r for r in aggregate(results) if task_pattern is None or fnmatch.fnmatch(r.task, task_pattern)]
    external = any(r.test_dataset is not None for r in rows)
    table = []
    for r in rows:
        ci = f"[{_num(r.ci_low)}, {_num(r.ci_high)}]" if r.ci_low is not None else "-"
        diff = "-" if r.diff is None else f"{_num(r.diff, True)} [{_num(r.diff_low, True)}, {_num(r.diff_high, True)}]" + (
            " *" if r.significant else "")
        cells = f"{r.n_cells - r.n_failed}/{r.n_cells}" + (f" ({r.n_stale} stale)" if r.n_stale else "")
        best = "-" if r.p_best is None else f"{r.p_best:.2f}"
        worst = "-" if r.worst_subgroup is None else f"{r.worst_subgroup} {_num(r.worst_mean)}"
        table.append([r.task, r.stage, r.encoder, r.objective, r.leads if r.leads != "all" else "",
                      "-" if r.fraction is None else f"{r.fraction:g}", r.metric, _num(r.mean), ci, _num(r.spread), diff,
                      best, worst, cells] + ([r.test_dataset or "internal"] if external else []))
    headers = ["task", "stage", "encoder", "objective", "lead", "fraction", "metric", "mean", "95% CI",
               "sd draws", "vs none (95% CI)", "P(best)", "worst subgroup", "cells"] + (["tested on"] if external else [])
    note = ("\n95% CI: patient bootstrap for one cell; with several draws or seeds, a two-level bootstrap over the "
            "cells and the test patients. * Holm-adjusted p <= 0.05 (per task and stage) for the paired difference "
            "to the control. P(best): share of resamples in which the row is the best of its column. "
            "sd draws: spread over label draws. worst subgroup: the prespecified subgroup (sex, age band, the task's "
            "columns) with the worst mean among those with enough test patients. stale: kept with --reuse-stale although its inputs changed.")
    return format_table(headers, table) + note
