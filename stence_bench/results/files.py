"""Reading and writing a run folder's result files: ``results/<key>.json`` (:class:`CellResult`), the per-record
predictions beside each (``results/<key>.predictions.npz``) and the validated suite (``suite.json``)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..errors import StenceBenchError
from .schema import RESULT_DIR, SUITE_FILE, CellResult


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

    from ..data.store import write_atomic

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
    from ..data.store import write_atomic

    path = result_path(root, result.key)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, result.model_dump_json(indent=1))
    return path


def write_suite(root: Path, suite: Any) -> Path:
    """The validated suite beside its results (``suite.json``): the leaderboard reads its name and description."""
    from ..data.store import write_atomic

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


def read_results(folders: Iterable[Path]) -> list[CellResult]:
    """Every result file under ``folders`` (a run folder or its ``results/``); unreadable ones are an error."""
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
