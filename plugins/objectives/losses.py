"""The loss functions of the built-in objectives, as plain functions of embeddings.

Every function L2-normalises the embeddings it compares and returns a scalar tensor. The formulas are written
out in ``docs/objectives.md``; ``tests/test_loss_formulas.py`` checks each against an independent NumPy
implementation. Metric-learning losses and label miners come from pytorch-metric-learning; DTW distances from
dtaidistance (both well kept, C-backed where it matters).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import torch
import torch.nn.functional as F

Triplets = tuple[torch.Tensor, torch.Tensor, torch.Tensor]

_HALF = (torch.float16, torch.bfloat16)
_F = TypeVar("_F", bound=Callable[..., Any])


def _full(value: Any) -> Any:
    """A half-precision float tensor (what bf16 autocast makes of a linear layer's output) as float32; any other
    value, float32 and float64 tensors included, unchanged (the same object: no copy, no rounding)."""
    return value.float() if isinstance(value, torch.Tensor) and value.dtype in _HALF else value


def autocast_off(*values: Any) -> contextlib.AbstractContextManager[Any]:
    """Autocast disabled on the device of the first tensor among ``values``, so matmuls and reductions run in the
    precision of their inputs; on CPU without autocast (the runner's CPU path) it changes nothing."""
    device = next((v.device.type for v in values if isinstance(v, torch.Tensor)), None)
    if device in ("cuda", "cpu"):
        return torch.autocast(device_type=device, enabled=False)
    return contextlib.nullcontext()


def full_precision(fn: _F) -> _F:
    """Run a loss in at least float32 whatever autocast is on around it: half-precision tensor arguments are cast
    to float32 and autocast is off inside, so similarity matrices, ``exp``/``log``/``logsumexp`` and divisions by
    small temperatures never run in bf16. float32 and float64 inputs pass through untouched (bit-identical)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        args = tuple(_full(a) for a in args)
        kwargs = {k: _full(v) for k, v in kwargs.items()}
        with autocast_off(*args, *kwargs.values()):
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _normalise(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x, dim=-1)


@full_precision
def clip_loss(
    a: torch.Tensor,
    b: torch.Tensor,
    *,
    temperature: float | torch.Tensor,
    weight_ab: float = 0.5,
    weight_ba: float = 0.5,
) -> torch.Tensor:
    """Symmetric InfoNCE (CLIP): row ``i`` of ``a`` is paired with row ``i`` of ``b``; the rest are negatives."""
    logits = _normalise(a) @ _normalise(b).T / temperature
    target = torch.arange(len(logits), device=logits.device)
    return weight_ab * F.cross_entropy(logits, target) + weight_ba * F.cross_entropy(logits.T, target)


@full_precision
def siglip_loss(
    a: torch.Tensor,
    b: torch.Tensor,
    *,
    scale: float | torch.Tensor,
    bias: float | torch.Tensor,
    targets: torch.Tensor | None = None,
) -> torch.Tensor:
    """Sigmoid pairwise loss (SigLIP): every pair is a binary problem; ``targets`` soften the off-diagonal zeros."""
    logits = scale * (_normalise(a) @ _normalise(b).T) + bias
    if targets is None:
        targets = torch.eye(len(logits), dtype=logits.dtype, device=logits.device)
    return F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype), reduction="sum") / len(logits)


def soft_targets(labels: torch.Tensor, *, weight: float) -> torch.Tensor:
    """FG-CLEP-style targets: 1 on the diagonal, ``weight`` x Jaccard similarity of the label sets elsewhere."""
    labels = (labels > 0).to(torch.float64)
    inter = labels @ labels.T
    counts = labels.sum(dim=1)
    union = counts[:, None] + counts[None, :] - inter
    jaccard = torch.where(union > 0, inter / union.clamp(min=1), torch.zeros_like(inter))
    eye = torch.eye(len(labels), dtype=torch.float64, device=labels.device)
    return eye + (1 - eye) * weight * jaccard


@full_precision
def nt_xent_loss(z: torch.Tensor, keys: torch.Tensor, *, temperature: float | torch.Tensor) -> torch.Tensor:
    """NT-Xent with any number of positives: views whose ``keys`` are equal are positives of each other.

    Anchors without a positive are left out of the mean but still serve as negatives of the others.
    """
    z = _normalise(z)
    sim = z @ z.T / temperature
    self_mask = torch.eye(len(z), dtype=torch.bool, device=z.device)
    log_prob = sim - torch.logsumexp(sim.masked_fill(self_mask, float("-inf")), dim=1, keepdim=True)
    positives = (keys[:, None] == keys[None, :]) & ~self_mask
    n_pos = positives.sum(dim=1)
    has = n_pos > 0
    if not has.any():
        return sim.sum() * 0.0
    per_anchor = -(log_prob * positives).sum(dim=1)[has] / n_pos[has]
    return per_anchor.mean()


@full_precision
def triplet_loss(embeddings: torch.Tensor, triplets: Triplets, *, margin: float) -> torch.Tensor:
    """Triplet margin loss over the given ``(anchor, positive, negative)`` indices (pytorch-metric-learning):
    Euclidean distance of normalised embeddings, averaged over the triplets that violate the margin."""
    from pytorch_metric_learning.losses import TripletMarginLoss

    labels = torch.arange(len(embeddings), device=embeddings.device)  # unused when triplets are given
    return TripletMarginLoss(margin=margin)(embeddings, labels, indices_tuple=triplets)


@full_precision
def margin_loss(
    loss_fn: torch.nn.Module, embeddings: torch.Tensor, ids: torch.Tensor, triplets: Triplets
) -> torch.Tensor:
    """A pytorch-metric-learning loss module (``MarginLoss`` with its learnable beta) over the given triplets,
    computed in float32 under autocast like the losses above."""
    return loss_fn(embeddings, ids, indices_tuple=triplets)


def label_triplets(labels: torch.Tensor) -> Triplets:
    """Every triplet of the batch: anchor and positive share a label, the negative does not."""
    from pytorch_metric_learning.utils.loss_and_miner_utils import (
        get_all_triplets_indices,
    )

    return get_all_triplets_indices(labels)


def _pooled(signals: np.ndarray | torch.Tensor, downsample: int) -> np.ndarray:
    x = signals.detach().cpu().numpy() if isinstance(signals, torch.Tensor) else np.asarray(signals)
    x = x.astype(np.float64, copy=False)
    if downsample > 1:
        n, leads, t = x.shape
        t -= t % downsample
        x = x[:, :, :t].reshape(n, leads, t // downsample, downsample).mean(axis=3)
    return x


def pairwise_distances(signals: np.ndarray | torch.Tensor, *, metric: str, downsample: int = 1) -> np.ndarray:
    """``[N, N]`` distances between ECGs ``[N, leads, samples]`` after mean-pooling by ``downsample``:
    ``euclidean`` over all leads and samples, or multivariate ``dtw`` (time warped, leads as dimensions)."""
    x = _pooled(signals, downsample)
    n = len(x)
    if metric == "euclidean":
        flat = x.reshape(n, -1)
        sq = np.sum((flat[:, None, :] - flat[None, :, :]) ** 2, axis=-1)
        return np.sqrt(sq)
    if metric == "dtw":
        from dtaidistance import dtw_ndim

        series = np.ascontiguousarray(np.transpose(x, (0, 2, 1)))  # [N, time, leads]
        dist = dtw_ndim.distance_matrix(series, use_c=True, compact=False)
        dist = np.asarray(dist, dtype=np.float64)
        dist = np.where(np.isfinite(dist), dist, dist.T)  # the library fills one triangle
        np.fill_diagonal(dist, 0.0)
        return dist
    raise ValueError(f"metric must be 'euclidean' or 'dtw', not {metric!r}")


def distance_triplets(
    signals: np.ndarray | torch.Tensor, *, metric: str, downsample: int = 1, k: int = 1
) -> Triplets:
    """Self-supervised mining (Jeong et al.): each anchor's ``k`` nearest ECGs by ``metric`` are its positives,
    every other ECG a negative; returns every such ``(anchor, positive, negative)``."""
    dist = pairwise_distances(signals, metric=metric, downsample=downsample)
    n = len(dist)
    if n < 3:
        empty = torch.zeros(0, dtype=torch.long)
        return empty, empty, empty
    k = min(k, n - 2)
    anchors: list[int] = []
    positives: list[int] = []
    negatives: list[int] = []
    for a in range(n):
        order = [j for j in np.argsort(dist[a], kind="stable") if j != a]
        near = order[:k]
        far = [j for j in range(n) if j != a and j not in near]
        for p in near:
            anchors += [a] * len(far)
            positives += [p] * len(far)
            negatives += far
    as_tensor = lambda v: torch.tensor(v, dtype=torch.long)
    return as_tensor(anchors), as_tensor(positives), as_tensor(negatives)


def risk_weights(risk: torch.Tensor, missing: torch.Tensor, *, floor: float) -> tuple[torch.Tensor, torch.Tensor]:
    """CLEF's negative weights and the normalised risk differences they come from (both ``[N, N]``).

    ``Δ = (r_i - r_j)^2`` min-max normalised over off-diagonal pairs; ``w = max(Δ, floor) * exp(-m_i m_j)``.
    """
    n = len(risk)
    off = ~torch.eye(n, dtype=torch.bool, device=risk.device)
    delta = (risk[:, None] - risk[None, :]) ** 2
    if n > 1:
        lo, hi = delta[off].min(), delta[off].max()
        scaled = (delta - lo) / (hi - lo) if hi > lo else torch.zeros_like(delta)
    else:
        scaled = torch.zeros_like(delta)
    scaled = scaled.masked_fill(~off, 0.0)
    trust = torch.exp(-missing[:, None] * missing[None, :])
    return scaled.clamp(min=floor) * trust * off, scaled


@full_precision
def clef_loss(
    z1: torch.Tensor,
    z2: torch.Tensor,
    risk: torch.Tensor,
    missing: torch.Tensor,
    *,
    temperature: float | torch.Tensor,
    floor: float = 0.2,
    align_weight: float = 0.5,
) -> torch.Tensor:
    """Clinically-guided contrastive loss (after CLEF): InfoNCE whose negatives are weighted by the patients'
    risk difference (floored, down-weighted by missing metadata), plus a term aligning the embeddings'
    cosine distance with the normalised risk difference."""
    sim = _normalise(z1) @ _normalise(z2).T
    risk = risk.to(sim.dtype)
    missing = missing.to(sim.dtype)
    weights, scaled = risk_weights(risk, missing, floor=floor)
    logits = sim / temperature
    pos = torch.diagonal(logits)

    def direction(lg: torch.Tensor) -> torch.Tensor:
        # log(exp(pos) + sum_j w_ij exp(l_ij)), computed stably; log(0) where w is 0 drops the term
        terms = torch.cat([pos[:, None], lg + torch.log(weights)], dim=1)
        return torch.logsumexp(terms, dim=1) - pos

    nce = (direction(logits) + direction(logits.T)).mean() / 2
    n = len(sim)
    if n < 2:
        return nce
    off = ~torch.eye(n, dtype=torch.bool, device=sim.device)
    trust = torch.exp(-missing[:, None] * missing[None, :])
    align = (trust * ((1 - sim) / 2 - scaled) ** 2)[off].mean()
    return nce + align_weight * align


def impute_risk(risk: torch.Tensor, missing: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Risk scores with unknown (NaN) entries set to the batch median and their missing rate set to 1."""
    unknown = ~torch.isfinite(risk)
    if not unknown.any():
        return risk, missing
    known = risk[~unknown]
    fill = known.median() if len(known) else torch.zeros((), dtype=risk.dtype, device=risk.device)
    return torch.where(unknown, fill, risk), torch.where(unknown, torch.ones_like(missing), missing)


def label_ids(labels: torch.Tensor) -> torch.Tensor:
    """One integer per distinct row of a label matrix (multi-hot sets become classes for label mining)."""
    if labels.ndim == 1:
        return labels.long()
    _, ids = torch.unique((labels > 0).to(torch.int8), dim=0, return_inverse=True)
    return ids
