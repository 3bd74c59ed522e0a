"""Contrastive objectives: ``clip`` and ``stence`` (StenCE), ``siglip`` (FG-CLEP), ``patient_contrastive`` (Dade et
al.), ``clef`` (CLEF). The formulas are in :mod:`.losses` and ``docs/objectives.md``.

Each objective embeds, projects and gathers the whole global batch (:func:`stence_bench.pretraining.gather`),
so the negatives do not depend on the number of processes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from stence_bench import LIMB_LEADS, PRECORDIAL_LEADS
from stence_bench.pretraining import (
    Objective,
    ObjectiveOutput,
    gather,
    gather_plain,
    projection_head,
)

from . import augment
from .losses import (
    clef_loss,
    clef_published_loss,
    clip_loss,
    grouped_bce_loss,
    impute_risk,
    nt_xent_loss,
    semantic_targets,
    siglip_loss,
    soft_targets,
)

PAIRED = ("angiography", "text")


class _CrossModal(Objective):
    """An ECG paired with another modality: both embedded, projected to ``proj_dim`` and gathered."""

    def __init__(self, encoder: nn.Module, *, leads: Sequence[str], modality_encoders: Mapping[str, nn.Module],
                 paired: str, proj_dim: int, name: str):
        super().__init__(encoder, leads=leads, name=name)
        if paired not in PAIRED:
            raise ValueError(f"objective {name!r}: paired must be one of {', '.join(PAIRED)}, not {paired!r}")
        if paired not in modality_encoders:
            raise ValueError(f"objective {name!r}: no {paired} encoder was given (modality_encoders has {sorted(modality_encoders)})")
        self.paired = paired
        self.paired_encoder = modality_encoders[paired]
        self.ecg_proj = projection_head(encoder.embed_dim, proj_dim)
        self.paired_proj = projection_head(self.paired_encoder.embed_dim, proj_dim)

    def pair(self, batch: Mapping) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The gathered projections of the ECGs and of their paired inputs, and the local paired embeddings."""
        self.require(batch, "ecg", self.paired)
        paired_embedding = self.paired_encoder(batch[self.paired])
        ecg = gather(self.ecg_proj(self.embed(batch["ecg"])))
        return ecg, gather(self.paired_proj(paired_embedding)), paired_embedding


class _Temperature(nn.Module):
    """A temperature kept as its logarithm; learnable or fixed; clamped to at least ``minimum``."""

    def __init__(self, value: float, learn: bool, minimum: float = 0.01):
        super().__init__()
        if value <= 0:
            raise ValueError(f"temperature must be > 0, not {value}")
        log_value = torch.tensor(math.log(value))
        if learn:
            self.log_value = nn.Parameter(log_value)
        else:
            self.register_buffer("log_value", log_value)
        self.minimum = minimum

    def forward(self) -> torch.Tensor:
        return self.log_value.exp().clamp(min=self.minimum)


class Augmenter(nn.Module):
    """The view augmentations shared by the self-supervised objectives (no parameters). The VCG transform assumes
    the body's lead geometry, valid in millivolts only: with it, the objective asks for physical units
    (:attr:`physical_units`) and the augmenter normalises after it, then blanks leads and adds noise."""

    def __init__(
        self,
        leads: Sequence[str],
        *,
        vcg: bool | str = "auto",
        max_rotation_deg: float = 15.0,
        max_scale: float = 0.1,
        blank_p: float = 0.25,
        noise_std: float = 0.05,
    ):
        super().__init__()
        use_vcg = augment.VCGAugment.applicable(leads) if vcg == "auto" else bool(vcg)
        self.vcg = augment.VCGAugment(leads, max_rotation_deg=max_rotation_deg, max_scale=max_scale) if use_vcg else None
        self.blank_p = blank_p
        self.noise_std = noise_std

    @property
    def physical_units(self) -> bool:
        return self.vcg is not None

    def forward(self, x: torch.Tensor, normalize: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
        """``x`` in the encoder's contract; in millivolts, with the contract's ``normalize``, when
        :attr:`physical_units`."""
        if self.vcg is not None:
            if normalize is None:
                raise ValueError("the VCG augmentation needs millivolts and the encoder's normalisation to finish them")
            x = normalize(self.vcg(x))
        x = augment.blank_leads(x, self.blank_p)
        return augment.add_noise(x, self.noise_std)


class Clip(_CrossModal):
    """Symmetric InfoNCE between the ECG and a paired modality (StenCE's CLIP loss, with its fixed temperature 0.2 as
    registered for ``clip``)."""

    def __init__(
        self,
        encoder: nn.Module,
        *,
        leads: Sequence[str],
        modality_encoders: Mapping[str, nn.Module],
        n_labels: int | None = None,
        paired: str = "angiography",
        proj_dim: int = 128,
        temperature: float = 0.2,
        learn_temperature: bool = True,
        weight_ecg_to_paired: float = 0.5,
        weight_paired_to_ecg: float = 0.5,
        name: str = "clip",
    ):
        super().__init__(encoder, leads=leads, modality_encoders=modality_encoders, paired=paired,
                         proj_dim=proj_dim, name=name)
        self.temperature = _Temperature(temperature, learn_temperature)
        self.weights = (weight_ecg_to_paired, weight_paired_to_ecg)

    def contrastive(self, batch: Mapping) -> tuple[torch.Tensor, dict[str, float], torch.Tensor]:
        ecg, other, paired_embedding = self.pair(batch)
        temperature = self.temperature()
        loss = clip_loss(ecg, other, temperature=temperature, weight_ab=self.weights[0], weight_ba=self.weights[1])
        return loss, {"contrastive": float(loss.detach()), "temperature": float(temperature.detach())}, paired_embedding

    def forward(self, batch: Mapping) -> ObjectiveOutput:
        loss, logs, _ = self.contrastive(batch)
        return ObjectiveOutput(loss, logs)


class StenCE(Clip):
    """StenCE (NikolaCenic/ecg-stenosis-cls): CLIP between ECG and angiography plus the auxiliary stenosis loss on
    the angiography branch, ``aux_stenosis_weight · Σ_level w_level · BCE``: a linear head on the angiography
    embedding predicts the target tasks' labels (``batch["targets"]``: the patient's worst stenosis >= 70 % and the
    per-artery labels), each target task one level with its weight in ``level_weights``; unknown entries (NaN)
    are left out."""

    def __init__(
        self,
        encoder: nn.Module,
        *,
        leads: Sequence[str],
        modality_encoders: Mapping[str, nn.Module],
        n_labels: int | None = None,
        target_columns: Sequence[Sequence[str]] = (),
        paired: str = "angiography",
        proj_dim: int = 256,
        temperature: float = 0.2,
        learn_temperature: bool = False,
        weight_ecg_to_paired: float = 0.5,
        weight_paired_to_ecg: float = 0.5,
        aux_stenosis_weight: float = 1.0,
        level_weights: Sequence[float] = (0.4, 0.4),
        name: str = "stence",
    ):
        super().__init__(encoder, leads=leads, modality_encoders=modality_encoders, n_labels=n_labels, paired=paired,
                         proj_dim=proj_dim, temperature=temperature, learn_temperature=learn_temperature,
                         weight_ecg_to_paired=weight_ecg_to_paired, weight_paired_to_ecg=weight_paired_to_ecg,
                         name=name)
        if self.paired != "angiography":
            raise ValueError(f"objective {name!r}: the auxiliary stenosis loss needs paired = 'angiography'")
        if not target_columns or not all(target_columns):
            raise ValueError(f"objective {name!r}: the auxiliary stenosis loss needs target tasks with label columns "
                             f"(got {list(target_columns)})")
        if len(level_weights) != len(target_columns):
            raise ValueError(f"objective {name!r}: level_weights has {len(level_weights)} weight(s) for "
                             f"{len(target_columns)} target task(s); give one per target task")
        self.aux_weight = float(aux_stenosis_weight)
        self.level_weights = [float(w) for w in level_weights]
        bounds = np.cumsum([0, *(len(c) for c in target_columns)])
        self.levels = [slice(int(lo), int(hi)) for lo, hi in zip(bounds[:-1], bounds[1:])]
        self.aux_head = nn.Linear(self.paired_encoder.embed_dim, int(bounds[-1]))

    def forward(self, batch: Mapping) -> ObjectiveOutput:
        self.require(batch, "targets")
        loss, logs, paired_embedding = self.contrastive(batch)
        aux = grouped_bce_loss(self.aux_head(paired_embedding), batch["targets"].float(), self.levels,
                               self.level_weights)
        logs["aux_stenosis"] = float(aux.detach())
        return ObjectiveOutput(loss + self.aux_weight * aux, logs)


#: Where SigLIP's soft targets come from: the Jaccard overlap of the report statements, or the semantic similarity of
#: the report texts under the paired text encoder; ``auto`` takes the text when that encoder is a pretrained model.
SOFT_TARGETS = ("auto", "jaccard", "text")


class SigLIP(_CrossModal):
    """Sigmoid pairwise loss between the ECG and a paired modality, learnable scale and bias; with
    ``soft_target_weight > 0``, off-diagonal targets are that weight times the similarity of the two samples'
    reports (FG-CLEP): the cosine similarity of their text embeddings (``soft_targets = "text"``: the paired text
    encoder's own output, a frozen sentence model's for ``text_sentence``) or the Jaccard overlap of their statement
    sets (``"jaccard"``); ``"auto"`` takes the text where the paired encoder is a pretrained model, else Jaccard."""

    def __init__(
        self,
        encoder: nn.Module,
        *,
        leads: Sequence[str],
        modality_encoders: Mapping[str, nn.Module],
        n_labels: int | None = None,
        paired: str = "text",
        proj_dim: int = 128,
        scale: float = 10.0,
        bias: float = -10.0,
        learn_scale: bool = True,
        soft_target_weight: float = 0.0,
        soft_targets: str = "auto",
        name: str = "siglip",
    ):
        super().__init__(encoder, leads=leads, modality_encoders=modality_encoders, paired=paired,
                         proj_dim=proj_dim, name=name)
        log_scale, bias_t = torch.tensor(math.log(scale)), torch.tensor(float(bias))
        if learn_scale:
            self.log_scale, self.bias = nn.Parameter(log_scale), nn.Parameter(bias_t)
        else:
            self.register_buffer("log_scale", log_scale)
            self.register_buffer("bias", bias_t)
        if not 0 <= soft_target_weight <= 1:
            raise ValueError(f"objective {name!r}: soft_target_weight must lie in [0, 1], not {soft_target_weight}")
        if soft_targets not in SOFT_TARGETS:
            raise ValueError(f"objective {name!r}: soft_targets must be one of {', '.join(SOFT_TARGETS)}, not "
                             f"{soft_targets!r}")
        if soft_targets == "text" and paired != "text":
            raise ValueError(f"objective {name!r}: soft_targets = 'text' needs paired = 'text'")
        self.soft_target_weight = soft_target_weight
        if soft_targets == "auto":
            soft_targets = "text" if paired == "text" and getattr(self.paired_encoder, "pretrained", False) else "jaccard"
        self.soft_targets = soft_targets if soft_target_weight > 0 else "none"

    def run_info(self) -> dict[str, Any]:
        """Which soft targets this objective trains with (and from which text encoder)."""
        info: dict[str, Any] = {"soft_targets": self.soft_targets}
        if self.soft_targets == "text":
            info["similarity_encoder"] = getattr(self.paired_encoder, "model_path", None) or type(self.paired_encoder).__name__
        return info

    def forward(self, batch: Mapping) -> ObjectiveOutput:
        ecg, other, paired_embedding = self.pair(batch)
        targets = None
        if self.soft_targets == "jaccard":
            self.require(batch, "labels")
            targets = soft_targets(gather_plain(batch["labels"].float()), weight=self.soft_target_weight)
        elif self.soft_targets == "text":
            similarity = getattr(self.paired_encoder, "similarity_embeddings", None)
            texts = similarity(batch[self.paired]) if similarity is not None else paired_embedding
            targets = semantic_targets(gather_plain(texts.detach().float().contiguous()), weight=self.soft_target_weight)
        scale = self.log_scale.exp()
        loss = siglip_loss(ecg, other, scale=scale, bias=self.bias, targets=targets)
        return ObjectiveOutput(loss, {"scale": float(scale.detach()), "bias": float(self.bias.detach())})


class PatientContrastive(Objective):
    """NT-Xent over two augmented views of every ECG. Positives: the other view of the same ECG (always),
    which is another segment of the record with ``segment_positives``, the other lead group (limb vs precordial)
    with ``lead_group_positives`` (``auto``: wherever the input has both groups), and every view of the patient's
    other ECGs with ``patient_positives``. Registered as ``patient_contrastive`` with all three on (Dade et al.)."""

    def __init__(
        self,
        encoder: nn.Module,
        *,
        leads: Sequence[str],
        modality_encoders: Mapping[str, nn.Module] | None = None,
        n_labels: int | None = None,
        proj_dim: int = 128,
        proj_hidden: int = 256,
        temperature: float = 0.1,
        patient_positives: bool = True,
        segment_positives: bool = False,
        lead_group_positives: bool | str = False,
        vcg: bool | str = "auto",
        max_rotation_deg: float = 15.0,
        max_scale: float = 0.1,
        blank_p: float = 0.25,
        noise_std: float = 0.05,
        name: str = "patient_contrastive",
    ):
        super().__init__(encoder, leads=leads, name=name)
        self.proj = projection_head(encoder.embed_dim, proj_dim, proj_hidden)
        self.temperature = temperature
        self.patient_positives = patient_positives
        self.segment_positives = segment_positives
        self.segments = 2 if segment_positives else 1
        groups = [[lead for lead in group if lead in self.leads] for group in (LIMB_LEADS, PRECORDIAL_LEADS)]
        if lead_group_positives == "auto":  # the paper's inter-lead positives wherever the input has both groups
            lead_group_positives = all(groups)
        elif not isinstance(lead_group_positives, bool):
            raise ValueError(f"objective {name!r}: lead_group_positives must be true, false or 'auto', not "
                             f"{lead_group_positives!r}")
        if lead_group_positives:
            if not all(groups):
                raise ValueError(f"objective {name!r}: lead_group_positives needs limb and precordial leads, the input has {self.leads}")
            self.groups: tuple[list[str], list[str]] | None = (groups[0], groups[1])
        else:
            self.groups = None
        self.augment = Augmenter(self.leads, vcg=vcg, max_rotation_deg=max_rotation_deg, max_scale=max_scale,
                                 blank_p=blank_p, noise_std=noise_std)
        self.physical_units = self.augment.physical_units

    def views(self, batch: Mapping) -> tuple[torch.Tensor, torch.Tensor]:
        ecg = batch["ecg"]
        second = batch["ecg_segment"] if self.segment_positives else ecg
        normalize = batch.get("normalize") if self.physical_units else None
        first, second = self.augment(ecg, normalize), self.augment(second, normalize)
        if self.groups is not None:
            first = augment.keep_group(first, self.leads, self.groups[0])
            second = augment.keep_group(second, self.leads, self.groups[1])
        return first, second

    def forward(self, batch: Mapping) -> ObjectiveOutput:
        self.require(batch, "ecg", *(["ecg_segment"] if self.segment_positives else []),
                     *(["patient_id"] if self.patient_positives else []))
        first, second = self.views(batch)
        size = len(first)
        z = self.proj(self.embed(torch.cat([first, second])))
        z = torch.cat([gather(z[:size]), gather(z[size:])])
        if self.patient_positives:
            keys = gather_plain(batch["patient_id"].long())
        else:
            keys = torch.arange(len(z) // 2, device=z.device)
        loss = nt_xent_loss(z, torch.cat([keys, keys]), temperature=self.temperature)
        return ObjectiveOutput(loss, {})


#: ``published``: CLEF's loss as its authors released it; ``cross_view``: stence-bench's own risk-weighted InfoNCE.
CLEF_VARIANTS = ("published", "cross_view")


class Clef(Objective):
    """Clinically-guided contrastive learning (CLEF, Shu et al. 2025): two augmented views of every ECG, negatives
    weighted by the difference of the patients' clinical risk scores (SCORE2).

    ``variant = "published"`` (the registered default): the released loss (Nokia-Bell-Labs/ecg-foundation-model)
    ``(L_nce + L_align) / 2`` over the 2N x 2N SimCLR matrix (:func:`~.losses.clef_published_loss`), temperature
    0.07, single-lead views (a random lead; the second view the same lead with probability ``same_lead_p``), a missing
    risk counted as 0, the ``exp(-m_i m_j)`` missing-metadata factor only with ``missing_mask`` (off, as released).
    ``variant = "cross_view"``: stence-bench's variant (:func:`~.losses.clef_loss`): B x B cross-view InfoNCE with
    weights ``max(Δ̃, floor) · exp(-m_i m_j)``, a missing risk set to the batch median with ``m = 1``, plus
    ``align_weight`` x the alignment of ``(1 - s)/2`` with ``Δ̃``, temperature 0.1, all leads in both views.
    docs/objectives.md lists every difference."""

    def __init__(
        self,
        encoder: nn.Module,
        *,
        leads: Sequence[str],
        modality_encoders: Mapping[str, nn.Module] | None = None,
        n_labels: int | None = None,
        variant: str = "published",
        proj_dim: int = 128,
        proj_hidden: int = 256,
        temperature: float | None = None,
        floor: float = 0.2,
        align_weight: float | None = None,
        missing_mask: bool = False,
        single_lead_views: bool | None = None,
        same_lead_p: float = 0.8,
        vcg: bool | str = False,
        blank_p: float = 0.0,
        noise_std: float = 0.05,
        name: str = "clef",
    ):
        super().__init__(encoder, leads=leads, name=name)
        if variant not in CLEF_VARIANTS:
            raise ValueError(f"objective {name!r}: variant must be one of {', '.join(CLEF_VARIANTS)}, not {variant!r}")
        published = variant == "published"
        if published and align_weight is not None:
            raise ValueError(f"objective {name!r}: the published loss averages its two terms ((nce + align) / 2); "
                             "align_weight belongs to variant = 'cross_view'")
        if not published and missing_mask:
            raise ValueError(f"objective {name!r}: variant 'cross_view' always applies exp(-m_i m_j); missing_mask "
                             "belongs to variant = 'published'")
        if not 0 <= same_lead_p <= 1:
            raise ValueError(f"objective {name!r}: same_lead_p must lie in [0, 1], not {same_lead_p}")
        self.variant = variant
        self.proj = projection_head(encoder.embed_dim, proj_dim, proj_hidden)
        self.temperature = temperature if temperature is not None else (0.07 if published else 0.1)
        self.floor = floor
        self.align_weight = 0.5 if align_weight is None else align_weight
        self.missing_mask = missing_mask
        self.single_lead_views = published if single_lead_views is None else single_lead_views
        self.same_lead_p = same_lead_p
        self.augment = Augmenter(self.leads, vcg=vcg, blank_p=blank_p, noise_std=noise_std)
        self.physical_units = self.augment.physical_units

    def run_info(self) -> dict[str, Any]:
        return {"variant": self.variant, "temperature": self.temperature, "single_lead_views": self.single_lead_views}

    def _lead_masks(self, size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """One lead per view: a random lead for the first, for the second the same one with probability
        ``same_lead_p`` and else another random draw (which may be the same lead again), as CLEF's data loader."""
        n_leads = len(self.leads)
        first = torch.randint(n_leads, (size,))
        other = torch.randint(n_leads, (size,))
        second = torch.where(torch.rand(size) < self.same_lead_p, first, other)
        return (F.one_hot(first, n_leads).to(device)[:, :, None], F.one_hot(second, n_leads).to(device)[:, :, None])

    def forward(self, batch: Mapping) -> ObjectiveOutput:
        self.require(batch, "ecg", "risk", "metadata")
        ecg = batch["ecg"]
        size = len(ecg)
        normalize = batch.get("normalize") if self.physical_units else None
        first, second = self.augment(ecg, normalize), self.augment(ecg, normalize)
        if self.single_lead_views and first.shape[1] > 1:
            mask1, mask2 = self._lead_masks(size, first.device)
            first, second = first * mask1.to(first.dtype), second * mask2.to(second.dtype)
        z = self.proj(self.embed(torch.cat([first, second])))
        z1, z2 = gather(z[:size]), gather(z[size:])
        metadata = gather_plain(batch["metadata"].float())
        missing = (torch.isnan(metadata).float().mean(dim=1) if metadata.shape[1]
                   else torch.zeros(len(metadata), device=metadata.device)).to(z.device)
        risk = gather_plain(batch["risk"].float()).to(z.device)
        if self.variant == "published":
            loss = clef_published_loss(z1, z2, risk, missing if self.missing_mask else None,
                                       temperature=self.temperature, floor=self.floor)
        else:
            risk, missing = impute_risk(risk, missing)
            loss = clef_loss(z1, z2, risk, missing, temperature=self.temperature, floor=self.floor,
                             align_weight=self.align_weight)
        return ObjectiveOutput(loss, {"missing_rate": float(missing.mean())})
