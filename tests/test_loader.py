"""The input pipeline (stence_bench/data/windows.py): batches cut by loader processes are the batches cut in the
training process, in the same order, whatever the number of processes; plans are drawn in the main process."""

from __future__ import annotations

import numpy as np
import torch
from conftest import BUILTINS_ONLY

from stence_bench.data.views import Standardizer
from stence_bench.data.windows import Cut, Windows, loader
from stence_bench.registry import Registry


def windows_of(lengths: list[int], normalization: str = "zscore_dataset") -> Windows:
    spec = Registry.load(environ=BUILTINS_ONLY).encoders.get("resnet1d_wang").model_copy(
        update={"normalization": normalization})
    rng = np.random.default_rng(0)
    records = [rng.normal(size=(12, n)).astype(np.float32) for n in lengths]
    scaler = Standardizer(leads=spec.leads)
    for r in records:
        scaler.partial_fit(r)
    return Windows.of_arrays(spec, [f"r{i}" for i in range(len(records))], records, scaler)


def plan(windows: Windows, seed: int, steps: int = 6, batch: int = 5):
    rng = np.random.default_rng(seed)
    for step in range(steps):
        rows = rng.integers(0, len(windows.record_ids), batch)
        yield Cut(rows, windows.random_offsets(rows, rng), tag=step)


def test_loader_processes_give_the_batches_of_the_training_process_in_order():
    windows = windows_of([1000, 6000, 200, 2500, 1000, 300])
    here = list(loader(windows, plan(windows, 1), workers=0))
    there = list(loader(windows, plan(windows, 1), workers=2))
    assert [b["tag"] for b in there] == list(range(6))
    for a, b in zip(here, there):
        assert torch.allclose(a["x"], b["x"], atol=1e-6)
    sliding_here = list(loader(windows, windows.sliding_chunks(np.arange(6), max_windows=20), workers=0))
    sliding_there = list(loader(windows, windows.sliding_chunks(np.arange(6), max_windows=20), workers=2))
    assert [b["tag"] for b in sliding_there] == [b["tag"] for b in sliding_here]
    assert all(np.array_equal(a["counts"], b["counts"]) for a, b in zip(sliding_here, sliding_there))
    assert sum(b["counts"].sum() for b in sliding_here) == 7 + 47 + 1 + 19 + 7 + 1  # windows inside each record


def test_a_millivolt_batch_carries_its_normaliser():
    windows = windows_of([1000, 200], normalization="zscore_record")
    cut = Cut(np.array([0, 1]), np.array([10, 0]), normalize=False)
    raw = windows.take(cut)
    assert torch.equal(raw["x"][0], torch.from_numpy(windows.read(0)[:, 10:260].copy()))
    assert raw["normalize"].valid.tolist() == [250, 200]
    normal = windows.take(Cut(cut.rows, cut.offsets))["x"]
    assert torch.allclose(raw["normalize"](raw["x"]), normal, atol=1e-6)
