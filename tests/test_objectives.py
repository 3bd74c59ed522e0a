"""Every registered objective meets the contract, drives its loss down on a tiny batch, and says what it lacks."""

from __future__ import annotations

import pytest
import torch
from conftest import BUILTINS_ONLY

from stence_bench.pretraining import MissingInput
from stence_bench.registry import Registry
from stence_bench.testing import assert_objective_contract, build_objective, make_ecg_batch

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


class _FrozenText(torch.nn.Module):
    """A stand-in for a pretrained sentence model (text_sentence): fixed report embeddings, a trainable projection."""

    pretrained = True
    embed_dim = 4
    model_path = "/models/stand-in"

    def __init__(self, table: torch.Tensor):
        super().__init__()
        self.table, self.proj = table, torch.nn.Linear(3, 4)

    def similarity_embeddings(self, ids: torch.Tensor) -> torch.Tensor:
        return self.table[ids]

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.proj(self.table[ids])


def test_siglip_soft_targets_come_from_the_report_similarity_of_a_pretrained_text_encoder():
    from stence_bench_plugins.objectives.losses import semantic_targets, siglip_loss

    spec = REGISTRY.encoders.get("resnet1d_wang")
    table = torch.tensor([[1.0, 0.0, 0.0], [0.8, 0.6, 0.0], [0.0, 0.0, 1.0], [-1.0, 0.0, 0.0]])
    siglip = REGISTRY.objectives.get("siglip")
    torch.manual_seed(0)
    built = siglip.build(spec.build("tiny"), leads=spec.leads, modality_encoders={"text": _FrozenText(table)}, n_labels=3)
    assert built.soft_targets == "text"  # auto: the paired encoder is a pretrained model
    assert built.run_info() == {"soft_targets": "text", "similarity_encoder": "/models/stand-in"}
    batch = {"ecg": make_ecg_batch(spec, 4, seed=0), "text": torch.tensor([0, 1, 2, 3]), "labels": None}
    out = built(batch)  # no statement labels needed
    ecg = built.ecg_proj(built.embed(batch["ecg"]))
    other = built.paired_proj(built.paired_encoder(batch["text"]))
    expected = siglip_loss(ecg, other, scale=built.log_scale.exp(), bias=built.bias,
                           targets=semantic_targets(table, weight=0.5))
    assert torch.isclose(out.loss, expected, rtol=1e-5)
    # the same encoder with Jaccard targets gives another loss; a learned text encoder defaults to Jaccard
    jaccard = siglip.build(spec.build("tiny"), leads=spec.leads, modality_encoders={"text": _FrozenText(table)},
                           n_labels=3, soft_targets="jaccard")
    assert jaccard.run_info() == {"soft_targets": "jaccard"}
    learned, _ = build_objective("siglip", registry=REGISTRY)
    assert learned.soft_targets == "jaccard"
    hard, _ = build_objective("siglip", registry=REGISTRY, soft_target_weight=0.0)
    assert hard.run_info() == {"soft_targets": "none"}
    with pytest.raises(ValueError, match="soft_targets must be one of auto, jaccard, text"):
        build_objective("siglip", registry=REGISTRY, soft_targets="semantic")


def test_clef_variants_published_and_cross_view():
    published, batch = build_objective("clef", registry=REGISTRY)
    assert (published.variant, published.temperature, published.single_lead_views) == ("published", 0.07, True)
    ours, _ = build_objective("clef", registry=REGISTRY, variant="cross_view")
    assert (ours.temperature, ours.single_lead_views, ours.align_weight) == (0.1, False, 0.5)
    torch.manual_seed(0)
    a = published(batch).loss
    torch.manual_seed(0)
    b = ours(batch).loss
    assert torch.isfinite(a) and torch.isfinite(b) and not torch.isclose(a, b)
    with pytest.raises(ValueError, match="align_weight belongs to variant = 'cross_view'"):
        build_objective("clef", registry=REGISTRY, align_weight=1.0)
    # single-lead views: one lead per view, the second the same lead with probability same_lead_p
    torch.manual_seed(0)
    first, second = published._lead_masks(4000, torch.device("cpu"))
    assert (first.sum(dim=1) == 1).all() and (second.sum(dim=1) == 1).all()
    same = (first == second).all(dim=1).float().mean().item()
    assert abs(same - (0.8 + 0.2 / 12)) < 0.02


def test_metric_learning_variants_and_their_miners():
    published, batch = build_objective("metric_learning", registry=REGISTRY)
    triplets, _ = published.triplets(batch)
    assert len(triplets[0]) == len(batch["ecg"])  # one triplet per ECG
    ours, _ = build_objective("metric_learning", registry=REGISTRY, variant="batch_all")
    assert len(ours.triplets(batch)[0][0]) == len(batch["ecg"]) * (len(batch["ecg"]) - 2)
    supervised, batch = build_objective("metric_learning_supervised", registry=REGISTRY)
    triplets, _ = supervised.triplets(batch)
    values = batch["targets"][:, 0]
    for a, p, n in zip(*(t.tolist() for t in triplets)):  # closest and farthest mPCWP
        diff = (values - values[a]).abs()
        diff[a] = float("inf")
        assert diff[p] == diff.min()
        diff[a] = -1
        assert diff[n] == diff.max()
    margin, batch = build_objective("metric_learning_supervised", registry=REGISTRY, loss="margin", class_threshold=18.0)
    assert margin.beta.shape == (2,) and torch.isfinite(margin(batch).loss)
    with pytest.raises(ValueError, match="miner must be one of distance, continuous with variant 'published'"):
        build_objective("metric_learning", registry=REGISTRY, miner="label")
