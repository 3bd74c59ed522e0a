"""Aggregates of result files: one row per task x encoder x objective x stage x leads x fraction.

A row holds the cells of its draws and seeds. Every cell of a task shares the same bootstrap resamples of the
test patients (its ``bootstrap.values``: the metric on resample ``b``), so the rows' numbers are:

- ``mean``: the mean of the cells' scores;
- the interval: with one cell, the percentile interval of its patient bootstrap; with several (draws, seeds), a
  two-level bootstrap: resample ``b`` draws as many cells as the row has, with replacement, and averages their
  values on patient resample ``b`` (so the interval holds the label-draw and seed variation as well as the test
  patients'). ``ci_patients_*`` keep the patient-only interval of the draw-averaged score for comparison;
- the paired difference to the random-init control: the same two-level bootstrap over the row's cells paired
  with the control's cells of the same draw and seed (the same labelled patients), with a two-sided bootstrap
  p-value; ``*`` marks a difference whose Holm-adjusted p-value (per task and stage, over every encoder x
  objective x lead set x fraction compared with the control) is at most 0.05;
- ``p_best``: the share of resamples in which the row is the best of its column (task, stage, leads, fraction):
  how sure its rank 1 is.
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
    #: what the interval resamples: ``patients`` (one cell) or ``cells+patients`` (two-level)
    ci_kind: str = "patients"
    ci_patients_low: float | None = None
    ci_patients_high: float | None = None
    #: two-sided bootstrap p-value of the paired difference, and Holm-adjusted over the task and stage
    p_value: float | None = None
    p_holm: float | None = None
    significant: bool = False
    #: share of resamples in which this row is the best of its column
    p_best: float | None = None
    #: cells kept although their inputs changed (``run --reuse-stale``)
    n_stale: int = 0


#: Significance level of the Holm-corrected paired differences.
ALPHA = 0.05


def options_text(options: dict[str, Any]) -> str:
    """Options as a short label: ``{depth=2, modality_encoders={angiography=angio_embedding}}``."""
    def text(value: Any) -> str:
        if isinstance(value, dict):
            return "{" + ", ".join(f"{k}={text(v)}" for k, v in sorted(value.items())) + "}"
        return value if isinstance(value, str) else json.dumps(value)

    return text(options)


def weights_tag(weights: Any) -> dict[str, str] | None:
    """What names an encoder entry's given weights in a row: the file's name and its sha256, from a cell's
    ``CellWeights`` or a suite's ``weights`` (as ``suite.json`` holds it, hash filled in); ``None``: none given."""
    if weights is None:
        return None
    if not isinstance(weights, dict):
        weights = weights.model_dump(mode="json")
    if isinstance(weights.get("path"), str):
        from pathlib import PurePath

        return {"file": PurePath(weights["path"]).name, "sha256": str(weights.get("sha256") or "")}
    return None


class Labels:
    """Row names: ``name[preset]`` for encoders and the name for objectives, with the options added where one name
    comes with several option sets (a suite edited between runs into one folder), so that different configs never
    share a row and are never averaged together. An encoder entry with given weights is ``name[preset] @ file``, with
    the file's hash added where one file name comes with several contents."""

    def __init__(self, encoders: Iterable[tuple[str, str | None, dict[str, Any]] |
                                          tuple[str, str | None, dict[str, Any], Any]],
                 objectives: Iterable[tuple[str, dict[str, Any]]]):
        self._encoders: dict[tuple[str, str | None], set[str]] = defaultdict(set)
        self._weights: dict[tuple[str, str | None, str, str], set[str]] = defaultdict(set)
        self._objectives: dict[str, set[str]] = defaultdict(set)
        for name, preset, options, *given in encoders:
            self._encoders[(name, preset)].add(json.dumps(options or {}, sort_keys=True))
            tag = weights_tag(given[0]) if given else None
            if tag is not None:
                self._weights[(name, preset, json.dumps(options or {}, sort_keys=True), tag["file"])].add(tag["sha256"])
        for name, options in objectives:
            self._objectives[name].add(json.dumps(options or {}, sort_keys=True))

    @classmethod
    def of(cls, cells: Iterable[Any]) -> Labels:
        cells = list(cells)
        return cls([(c.encoder, c.preset, c.encoder_options, getattr(c, "weights", None)) for c in cells],
                   [(c.objective, c.objective_options) for c in cells])

    def encoder(self, name: str, preset: str | None, options: dict[str, Any] | None = None,
                weights: Any = None) -> str:
        base = name if preset is None else f"{name}[{preset}]"
        label = f"{base} {options_text(options)}" if options and len(self._encoders[(name, preset)]) > 1 else base
        tag = weights_tag(weights)
        if tag is not None:
            label += f" @ {tag['file']}"
            if len(self._weights[(name, preset, json.dumps(options or {}, sort_keys=True), tag["file"])]) > 1:
                label += f" {tag['sha256'][:8]}"
        return label

    def objective(self, name: str, options: dict[str, Any] | None = None) -> str:
        return f"{name} {options_text(options)}" if options and len(self._objectives[name]) > 1 else name

    def encoder_of(self, cell: Any) -> str:
        return self.encoder(cell.encoder, cell.preset, cell.encoder_options, getattr(cell, "weights", None))

    def objective_of(self, cell: Any) -> str:
        return self.objective(cell.objective, cell.objective_options)


def _interval(values: np.ndarray) -> tuple[float | None, float | None]:
    values = values[np.isfinite(values)]
    if not len(values):
        return None, None
    return float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))


def two_level(values: np.ndarray, seed: int) -> np.ndarray:
    """``values`` ``[cells, B]`` (each cell's metric on the shared patient resamples) -> ``[B]``: on resample ``b``
    the mean over ``cells`` cells drawn with replacement (a seeded draw per resample). One cell: its values. A
    resample where a drawn cell's metric is undefined (NaN) is undefined, and left out of intervals."""
    values = np.asarray(values, dtype=float)
    if values.shape[0] == 1:
        return values[0]
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, values.shape[0], size=(values.shape[1], values.shape[0]))
    return values[pick, np.arange(values.shape[1])[:, None]].mean(axis=1)  # NaN (undefined) stays undefined


def bootstrap_p_value(differences: np.ndarray) -> float | None:
    """Two-sided p-value of a difference from its bootstrap distribution: twice the smaller share of resamples on
    either side of zero (at most 1)."""
    d = differences[np.isfinite(differences)]
    if not len(d):
        return None
    return float(min(1.0, 2 * min(np.mean(d <= 0), np.mean(d >= 0))))


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values (Holm 1979): the k-th smallest of m is multiplied by m - k + 1, made
    non-decreasing, capped at 1. (SciPy has Benjamini-Hochberg only; statsmodels would be a dependency for this.)"""
    m = len(p_values)
    order = np.argsort(p_values, kind="stable")
    adjusted = np.empty(m)
    running = 0.0
    for k, i in enumerate(order):
        running = max(running, min(1.0, (m - k) * p_values[i]))
        adjusted[i] = running
    return [float(v) for v in adjusted]


def _seed(*parts: Any) -> int:
    import xxhash

    return xxhash.xxh3_64_intdigest("|".join(map(str, parts)).encode()) % (2**32)


def aggregate(results: list[CellResult], control: str = "none", labels: Labels | None = None) -> list[Row]:
    """One row per task x encoder x objective (named by ``labels``, default: from these results) x stage x leads
    x fraction (see the module's docstring for the numbers)."""
    labels = labels if labels is not None else Labels.of(r.cell for r in results)
    groups: dict[tuple[Any, ...], list[CellResult]] = defaultdict(list)
    for r in results:
        c = r.cell
        if c.stage == "pretrain" or c.task is None:
            continue
        groups[(c.task, labels.encoder_of(c), labels.objective_of(c), c.stage, c.leads, c.fraction)].append(r)

    def values_of(cells: list[CellResult]) -> dict[tuple[Any, Any], np.ndarray]:
        """Each finished cell's resample values by (draw, seed), when they share one resample count."""
        out = {(r.cell.draw, r.cell.seed): np.asarray([np.nan if v is None else v for v in
                                                       (r.bootstrap.get("values") or [])], dtype=float)
               for r in cells if r.status == "done" and r.value is not None}
        out = {k: v for k, v in out.items() if len(v)}
        return out if out and len({len(v) for v in out.values()}) == 1 else {}

    rows = []
    resampled: dict[int, np.ndarray] = {}  # row index -> its two-level values (for P(best))
    for key, cells in sorted(groups.items(), key=lambda kv: tuple(map(str, kv[0]))):
        task, enc, obj, stage, leads, fraction = key
        done = [r for r in cells if r.status == "done" and r.value is not None]
        metric = next((r.metric for r in cells if r.metric), "")
        sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
        values = np.array([r.value for r in done], dtype=float)
        mine = values_of(done)
        row = Row(task=task, encoder=enc, objective=obj, stage=stage, leads=leads, fraction=fraction,
                  metric=metric, n_cells=len(cells), n_failed=len(cells) - len(done),
                  mean=float(values.mean()) if len(values) else None, ci_low=None, ci_high=None,
                  spread=float(values.std()) if len(values) > 1 else None,
                  diff=None, diff_low=None, diff_high=None, diff_excludes_zero=False,
                  n_stale=sum(r.stale is not None for r in done))
        if mine:
            stacked = np.stack(list(mine.values()))
            row.ci_patients_low, row.ci_patients_high = _interval(stacked.mean(axis=0))
            boot = two_level(stacked, _seed(*key))
            row.ci_low, row.ci_high = _interval(boot)
            row.ci_kind = "patients" if len(stacked) == 1 else "cells+patients"
            resampled[len(rows)] = boot
        if obj != control and mine:
            ctrl = values_of([r for r in groups.get((task, enc, control, stage, leads, fraction), [])
                              if r.status == "done"])
            pairs = [k for k in mine if k in ctrl and len(ctrl[k]) == len(mine[k])]
            if pairs:
                d = sign * two_level(np.stack([mine[k] - ctrl[k] for k in pairs]), _seed("diff", *key))
                row.diff = float(np.nanmean(d))
                row.diff_low, row.diff_high = _interval(d)
                row.diff_excludes_zero = row.diff_low is not None and (row.diff_low > 0 or row.diff_high < 0)
                row.p_value = bootstrap_p_value(d)
        rows.append(row)

    # Holm over each task x stage; P(best) within each column
    families: dict[tuple[str, str], list[int]] = defaultdict(list)
    columns: dict[tuple[str, str, str, float | None], list[int]] = defaultdict(list)
    for i, row in enumerate(rows):
        if row.p_value is not None:
            families[(row.task, row.stage)].append(i)
        if i in resampled:
            columns[(row.task, row.stage, row.leads, row.fraction)].append(i)
    for members in families.values():
        for i, p in zip(members, holm([rows[i].p_value for i in members])):  # type: ignore[misc]
            rows[i].p_holm = p
            rows[i].significant = p <= ALPHA
    for members in columns.values():
        lengths = {len(resampled[i]) for i in members}
        if len(members) < 2 or len(lengths) != 1:
            continue
        sign = -1.0 if rows[members[0]].metric in LOWER_IS_BETTER else 1.0
        table = sign * np.stack([resampled[i] for i in members])  # [rows, B], higher is better
        finite = np.isfinite(table).all(axis=0)
        if not finite.any():
            continue
        table = table[:, finite]
        best = table == table.max(axis=0, keepdims=True)
        share = (best / best.sum(axis=0, keepdims=True)).mean(axis=1)  # ties split
        for i, p in zip(members, share):
            rows[i].p_best = float(p)
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
            " *" if r.significant else "")
        cells = f"{r.n_cells - r.n_failed}/{r.n_cells}" + (f" ({r.n_stale} stale)" if r.n_stale else "")
        best = "-" if r.p_best is None else f"{r.p_best:.2f}"
        table.append([r.task, r.stage, r.encoder, r.objective, r.leads if r.leads != "all" else "",
                      "-" if r.fraction is None else f"{r.fraction:g}", r.metric, _num(r.mean), ci, _num(r.spread), diff,
                      best, cells])
    headers = ["task", "stage", "encoder", "objective", "lead", "fraction", "metric", "mean", "95% CI",
               "sd draws", "vs none (95% CI)", "P(best)", "cells"]
    note = ("\n95% CI: patient bootstrap for one cell; with several draws or seeds, a two-level bootstrap over the "
            "cells and the test patients. * Holm-adjusted p <= 0.05 (per task and stage) for the paired difference "
            "to the control. P(best): share of resamples in which the row is the best of its column. "
            "sd draws: spread over label draws. stale: kept with --reuse-stale although its inputs changed.")
    return format_table(headers, table) + note
