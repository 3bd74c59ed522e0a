"""VCG augmentation and the other view augmentations of the contrastive objectives."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from stence_bench_plugins.objectives import augment

from stence_bench import TWELVE_LEADS
from stence_bench.synth.cohort import ecg_batches, sample_cohort


@pytest.fixture(scope="module")
def synthetic_ecgs() -> torch.Tensor:
    """Four synthetic 12-lead ECGs (mV, Einthoven and Goldberger exact), 2 s at 500 Hz."""
    _, _, ecgs = sample_cohort(4, seed=3)
    _, signals, _ = next(ecg_batches(ecgs.head(4), seed=3))
    return torch.from_numpy(np.ascontiguousarray(signals[:, :, :1000]))


def test_zero_rotation_and_unit_scale_is_the_identity(synthetic_ecgs):
    vcg = augment.VCGAugment(TWELVE_LEADS)
    eye = torch.eye(3, dtype=torch.float64).expand(len(synthetic_ecgs), 3, 3)
    out = vcg.transform(synthetic_ecgs, eye, torch.ones(len(synthetic_ecgs)))
    assert out.dtype == synthetic_ecgs.dtype and out.shape == synthetic_ecgs.shape
    assert torch.allclose(out, synthetic_ecgs, atol=1e-5, rtol=0)


def test_random_rotation_keeps_einthoven_and_goldberger_and_changes_the_ecg(synthetic_ecgs):
    torch.manual_seed(0)
    out = augment.VCGAugment(TWELVE_LEADS, max_rotation_deg=30, max_scale=0.2)(synthetic_ecgs)
    lead = {name: out[:, i] for i, name in enumerate(TWELVE_LEADS)}
    assert torch.allclose(lead["III"], lead["II"] - lead["I"], atol=1e-5)
    assert torch.allclose(lead["aVR"], -(lead["I"] + lead["II"]) / 2, atol=1e-5)
    assert torch.allclose(lead["aVF"], lead["II"] - lead["I"] / 2, atol=1e-5)
    assert (out - synthetic_ecgs).abs().amax() > 0.01  # it did something (mV)


def test_the_output_vcg_is_the_rotated_and_scaled_input_vcg(synthetic_ecgs):
    """K x8' = s R K x8: the dipole moves exactly as asked (K has full row rank, so K K^+ = I)."""
    x = synthetic_ecgs.double()
    vcg = augment.VCGAugment(TWELVE_LEADS)
    angles = torch.tensor([[math.pi / 2, 0, 0], [0, 0.3, -0.2], [0.1, 0.2, 0.3], [0, 0, math.pi]], dtype=torch.float64)
    rot = augment.rotation_matrices(angles)
    assert torch.allclose(rot @ rot.transpose(1, 2), torch.eye(3, dtype=torch.float64).expand(4, 3, 3), atol=1e-12)
    scale = torch.tensor([1.0, 0.9, 1.1, 1.0], dtype=torch.float64)
    out = vcg.transform(x, rot, scale)
    kors = torch.tensor(augment.KORS, dtype=torch.float64)
    idx = [TWELVE_LEADS.index(lead) for lead in augment.INDEPENDENT_LEADS]
    before = torch.einsum("vk,bkt->bvt", kors, x[:, idx])
    after = torch.einsum("vk,bkt->bvt", kors, out[:, idx])
    want = scale[:, None, None] * torch.einsum("buv,bvt->but", rot, before)
    assert torch.allclose(after, want, atol=1e-9)
    # a half turn about Z flips the frontal-plane X and Y components of the dipole
    assert torch.allclose(after[3, :2], -before[3, :2], atol=1e-9)


def test_vcg_needs_the_eight_independent_leads():
    with pytest.raises(ValueError, match="lacks V1, V2"):
        augment.VCGAugment(("I", "II", "III"))
    assert not augment.VCGAugment.applicable(("I",))


def test_lead_blanking_keeps_at_least_one_lead_and_noise_scales_with_the_signal():
    x = torch.ones(64, 12, 10)
    out = augment.blank_leads(x, 1.0, torch.Generator().manual_seed(0))
    kept = (out.abs().sum(dim=2) > 0).sum(dim=1)
    assert (kept == 1).all()
    half = augment.blank_leads(x, 0.5, torch.Generator().manual_seed(0))
    frac = (half.abs().sum(dim=2) > 0).float().mean()
    assert 0.35 < frac < 0.65
    assert torch.equal(x, torch.ones(64, 12, 10))  # input untouched
    signal = torch.randn(32, 12, 500) * torch.linspace(0.1, 10, 32)[:, None, None]
    noise = augment.add_noise(signal, 0.1, torch.Generator().manual_seed(1)) - signal
    ratio = noise.flatten(1).std(dim=1) / signal.flatten(1).std(dim=1)
    assert torch.allclose(ratio, torch.full_like(ratio, 0.1), rtol=0.1)


def test_keep_group_zeroes_the_other_leads():
    x = torch.ones(2, 12, 5)
    out = augment.keep_group(x, TWELVE_LEADS, ("V1", "V2"))
    assert out[:, 6:8].eq(1).all() and out[:, :6].eq(0).all() and out[:, 8:].eq(0).all()
