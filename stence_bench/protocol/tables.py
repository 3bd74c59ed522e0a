"""Aggregates of result files: one row per task x encoder x objective x stage x leads x fraction.

Draws (and seeds) of a fraction are averaged. Every cell of a task shares the same bootstrap resamples of the
test patients, so averaging the cells' per-resample values gives the resampling distribution of the averaged
score: its percentile interval is the row's CI. The paired difference to the random-init control averages
the per-resample differences the same way; ``*`` marks an interval that excludes zero. The spread over
draws (their standard deviation) is shown beside it: it is the label-sampling noise the CI does not hold.
"""

from __future__ import annotations

import fnmatch
import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .results import CellResult

LOWER_IS_BETTER = ("mae", "rmse")


@dataclass
class Row:
    task: str
    encoder: str
    objective: str
    stage: str
    leads: str
    fraction: float | None  # None: no training labels (zero-shot)
    metric: str
    n_cells: int
    n_failed: int
    mean: float | None
    ci_low: float | None
    ci_high: float | None
    spread: float | None
    diff: float | None
    diff_low: float | None
    diff_high: float | None
    diff_excludes_zero: bool


def options_text(options: dict[str, Any]) -> str:
    """Options as a short label: ``{depth=2, modality_encoders={angiography=angio_embedding}}``."""
    def text(value: Any) -> str:
        if isinstance(value, dict):
            return "{" + ", ".join(f"{k}={text(v)}" for k, v in sorted(value.items())) + "}"
        return value if isinstance(value, str) else json.dumps(value)

    return text(options)


class Labels:
    """Row names: ``name[preset]`` for encoders and the name for objectives, with the options added where one name
    comes with several option sets (a suite edited between runs into one folder), so that different configs never
    share a row and are never averaged together."""

    def __init__(self, encoders: Iterable[tuple[str, str | None, dict[str, Any]]],
                 objectives: Iterable[tuple[str, dict[str, Any]]]):
        self._encoders: dict[tuple[str, str | None], set[str]] = defaultdict(set)
        self._objectives: dict[str, set[str]] = defaultdict(set)
        for name, preset, options in encoders:
            self._encoders[(name, preset)].add(json.dumps(options or {}, sort_keys=True))
        for name, options in objectives:
            self._objectives[name].add(json.dumps(options or {}, sort_keys=True))

    @classmethod
    def of(cls, cells: Iterable[Any]) -> Labels:
        cells = list(cells)
        return cls([(c.encoder, c.preset, c.encoder_options) for c in cells],
                   [(c.objective, c.objective_options) for c in cells])

    def encoder(self, name: str, preset: str | None, options: dict[str, Any] | None = None) -> str:
        base = name if preset is None else f"{name}[{preset}]"
        return f"{base} {options_text(options)}" if options and len(self._encoders[(name, preset)]) > 1 else base

    def objective(self, name: str, options: dict[str, Any] | None = None) -> str:
        return f"{name} {options_text(options)}" if options and len(self._objectives[name]) > 1 else name

    def encoder_of(self, cell: Any) -> str:
        return self.encoder(cell.encoder, cell.preset, cell.encoder_options)

    def objective_of(self, cell: Any) -> str:
        return self.objective(cell.objective, cell.objective_options)


def _interval(values: np.ndarray) -> tuple[float | None, float | None]:
    values = values[np.isfinite(values)]
    if not len(values):
        return None, None
    return float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))


def aggregate(results: list[CellResult], control: str = "none", labels: Labels | None = None) -> list[Row]:
    """One row per task x encoder x objective (named by ``labels``, default: from these results) x stage x leads
    x fraction."""
    labels = labels if labels is not None else Labels.of(r.cell for r in results)
    groups: dict[tuple[Any, ...], list[CellResult]] = defaultdict(list)
    for r in results:
        c = r.cell
        if c.stage == "pretrain" or c.task is None:
            continue
        groups[(c.task, labels.encoder_of(c), labels.objective_of(c), c.stage, c.leads, c.fraction)].append(r)

    def resamples(cells: list[CellResult]) -> np.ndarray | None:
        arrays = [np.asarray(r.bootstrap.get("values") or [], dtype=float) for r in cells if r.status == "done"]
        arrays = [a for a in arrays if len(a)]
        if not arrays or len({len(a) for a in arrays}) != 1:
            return None
        return np.mean(arrays, axis=0)

    rows = []
    for (task, enc, obj, stage, leads, fraction), cells in sorted(groups.items(), key=lambda kv: tuple(map(str, kv[0]))):
        done = [r for r in cells if r.status == "done" and r.value is not None]
        metric = next((r.metric for r in cells if r.metric), "")
        values = np.array([r.value for r in done], dtype=float)
        boot = resamples(done)
        low, high = _interval(boot) if boot is not None else (None, None)
        diff = diff_low = diff_high = None
        excludes = False
        if obj != control:
            ctrl = groups.get((task, enc, control, stage, leads, fraction))
            ctrl_boot = resamples([r for r in ctrl or [] if r.status == "done"])
            if boot is not None and ctrl_boot is not None and len(ctrl_boot) == len(boot):
                sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
                d = sign * (boot - ctrl_boot)
                diff = float(np.nanmean(d))
                diff_low, diff_high = _interval(d)
                excludes = diff_low is not None and (diff_low > 0 or diff_high < 0)
        rows.append(Row(task=task, encoder=enc, objective=obj, stage=stage, leads=leads, fraction=fraction,
                        metric=metric, n_cells=len(cells), n_failed=len(cells) - len(done),
                        mean=float(values.mean()) if len(values) else None, ci_low=low, ci_high=high,
                        spread=float(values.std()) if len(values) > 1 else None,
                        diff=diff, diff_low=diff_low, diff_high=diff_high, diff_excludes_zero=excludes))
    return rows


def _num(v: float | None, signed: bool = False) -> str:
    if v is None:
        return "-"
    return f"{v:+.3f}" if signed else f"{v:.3f}"


def results_table(results: list[CellResult], *, task_pattern: str | None = None) -> str:
    from ..cli import format_table

    rows = [r for r in aggregate(results) if task_pattern is None or fnmatch.fnmatch(r.task, task_pattern)]
    table = []
    for r in rows:
        ci = f"[{_num(r.ci_low)}, {_num(r.ci_high)}]" if r.ci_low is not None else "-"
        diff = "-" if r.diff is None else f"{_num(r.diff, True)} [{_num(r.diff_low, True)}, {_num(r.diff_high, True)}]" + (
            " *" if r.diff_excludes_zero else "")
        cells = f"{r.n_cells - r.n_failed}/{r.n_cells}"
        table.append([r.task, r.stage, r.encoder, r.objective, r.leads if r.leads != "all" else "",
                      "-" if r.fraction is None else f"{r.fraction:g}", r.metric, _num(r.mean), ci, _num(r.spread), diff, cells])
    headers = ["task", "stage", "encoder", "objective", "lead", "fraction", "metric", "mean", "95% CI",
               "sd draws", "vs none (95% CI)", "cells"]
    note = ("\n* the paired interval excludes zero. CI: bootstrap over test patients of the draw-averaged score; "
            "sd draws: spread over label draws.")
    return format_table(headers, table) + note
