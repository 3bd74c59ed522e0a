"""Every registered objective meets the contract, drives its loss down on a tiny batch, and says what it lacks."""

from __future__ import annotations

import pytest
import torch
from conftest import BUILTINS_ONLY

from stence_bench.pretraining import MissingInput
from stence_bench.registry import Registry
from stence_bench.testing import assert_objective_contract, build_objective

REGISTRY = Registry.load(environ=BUILTINS_ONLY)
PRETRAINING = [spec.name for spec in REGISTRY.objectives if spec.pretrains]


def test_every_modality_an_objective_names_has_a_registered_encoder():
    for spec in REGISTRY.objectives:
        for modality, name in spec.modality_encoders.items():
            assert REGISTRY.modalities.get(name).modality == modality


@pytest.mark.parametrize("name", PRETRAINING)
def test_every_builtin_objective_meets_the_contract(name):
    assert_objective_contract(name, registry=REGISTRY)


#: Steps where the views make the task harder than 40 steps show (Dade et al.'s limb-vs-precordial positives)
STEPS = {"patient_contrastive": 80}


@pytest.mark.parametrize("name", PRETRAINING)
def test_every_objective_overfits_a_tiny_batch(name):
    objective, batch = build_objective(name, registry=REGISTRY, batch_size=8)
    optimiser = torch.optim.Adam(objective.parameters(), lr=3e-3)
    torch.manual_seed(0)
    losses = []
    for _ in range(STEPS.get(name, 40)):
        loss = objective(batch).loss
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(float(loss.detach()))
    first, last = sum(losses[:3]) / 3, sum(losses[-5:]) / 5
    assert last < 0.7 * first, f"{name}: loss went from {first:.4f} to {last:.4f}"


def test_an_objective_names_the_input_its_batch_lacks():
    objective, batch = build_objective("clip", registry=REGISTRY)
    del batch["angiography"]
    with pytest.raises(MissingInput, match=r"objective 'clip' needs batch\['angiography'\]"):
        objective(batch)
    objective, batch = build_objective("clef", registry=REGISTRY)
    batch["risk"] = None
    with pytest.raises(MissingInput, match="risk"):
        objective(batch)


def test_stence_adds_the_auxiliary_stenosis_loss_to_clip_and_clip_takes_none():
    plain, batch = build_objective("clip", registry=REGISTRY)
    torch.manual_seed(0)
    base = plain(batch)
    stence, batch = build_objective("stence", registry=REGISTRY, proj_dim=128)
    torch.manual_seed(0)
    out = stence(batch)
    assert "aux_stenosis" in out.logs and out.logs["aux_stenosis"] > 0
    assert out.loss.item() == pytest.approx(out.logs["contrastive"] + out.logs["aux_stenosis"], rel=1e-5)
    assert out.logs["contrastive"] == pytest.approx(base.logs["contrastive"], rel=1e-5)
    assert not plain.temperature.log_value.requires_grad  # StenCE's temperature is fixed
    del batch["targets"]
    with pytest.raises(MissingInput, match=r"objective 'stence' needs batch\['targets'\]"):
        stence(batch)
    with pytest.raises(ValueError, match="level_weights has 1 weight"):
        build_objective("stence", registry=REGISTRY, level_weights=[1.0])
    with pytest.raises(TypeError, match="aux_stenosis_weight"):
        build_objective("clip", registry=REGISTRY, aux_stenosis_weight=1.0)


def test_patient_positives_change_the_loss_and_segments_are_required_when_asked():
    with_patients, batch = build_objective("patient_contrastive", registry=REGISTRY)
    torch.manual_seed(0)
    a = with_patients(batch).loss
    without, batch2 = build_objective("patient_contrastive", registry=REGISTRY, patient_positives=False)
    torch.manual_seed(0)
    b = without(batch2).loss
    assert not torch.isclose(a, b)
    assert with_patients.segments == 2  # the registered default uses segment positives
    del batch["ecg_segment"]
    with pytest.raises(MissingInput, match="ecg_segment"):
        with_patients(batch)


def test_siglip_soft_targets_need_labels_and_change_the_loss():
    soft, batch = build_objective("siglip", registry=REGISTRY)
    hard, _ = build_objective("siglip", registry=REGISTRY, soft_target_weight=0.0)
    assert not torch.isclose(soft(batch).loss, hard(batch).loss)
    batch["labels"] = None
    with pytest.raises(MissingInput, match="labels"):
        soft(batch)
    assert torch.isfinite(hard(batch).loss)


def test_objectives_run_on_lead_one_alone():
    """Single-lead pretraining (CLEF's use): no VCG, lead groups refused with a clear message."""
    spec = REGISTRY.encoders.get("resnet1d_wang")
    encoder = spec.build("tiny", n_leads=1)
    objective = REGISTRY.objectives.get("patient_contrastive").build(encoder, leads=("I",), patient_positives=False,
                                                                    segment_positives=False)
    assert objective.augment.vcg is None and objective.groups is None  # lead groups "auto": off on one lead
    x = torch.randn(4, 1, spec.n_samples)
    assert torch.isfinite(objective({"ecg": x}).loss)
    with pytest.raises(ValueError, match="lead_group_positives needs limb and precordial leads"):
        REGISTRY.objectives.get("patient_contrastive").build(encoder, leads=("I",), lead_group_positives=True)


def test_the_control_has_no_factory_to_build():
    from stence_bench.errors import PluginError

    with pytest.raises(PluginError, match="does not pretrain"):
        REGISTRY.objectives.get("none").build(torch.nn.Linear(1, 1), leads=("I",))
