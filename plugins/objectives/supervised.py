"""``supervised``: pretraining on the labels of the pretraining data (multi-label binary cross-entropy through
a linear head), the baseline that says how much a self-supervised objective gains over plain supervision."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import nn
from torch.nn import functional as F

from stence_bench.pretraining import Objective, ObjectiveOutput


class Supervised(Objective):
    def __init__(
        self,
        encoder: nn.Module,
        *,
        leads: Sequence[str],
        modality_encoders: Mapping[str, nn.Module] | None = None,
        n_labels: int | None = None,
        name: str = "supervised",
    ):
        super().__init__(encoder, leads=leads, name=name)
        if not n_labels:
            raise ValueError(f"objective {name!r} needs labels in the pretraining data (n_labels is {n_labels!r})")
        self.head = nn.Linear(encoder.embed_dim, n_labels)

    def forward(self, batch: Mapping) -> ObjectiveOutput:
        self.require(batch, "ecg", "labels")
        logits = self.head(self.embed(batch["ecg"]))
        return ObjectiveOutput(F.binary_cross_entropy_with_logits(logits, batch["labels"].float()), {})
