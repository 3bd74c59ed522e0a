"""Deep metric learning (Jeong et al., MLHC 2023; code: mandiehyewon/ssldml): triplet or margin losses over mined
triplets.

``variant = "published"`` (the registered default), as the paper and its released code define it:

- ``metric_learning`` (self-supervised): one triplet per ECG of the batch. Its positive is the ECG nearest it by the
  ``distance`` between the input signals (``euclidean``: the mean absolute difference over all leads and samples,
  ssldml's ``mean(sqrt((x_i - x_j)^2))``; or multivariate ``dtw``); its negative is drawn uniformly from its
  ``neg_topk`` (2) farthest ECGs. ``positive = "second_farthest"`` takes what the released code's default path
  takes instead (see docs/objectives.md).
- ``metric_learning_supervised``: the label miner on a continuous label (``batch["targets"]``: mPCWP from the cath
  table through the ``pcwp.regression`` task): one triplet per labelled ECG, positive the closest value, negative
  the farthest.
- ``loss = "triplet"``: ``mean over all triplets of max(0, ||e_a - e_p||² - ||e_a - e_n||² + margin)`` on the
  projections as they are (not normalised); ``loss = "margin"``: the margin loss with one learnable β per class of
  the anchor (Wu et al. 2017; ssldml's ``criteria/margin.py``).

``variant = "batch_all"``: stence-bench's own: every ECG's ``k`` nearest ECGs (by distance on the input mean-pooled by
``downsample``) are its positives and every other ECG a negative (or, with ``miner = "label"``, every label-consistent
triplet of ``batch["labels"]``), on L2-normalised projections, pytorch-metric-learning's ``TripletMarginLoss``
(averaged over the active triplets) or ``MarginLoss``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from stence_bench.extras import require
from stence_bench.pretraining import (
    Objective,
    ObjectiveOutput,
    distributed,
    gather,
    gather_plain,
    projection_head,
)

from .losses import (
    continuous_label_triplets,
    distance_triplets,
    jeong_distance_triplets,
    jeong_margin_loss,
    jeong_triplet_loss,
    label_ids,
    label_triplets,
    margin_loss,
    mean_abs_distances,
    pairwise_distances,
    triplet_loss,
)

VARIANTS = ("published", "batch_all")
MINERS = {"published": ("distance", "continuous"), "batch_all": ("distance", "label")}
LOSSES = ("triplet", "margin")
POSITIVES = ("nearest", "second_farthest")


class MetricLearning(Objective):
    """Triplet (or margin) loss on projected embeddings of triplets mined by signal distance or by label."""

    def __init__(
        self,
        encoder: nn.Module,
        *,
        leads: Sequence[str],
        modality_encoders: Mapping[str, nn.Module] | None = None,
        n_labels: int | None = None,
        target_columns: Sequence[Sequence[str]] | None = None,
        variant: str = "published",
        miner: str = "distance",
        loss: str = "triplet",
        margin: float = 0.2,
        beta: float = 1.2,
        n_betas: int = 2,
        class_threshold: float | None = None,
        distance: str = "euclidean",
        positive: str = "nearest",
        neg_topk: int = 2,
        downsample: int | None = None,
        k: int = 1,
        proj_dim: int = 128,
        name: str = "metric_learning",
    ):
        super().__init__(encoder, leads=leads, name=name)
        if variant not in VARIANTS:
            raise ValueError(f"objective {name!r}: variant must be one of {', '.join(VARIANTS)}, not {variant!r}")
        if miner not in MINERS[variant]:
            raise ValueError(f"objective {name!r}: miner must be one of {', '.join(MINERS[variant])} with variant "
                             f"{variant!r}, not {miner!r}")
        if loss not in LOSSES:
            raise ValueError(f"objective {name!r}: loss must be one of {', '.join(LOSSES)}, not {loss!r}")
        if distance not in ("euclidean", "dtw"):
            raise ValueError(f"objective {name!r}: distance must be 'euclidean' or 'dtw', not {distance!r}")
        if distance == "dtw" and miner == "distance":  # the extra dtw: said before the pretraining starts
            require("dtaidistance.dtw_ndim", f"objective {name!r} with distance = \"dtw\"")
        if positive not in POSITIVES:
            raise ValueError(f"objective {name!r}: positive must be one of {', '.join(POSITIVES)}, not {positive!r}")
        if neg_topk < 1 or n_betas < 1:
            raise ValueError(f"objective {name!r}: neg_topk and n_betas must be at least 1")
        if miner == "continuous":
            width = sum(len(c) for c in target_columns or ())
            if width != 1:
                raise ValueError(f"objective {name!r}: the continuous-label miner needs one target column (a "
                                 f"regression task such as pcwp.regression), got {width}")
        self.variant, self.miner, self.loss_name, self.margin = variant, miner, loss, margin
        self.distance, self.positive, self.neg_topk, self.k = distance, positive, neg_topk, k
        self.downsample = downsample if downsample is not None else (1 if variant == "published" else 10)
        self.class_threshold = class_threshold
        self.proj = projection_head(encoder.embed_dim, proj_dim)
        if loss == "margin" and variant == "published":
            self.beta = nn.Parameter(torch.full((n_betas,), float(beta)))
        elif loss == "margin":
            from pytorch_metric_learning.losses import MarginLoss

            self.margin_loss = MarginLoss(margin=margin, beta=beta, learn_beta=True)

    def run_info(self) -> dict[str, Any]:
        return {"variant": self.variant, "miner": self.miner, "loss": self.loss_name}

    def _signals(self, batch: Mapping) -> torch.Tensor:
        """The gathered input ECGs, mean-pooled by ``downsample`` samples."""
        ecg = batch["ecg"].detach()
        step = max(self.downsample, 1)
        size = ecg.shape[-1] - ecg.shape[-1] % step
        pooled = ecg[..., :size]
        if step > 1:
            pooled = pooled.reshape(*ecg.shape[:2], size // step, step).mean(dim=-1)
        return gather_plain(pooled.contiguous())

    def triplets(self, batch: Mapping) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        """Mined ``(anchor, positive, negative)`` indices into the global batch, and per-sample class ids."""
        if self.miner == "label":
            ids = label_ids(gather_plain(batch["labels"].float()))
            return label_triplets(ids), ids
        if self.miner == "continuous":
            values = gather_plain(batch["targets"].float())[:, 0]
            ids = torch.zeros(len(values), dtype=torch.long)
            if self.class_threshold is not None:
                ids = (values > self.class_threshold).long().cpu()
            return continuous_label_triplets(values), ids
        signals = self._signals(batch)
        ids = torch.zeros(len(signals), dtype=torch.long)
        if self.variant == "batch_all":
            return distance_triplets(signals, metric=self.distance, downsample=1, k=self.k), torch.arange(len(signals))
        if self.distance == "euclidean":
            dist = mean_abs_distances(signals).cpu().numpy()
        else:
            dist = pairwise_distances(signals, metric="dtw")
        # the negatives' draw follows torch's generator (seeded per epoch and rank by the runner), rank 0's for all
        # ranks: each mines the same triplets of the global batch, so the loss does not depend on the process count
        seed = torch.randint(2**31 - 1, (1,), device=batch["ecg"].device)
        if distributed():
            torch.distributed.broadcast(seed, src=0)
        rng = np.random.default_rng(int(seed.item()))
        return jeong_distance_triplets(dist, positive=self.positive, neg_topk=self.neg_topk, rng=rng), ids

    def forward(self, batch: Mapping) -> ObjectiveOutput:
        self.require(batch, "ecg", *({"label": ["labels"], "continuous": ["targets"]}.get(self.miner, [])))
        z = gather(self.proj(self.embed(batch["ecg"])))
        triplets, ids = self.triplets(batch)
        triplets = tuple(t.to(z.device) for t in triplets)
        if self.variant == "published":
            if self.loss_name == "margin":
                classes = ids.to(z.device)[triplets[0]].clamp(0, len(self.beta) - 1)
                loss = jeong_margin_loss(z, triplets, self.beta[classes], margin=self.margin)
            else:
                loss = jeong_triplet_loss(z, triplets, margin=self.margin)
        elif self.loss_name == "margin":
            loss = margin_loss(self.margin_loss, z, ids.to(z.device), triplets)
        else:
            loss = triplet_loss(z, triplets, margin=self.margin)
        if not loss.requires_grad:  # no triplet in this batch: a zero that still reaches every parameter
            loss = z.sum() * 0.0
        return ObjectiveOutput(loss, {"triplets": float(len(triplets[0]))})
