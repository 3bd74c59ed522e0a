"""Result files: one JSON per cell (a pydantic model), and what is derived from a folder of them.

``results/<cell key>.json`` holds the cell (its resolved config), its status, scores on val and test, the
main metric's value with its confidence interval and per-resample values (for paired differences), the
training fraction's size and sampled-id hash, the dataset fingerprint, the versions of the package and of
every plugin, the git commit, the device and the wall time. A finished cell's file is written once,
atomically; a failed cell's file records the error and is retried on the next run.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, JsonValue

from ..data.store import write_atomic
from ..suite import Cell

RESULT_DIR = "results"
SCHEMA_VERSION = "2"


class PairedDifference(BaseModel):
    model_config = ConfigDict(extra="forbid")

    control: str
    control_key: str
    mean: float | None
    ci_low: float | None
    ci_high: float | None
    excludes_zero: bool


class CellResult(BaseModel):
    """One cell's result file."""

    model_config = ConfigDict(extra="forbid")

    schema_version: str = SCHEMA_VERSION
    key: str
    cell: Cell
    status: Literal["done", "failed"]
    started: str
    finished: str
    wall_s: float
    #: Main metric (the task's) on test, and its interval.
    metric: str | None = None
    value: float | None = None
    ci: dict[str, list[float | None]] = {}
    #: Every metric on val and test.
    scores: dict[str, dict[str, float | None]] = {}
    n: dict[str, int] = {}
    thresholds: list[float | None] = []
    bootstrap: dict[str, JsonValue] = {}
    train: dict[str, JsonValue] = {}
    selected: dict[str, JsonValue] = {}
    #: Pretraining cells: losses, records, checkpoint.
    pretrain: dict[str, JsonValue] = {}
    vs_control: PairedDifference | None = None
    dataset_fingerprint: str | None = None
    #: What the numbers were computed from (records, labels, pretraining, code versions:
    #: :mod:`stence_bench.protocol.inputs`); a finished cell whose inputs changed is stale.
    inputs: dict[str, JsonValue] = {}
    #: Set when a run kept this result although its inputs changed (``--reuse-stale``): what changed.
    stale: str | None = None
    #: Evaluation cells: the file of per-record predictions (ids, patients, labels, scores) the numbers come from.
    predictions: str | None = None
    #: Cells that loaded their encoder entry's given weights: the file, its sha256, how many tensors loaded and the
    #: first names that did not fit (a ``strict = false`` load).
    weights: dict[str, JsonValue] | None = None
    versions: dict[str, str] = {}
    git_commit: str | None = None
    device: str = ""
    error: str | None = None


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def result_path(root: Path, key: str) -> Path:
    return Path(root) / RESULT_DIR / f"{key}.json"


def predictions_path(root: Path, key: str) -> Path:
    """The per-record predictions an evaluation result was scored from, beside its JSON."""
    return Path(root) / RESULT_DIR / f"{key}.predictions.npz"


def write_predictions(root: Path, key: str, predictions: dict[str, Any]) -> Path:
    """Arrays (no pickled objects) as a compressed ``.npz``, written whole or not at all."""
    import io

    import numpy as np

    path = predictions_path(root, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **{k: np.asarray(v) for k, v in predictions.items()})
    write_atomic(path, buffer.getvalue())
    return path


def read_predictions(path: Path) -> dict[str, Any]:
    import numpy as np

    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def write_result(root: Path, result: CellResult) -> Path:
    path = result_path(root, result.key)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, result.model_dump_json(indent=1))
    return path


SUITE_FILE = "suite.json"


def write_suite(root: Path, suite: Any) -> Path:
    """The validated suite beside its results (``suite.json``): the leaderboard reads its name and description."""
    path = Path(root) / SUITE_FILE
    write_atomic(path, suite.model_dump_json(indent=1))  # every SLURM job of a run writes it too
    return path


def read_result(path: Path) -> CellResult:
    return CellResult.model_validate_json(Path(path).read_text())


def finished(root: Path, key: str) -> CellResult | None:
    """The cell's result when it finished earlier (a failed or unreadable file does not count)."""
    path = result_path(root, key)
    if not path.is_file():
        return None
    try:
        result = read_result(path)
    except (ValueError, OSError):
        return None
    return result if result.status == "done" else None


def load_results(folders: Iterable[Path]) -> list[CellResult]:
    """Every result file under ``folders`` (a run folder or its ``results/``); unreadable ones are an error."""
    from ..errors import StenceBenchError

    out = []
    for folder in folders:
        folder = Path(folder)
        base = folder / RESULT_DIR if (folder / RESULT_DIR).is_dir() else folder
        if not base.is_dir():
            raise StenceBenchError(f"{folder}: no such folder")
        if base == folder and (folder / SUITE_FILE).is_file():
            continue  # a run folder whose cells have not written a result yet
        for path in sorted(base.glob("*.json")):
            try:
                out.append(read_result(path))
            except ValueError as exc:
                raise StenceBenchError(f"{path}: not a stence-bench result: {str(exc).splitlines()[0]}") from None
    return out


def rescore(folder: Path, *, write: bool = False) -> tuple[int, list[str], list[str]]:
    """Recompute every number of each finished evaluation result under ``folder`` from its saved predictions and
    compare with the stored ones. Returns ``(checked, disagreements, without predictions)``, one line each.
    ``write``: store the recomputed numbers (after a fix in the scoring code), mark them scored by today's code
    and recompute the paired differences."""
    import math

    from .evaluate import score_predictions
    from .inputs import CODE_VERSIONS

    def same(a: Any, b: Any) -> bool:
        if isinstance(a, dict) and isinstance(b, dict):
            return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
        if isinstance(a, list | tuple) and isinstance(b, list | tuple):
            return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
        if isinstance(a, float | int | None) and isinstance(b, float | int | None):
            fa = math.nan if a is None else float(a)
            fb = math.nan if b is None else float(b)
            return (math.isnan(fa) and math.isnan(fb)) or math.isclose(fa, fb, rel_tol=1e-9, abs_tol=1e-12)
        return a == b

    folder = Path(folder)
    base = folder / RESULT_DIR if (folder / RESULT_DIR).is_dir() else folder
    checked, disagree, missing = 0, [], []
    results = load_results([folder])
    for r in results:
        if r.status != "done" or r.cell.stage == "pretrain":
            continue
        path = base / r.predictions if r.predictions else None
        if path is None or not path.is_file():
            missing.append(f"{r.key} ({r.cell.label}): no predictions file")
            continue
        n_resamples, seed = int(r.bootstrap.get("n_resamples") or 0), int(r.bootstrap.get("seed") or 0)
        new = score_predictions(read_predictions(path), n_resamples, seed)
        new = json.loads(json.dumps(new, default=float, allow_nan=True))  # as it would be stored
        checked += 1
        fields = [k for k in ("metric", "value", "ci", "scores", "n", "thresholds", "bootstrap")
                  if not same(getattr(r, k), new[k])]
        if fields:
            disagree.append(f"{r.key} ({r.cell.label}): {', '.join(fields)} differ")
            if write:
                for k in fields:
                    setattr(r, k, new[k])
                if isinstance(r.inputs.get("code"), dict):
                    r.inputs["code"] = {**r.inputs["code"], "scoring": CODE_VERSIONS["scoring"]}
                write_result(folder if base != folder else folder.parent, r)
    if write and disagree:
        for changed in paired_differences(load_results([folder])):
            write_result(folder if base != folder else folder.parent, changed)
    return checked, disagree, missing


def git_commit() -> str | None:
    """The commit of the working tree the package runs from, when it is a git checkout."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def versions(registry: Any) -> dict[str, str]:
    """The package and every plugin's distribution and version."""
    import stence_bench

    out = {"stence-bench": stence_bench.__version__}
    for info in registry.plugins.plugins:
        out[info.name] = f"{info.distribution} {info.version}".strip()
    return out


def paired_differences(results: list[CellResult], control: str = "none") -> list[CellResult]:
    """Fill ``vs_control`` of every finished evaluation result whose random-init control (same task, encoder,
    stage, fraction, draw, seed, leads) has finished: the difference of the main metric on the same bootstrap
    resamples. Returns the results that changed (the caller rewrites them)."""
    from ..metrics import paired_difference

    def match_key(r: CellResult) -> tuple[Any, ...]:
        c = r.cell
        weights = json.dumps(c.weights.identity(), sort_keys=True) if c.weights is not None else None
        return (c.stage, c.task, c.encoder, c.preset, json.dumps(c.encoder_options, sort_keys=True), c.seed,
                c.fraction, c.draw, c.leads, weights)

    controls = {match_key(r): r for r in results if r.status == "done" and r.cell.objective == control
                and r.cell.stage != "pretrain"}
    changed: list[CellResult] = []
    for r in results:
        if r.status != "done" or r.cell.stage == "pretrain" or r.cell.objective == control:
            continue
        ref = controls.get(match_key(r))
        if ref is None:
            continue
        a, b = r.bootstrap.get("values"), ref.bootstrap.get("values")
        if not isinstance(a, list) or not isinstance(b, list) or len(a) != len(b) or not a:
            continue
        diff = paired_difference(a, b)
        sign = -1.0 if r.metric in ("mae", "rmse") else 1.0  # positive = better than the control
        pd_ = PairedDifference(control=control, control_key=ref.key,
                               mean=_finite(sign * diff["mean"]),
                               ci_low=_finite(sign * (diff["ci_low"] if sign > 0 else diff["ci_high"])),
                               ci_high=_finite(sign * (diff["ci_high"] if sign > 0 else diff["ci_low"])),
                               excludes_zero=bool(diff["excludes_zero"]))
        if r.vs_control != pd_:
            r.vs_control = pd_
            changed.append(r)
    return changed


def _finite(v: float) -> float | None:
    import math

    return float(v) if v is not None and math.isfinite(v) else None
