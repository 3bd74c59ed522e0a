"""Check, on the quickstart's result files, what the synthetic cohort was built to show.

    stence-bench run quickstart && python benchmarks/quickstart_claims.py runs/quickstart

The claim (issue: the protocol): pretraining with the objective that sees a task's signal beats the random-init
control at 1 % labels, with a paired interval that excludes zero (the row's two-level interval over label draws and
test patients; the Holm-adjusted p-value over the task's comparisons is printed beside it). For stenosis that objective is ``clip``
against the angiography embeddings; its linear probe at 1 % labels is compared with ``none`` for every
encoder family of the run. Prints one line per encoder and exits 1 when a claim does not hold.
"""

from __future__ import annotations

import sys
from pathlib import Path

from stence_bench.results import read_results
from stence_bench.results.aggregate import aggregate

CLAIMS = [("stenosis.70", "clip", "linear_probe", 0.01)]


def main(folder: str) -> int:
    rows = aggregate(read_results([Path(folder)]))
    failures = 0
    for task, objective, stage, fraction in CLAIMS:
        matching = [r for r in rows if (r.task, r.objective, r.stage, r.fraction) == (task, objective, stage, fraction)]
        if not matching:
            print(f"{task} {objective} {stage} {fraction:g}: no results in {folder}")
            failures += 1
        for r in matching:
            holds = r.diff_low is not None and r.diff_low > 0
            failures += not holds
            holm = "n/a" if r.p_holm is None else f"{r.p_holm:.3g}"
            print(f"{'holds' if holds else 'FAILS'}: {task} {stage} {r.encoder} {objective} at {fraction:g} labels: "
                  f"{r.mean:.3f} vs none, paired difference {r.diff:+.3f} [{r.diff_low:+.3f}, {r.diff_high:+.3f}] "
                  f"(two-level bootstrap over draws and patients; Holm-adjusted p {holm})")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "runs/quickstart"))
