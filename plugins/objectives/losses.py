"""The loss functions of the built-in objectives, as plain functions of embeddings.

Every function L2-normalises the embeddings it compares and returns a scalar tensor. The formulas are written
out in ``docs/objectives.md``; ``tests/test_loss_formulas.py`` checks each against an independent NumPy
implementation. Metric-learning losses and label miners come from pytorch-metric-learning; DTW distances from
dtaidistance (both well kept, C-backed where it matters; dtaidistance is the extra ``dtw``).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import torch
import torch.nn.functional as F

from stence_bench.extras import require

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
        dtw_ndim = require("dtaidistance.dtw_ndim", 'distance = "dtw"')
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


# -- StenCE: the auxiliary stenosis loss on the angiography branch ---------------------------------------------


@full_precision
def grouped_bce_loss(
    logits: torch.Tensor, targets: torch.Tensor, groups: list[slice], weights: list[float]
) -> torch.Tensor:
    """``Σ_g w_g · mean BCE(logits[:, g], targets[:, g])`` over the known (finite) entries of each column group
    (StenCE's levels: patient, artery), a group without a known entry in the batch adding nothing."""
    known = torch.isfinite(targets)
    safe = torch.where(known, targets, torch.zeros_like(targets)).to(logits.dtype)
    each = F.binary_cross_entropy_with_logits(logits, safe, reduction="none") * known
    total = logits.sum() * 0.0  # a zero that reaches every logit, for a batch without any known target
    for group, weight in zip(groups, weights):
        count = known[:, group].sum()
        if count > 0:
            total = total + weight * each[:, group].sum() / count
    return total


# -- FG-CLEP: soft targets from the semantic similarity of the reports -----------------------------------------


def semantic_targets(embeddings: torch.Tensor, *, weight: float) -> torch.Tensor:
    """Soft targets from report-text embeddings: 1 on the diagonal, ``weight · max(0, cos(e_i, e_j))`` elsewhere."""
    e = _normalise(embeddings.detach().to(torch.float64))
    cosine = (e @ e.T).clamp(min=0.0, max=1.0)
    eye = torch.eye(len(e), dtype=torch.float64, device=e.device)
    return eye + (1 - eye) * weight * cosine


# -- Jeong et al. (MLHC 2023; mandiehyewon/ssldml): the published miners and losses ----------------------------


def mean_abs_distances(signals: torch.Tensor) -> torch.Tensor:
    """``[N, N]``: the mean absolute difference of two ECGs over all leads and samples (ssldml's ``euclidean``
    distance, ``mean(sqrt((x_i - x_j)^2))``)."""
    flat = signals.detach().reshape(len(signals), -1).to(torch.float64)
    return torch.cdist(flat, flat, p=1) / flat.shape[1]


def _descending(row: np.ndarray) -> np.ndarray:
    """Indices from the largest value to the smallest, ties by the lower index."""
    return np.lexsort((np.arange(len(row)), -row))


def jeong_distance_triplets(
    dist: np.ndarray, *, positive: str = "nearest", neg_topk: int = 2, rng: np.random.Generator
) -> Triplets:
    """One triplet per anchor (Jeong et al.): the positive is the ECG nearest the anchor (``nearest``, the paper; or
    ``second_farthest``, what the released code's default path takes), the negative one drawn uniformly from the
    anchor's ``neg_topk`` farthest ECGs other than the anchor and the positive (the farthest such ECG when none of
    them qualifies). Ties go to the lower index. Fewer than three ECGs: no triplet."""
    dist = np.asarray(dist, dtype=np.float64)
    n = len(dist)
    if n < 3:
        empty = torch.zeros(0, dtype=torch.long)
        return empty, empty, empty
    anchors, positives, negatives = [], [], []
    for a in range(n):
        others = np.array([j for j in range(n) if j != a])
        if positive == "nearest":
            p = int(others[np.lexsort((others, dist[a, others]))[0]])
        elif positive == "second_farthest":
            order = _descending(dist[a])
            p = int(order[1]) if order[1] != a else int(order[0])
        else:
            raise ValueError(f"positive must be 'nearest' or 'second_farthest', not {positive!r}")
        top = [int(j) for j in _descending(np.abs(dist[a]))[:neg_topk] if j not in (a, p)]
        if not top:
            top = [int(j) for j in _descending(dist[a]) if j not in (a, p)][:1]
        anchors.append(a)
        positives.append(p)
        negatives.append(top[int(rng.integers(len(top)))])
    as_tensor = lambda v: torch.tensor(v, dtype=torch.long)  # noqa: E731
    return as_tensor(anchors), as_tensor(positives), as_tensor(negatives)


def continuous_label_triplets(values: torch.Tensor | np.ndarray) -> Triplets:
    """One triplet per labelled anchor (Jeong et al.'s label miner on a continuous label, mPCWP): the positive is the
    record whose value is closest to the anchor's, the negative the one whose value is farthest; ties go to the lower
    index (``np.argmin``/``np.argmax``), the anchor is never its own positive or negative. Records without a value
    (NaN) take no part; fewer than two labelled records: no triplet."""
    y = values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)
    y = y.astype(np.float64).ravel()
    labelled = np.flatnonzero(np.isfinite(y))
    anchors, positives, negatives = [], [], []
    if len(labelled) >= 2:
        for a in labelled:
            diff = np.abs(y[labelled] - y[a])
            self_at = labelled == a
            negatives.append(int(labelled[np.argmax(np.where(self_at, -np.inf, diff))]))
            positives.append(int(labelled[np.argmin(np.where(self_at, np.inf, diff))]))
            anchors.append(int(a))
    as_tensor = lambda v: torch.tensor(v, dtype=torch.long)  # noqa: E731
    return as_tensor(anchors), as_tensor(positives), as_tensor(negatives)


@full_precision
def jeong_triplet_loss(embeddings: torch.Tensor, triplets: Triplets, *, margin: float) -> torch.Tensor:
    """``mean over all triplets of max(0, ||e_a - e_p||² - ||e_a - e_n||² + margin)`` on the embeddings as they are
    (not normalised): ssldml's ``criteria/triplet.py``."""
    a, p, n = triplets
    if not len(a):
        return embeddings.sum() * 0.0
    d_ap = ((embeddings[a] - embeddings[p]) ** 2).sum(dim=1)
    d_an = ((embeddings[a] - embeddings[n]) ** 2).sum(dim=1)
    return F.relu(d_ap - d_an + margin).mean()


@full_precision
def jeong_margin_loss(embeddings: torch.Tensor, triplets: Triplets, beta: torch.Tensor, *, margin: float) -> torch.Tensor:
    """Margin loss (Wu et al. 2017) as ssldml's ``criteria/margin.py``: ``d = sqrt(||.||² + 1e-8)`` on unnormalised
    embeddings, ``β`` per triplet (its anchor's class), ``(Σ relu(d_ap - β + m) + relu(β - d_an + m)) / #triplets
    with an active term`` (the sum itself when none is)."""
    a, p, n = triplets
    if not len(a):
        return embeddings.sum() * 0.0 + beta.sum() * 0.0
    d_ap = (((embeddings[a] - embeddings[p]) ** 2).sum(dim=1) + 1e-8).sqrt()
    d_an = (((embeddings[a] - embeddings[n]) ** 2).sum(dim=1) + 1e-8).sqrt()
    beta = beta.to(d_ap.dtype)
    pos, neg = F.relu(d_ap - beta + margin), F.relu(beta - d_an + margin)
    count = ((pos > 0) | (neg > 0)).sum()
    total = (pos + neg).sum()
    return total / count if count > 0 else total


# -- CLEF as released (Nokia-Bell-Labs/ecg-foundation-model, ContractiveModel with use_metadata) ----------------


def _min_max(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    return (x - x.min()) / (x.max() - x.min() + eps)


def clef_metadata_similarity(risk: torch.Tensor, missing: torch.Tensor | None = None, *, floor: float = 0.2) -> torch.Tensor:
    """CLEF's ``[N, N]`` metadata similarity ``M = 1 - W``: ``W = (1 - floor) · minmax((r_i - r_j)²) + floor`` (min and
    max over the whole matrix, diagonal included), 0 on the diagonal, times ``exp(-m_i m_j)`` when ``missing`` is
    given; a missing (NaN) risk counts as 0."""
    r = torch.nan_to_num(risk, nan=0.0, posinf=0.0, neginf=0.0)
    weights = (1 - floor) * _min_max((r[:, None] - r[None, :]) ** 2) + floor
    weights = weights.masked_fill(torch.eye(len(r), dtype=torch.bool, device=r.device), 0.0)
    if missing is not None:
        weights = weights * torch.exp(-missing[:, None] * missing[None, :])
    return 1 - weights


@full_precision
def clef_published_loss(
    z1: torch.Tensor,
    z2: torch.Tensor,
    risk: torch.Tensor,
    missing: torch.Tensor | None = None,
    *,
    temperature: float | torch.Tensor = 0.07,
    floor: float = 0.2,
) -> torch.Tensor:
    """CLEF's pretraining loss as released: ``(L_nce + L_align) / 2`` over the 2N x 2N SimCLR matrix of both views.

    ``M`` (:func:`clef_metadata_similarity`, tiled over the four view blocks); ``s`` the cosine similarities of the
    2N views; per anchor ``i``, row weights ``ω_i = softmax_j(1 - M_ij)`` over all 2N entries, then without the
    diagonal: ``L_nce = -mean_i log(e_ip / (e_ip + Σ_{n ≠ i, p} ω_in e_in + 1e-8))`` with ``e_ij = exp(s_ij/τ - max_j
    s_ij/τ)``; ``L_align = mean_ij (minmax(s)_ij - M_ij)²`` over all (2N)² entries."""
    n = len(z1)
    z = _normalise(torch.cat([z1, z2]))
    sim = z @ z.T
    meta = clef_metadata_similarity(risk.to(sim.dtype), None if missing is None else missing.to(sim.dtype), floor=floor)
    meta = meta.repeat(2, 2)
    off = ~torch.eye(2 * n, dtype=torch.bool, device=sim.device)
    pair = torch.arange(2 * n, device=sim.device).remainder(n)
    positive = (pair[:, None] == pair[None, :]) & off
    weights = torch.softmax(1 - meta, dim=1)
    scaled = (sim / temperature)[off].view(2 * n, -1)
    scaled = scaled - scaled.max(dim=1, keepdim=True).values
    e = torch.exp(scaled)
    pos = (e * positive[off].view(2 * n, -1)).sum(dim=1)
    neg = (e * weights[off].view(2 * n, -1) * ~positive[off].view(2 * n, -1)).sum(dim=1)
    nce = -torch.log(pos / (pos + neg + 1e-8)).mean()
    align = F.mse_loss(_min_max(sim), meta)
    return (nce + align) / 2
