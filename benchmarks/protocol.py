"""The protocol's overheads, measured side by side in one run (ratios, not absolute times: the machines are shared).

    python benchmarks/protocol.py [--patients 300] [--steps 60] [--repeats 5]

(a) The harness's training step (``stence_bench.protocol.evaluate.train_epoch``: random windows cut from the
    memory-mapped view by the input pipeline, the model, the loss, AdamW) against a plain PyTorch loop over the same model, the same
    batch size and pre-cut windows (a ``TensorDataset`` and ``DataLoader``): the harness's overhead in percent.
    The two alternate, ``--repeats`` times, and the medians are compared.
(b) The linear-probe grid (5 fractions x 3 draws x every task of a dataset) from the embedding cache against
    re-embedding the records for every cell: the ratio of wall times.

Uses a synthetic cohort generated into a temporary folder, the tiny ``resnet1d_wang`` and the random-init
control, one thread. Results are written up in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=300)
    parser.add_argument("--steps", type=int, default=60, help="training steps per timed repeat")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    import numpy as np
    import torch

    torch.set_num_threads(1)
    from stence_bench.protocol import evaluate
    from stence_bench.protocol.data import Workspace
    from stence_bench.registry import Registry
    from stence_bench.suite import parse_suite, plan

    tasks = ["stenosis.70", "lvef.35", "potassium.5.5", "pcwp.18"]
    suite = parse_suite(f"""
name = "bench"
tasks = {tasks!r}
objectives = ["none"]
encoders = [{{name = "resnet1d_wang", preset = "tiny"}}]
controls = false
[protocol]
stages = ["linear_probe"]
fractions = [0.01, 0.05, 0.1, 0.5, 1.0]
draws = 3
bootstrap = 200
[data]
synthetic = {{patients = {args.patients}, seed = 0, angiograms = false}}
""")
    registry = Registry.load()
    root = Path(tempfile.mkdtemp(prefix="stence-bench-protocol-"))
    ws = Workspace(suite, registry, root, echo=lambda line: None)
    spec = registry.encoders.get("resnet1d_wang")
    windows = ws.windows("mimic-iv-ecg", spec)

    # (a) training step
    rng = np.random.default_rng(0)
    batch = 64
    n_records = len(windows.record_ids)
    targets = torch.from_numpy((rng.random((n_records, 1)) < 0.3).astype(np.float32))
    torch.manual_seed(0)
    model = torch.nn.Sequential(spec.build("tiny"), torch.nn.Linear(spec.preset("tiny").embed_dim, 1))
    loss_fn = torch.nn.BCEWithLogitsLoss()
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-3)
    rows = np.arange(n_records)
    fixed = windows.crops(rows, np.random.default_rng(1))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(fixed, targets), batch_size=batch, shuffle=True)

    def harness() -> float:
        order = np.resize(rng.permutation(n_records), args.steps * batch)
        start = time.perf_counter()
        evaluate.train_epoch(model, optimiser, loss_fn, windows, rows, targets, order, batch, rng)
        return time.perf_counter() - start

    def plain() -> float:
        steps = 0
        start = time.perf_counter()
        model.train()
        while steps < args.steps:
            for x, y in loader:
                loss = loss_fn(model(x), y)
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                steps += 1
                if steps == args.steps:
                    break
        return time.perf_counter() - start

    harness(), plain()  # warm up
    h, p = [], []
    for _ in range(args.repeats):
        h.append(harness())
        p.append(plain())
    h_med, p_med = statistics.median(h), statistics.median(p)
    print(f"(a) training step: harness {h_med / args.steps * 1e3:.2f} ms, plain loop {p_med / args.steps * 1e3:.2f} ms, "
          f"overhead {100 * (h_med / p_med - 1):+.1f} % (median of {args.repeats}, {args.steps} steps of {batch})")

    # (b) the probe grid from the cache vs re-embedding per cell
    cells = [c for c in plan(suite, registry) if c.stage == "linear_probe"]
    start = time.perf_counter()
    for cell in cells:
        evaluate.linear_probe(cell, ws, registry, root)
    cached = time.perf_counter() - start
    start = time.perf_counter()
    for cell in cells:
        for path in (root / evaluate.EMBEDDING_DIR).rglob("*.npy"):
            path.unlink()
        evaluate.linear_probe(cell, ws, registry, root)
    fresh = time.perf_counter() - start
    print(f"(b) probe grid, {len(cells)} cells ({len(tasks)} tasks x 5 fractions x 3 draws, 1 at 100 %): "
          f"from the cache {cached:.1f} s, re-embedding per cell {fresh:.1f} s, ratio {fresh / cached:.1f}x")


if __name__ == "__main__":
    main()
