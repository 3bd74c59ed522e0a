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
    versions: dict[str, str] = {}
    git_commit: str | None = None
    device: str = ""
    error: str | None = None


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def result_path(root: Path, key: str) -> Path:
    return Path(root) / RESULT_DIR / f"{key}.json"


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
        return (c.stage, c.task, c.encoder, c.preset, json.dumps(c.encoder_options, sort_keys=True), c.seed,
                c.fraction, c.draw, c.leads)

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
