"""The pretraining contract between the runner and objective plugins, and the helpers objectives share.

An :class:`~stence_bench.specs.ObjectiveSpec`'s factory is called as::

    factory(encoder=..., leads=(...), modality_encoders={...}, n_labels=..., **options) -> Objective
    factory(..., target_columns=((...), ...), **options)   # objectives with the ``targets`` modality only

- ``encoder``: the ECG encoder being pretrained (``torch.nn.Module`` with ``embed_dim``); the objective owns it
  as ``self.encoder`` so its parameters train with the objective's own (projection heads, temperatures).
- ``leads``: the lead names of the ECG input, in order (an augmentation that mixes leads needs them).
- ``modality_encoders``: one module per paired modality the objective needs (angiography, text, metadata),
  each with ``embed_dim``, ``collate(items)`` and ``forward(collated) -> [batch, embed_dim]``.
- ``n_labels``: the width of ``batch["labels"]`` when the pretraining data has labels, else ``None``.
- ``target_columns``: for an objective that declares the ``targets`` modality, the label columns of each of its
  target tasks (``ObjectiveSpec.targets``, or the suite's option ``targets``), in the order of ``batch["targets"]``.

``Objective.forward(batch)`` returns an :class:`ObjectiveOutput` (``loss`` plus scalar ``logs``). An objective may
define ``run_info() -> dict`` (JSON values): what it resolved at build time (which soft targets, which variant),
recorded in the pretraining result. A batch is a ``dict``:

======================  ==========================================================================================
``ecg``                 float32 ``[B, n_leads, n_samples]``, already in the encoder's input contract; in
                        millivolts, not yet normalised, when the objective sets ``physical_units = True``
``ecg_segment``         the same records, another window (present when the objective sets ``segments = 2``)
``normalize``           with ``physical_units = True`` only: a callable that applies the encoder's declared
                        normalisation to ``ecg`` or ``ecg_segment`` (or to augmented copies of them, same shape)
``patient_id``          int64 ``[B]``: equal ids are the same patient
``angiography``         what the angiography modality encoder's ``collate`` made (frames or stored embeddings)
``text``                what the text modality encoder's ``collate`` made (token ids and mask)
``metadata``            float32 ``[B, n_fields]``, NaN where a value is missing
``risk``                float32 ``[B]``: a clinical risk score (SCORE2-style) in [0, 1], NaN where unknown
``labels``              float32 ``[B, n_labels]`` (multi-hot) where the data has labels
``targets``             float32 ``[B, n_targets]``: the target tasks' labels of each record (0/1 for a class, the
                        value for a regression task), NaN where the record has none; a record with no target at
                        all is not pretrained on
======================  ==========================================================================================

Contrastive objectives compare against the whole *global* batch: under ``torch.distributed`` they gather
embeddings from every rank with gradients (:func:`gather`), so the negatives, and therefore the loss, do not
depend on how many processes share the batch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

Batch = Mapping[str, Any]


@dataclass
class ObjectiveOutput:
    """What an objective's ``forward`` returns: the loss to minimise and scalar values worth logging."""

    loss: torch.Tensor
    logs: dict[str, float] = field(default_factory=dict)


class MissingInput(ValueError):
    """A batch lacks what an objective needs; the message names the key and the objective."""


class Objective(nn.Module):
    """Base class of pretraining objectives: holds the encoder and checks the batch has what is needed."""

    #: Windows per record the loader must provide: 2 adds ``batch["ecg_segment"]``.
    segments: int = 1
    #: True: ``batch["ecg"]`` comes in millivolts, before the encoder's normalisation, with ``batch["normalize"]``
    #: to apply it. For augmentations that assume the body's lead geometry (VCG rotation, lead derivation), which
    #: hold only in physical units; the objective normalises after augmenting, before its encoder.
    physical_units: bool = False

    def __init__(self, encoder: nn.Module, *, leads: Sequence[str], name: str):
        super().__init__()
        self.encoder = encoder
        self.leads = tuple(leads)
        self.objective_name = name

    def require(self, batch: Batch, *keys: str) -> None:
        for key in keys:
            if batch.get(key) is None:
                raise MissingInput(f"objective {self.objective_name!r} needs batch[{key!r}], which this batch lacks")

    def embed(self, ecg: torch.Tensor) -> torch.Tensor:
        return self.encoder(ecg)


def projection_head(in_dim: int, out_dim: int, hidden: int | None = None) -> nn.Module:
    """The projection between an encoder's embedding and a loss's space: linear, or a 2-layer MLP."""
    if not hidden:
        return nn.Linear(in_dim, out_dim)
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out_dim))


def distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1


def _world() -> torch.distributed.ProcessGroup:
    """The default process group (set once :func:`distributed` is true)."""
    group = torch.distributed.group.WORLD
    assert group is not None, "torch.distributed is not initialised"
    return group


def gather(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor`` from every rank along dim 0, with gradients flowing back to each rank's part.

    Outside ``torch.distributed`` (or with one process) it is the tensor itself. Each rank then computes the
    loss of the whole global batch; DDP's gradient averaging turns that into exactly the single-process gradient.
    """
    if not distributed():
        return tensor
    # torch's autograd-aware all-gather: its backward hands each rank the gradient of its own rows, summed over the
    # ranks. Its name has moved between torch releases; the oldest form is deprecated in recent ones.
    from torch.distributed import _functional_collectives as fc

    if hasattr(fc, "all_gather_single_autograd"):
        return fc.all_gather_single_autograd(tensor.contiguous(), gather_dim=0, group=_world())
    if hasattr(fc, "all_gather_tensor_autograd"):
        return fc.all_gather_tensor_autograd(tensor.contiguous(), gather_dim=0, group=_world())
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(tensor.contiguous()), dim=0)


def gather_plain(tensor: torch.Tensor) -> torch.Tensor:
    """:func:`gather` for tensors that carry no gradient (ids, labels, risk scores)."""
    if not distributed():
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(torch.distributed.get_world_size())]
    torch.distributed.all_gather(parts, tensor.contiguous())
    return torch.cat(parts, dim=0)
