"""Every registered encoder meets the module contract; each built-in family has its published structure."""

from __future__ import annotations

import pytest
import torch
from conftest import BUILTINS_ONLY
from stence_bench_plugins.encoders.xresnet1d import XResBlock1d, xresnet1d

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


def twelve_lead_encoder(*, n_leads: int) -> torch.nn.Module:
    """Wrong on purpose: built for 12 leads whatever the contract says (as a factory of another plugin of the
    same name would be)."""
    del n_leads
    return _BatchMixing(12)


def test_a_factory_at_odds_with_the_declared_leads_is_named_with_the_contract_and_the_input_shape():
    spec = REGISTRY.encoders.get("resnet1d_wang").model_copy(update={
        "name": "eight_leads", "factory": "test_encoders:twelve_lead_encoder", "presets": {}, "default_preset": None,
        "embed_dim": 4, "leads": ("I", "II", "V1", "V2", "V3", "V4", "V5", "V6")})
    with pytest.raises(AssertionError) as failed:
        assert_encoder_contract(spec)
    assert str(failed.value).startswith(
        "encoder 'eight_leads': forward failed on input (3, 8, 250) built from the declared contract (8 leads "
        "I,II,V1,V2,V3,V4,V5,V6, 100 Hz x 2.5 s = 250 samples; factory test_encoders:twelve_lead_encoder): "
        "RuntimeError: ")


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


# --- xresnet1d, ecg_transformer, temporalnet -------------------------------------------------------------------

NEW_FAMILIES = ("xresnet1d18", "xresnet1d50", "xresnet1d101", "ecg_transformer", "temporalnet")


@pytest.mark.parametrize("name", NEW_FAMILIES)
def test_new_encoders_run_on_lead_one_alone(name):
    spec = REGISTRY.encoders.get(name)
    model = spec.build("tiny", n_leads=1).eval()
    with torch.no_grad():
        out = model(make_ecg_batch(spec, 3, n_leads=1))
    assert out.shape == (3, spec.preset("tiny").embed_dim) and torch.isfinite(out).all()


@pytest.mark.parametrize("name", NEW_FAMILIES)
def test_new_encoders_are_reproducible_from_the_seed(name):
    spec = REGISTRY.encoders.get(name)
    x = make_ecg_batch(spec, 2)
    outputs = []
    for seed in (7, 7, 8):
        torch.manual_seed(seed)
        model = spec.build("tiny").eval()
        with torch.no_grad():
            outputs.append(model(x))
    assert torch.equal(outputs[0], outputs[1])
    assert not torch.allclose(outputs[0], outputs[2])


def _xresnet_blocks(model):
    return [m for m in model.modules() if isinstance(m, XResBlock1d)]


@pytest.mark.parametrize(("name", "expansion", "per_stage"), [
    ("xresnet1d18", 1, (2, 2, 2, 2)), ("xresnet1d50", 4, (3, 4, 6, 3)), ("xresnet1d101", 4, (3, 4, 23, 3))])
def test_xresnet1d_has_the_bag_of_tricks_structure(name, expansion, per_stage):
    model = REGISTRY.encoders.get(name).build("tiny")
    width = 16 if expansion == 1 else 8  # the tiny presets
    # 3-conv stem (n_leads -> w/2 -> w/2 -> w), the first strided, kernel 5, then max pooling
    stem_convs = [m for m in model.stem.modules() if isinstance(m, torch.nn.Conv1d)]
    assert [(c.in_channels, c.out_channels, c.stride[0], c.kernel_size[0]) for c in stem_convs] == [
        (12, width // 2, 2, 5), (width // 2, width // 2, 1, 5), (width // 2, width, 1, 5)]
    assert isinstance(model.stem[-1], torch.nn.MaxPool1d)
    assert tuple(len(stage) for stage in model.stages) == per_stage
    blocks = _xresnet_blocks(model)
    depth = int(name.removeprefix("xresnet1d"))
    branch_convs = [c for b in blocks for c in b.convs.modules() if isinstance(c, torch.nn.Conv1d)]
    assert len(stem_convs) + len(branch_convs) == depth + 1  # the named depth counts the classifier, left out here
    zero_gamma = set()
    for stage, layer in enumerate(model.stages):
        for i, block in enumerate(layer):
            assert block.expansion == expansion and block.out_channels == width * expansion
            convs = [c for c in block.convs.modules() if isinstance(c, torch.nn.Conv1d)]
            assert [c.kernel_size[0] for c in convs] == ([5, 5] if expansion == 1 else [1, 5, 1])
            last_bn = [m for m in block.convs.modules() if isinstance(m, torch.nn.BatchNorm1d)][-1]
            zero_gamma.add(last_bn)
            downsampling = stage > 0 and i == 0
            strided = [c for c in block.modules() if isinstance(c, torch.nn.Conv1d) and c.stride[0] != 1]
            if downsampling:  # ResNet-D: average pooling first, then (if needed) a stride-1 1x1 projection
                assert isinstance(block.shortcut[0], torch.nn.AvgPool1d) and block.shortcut[0].stride == (2,)
                assert strided == [convs[-2]]  # the stride sits on the kernel-5 convolution (ResNet-B)
            else:
                assert not any(isinstance(m, torch.nn.AvgPool1d) for m in block.shortcut.modules()) and not strided
    # gamma starts at 0 in the last BN of every residual branch, and only there
    for bn in (m for m in model.modules() if isinstance(m, torch.nn.BatchNorm1d)):
        assert torch.all(bn.weight == (0.0 if bn in zero_gamma else 1.0))
    assert len(zero_gamma) == sum(per_stage)
    assert model.embed_dim == 2 * width * expansion  # concat pooling of the last stage


def test_xresnet1d_blocks_start_as_identities_and_the_base_sizes_match_the_benchmark():
    spec = REGISTRY.encoders.get("xresnet1d50")
    model = spec.build("tiny").eval()
    block = _xresnet_blocks(model)[4]  # the second block of stage 2: no downsampling, no projection
    h = torch.randn(2, block.out_channels, 16)
    with torch.no_grad():
        assert torch.allclose(block(h), torch.relu(h)), "zero-init gamma: each block is the identity at init"
    base = spec.build("base")
    assert model.embed_dim == 64 and base.embed_dim == 512
    assert {b.out_channels for b in _xresnet_blocks(base)} == {256}  # constant width 64, x4 bottleneck expansion
    assert len(_xresnet_blocks(REGISTRY.encoders.get("xresnet1d101").build("base"))) == 33
    with pytest.raises(ValueError, match="depth must be one of"):
        xresnet1d(n_leads=12, depth=42)
    assert len(_xresnet_blocks(xresnet1d(n_leads=1, depth=34, width=4))) == 16  # the family's other depths


def _transformer(**options):
    torch.manual_seed(0)
    return REGISTRY.encoders.get("ecg_transformer").build("tiny", **options).eval()


def test_ecg_transformer_tokens_are_the_patches_of_every_lead():
    x = torch.randn(2, 12, 250)
    cls_model, mean_model = _transformer(pooling="cls"), _transformer(pooling="mean")
    assert cls_model.tokens(x).shape == (2, 12 * 250 // 25 + 1, 32)
    assert mean_model.tokens(x).shape == (2, 12 * 250 // 25, 32)
    assert cls_model.n_tokens(250) == 121 and mean_model.cls_token is None
    single = _transformer(n_leads=1)
    assert single.tokens(torch.randn(2, 1, 250)).shape == (2, 11, 32) and single.lead_embed.shape == (1, 32)
    with torch.no_grad():
        encoded = cls_model.encoder(cls_model.tokens(x))
        assert torch.allclose(cls_model(x), encoded[:, 0], atol=1e-5)
        assert not torch.allclose(cls_model(x), encoded[:, 1:].mean(dim=1), atol=1e-3)
        assert torch.allclose(mean_model(x), mean_model.encoder(mean_model.tokens(x)).mean(dim=1), atol=1e-5)
        assert not torch.allclose(cls_model(x), mean_model(x), atol=1e-3)


def test_ecg_transformer_sees_each_patch_its_lead_and_its_position():
    model = _transformer()
    x = torch.randn(2, 12, 250)
    patched = x.clone()
    patched[:, 7, 50:75] += 1.0  # the third patch of V2
    swapped = x[:, [1, 0, *range(2, 12)]]  # leads I and II exchanged
    shifted = torch.cat([x[..., 25:], x[..., :25]], dim=-1)  # every lead rolled by one patch
    with torch.no_grad():
        y = model(x)
        for other in (patched, swapped, shifted):
            assert not torch.allclose(model(other), y, atol=1e-4)
        # tokens: a change inside one patch of one lead changes that token only
        diff = (model.tokens(patched) - model.tokens(x)).abs().sum(dim=(0, 2))
        assert diff.nonzero().flatten().tolist() == [1 + 7 * 10 + 2]


def test_ecg_transformer_rejects_lengths_that_are_not_whole_patches():
    with pytest.raises(ValueError, match=r"n_samples \(240\) must be a positive multiple of patch_size \(25\)"):
        _transformer(n_samples=240)
    model = _transformer()
    with pytest.raises(ValueError, match=r"n_samples \(260\) is not divisible by patch_size \(25\)"):
        model(torch.randn(1, 12, 260))
    with pytest.raises(ValueError, match="learned position table only 10"):
        model(torch.randn(1, 12, 500))
    with torch.no_grad():
        assert model(torch.randn(1, 12, 125)).shape == (1, 32)  # fewer patches: the first positions
        assert _transformer(position="sinusoidal")(torch.randn(1, 12, 500)).shape == (1, 32)


def _temporalnet(**options):
    torch.manual_seed(0)
    return REGISTRY.encoders.get("temporalnet").build("tiny", **options).eval()


def test_temporalnet_streams_read_limb_and_precordial_leads_separately():
    model = _temporalnet()
    assert model.groups == [[0, 1, 2, 3, 4, 5], [6, 7, 8, 9, 10, 11]]
    x = torch.randn(2, 12, 250)
    precordial, limb = x.clone(), x.clone()
    precordial[:, 6:] += torch.randn(2, 6, 250)
    limb[:, 2] += 1.0  # lead III
    with torch.no_grad():
        base = model.stream_features(x)
        after_precordial, after_limb = model.stream_features(precordial), model.stream_features(limb)
        assert torch.equal(after_precordial[0], base[0]) and not torch.allclose(after_precordial[1], base[1])
        assert torch.equal(after_limb[1], base[1]) and not torch.allclose(after_limb[0], base[0])
        assert not torch.allclose(model(precordial), model(x))  # and the fused embedding sees the change
    # two streams with their own parameters, each reading six leads
    params = [{p.data_ptr() for p in stream.parameters()} for stream in model.streams]
    assert len(model.streams) == 2 and not params[0] & params[1]
    assert [s.stem[0].in_channels for s in model.streams] == [6, 6]
    assert not torch.allclose(model.streams[0].stem[0].weight, model.streams[1].stem[0].weight)
    fusion = model.fusion[0]
    assert fusion.in_features == 2 * model.streams[0].out_features and fusion.out_features == model.embed_dim


def test_temporalnet_groups_for_other_lead_sets_and_the_published_dilations():
    single = _temporalnet(n_leads=1)
    assert single.groups == [[0], [0]] and [s.stem[0].in_channels for s in single.streams] == [1, 1]
    three = _temporalnet(n_leads=3, groups=[[0], [1, 2], [0, 2]])
    with torch.no_grad():
        assert [f.shape[1] for f in three.stream_features(torch.randn(2, 3, 250))] == [32, 32, 32]
        assert three(torch.randn(2, 3, 250)).shape == (2, 32)
    with pytest.raises(ValueError, match=r"channels \[12\] outside 0..11"):
        _temporalnet(groups=[[0, 1], [11, 12]])
    with pytest.raises(ValueError, match="non-empty"):
        _temporalnet(groups=[[0], []])
    base = REGISTRY.encoders.get("temporalnet").build("base")
    dilated = [c for c in base.streams[0].blocks.modules() if isinstance(c, torch.nn.Conv1d) and c.kernel_size[0] > 1]
    assert [c.dilation[0] for c in dilated] == [d for d in (1, 2, 4, 8, 1, 2, 4, 8) for _ in range(2)]
    assert all(c.padding[0] == c.dilation[0] * 3 for c in dilated)  # "same" padding: the length is kept
    assert base.embed_dim == 256


def test_the_papers_input_contracts_are_registered_variants_of_the_built_ins():
    """StenCE 500 Hz 3 s; Jeong et al. 250 Hz 10 s; CLEF 500 Hz 10 s, 0.67-40 Hz, each lead z-scored: same factory
    and presets as the base encoder, the paper's contract."""
    expected = {"ecg_transformer.stence": (500, 3.0, None), "resnet1d_wang.stence": (500, 3.0, None),
                "resnet1d18.jeong": (250, 10.0, None), "resnet1d18.clef": (500, 10.0, (0.67, 40.0))}
    for name, (rate, seconds, band) in expected.items():
        spec, base = REGISTRY.encoders.get(name), REGISTRY.encoders.get(name.split(".")[0])
        assert (spec.sampling_rate, spec.window_s, spec.bandpass_hz) == (rate, seconds, band), name
        assert spec.factory == base.factory and set(spec.presets) == set(base.presets) and spec.leads == base.leads
        assert spec.n_samples == rate * seconds
    assert REGISTRY.encoders.get("resnet1d18.clef").normalization == "zscore_record"
    transformer = REGISTRY.encoders.get("ecg_transformer.stence")
    assert all(p.options["n_samples"] == 1500 and p.options["patch_size"] == 25 for p in transformer.presets.values())
    module = transformer.build("tiny")
    assert module(torch.randn(2, 12, 1500)).shape == (2, 32)
