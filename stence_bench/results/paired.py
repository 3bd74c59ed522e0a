"""The paired difference of each evaluation cell to its random-init control, derived from the result files."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from .schema import CellResult, PairedDifference


def paired_differences(results: Iterable[CellResult], control: str = "none") -> dict[str, PairedDifference]:
    """The paired difference to the random-init control of every finished evaluation result whose control (same
    task, encoder, stage, fraction, draw, seed, leads, weights, test dataset) has finished, by the result's key: the
    difference of the main metric on the same bootstrap resamples, positive = better. Derived from the files where it
    is shown (the CSV and JSON downloads, :func:`stence_bench.results.frame`); never written into them."""
    from ..metrics import paired_difference

    results = list(results)

    def match_key(r: CellResult) -> tuple[Any, ...]:
        c = r.cell
        weights = json.dumps(c.weights.identity(), sort_keys=True) if c.weights is not None else None
        return (c.stage, c.task, c.encoder, c.preset, json.dumps(c.encoder_options, sort_keys=True), c.seed,
                c.fraction, c.draw, c.leads, weights, c.test_dataset)

    controls = {match_key(r): r for r in results if r.status == "done" and r.cell.objective == control
                and r.cell.stage != "pretrain"}
    out: dict[str, PairedDifference] = {}
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
        out[r.key] = pd_
    return out


def _finite(v: float) -> float | None:
    import math

    return float(v) if v is not None and math.isfinite(v) else None
