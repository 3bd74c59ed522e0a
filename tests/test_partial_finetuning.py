"""Partial finetuning (protocol.finetune.train_blocks, layer_decay): the learning rate of each block by hand, frozen
blocks that do not move (weights nor batch-norm statistics), settings in the finetuning cells' keys only."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import BUILTINS_ONLY

from stence_bench.errors import StenceBenchError
from stence_bench.protocol.partial import encoder_blocks, finetuning_parameters, pin_eval
from stence_bench.registry import Registry
from stence_bench.suite import Finetuning, parse_suite, plan


@pytest.fixture(scope="module")
def registry():
    return Registry.load(environ=BUILTINS_ONLY)


def test_each_block_learns_at_its_decayed_rate_by_hand(registry):
    """The tiny transformer's blocks: the embeddings, layer 0, layer 1 with the final norm. lr 0.01, decay 0.5:
    0.01 * 0.5**3, 0.01 * 0.5**2, 0.01 * 0.5, and the head at 0.01."""
    encoder = registry.encoders.get("ecg_transformer").build("tiny")
    head = torch.nn.Linear(encoder.embed_dim, 2)
    blocks = encoder_blocks(encoder, "ecg_transformer")
    assert len(blocks) == 3
    assert {id(p) for p in blocks[0]} == {id(encoder.patch_embed.weight), id(encoder.patch_embed.bias),
                                          id(encoder.lead_embed), id(encoder.pos_embed), id(encoder.cls_token)}
    groups = finetuning_parameters(encoder, head, Finetuning(layer_decay=0.5), 0.01, "ecg_transformer")
    assert [g["lr"] for g in groups] == pytest.approx([0.00125, 0.0025, 0.005, 0.01])
    assert [len(g["params"]) for g in groups] == [len(b) for b in blocks] + [2]
    assert sum(len(g["params"]) for g in groups) == len(list(encoder.parameters())) + 2
    # without partial settings: one group, everything at lr, as before
    (whole,) = finetuning_parameters(encoder, head, Finetuning(), 0.01)
    assert whole["lr"] == 0.01 and len(whole["params"]) == len(list(encoder.parameters())) + 2


def test_the_last_blocks_train_and_the_earlier_ones_are_frozen(registry):
    """resnet1d_wang: the stem and three residual blocks. train_blocks = 1 with decay 0.5: only the last block
    (at 0.5 * lr) and the head (at lr) are optimised; the frozen ones get no gradient and stay in eval mode."""
    encoder = registry.encoders.get("resnet1d_wang").build("tiny")
    head = torch.nn.Linear(encoder.embed_dim, 1)
    groups = finetuning_parameters(encoder, head, Finetuning(train_blocks=1, layer_decay=0.5), 0.1, "resnet1d_wang")
    last = list(encoder.layers[2].parameters())
    assert [g["lr"] for g in groups] == pytest.approx([0.05, 0.1])
    assert [id(p) for p in groups[0]["params"]] == [id(p) for p in last]
    frozen = [*encoder.stem.parameters(), *encoder.layers[0].parameters(), *encoder.layers[1].parameters()]
    assert all(not p.requires_grad for p in frozen) and all(p.requires_grad for p in last)
    model = torch.nn.Sequential(encoder, head)
    model.train()
    assert not encoder.stem.training and not encoder.layers[1].training and encoder.layers[2].training
    with pytest.raises(StenceBenchError, match=r"train_blocks = 5, but encoder 'resnet1d_wang' has 4 blocks"):
        finetuning_parameters(registry.encoders.get("resnet1d_wang").build("tiny"), head, Finetuning(train_blocks=5),
                              0.1, "resnet1d_wang")


def test_pin_eval_keeps_batch_norm_statistics_still():
    block = torch.nn.Sequential(torch.nn.Conv1d(2, 2, 3), torch.nn.BatchNorm1d(2))
    pin_eval(block)
    before = block[1].running_mean.clone()
    block.train()
    block(torch.randn(4, 2, 10) + 5.0)
    assert not block[1].training and torch.equal(block[1].running_mean, before)


def test_an_encoder_without_blocks_is_named(registry):
    class Plain(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a = torch.nn.Linear(2, 2)

    with pytest.raises(StenceBenchError, match="encoder 'plain' does not say what its blocks are"):
        encoder_blocks(Plain(), "plain")

    class Leaky(Plain):
        def finetuning_blocks(self):
            return [torch.nn.Linear(1, 1)]

    with pytest.raises(StenceBenchError, match=r"leaves out 2 parameter\(s\), first 'a.weight'"):
        encoder_blocks(Leaky(), "leaky")


SUITE = """
name = "partial"
tasks = ["stenosis.70"]
encoders = [{name = "resnet1d_wang", preset = "tiny"}]
objectives = ["none"]
controls = false
[protocol]
stages = ["linear_probe", "finetune"]
fractions = [1.0]
bootstrap = 20
finetune = {max_epochs = 2, patience = 2, batch_size = 16%s}
[data]
synthetic = {patients = 60, seed = 3, angiograms = false}
"""


def test_the_settings_are_in_the_finetuning_keys_only_and_absent_settings_keep_old_keys(registry):
    plain = {c.stage: c for c in plan(parse_suite(SUITE % ""), registry)}
    partial = {c.stage: c for c in plan(parse_suite(SUITE % ", train_blocks = 1, layer_decay = 0.7"), registry)}
    assert plain["linear_probe"].key == partial["linear_probe"].key
    assert plain["finetune"].key != partial["finetune"].key
    assert partial["finetune"].settings["finetune"]["train_blocks"] == 1
    assert "train_blocks" not in plain["finetune"].settings["finetune"]  # the fields are left out at their default
    assert set(Finetuning().model_dump()) == {"max_epochs", "patience", "batch_size", "lr", "weight_decay"}


def test_a_finetuning_cell_moves_only_the_blocks_it_trains(registry, tmp_path, monkeypatch):
    """A real finetuning cell with train_blocks = 1: the stem and first two blocks (weights and batch-norm
    statistics) end exactly as they started; the last block changed; the result says how many weights trained."""
    from stence_bench.protocol import evaluate
    from stence_bench.protocol.data import Workspace

    suite = parse_suite(SUITE % ", train_blocks = 1")
    (cell,) = [c for c in plan(suite, registry) if c.stage == "finetune"]
    seen = {}
    original = evaluate.encoder_for

    def spy(c, r, root):
        encoder, name = original(c, r, root)
        seen["encoder"] = encoder
        seen["start"] = {k: v.clone() for k, v in encoder.state_dict().items()}
        return encoder, name

    monkeypatch.setattr(evaluate, "encoder_for", spy)
    result = evaluate.finetune(cell, Workspace(suite, registry, tmp_path, echo=lambda line: None), registry, tmp_path)
    start, end = seen["start"], seen["encoder"].state_dict()
    moved = {k for k in start if not torch.equal(start[k], end[k])}
    assert moved and all(k.startswith("layers.2.") for k in moved), sorted(moved)
    assert any(k.startswith("layers.2.") and "running_mean" in k for k in moved)  # the trained block's BN learns
    last = seen["encoder"].layers[2]
    assert result["train"]["trained_weights"] == sum(p.numel() for p in last.parameters()) + (32 + 1)
    assert np.isfinite(result["value"])


def test_validate_refuses_partial_finetuning_of_an_encoder_without_blocks(tmp_path):
    from plugin_fixtures import Plugin, encoder

    from stence_bench.suite import check_code

    spec = encoder("blockless", factory="torch.nn:Identity", presets={}, default_preset=None)
    registry = Registry.load(extra=[Plugin("vendor", encoders=[spec])], environ=BUILTINS_ONLY)
    suite = parse_suite((SUITE % ", train_blocks = 1").replace('{name = "resnet1d_wang", preset = "tiny"}',
                                                                '"blockless"'))
    problems = check_code(suite, registry, "partial.toml")
    assert problems == ["partial.toml: encoders[0]: protocol.finetune: encoder 'blockless' does not say what its "
                        "blocks are (a finetuning_blocks() method); train_blocks and layer_decay need them"]
