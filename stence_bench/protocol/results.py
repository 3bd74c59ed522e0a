"""What the protocol adds to the result files (:mod:`stence_bench.results` holds their schema and I/O): the
provenance a run records in each (package and plugin versions, git commit) and :func:`rescore`, which recomputes
every number of a finished evaluation from its saved per-record predictions."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from ..results.files import read_predictions, read_results, write_result
from ..results.schema import RESULT_DIR, SubgroupScore

def rescore(folder: Path, *, write: bool = False) -> tuple[int, list[str], list[str]]:
    """Recompute every number of each finished evaluation result under ``folder`` from its saved predictions and
    compare with the stored ones. Returns ``(checked, disagreements, without predictions)``, one line each.
    ``write``: store the recomputed numbers (after a fix in the scoring code), mark them scored by today's code
    (the paired differences to the control follow: they are derived from the files where they are shown)."""
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
    results = read_results([folder])
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
        stored = {k: getattr(r, k) for k in ("metric", "value", "ci", "scores", "n", "thresholds", "bootstrap")}
        stored["subgroups"] = {name: g.model_dump() for name, g in r.subgroups.items()}
        fields = [k for k in stored if not same(stored[k], new[k])]
        if fields:
            disagree.append(f"{r.key} ({r.cell.label}): {', '.join(fields)} differ")
            if write:
                for k in fields:
                    setattr(r, k, {n: SubgroupScore(**g) for n, g in new[k].items()} if k == "subgroups" else new[k])
                if isinstance(r.inputs.get("code"), dict):
                    r.inputs["code"] = {**r.inputs["code"], "scoring": CODE_VERSIONS["scoring"]}
                write_result(folder if base != folder else folder.parent, r)
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
    from .._version import __version__

    out = {"stence-bench": __version__}
    for info in registry.plugins.plugins:
        out[info.name] = f"{info.distribution} {info.version}".strip()
    return out
