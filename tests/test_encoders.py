"""Every registered encoder meets the module contract; the ResNet1D family has the published shapes."""

from __future__ import annotations

import pytest
import torch
from conftest import BUILTINS_ONLY

from stence_bench.registry import Registry
from stence_bench.testing import assert_encoder_contract, make_ecg_batch

REGISTRY = Registry.load(environ=BUILTINS_ONLY)


@pytest.mark.parametrize("name", REGISTRY.encoders.names())
def test_every_builtin_encoder_meets_the_contract(name):
    assert_encoder_contract(name, registry=REGISTRY)


def test_contract_check_catches_a_wrong_embed_dim_and_batch_leakage():
    spec = REGISTRY.encoders.get("resnet1d_wang")
    lying = spec.model_copy(update={"presets": {"tiny": spec.presets["tiny"].model_copy(update={"embed_dim": 99})}})
    with pytest.raises(AssertionError, match="module.embed_dim is 32, the spec says 99"):
        assert_encoder_contract(lying)

    leaky = spec.model_copy(update={"factory": "test_encoders:batch_mixing_encoder", "presets": {}, "embed_dim": 4,
                                    "default_preset": None})
    with pytest.raises(AssertionError, match="depends on the other samples of its batch"):
        assert_encoder_contract(leaky)


class _BatchMixing(torch.nn.Module):
    """Wrong on purpose: subtracts the batch mean, so each embedding depends on the batch."""

    def __init__(self, n_leads: int):
        super().__init__()
        self.proj = torch.nn.Linear(n_leads, 4)
        self.embed_dim = 4

    def forward(self, x):
        h = self.proj(x.mean(dim=-1))
        return h - h.mean(dim=0, keepdim=True)


def batch_mixing_encoder(*, n_leads: int) -> torch.nn.Module:
    return _BatchMixing(n_leads)


def test_resnet1d_wang_matches_the_ptbxl_benchmark_shape():
    spec = REGISTRY.encoders.get("resnet1d_wang")
    model = spec.build("base")
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv1d)]
    assert convs[0].kernel_size == (7,) and convs[0].stride == (1,) and convs[0].in_channels == 12
    assert {c.out_channels for c in convs} == {128}  # fixed width
    assert model.embed_dim == 256  # concat pooling: average and max of 128 channels
    with torch.no_grad():
        out = model.eval()(make_ecg_batch(spec, 2))
    assert out.shape == (2, 256)


def test_resnet1d_runs_on_lead_one_alone_and_on_other_lengths():
    spec = REGISTRY.encoders.get("resnet1d18")
    model = spec.build("tiny", n_leads=1).eval()
    with torch.no_grad():
        assert model(torch.randn(3, 1, 250)).shape == (3, 64)
        assert model(torch.randn(3, 1, 1000)).shape == (3, 64)  # global pooling: any length
