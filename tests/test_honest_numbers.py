"""What keeps the numbers honest (docs/protocol.md): each guard on a real-data situation, with hand-computed
expectations. Records of different lengths, datasets with their own folds, duplicated signals, a second plugin
with the same name, stale data under an unchanged cell."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import BUILTINS_ONLY

from stence_bench.data.views import apply_contract
from stence_bench.data.wfdb_io import read_wfdb, write_wfdb
from stence_bench.protocol.data import Windows, Workspace
from stence_bench.registry import Registry
from stence_bench.suite import parse_suite


@pytest.fixture(scope="module")
def registry():
    return Registry.load(environ=BUILTINS_ONLY)


def quiet(line: str) -> None:
    """An echo that prints nothing."""


def source_suite(path: Path, layout: str = "wfdb", extra: str = "") -> str:
    return f"""
name = "mixed"
tasks = ["stenosis.70"]
encoders = ["resnet1d_wang"]
objectives = ["none"]
{extra}
[data]
pretrain = "mixed"
[data.sources.mixed]
path = "{path}"
layout = "{layout}"
"""


@pytest.fixture
def mixed_lengths(realdata, tmp_path) -> Path:
    """A WFDB folder of real records of different lengths: a 10 s Georgia record as published (MATLAB v4) and a
    60 s record made of six consecutive 10 s Chapman-Shaoxing records (CinC 2021 has 6-60 s records)."""
    folder = tmp_path / "mixed"
    folder.mkdir()
    for suffix in (".hea", ".mat"):
        shutil.copy(realdata / "cinc2021" / f"E07500{suffix}", folder / f"E07500{suffix}")
    parts = [read_wfdb(realdata / "cinc2021" / f"JS2000{i}")[0] for i in range(6)]
    long = np.concatenate([p.physical() for p in parts], axis=1)
    assert long.shape == (12, 30000)
    write_wfdb(folder / "LONG60", long, 500)
    return folder


# -- 1. every window of a record lies inside that record ------------------------------------------------------


def test_sliding_windows_of_a_record_stay_inside_its_own_length(registry):
    """A 10 s record beside a 60 s one: 7 windows of 2.5 s every 1.25 s, not the 47 of the longer record
    (39 of them zeros) that the padded tensor gave."""
    spec = registry.encoders.get("resnet1d_wang").model_copy(update={"normalization": "none"})  # 250 samples
    rng = np.random.default_rng(0)
    short, long = rng.normal(size=(12, 1000)).astype(np.float32), rng.normal(size=(12, 6000)).astype(np.float32)
    windows = Windows.of_arrays(spec, ["short", "long"], [short, long])
    x, counts = windows.sliding(np.array([0, 1]))
    assert counts.tolist() == [7, 47]  # (1000 - 250) / 125 + 1 and (6000 - 250) / 125 + 1
    assert x.shape == (54, 12, 250)
    for k in range(7):
        assert torch.equal(x[k], torch.from_numpy(short[:, 125 * k : 125 * k + 250]))
    assert torch.equal(x[7 + 46], torch.from_numpy(long[:, 5750:6000]))
    assert (x.abs().sum(dim=(1, 2)) > 0).all()  # no window of padding


def test_a_record_shorter_than_a_window_is_normalised_over_its_own_samples(registry):
    spec = registry.encoders.get("resnet1d_wang").model_copy(update={"normalization": "zscore_record"})
    record = np.arange(2 * 100, dtype=np.float32).reshape(1, 200).repeat(12, axis=0)  # 200 < 250 samples
    windows = Windows.of_arrays(spec, ["r"], [record])
    x, counts = windows.sliding(np.array([0]))
    assert counts.tolist() == [1]
    signal = record[0]
    expected = (signal - signal.mean()) / (signal.std() + 1e-6)  # statistics of the 200 samples, not of 250
    assert np.allclose(x[0, 0, :200].numpy(), expected, atol=1e-5)
    assert x[0, :, 200:].abs().sum() == 0
    assert torch.equal(windows.centre(np.array([0])), x)


def test_embeddings_of_mixed_length_records_average_only_their_own_windows(mixed_lengths, registry, tmp_path):
    """Through the harness (ingest, view cache, windows, embedding): the 10 s record's embedding is the mean over
    its 7 own windows, computed here by hand from the record with the encoder contract."""
    from stence_bench.protocol.evaluate import window_mean

    suite = parse_suite(source_suite(mixed_lengths))
    spec = registry.encoders.get("resnet1d_wang").model_copy(update={"normalization": "zscore_record"})
    ws = Workspace(suite, registry, tmp_path / "run", echo=quiet)
    windows = ws.windows("mixed", spec)
    assert windows.lengths.tolist() == [1000, 6000]  # 100 Hz: 10 s and 60 s

    class Amplitude(torch.nn.Module):
        """A fixed 'encoder': each lead's mean absolute value."""

        def __init__(self):
            super().__init__()
            self.unused = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x):
            return x.abs().mean(dim=-1)

    emb = window_mean(Amplitude(), windows, np.array([0, 1]), None)
    record, _ = read_wfdb(mixed_lengths / "E07500")
    by_hand = np.mean([np.abs(apply_contract(record.physical(), 500, record.leads, spec, offset=125 * k)).mean(axis=-1)
                       for k in range(7)], axis=0)
    assert np.allclose(emb[0], by_hand, atol=1e-4)


def test_the_dataset_scaler_is_fitted_on_every_sample_of_the_training_records(mixed_lengths, registry, tmp_path):
    """``zscore_dataset`` (the PTB-XL benchmark's one global scaler): per-lead mean and std over all samples of the
    training records, whole records of any length, not one centred window of each."""
    suite = parse_suite(source_suite(mixed_lengths))
    spec = registry.encoders.get("resnet1d_wang")
    ws = Workspace(suite, registry, tmp_path / "run", echo=quiet)
    windows = ws.windows("mixed", spec)
    dataset = ws.dataset("mixed")
    split = dict(zip(dataset.records["record_id"], dataset.split("patient", 0)))
    train = [rid for rid in windows.record_ids if split[rid] == "train"] or windows.record_ids
    signals = []
    for rid in train:
        record, _ = read_wfdb(mixed_lengths / rid)
        signals.append(apply_contract(record.physical(), 500, record.leads, spec.model_copy(
            update={"window_s": record.physical().shape[1] / 500}), normalize=False))
    samples = np.concatenate(signals, axis=1).astype(np.float64)
    assert np.allclose(windows.scaler.mean, samples.mean(axis=1), atol=1e-5)
    assert np.allclose(windows.scaler.std, samples.std(axis=1), atol=1e-5)


# -- 2. lead geometry in millivolts, normalisation after ------------------------------------------------------


@pytest.mark.parametrize("normalization", ["none", "zscore_record", "zscore_dataset"])
def test_an_identity_vcg_augmentation_gives_the_harness_input_back(mixed_lengths, registry, tmp_path, normalization):
    """Inside the harness's own pipeline (pretraining batch -> objective views), a VCG rotation of 0 and scale 1
    give exactly the input the encoder gets without augmentation, for every normalisation. Applied to normalised
    leads (as before), the re-derived limb leads III/aVR/aVL/aVF changed by 10-64 % RMS."""
    from stence_bench.protocol.pretrain import ecg_inputs
    from stence_bench_plugins.objectives import augment
    from stence_bench_plugins.objectives.contrastive import PatientContrastive

    suite = parse_suite(source_suite(mixed_lengths))
    spec = registry.encoders.get("resnet1d_wang").model_copy(update={"normalization": normalization})
    windows = Workspace(suite, registry, tmp_path / "run", echo=quiet).windows("mixed", spec)
    encoder = spec.build("tiny")
    objective = PatientContrastive(encoder, leads=spec.leads, vcg=True, max_rotation_deg=0.0, max_scale=0.0,
                                   blank_p=0.0, noise_std=0.0, segment_positives=True)
    assert objective.physical_units
    rows = np.array([0, 1, 1, 0])
    batch = ecg_inputs(windows, rows, np.random.default_rng(7), slice(None), objective)
    first, second = objective.views(batch)
    plain = np.random.default_rng(7)
    expected_first, expected_second = windows.crops(rows, plain), windows.crops(rows, plain)
    # the real leads obey Einthoven to the files' 1 uV rounding (a few uV after resampling): the identity up to that,
    # back in millivolts
    if normalization == "zscore_record":
        units = batch["ecg"].std(dim=-1, unbiased=False, keepdim=True)  # mV per normalised unit
    elif normalization == "zscore_dataset":
        units = torch.as_tensor(windows.scaler.std, dtype=torch.float32)[None, :, None]
    else:
        units = torch.ones(1)
    assert ((first - expected_first) * units).abs().max() <= 5e-3
    units_second = (batch["ecg_segment"].std(dim=-1, unbiased=False, keepdim=True)
                    if normalization == "zscore_record" else units)
    assert ((second - expected_second) * units_second).abs().max() <= 5e-3

    if normalization != "none":  # the old order: the geometry applied to normalised leads is not the identity
        vcg = augment.VCGAugment(spec.leads)
        old = vcg.transform(expected_first, torch.eye(3).expand(4, 3, 3), torch.ones(4))
        limb = [spec.leads.index(lead) for lead in ("III", "aVR", "aVL", "aVF")]
        change = (old - expected_first)[:, limb].pow(2).mean().sqrt() / expected_first[:, limb].pow(2).mean().sqrt()
        assert change > 0.05
