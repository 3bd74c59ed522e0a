"""Aggregates of result files: one row per task x encoder x objective x stage x leads x fraction, and the suite's
comparisons (:func:`compare`). Shown as text by :mod:`stence_bench.results.text` and on the leaderboard.

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
  how sure its rank 1 is;
- ``subgroups`` and ``worst_subgroup``: each prespecified subgroup's mean over the cells, and the worst one with
  enough test patients, with the same two-level interval (:func:`subgroup_summary`).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict

from .schema import CellResult

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
    #: each prespecified subgroup's mean over the row's cells (None where undefined in some cell)
    subgroups: dict[str, float | None] = dataclass_field(default_factory=dict)
    #: external validation: the dataset tested on (None: the task's own test split)
    test_dataset: str | None = None
    #: the worst subgroup with enough test patients (``protocol.subgroups.min_patients`` in every cell), its mean and
    #: interval (the two-level bootstrap of the row's cells on their shared resamples, as the row's own)
    worst_subgroup: str | None = None
    worst_mean: float | None = None
    worst_low: float | None = None
    worst_high: float | None = None


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


def subgroup_summary(row: Row, cells: list[CellResult], seed: int) -> None:
    """Fill ``row``'s subgroup means and its worst subgroup from its finished ``cells``' subgroup results: a
    subgroup's mean is the mean of its cells' values (defined only where every cell has one); the worst is the lowest
    (highest for MAE, RMSE) among those counted in every cell (enough test patients), its interval the two-level
    bootstrap of the cells' subgroup values on the shared resamples (:func:`two_level`)."""
    if not cells or not all(r.subgroups for r in cells):
        return
    sign = -1.0 if row.metric in LOWER_IS_BETTER else 1.0
    candidates: list[tuple[float, int, str]] = []
    for order, name in enumerate(cells[0].subgroups):
        entries = [r.subgroups.get(name) for r in cells]
        if any(e is None for e in entries):
            continue
        values = [e.value for e in entries]  # type: ignore[union-attr]
        mean = float(np.mean(values)) if all(v is not None for v in values) else None  # type: ignore[arg-type]
        row.subgroups[name] = mean
        if mean is not None and all(e.counted for e in entries):  # type: ignore[union-attr]
            candidates.append((sign * mean, order, name))
    if not candidates:
        return
    _, _, name = min(candidates)
    row.worst_subgroup, row.worst_mean = name, row.subgroups[name]
    resamples = [np.asarray([np.nan if v is None else v for v in r.subgroups[name].values], dtype=float)
                 for r in cells]
    if resamples[0].size and len({v.size for v in resamples}) == 1:
        row.worst_low, row.worst_high = _interval(two_level(np.stack(resamples), seed))


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


def row_groups(results: list[CellResult], labels: Labels) -> dict[tuple[Any, ...], list[CellResult]]:
    """The evaluation results by row: (task, encoder label, objective label, stage, leads, fraction, test dataset)."""
    groups: dict[tuple[Any, ...], list[CellResult]] = defaultdict(list)
    for r in results:
        c = r.cell
        if c.stage == "pretrain" or c.task is None:
            continue
        groups[(c.task, labels.encoder_of(c), labels.objective_of(c), c.stage, c.leads, c.fraction,
                c.test_dataset)].append(r)
    return groups


def values_of(cells: list[CellResult]) -> dict[tuple[Any, Any], np.ndarray]:
    """Each finished cell's resample values by (draw, seed), when they share one resample count."""
    out = {(r.cell.draw, r.cell.seed): np.asarray([np.nan if v is None else v for v in
                                                   (r.bootstrap.get("values") or [])], dtype=float)
           for r in cells if r.status == "done" and r.value is not None}
    out = {k: v for k, v in out.items() if len(v)}
    return out if out and len({len(v) for v in out.values()}) == 1 else {}


def paired_resamples(mine: dict[tuple[Any, Any], np.ndarray], reference: dict[tuple[Any, Any], np.ndarray],
                     metric: str, seed: int, relative: bool = False) -> np.ndarray | None:
    """The paired difference of a row to a reference row on the shared resamples: each cell paired with the
    reference's cell of the same draw and seed (the same labelled patients), the pairs resampled with the patients
    (:func:`two_level`); signed so that positive is better (for MAE and RMSE too). ``relative``: the difference
    as a share of the reference's value (for MAE and RMSE: the relative reduction, ``1 - row / reference``).
    ``[B]``, or ``None`` when no cell pairs."""
    pairs = [k for k in mine if k in reference and len(reference[k]) == len(mine[k])]
    if not pairs:
        return None
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
    with np.errstate(divide="ignore", invalid="ignore"):
        diffs = [(mine[k] - reference[k]) / (np.abs(reference[k]) if relative else 1.0) for k in pairs]
    return sign * two_level(np.stack(diffs), seed)


def aggregate(results: list[CellResult], control: str = "none", labels: Labels | None = None) -> list[Row]:
    """One row per task x encoder x objective (named by ``labels``, default: from these results) x stage x leads
    x fraction (see the module's docstring for the numbers)."""
    labels = labels if labels is not None else Labels.of(r.cell for r in results)
    groups = row_groups(results, labels)
    rows = []
    resampled: dict[int, np.ndarray] = {}  # row index -> its two-level values (for P(best))
    for key, cells in sorted(groups.items(), key=lambda kv: tuple(map(str, kv[0]))):
        task, enc, obj, stage, leads, fraction, test = key
        seed_key = key[:6] if test is None else key  # internal rows keep their seeds (their intervals unchanged)
        done = [r for r in cells if r.status == "done" and r.value is not None]
        metric = next((r.metric for r in cells if r.metric), "")
        values = np.array([r.value for r in done], dtype=float)
        mine = values_of(done)
        row = Row(task=task, encoder=enc, objective=obj, stage=stage, leads=leads, fraction=fraction,
                  metric=metric, n_cells=len(cells), n_failed=len(cells) - len(done),
                  mean=float(values.mean()) if len(values) else None, ci_low=None, ci_high=None,
                  spread=float(values.std()) if len(values) > 1 else None,
                  diff=None, diff_low=None, diff_high=None, diff_excludes_zero=False,
                  n_stale=sum(r.stale is not None for r in done), test_dataset=test)
        if mine:
            stacked = np.stack(list(mine.values()))
            row.ci_patients_low, row.ci_patients_high = _interval(stacked.mean(axis=0))
            boot = two_level(stacked, _seed(*seed_key))
            row.ci_low, row.ci_high = _interval(boot)
            row.ci_kind = "patients" if len(stacked) == 1 else "cells+patients"
            resampled[len(rows)] = boot
        subgroup_summary(row, done, _seed("subgroup", *seed_key))
        if obj != control and mine:
            d = paired_resamples(mine, values_of(groups.get((task, enc, control, stage, leads, fraction, test), [])),
                                 metric, _seed("diff", *seed_key))
            if d is not None:
                row.diff = float(np.nanmean(d))
                row.diff_low, row.diff_high = _interval(d)
                row.diff_excludes_zero = row.diff_low is not None and (row.diff_low > 0 or row.diff_high < 0)
                row.p_value = bootstrap_p_value(d)
        rows.append(row)

    # Holm over each task x stage; P(best) within each column
    families: dict[tuple[str, str], list[int]] = defaultdict(list)
    columns: dict[tuple[str, str, str, float | None, str | None], list[int]] = defaultdict(list)
    for i, row in enumerate(rows):
        if row.p_value is not None:
            families[(row.task, row.stage)].append(i)
        if i in resampled:
            columns[(row.task, row.stage, row.leads, row.fraction, row.test_dataset)].append(i)
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


class Difference(BaseModel):
    """A row against a reference row: on one task (``task``), or the mean over the suite's tasks that share the
    metric (``task`` None, ``tasks`` listed): the mean gain (positive = better), for MAE and RMSE as the relative
    reduction ``1 - row / reference`` across tasks (their units differ), with its interval and p-value."""

    comparison: str
    task: str | None
    encoder: str
    objective: str
    reference_encoder: str
    reference_objective: str
    stage: str
    leads: str
    fraction: float | None
    metric: str
    #: ``difference`` (the metric's, positive = better) or ``relative reduction`` (MAE, RMSE across tasks)
    measure: str
    mean: float | None
    low: float | None
    high: float | None
    p_value: float | None
    #: external validation: the dataset tested on (``external`` for a mean over externally tested tasks)
    test_dataset: str | None = None
    #: Holm-adjusted over the comparison's differences within a task and stage (per-task rows only)
    p_holm: float | None = None
    significant: bool = False
    tasks: list[str] = []

    model_config = ConfigDict(extra="forbid")


def _find(labels: set[str], names: dict[str, str], wanted: str | None, own: str) -> str | None:
    """The row label a comparison names: ``own`` when it names none; a label equal to ``wanted``, else the one label
    whose bare name is ``wanted`` (``None``: none or several)."""
    if wanted is None:
        return own
    if wanted in labels:
        return wanted
    found = [label for label in labels if names[label] == wanted]
    return found[0] if len(found) == 1 else None


def compare(results: list[CellResult], comparisons: Iterable[Any], labels: Labels | None = None) -> list[Difference]:
    """The suite's comparisons (:class:`stence_bench.suite.Comparison`: a row and a reference row) as paired
    differences on the shared resamples (:func:`paired_resamples`, the same as the differences to the control):
    one per task x matching row x stage x leads x fraction, Holm-corrected per comparison, task and stage; then,
    per matching row x stage x leads x fraction and metric, the mean over the tasks that have the pair, its interval
    the resample-wise mean of the tasks' two-level differences (each task's resamples are its own: tasks count as
    independent), measured as a difference, or for MAE and RMSE as a relative reduction."""
    labels = labels if labels is not None else Labels.of(r.cell for r in results)
    groups = row_groups(results, labels)
    encoders = {key[1]: next(r.cell.encoder for r in cells) for key, cells in groups.items()}
    objectives = {key[2]: next(r.cell.objective for r in cells) for key, cells in groups.items()}
    out: list[Difference] = []
    for comparison in comparisons:
        name = comparison.label
        per_task: list[tuple[tuple[Any, ...], Difference, np.ndarray, np.ndarray | None]] = []
        for key, cells in sorted(groups.items(), key=lambda kv: tuple(map(str, kv[0]))):
            task, enc, obj, stage, leads, fraction, test = key
            row_enc = _find(set(encoders), encoders, comparison.row.encoder, enc)
            row_obj = _find(set(objectives), objectives, comparison.row.objective, obj)
            if (row_enc, row_obj) != (enc, obj):
                continue
            ref_enc = _find(set(encoders), encoders, comparison.reference.encoder, enc)
            ref_obj = _find(set(objectives), objectives, comparison.reference.objective, obj)
            if ref_enc is None or ref_obj is None or (ref_enc, ref_obj) == (enc, obj):
                continue
            reference = groups.get((task, ref_enc, ref_obj, stage, leads, fraction, test), [])
            mine, ref = values_of(cells), values_of(reference)
            metric = next((r.metric for r in cells if r.metric), "")
            seed = _seed("compare", name, *(key[:6] if test is None else key))
            d = paired_resamples(mine, ref, metric, seed)
            if d is None:
                continue
            relative = (paired_resamples(mine, ref, metric, seed, relative=True)
                        if metric in LOWER_IS_BETTER else None)
            low, high = _interval(d)
            diff = Difference(comparison=name, task=task, encoder=enc, objective=obj, reference_encoder=ref_enc,
                              reference_objective=ref_obj, stage=stage, leads=leads, fraction=fraction, metric=metric,
                              measure="difference", mean=float(np.nanmean(d)), low=low, high=high,
                              p_value=bootstrap_p_value(d), test_dataset=test)
            per_task.append((key, diff, d, relative))
        families: dict[tuple[str, str], list[Difference]] = defaultdict(list)
        for _, diff, _, _ in per_task:
            if diff.p_value is not None:
                families[(str(diff.task), diff.stage)].append(diff)  # (internal and external together)
        for members in families.values():
            for diff, p in zip(members, holm([m.p_value for m in members])):  # type: ignore[misc]
                diff.p_holm, diff.significant = p, p <= ALPHA
        out += [diff for _, diff, _, _ in per_task]
        summaries: dict[tuple[Any, ...], list[tuple[str, np.ndarray]]] = defaultdict(list)
        for key, diff, d, relative in per_task:
            task, enc, obj, stage, leads, fraction, test = key
            vector = relative if relative is not None else d
            summaries[(enc, obj, diff.reference_encoder, diff.reference_objective, stage, leads, fraction,
                       diff.metric, test is not None)].append((task if test is None else f"{task}@{test}", vector))
        for (enc, obj, ref_enc, ref_obj, stage, leads, fraction, metric, ext), members in summaries.items():
            if len({len(v) for _, v in members}) != 1:
                continue  # tasks bootstrapped with other resample counts
            stacked = np.stack([v for _, v in members])
            mean_vector = stacked.mean(axis=0)  # a resample undefined on one task is undefined
            low, high = _interval(mean_vector)
            out.append(Difference(
                comparison=name, task=None, encoder=enc, objective=obj, reference_encoder=ref_enc,
                reference_objective=ref_obj, stage=stage, leads=leads, fraction=fraction, metric=metric,
                measure="relative reduction" if metric in LOWER_IS_BETTER else "difference",
                mean=float(np.mean(np.nanmean(stacked, axis=1))), low=low, high=high,
                p_value=bootstrap_p_value(mean_vector), tasks=[t for t, _ in members],
                test_dataset="external" if ext else None))
    return out
