"""Deep metric learning (Jeong et al., MLHC 2023): triplet or margin losses over mined triplets.

- ``metric_learning`` (self-supervised): triplets are mined from the raw ECGs themselves: each ECG's nearest
  neighbour in the batch by Euclidean or DTW distance (on ECGs mean-pooled by ``downsample``) is its
  positive, every other ECG a negative.
- ``metric_learning_supervised``: triplets from the labels: anchor and positive share a label set, the negative
  does not.

Losses and label mining come from pytorch-metric-learning, DTW from dtaidistance (see :mod:`.losses`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from stence_bench.pretraining import (
    Objective,
    ObjectiveOutput,
    gather,
    gather_plain,
    projection_head,
)

from .losses import (
    distance_triplets,
    label_ids,
    label_triplets,
    margin_loss,
    triplet_loss,
)

MINERS = ("distance", "label")
LOSSES = ("triplet", "margin")


class MetricLearning(Objective):
    """Triplet (or margin) loss on projected embeddings of triplets mined by distance or by label."""

    def __init__(
        self,
        encoder: nn.Module,
        *,
        leads: Sequence[str],
        modality_encoders: Mapping[str, nn.Module] | None = None,
        n_labels: int | None = None,
        miner: str = "distance",
        loss: str = "triplet",
        margin: float = 0.2,
        beta: float = 1.2,
        distance: str = "euclidean",
        downsample: int = 10,
        k: int = 1,
        proj_dim: int = 128,
        name: str = "metric_learning",
    ):
        super().__init__(encoder, leads=leads, name=name)
        if miner not in MINERS:
            raise ValueError(f"objective {name!r}: miner must be one of {', '.join(MINERS)}, not {miner!r}")
        if loss not in LOSSES:
            raise ValueError(f"objective {name!r}: loss must be one of {', '.join(LOSSES)}, not {loss!r}")
        if distance not in ("euclidean", "dtw"):
            raise ValueError(f"objective {name!r}: distance must be 'euclidean' or 'dtw', not {distance!r}")
        self.miner, self.loss_name, self.margin = miner, loss, margin
        self.distance, self.downsample, self.k = distance, downsample, k
        self.proj = projection_head(encoder.embed_dim, proj_dim)
        if loss == "margin":
            from pytorch_metric_learning.losses import MarginLoss

            self.margin_loss = MarginLoss(margin=margin, beta=beta, learn_beta=True)

    def triplets(self, batch: Mapping) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        """Mined ``(anchor, positive, negative)`` indices into the global batch, and per-sample class ids."""
        if self.miner == "label":
            ids = label_ids(gather_plain(batch["labels"].float()))
            return label_triplets(ids), ids
        ecg = batch["ecg"].detach()
        size = ecg.shape[-1] - ecg.shape[-1] % max(self.downsample, 1)
        pooled = ecg[..., :size]
        if self.downsample > 1:
            pooled = pooled.reshape(*ecg.shape[:2], size // self.downsample, self.downsample).mean(dim=-1)
        signals = gather_plain(pooled.contiguous())
        triplets = distance_triplets(signals, metric=self.distance, downsample=1, k=self.k)
        return triplets, torch.arange(len(signals))

    def forward(self, batch: Mapping) -> ObjectiveOutput:
        self.require(batch, "ecg", *(["labels"] if self.miner == "label" else []))
        z = gather(self.proj(self.embed(batch["ecg"])))
        triplets, ids = self.triplets(batch)
        triplets = tuple(t.to(z.device) for t in triplets)
        if self.loss_name == "margin":
            loss = margin_loss(self.margin_loss, z, ids.to(z.device), triplets)
        else:
            loss = triplet_loss(z, triplets, margin=self.margin)
        if not loss.requires_grad:  # no triplet in this batch: a zero that still reaches every parameter
            loss = z.sum() * 0.0
        return ObjectiveOutput(loss, {"triplets": float(len(triplets[0]))})
