"""ECG augmentations for contrastive pretraining (after Dade et al., Heart Rhythm O2 2026).

- :class:`VCGAugment`: physiological augmentation in vectorcardiogram space. The eight independent leads
  (I, II, V1-V6) are mapped to a 3-D VCG with the Kors regression matrix (Kors et al., Eur Heart J 1990),
  the VCG is rotated about the three body axes and scaled, and the *change* is projected back to the leads
  with the matrix's pseudo-inverse: ``x8' = x8 + K^+ (s R K x8 - K x8)``. What the dipole does not explain
  (the residual of the 3-D fit) is kept, so zero rotation and unit scale give the input back exactly. The
  limb leads III, aVR, aVL and aVF are then re-derived from I and II (Einthoven and Goldberger), so every
  output satisfies ``III = II - I``.
- :func:`blank_leads`: zero a random subset of leads per sample (at least one lead kept).
- :func:`add_noise`: Gaussian noise scaled to each sample's own amplitude.
- :func:`keep_group`: keep only a group of leads (limb or precordial), zeroing the rest: inter-lead positives.

All functions take and return float ``[batch, leads, samples]`` tensors and never modify their input.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from .losses import autocast_off

#: Kors regression matrix, rows X, Y, Z; columns I, II, V1, V2, V3, V4, V5, V6.
KORS = (
    (0.38, -0.07, -0.13, 0.05, -0.01, 0.14, 0.06, 0.54),
    (-0.07, 0.93, 0.06, -0.02, -0.05, 0.06, -0.17, 0.13),
    (0.11, -0.23, -0.43, -0.06, -0.14, -0.20, -0.11, 0.31),
)
INDEPENDENT_LEADS = ("I", "II", "V1", "V2", "V3", "V4", "V5", "V6")
DERIVED_LIMB_LEADS = ("III", "aVR", "aVL", "aVF")


def rotation_matrices(angles: torch.Tensor) -> torch.Tensor:
    """``[batch, 3, 3]`` rotations from ``[batch, 3]`` angles (radians) about X, then Y, then Z."""
    cx, cy, cz = torch.cos(angles).unbind(dim=1)
    sx, sy, sz = torch.sin(angles).unbind(dim=1)
    one, zero = torch.ones_like(cx), torch.zeros_like(cx)
    rx = torch.stack([one, zero, zero, zero, cx, -sx, zero, sx, cx], dim=1).view(-1, 3, 3)
    ry = torch.stack([cy, zero, sy, zero, one, zero, -sy, zero, cy], dim=1).view(-1, 3, 3)
    rz = torch.stack([cz, -sz, zero, sz, cz, zero, zero, zero, one], dim=1).view(-1, 3, 3)
    return rz @ ry @ rx


class VCGAugment:
    """Random rotation (uniform in +-``max_rotation_deg`` about each axis) and scaling (uniform in
    ``1 +- max_scale``) of the heart's electrical vector, projected back to the leads."""

    def __init__(self, leads: Sequence[str], *, max_rotation_deg: float = 15.0, max_scale: float = 0.1):
        missing = [lead for lead in INDEPENDENT_LEADS if lead not in leads]
        if missing:
            raise ValueError(f"VCG augmentation needs leads {', '.join(INDEPENDENT_LEADS)}; the input lacks {', '.join(missing)}")
        self.leads = tuple(leads)
        self.index = [self.leads.index(lead) for lead in INDEPENDENT_LEADS]
        self.derived = {lead: self.leads.index(lead) for lead in DERIVED_LIMB_LEADS if lead in self.leads}
        self.max_rotation = math.radians(max_rotation_deg)
        self.max_scale = max_scale
        kors = torch.tensor(KORS, dtype=torch.float64)
        self.kors = kors
        self.kors_pinv = torch.linalg.pinv(kors)

    @staticmethod
    def applicable(leads: Sequence[str]) -> bool:
        return all(lead in leads for lead in INDEPENDENT_LEADS)

    def transform(self, x: torch.Tensor, rotation: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """Apply given ``[batch, 3, 3]`` rotations and ``[batch]`` scales."""
        kors = self.kors.to(device=x.device, dtype=x.dtype)
        pinv = self.kors_pinv.to(device=x.device, dtype=x.dtype)
        eight = x[:, self.index, :]
        # in x's own precision: under bf16 autocast the einsums (batched matmuls) would round the VCG and its
        # change to 8 bits, and zero rotation would no longer give the input back exactly
        with autocast_off(x):
            vcg = torch.einsum("vk,bkt->bvt", kors, eight)
            rotated = torch.einsum("buv,bvt->but", rotation.to(device=x.device, dtype=x.dtype), vcg)
            change = scale.to(device=x.device, dtype=x.dtype)[:, None, None] * rotated - vcg
            eight = eight + torch.einsum("kv,bvt->bkt", pinv, change)
        out = x.clone()
        out[:, self.index, :] = eight
        lead_i, lead_ii = eight[:, 0], eight[:, 1]
        derived = {
            "III": lead_ii - lead_i,
            "aVR": -(lead_i + lead_ii) / 2,
            "aVL": lead_i - lead_ii / 2,
            "aVF": lead_ii - lead_i / 2,
        }
        for lead, idx in self.derived.items():
            out[:, idx, :] = derived[lead]
        return out

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        batch = len(x)
        angles = (torch.rand(batch, 3, generator=generator) * 2 - 1) * self.max_rotation
        scale = 1 + (torch.rand(batch, generator=generator) * 2 - 1) * self.max_scale
        return self.transform(x, rotation_matrices(angles.double()).to(x.device), scale.to(x.device))


def blank_leads(x: torch.Tensor, p: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Zero each lead with probability ``p``, independently per sample; every sample keeps at least one lead."""
    if p <= 0 or x.shape[1] == 1:
        return x
    batch, leads = x.shape[:2]
    keep = torch.rand(batch, leads, generator=generator) >= p
    rescue = torch.randint(leads, (batch,), generator=generator)
    keep[torch.arange(batch), rescue] |= ~keep.any(dim=1)
    return x * keep.to(device=x.device, dtype=x.dtype)[:, :, None]


def add_noise(x: torch.Tensor, std: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Add Gaussian noise of ``std`` times each sample's standard deviation."""
    if std <= 0:
        return x
    scale = x.flatten(1).std(dim=1).clamp(min=1e-6)[:, None, None]
    noise = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
    return x + std * scale * noise


def keep_group(x: torch.Tensor, leads: Sequence[str], group: Sequence[str]) -> torch.Tensor:
    """Zero every lead not in ``group``."""
    mask = torch.tensor([lead in group for lead in leads], dtype=x.dtype, device=x.device)
    return x * mask[None, :, None]
