"""Contrastive objectives: ``clip`` (StenCE), ``siglip`` (FG-CLEP), ``patient_contrastive`` (Dade et al.),
``clef`` (CLEF). The formulas are in :mod:`.losses` and ``docs/objectives.md``.

Each objective embeds, projects and gathers the whole global batch (:func:`stence_bench.pretraining.gather`),
so the negatives do not depend on the number of processes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

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
    clip_loss,
    impute_risk,
    nt_xent_loss,
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
    """Symmetric InfoNCE between the ECG and a paired modality, with an optional auxiliary stenosis loss on
    the angiography branch (StenCE)."""

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
        aux_stenosis_weight: float = 0.0,
        name: str = "clip",
    ):
        super().__init__(encoder, leads=leads, modality_encoders=modality_encoders, paired=paired,
                         proj_dim=proj_dim, name=name)
        self.temperature = _Temperature(temperature, learn_temperature)
        self.weights = (weight_ecg_to_paired, weight_paired_to_ecg)
        self.aux_weight = aux_stenosis_weight
        if aux_stenosis_weight > 0:
            if paired != "angiography":
                raise ValueError(f"objective {name!r}: aux_stenosis_weight needs paired = 'angiography'")
            if not n_labels:
                raise ValueError(f"objective {name!r}: aux_stenosis_weight needs stenosis labels in the pretraining data")
            self.aux_head = nn.Linear(self.paired_encoder.embed_dim, n_labels)

    def forward(self, batch: Mapping) -> ObjectiveOutput:
        ecg, other, paired_embedding = self.pair(batch)
        temperature = self.temperature()
        loss = clip_loss(ecg, other, temperature=temperature, weight_ab=self.weights[0], weight_ba=self.weights[1])
        logs = {"contrastive": float(loss.detach()), "temperature": float(temperature.detach())}
        if self.aux_weight > 0:
            self.require(batch, "labels")
            aux = F.binary_cross_entropy_with_logits(self.aux_head(paired_embedding), batch["labels"].float())
            logs["aux_stenosis"] = float(aux.detach())
            loss = loss + self.aux_weight * aux
        return ObjectiveOutput(loss, logs)


class SigLIP(_CrossModal):
    """Sigmoid pairwise loss between the ECG and a paired modality, learnable scale and bias; with
    ``soft_target_weight > 0``, off-diagonal targets are that weight times the Jaccard similarity of the two
    samples' label sets, so reports sharing diagnoses are not pushed apart as hard negatives (FG-CLEP)."""

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
        self.soft_target_weight = soft_target_weight

    def forward(self, batch: Mapping) -> ObjectiveOutput:
        ecg, other, _ = self.pair(batch)
        targets = None
        if self.soft_target_weight > 0:
            self.require(batch, "labels")
            targets = soft_targets(gather_plain(batch["labels"].float()), weight=self.soft_target_weight)
        scale = self.log_scale.exp()
        loss = siglip_loss(ecg, other, scale=scale, bias=self.bias, targets=targets)
        return ObjectiveOutput(loss, {"scale": float(scale.detach()), "bias": float(self.bias.detach())})


class PatientContrastive(Objective):
    """NT-Xent over two augmented views of every ECG. Positives: the other view of the same ECG (always),
    which is another segment of the record with ``segment_positives``, the other lead group (limb vs precordial)
    with ``lead_group_positives``, and every view of the patient's other ECGs with ``patient_positives``."""

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
        lead_group_positives: bool = False,
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
        if lead_group_positives:
            groups = [[lead for lead in group if lead in self.leads] for group in (LIMB_LEADS, PRECORDIAL_LEADS)]
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


class Clef(Objective):
    """Clinically-guided contrastive learning (CLEF): InfoNCE between two augmented views whose negatives are
    weighted by the squared difference of the patients' clinical risk scores, min-max normalised, floored and
    scaled by ``exp(-m_i m_j)`` for missing-metadata rates ``m``; plus a similarity-alignment term."""

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
        floor: float = 0.2,
        align_weight: float = 0.5,
        single_lead_views: bool = False,
        vcg: bool | str = False,
        blank_p: float = 0.0,
        noise_std: float = 0.05,
        name: str = "clef",
    ):
        super().__init__(encoder, leads=leads, name=name)
        self.proj = projection_head(encoder.embed_dim, proj_dim, proj_hidden)
        self.temperature = temperature
        self.floor = floor
        self.align_weight = align_weight
        self.single_lead_views = single_lead_views
        self.augment = Augmenter(self.leads, vcg=vcg, blank_p=blank_p, noise_std=noise_std)
        self.physical_units = self.augment.physical_units

    def _view(self, ecg: torch.Tensor, normalize: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
        view = self.augment(ecg, normalize)
        if self.single_lead_views and view.shape[1] > 1:
            chosen = torch.randint(view.shape[1], (len(view),))
            mask = F.one_hot(chosen, view.shape[1]).to(device=view.device, dtype=view.dtype)
            view = view * mask[:, :, None]
        return view

    def forward(self, batch: Mapping) -> ObjectiveOutput:
        self.require(batch, "ecg", "risk", "metadata")
        size = len(batch["ecg"])
        normalize = batch.get("normalize") if self.physical_units else None
        z = self.proj(self.embed(torch.cat([self._view(batch["ecg"], normalize), self._view(batch["ecg"], normalize)])))
        z1, z2 = gather(z[:size]), gather(z[size:])
        metadata = gather_plain(batch["metadata"].float())
        missing = (torch.isnan(metadata).float().mean(dim=1) if metadata.shape[1]
                   else torch.zeros(len(metadata), device=metadata.device))
        risk, missing = impute_risk(gather_plain(batch["risk"].float()).to(z.device), missing.to(z.device))
        loss = clef_loss(z1, z2, risk, missing, temperature=self.temperature, floor=self.floor,
                         align_weight=self.align_weight)
        return ObjectiveOutput(loss, {"missing_rate": float(missing.mean())})
