"""The results as tables and files: one row per cell (:func:`frame`, a pandas DataFrame), written as CSV, JSON or
Parquet (:func:`export`); the leaderboard's CSV download (:func:`csv_text`); and the summaries its ``results.json``
publishes (:func:`summaries`: every field of each result file but the per-resample vectors, which stay in the
per-cell files and the site's archive of them)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import StenceBenchError
from .paired import paired_differences
from .schema import CellResult, PairedDifference

if TYPE_CHECKING:  # pandas is imported when a frame is built
    import pandas as pd

STAGE_ORDER = {"pretrain": 0, "linear_probe": 1, "finetune": 2, "zero_shot": 3}

#: The suffixes :func:`export` writes, and the format of each.
EXPORT_FORMATS = {".csv": "CSV", ".json": "JSON", ".parquet": "Parquet"}

#: The leading columns of :func:`frame`, in order; ``<split>_<metric>`` score columns and ``n_<what>`` counts follow.
FRAME_COLUMNS = [
    "key", "status", "stage", "task", "encoder", "preset", "objective", "seed", "fraction", "draw", "leads",
    "test_dataset", "weights_file", "metric", "value", "ci_low", "ci_high", "vs_control_mean", "vs_control_low",
    "vs_control_high", "stale", "wall_s", "started", "finished", "dataset_fingerprint", "git_commit", "device",
    "error", "encoder_options", "objective_options", "config",
]

CSV_COLUMNS = ["key", "suite", "task", "stage", "encoder", "preset", "objective", "fraction", "draw", "seed", "leads",
               "metric", "value", "ci_low", "ci_high", "vs_control_mean", "vs_control_low", "vs_control_high",
               "status", "wall_s", "dataset_fingerprint", "git_commit", "test_dataset"]


def dedupe(results: Iterable[CellResult]) -> list[CellResult]:
    """One result per cell key: a finished one over a failed one, then the latest; sorted by key."""
    best: dict[str, CellResult] = {}
    for r in results:
        old = best.get(r.key)
        if old is None or ((r.status == "done", r.finished) > (old.status == "done", old.finished)):
            best[r.key] = r
    return [best[k] for k in sorted(best)]


def cell_order(r: CellResult) -> tuple[Any, ...]:
    """Pretraining first, then stage, leads, fraction, encoder, objective, seed, draw (a stable reading order)."""
    c = r.cell
    return (STAGE_ORDER.get(c.stage, 9), c.stage, c.leads, -1.0 if c.fraction is None else c.fraction, c.encoder,
            str(c.preset), c.objective, c.seed, -1 if c.draw is None else c.draw, r.key)


def _interval(r: CellResult) -> tuple[float | None, float | None]:
    ci = r.ci.get(r.metric or "", []) if r.metric else []
    return (ci[0] if ci else None), (ci[1] if len(ci) > 1 else None)


def records(results: Iterable[CellResult]) -> list[dict[str, Any]]:
    """One dict per cell (deduplicated, in reading order): :data:`FRAME_COLUMNS`, then every score as
    ``<split>_<metric>`` (``test_auroc``) and every count as ``n_<what>`` (``n_test``), sorted by name."""
    results = sorted(dedupe(results), key=cell_order)
    paired = paired_differences(results)
    out = []
    for r in results:
        c = r.cell
        low, high = _interval(r)
        d: PairedDifference | None = paired.get(r.key)
        row: dict[str, Any] = {
            "key": r.key, "status": r.status, "stage": c.stage, "task": c.task, "encoder": c.encoder,
            "preset": c.preset, "objective": c.objective, "seed": c.seed, "fraction": c.fraction, "draw": c.draw,
            "leads": c.leads, "test_dataset": c.test_dataset, "weights_file": c.weights.file if c.weights else None,
            "metric": r.metric, "value": r.value, "ci_low": low, "ci_high": high,
            "vs_control_mean": d.mean if d else None, "vs_control_low": d.ci_low if d else None,
            "vs_control_high": d.ci_high if d else None, "stale": r.stale, "wall_s": r.wall_s, "started": r.started,
            "finished": r.finished, "dataset_fingerprint": r.dataset_fingerprint, "git_commit": r.git_commit,
            "device": r.device, "error": r.error,
            "encoder_options": json.dumps(c.encoder_options, sort_keys=True),
            "objective_options": json.dumps(c.objective_options, sort_keys=True),
            "config": json.dumps(c.model_dump(mode="json"), sort_keys=True),
        }
        extra = {f"{split}_{metric}": value for split, scores in r.scores.items() for metric, value in scores.items()}
        extra.update({f"n_{what}": n for what, n in r.n.items()})
        row.update(sorted(extra.items()))
        out.append(row)
    return out


def frame(results: Iterable[CellResult]) -> pd.DataFrame:
    """The results as a DataFrame, one row per cell (:func:`records`); columns a cell lacks are missing (NaN)."""
    import pandas as pd

    rows = records(results)
    columns = list(FRAME_COLUMNS)
    for row in rows:
        columns += [k for k in row if k not in columns]
    return pd.DataFrame.from_records(rows, columns=columns)


def export_format(path: Path) -> str:
    """The format a file name asks for, from its suffix; any other suffix is a one-line error."""
    suffix = Path(path).suffix.lower()
    if suffix not in EXPORT_FORMATS:
        known = ", ".join(EXPORT_FORMATS)
        raise StenceBenchError(f"{path}: unknown export format {suffix or '(no suffix)'!r}; use one of {known}")
    return EXPORT_FORMATS[suffix]


def export(results: Iterable[CellResult], path: Path) -> Path:
    """Write :func:`frame` of ``results`` to ``path`` as CSV, JSON (a list of row objects) or Parquet, by its
    suffix; written whole or not at all."""
    from ..data.store import write_atomic

    path = Path(path)
    kind = export_format(path)
    df = frame(results)
    if kind == "CSV":
        data: bytes | str = df.to_csv(index=False)
    elif kind == "JSON":
        data = df.to_json(orient="records", indent=1, double_precision=15)
    else:
        buffer = io.BytesIO()
        df.to_parquet(buffer, index=False)
        data = buffer.getvalue()
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, data)
    return path


def csv_text(results: Iterable[CellResult], suite: str) -> str:
    """The leaderboard's ``results.csv``: one row per cell of a suite (pretraining cells included, task and metric
    empty), with the paired difference to the control derived from the files."""
    results = sorted(dedupe(results), key=cell_order)
    paired = paired_differences(results)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)

    def v(x: Any) -> Any:
        return "" if x is None else x

    for r in results:
        c = r.cell
        low, high = _interval(r)
        d = paired.get(r.key)
        writer.writerow([r.key, suite, v(c.task), c.stage, c.encoder, v(c.preset), c.objective, v(c.fraction),
                         v(c.draw), c.seed, c.leads, v(r.metric), v(r.value), v(low), v(high),
                         v(d.mean if d else None), v(d.ci_low if d else None), v(d.ci_high if d else None), r.status,
                         r.wall_s, v(r.dataset_fingerprint), v(r.git_commit), v(c.test_dataset)])
    return buf.getvalue()


def plain_json(value: Any) -> Any:
    """``value`` as strict JSON data: numpy scalars as numbers, an undefined (NaN, infinite) number as null."""
    import math

    if isinstance(value, dict):
        return {k: plain_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain_json(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


#: Where the per-resample vectors of a result file are (left out of :func:`summary`).
RESAMPLE_VECTORS = ("bootstrap.values", "subgroups.*.values")


def summary(result: CellResult, paired: PairedDifference | None = None) -> dict[str, Any]:
    """A result file's content without its per-resample vectors (``bootstrap.values`` and each subgroup's
    ``values``: hundreds of numbers per cell), with its paired difference to the control (``vs_control``)."""
    data = result.model_dump(mode="json")
    data["bootstrap"] = {k: v for k, v in data.get("bootstrap", {}).items() if k != "values"}
    data["subgroups"] = {name: {k: v for k, v in group.items() if k != "values"}
                         for name, group in data.get("subgroups", {}).items()}
    data["vs_control"] = paired.model_dump(mode="json") if paired is not None else None
    return plain_json(data)


def summaries(results: Iterable[CellResult]) -> list[dict[str, Any]]:
    """:func:`summary` of every result (deduplicated, by key): the leaderboard's ``results.json``."""
    results = dedupe(results)
    paired = paired_differences(results)
    return [summary(r, paired.get(r.key)) for r in results]
