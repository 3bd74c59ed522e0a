"""The foundation-model adapters (ECG-FM, ECGFounder, ST-MEM) without their real weights.

For each, the released checkpoint's tensor names and shapes are written down below as data, from the public code
that saved them (cited per model); the tests check that the adapter at the released size has exactly those
tensors (built on the meta device: nothing allocated), that a file with that layout at toy size, saved the way the
release saves it, loads through a suite with no mapping by the user, and a few facts computed by hand. The
numerical equivalence with the public implementations was checked once against their code (docs/models.md).
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from conftest import BUILTINS_ONLY

from stence_bench.registry import Registry
from stence_bench.suite import parse_suite, plan
from stence_bench.testing import assert_encoder_contract
from stence_bench.weights import build_for_checking, check_layout, select


@pytest.fixture(scope="module")
def registry():
    return Registry.load(environ=BUILTINS_ONLY)


# -- the released layouts, as data ---------------------------------------------------------------------------------

# ECGFounder (github.com/PKUDigitalHealth/ECGFounder, net1d.py; ft_12lead_ECGFounder in finetune_model.py): Net1D
# with base_filters 64, filter_list 64-160-160-400-400-1024-1024, m_blocks_list 2-2-2-3-3-4-4, kernel 16, groups of
# 16 channels, 150 classes; the file holds {"state_dict": Net1D.state_dict()}.
FOUNDER_RELEASED = {"leads": 12, "base": 64, "stages": [(64, 2), (160, 2), (160, 2), (400, 3), (400, 3), (1024, 4),
                                                         (1024, 4)], "kernel": 16, "group_width": 16, "classes": 150}
FOUNDER_TINY = {"leads": 12, "base": 8, "stages": [(8, 1), (16, 1), (16, 1), (32, 1), (32, 1), (64, 1), (64, 1)],
                "kernel": 16, "group_width": 8, "classes": 5}
BATCH_NORM = [("weight", ("c",)), ("bias", ("c",)), ("running_mean", ("c",)), ("running_var", ("c",)),
              ("num_batches_tracked", ())]
#: a block's tensors: "in" its input width, "w" its width, "g" channels per group of its grouped convolution
FOUNDER_BLOCK = [("bn1", "in"), ("conv1.conv.weight", ("w", "in", 1)), ("conv1.conv.bias", ("w",)), ("bn2", "w"),
                 ("conv2.conv.weight", ("w", "g", "k")), ("conv2.conv.bias", ("w",)), ("bn3", "w"),
                 ("conv3.conv.weight", ("w", "w", 1)), ("conv3.conv.bias", ("w",)), ("se_fc1.weight", ("w/2", "w")),
                 ("se_fc1.bias", ("w/2",)), ("se_fc2.weight", ("w", "w/2")), ("se_fc2.bias", ("w",))]


def founder_layout(c: dict) -> dict[str, tuple[int, ...]]:
    out: dict[str, tuple[int, ...]] = {"first_conv.conv.weight": (c["base"], c["leads"], c["kernel"]),
                                       "first_conv.conv.bias": (c["base"],)}
    out.update({f"first_bn.{n}": (c["base"],) * len(s) for n, s in BATCH_NORM})
    width_in = c["base"]
    for s, (width, blocks) in enumerate(c["stages"]):
        for b in range(blocks):
            sizes = {"in": width_in if b == 0 else width, "w": width, "w/2": width // 2, "g": c["group_width"],
                     "k": c["kernel"], 1: 1}
            for name, shape in FOUNDER_BLOCK:
                if name.startswith("bn"):
                    out.update({f"stage_list.{s}.block_list.{b}.{name}.{n}": (sizes[shape],) * len(t)
                                for n, t in BATCH_NORM})
                else:
                    out[f"stage_list.{s}.block_list.{b}.{name}"] = tuple(sizes[d] for d in shape)
        width_in = width
    out["dense.weight"], out["dense.bias"] = (c["classes"], width_in), (c["classes"],)
    return out


# ST-MEM (github.com/bakqui/ST-MEM, models/encoder/st_mem_vit.py, st_mem_vit_base; util/misc.py save_model): the
# encoder of ViT-B/75 over 2250 samples (30 patches), 12 leads; the file holds {"epoch", "model", "optimizer": None,
# "scaler": None, "config"}.
STMEM_RELEASED = {"width": 768, "depth": 12, "heads": 12, "dim_head": 64, "mlp": 3072, "patch": 75, "patches": 30}
STMEM_TINY = {"width": 32, "depth": 2, "heads": 2, "dim_head": 16, "mlp": 64, "patch": 75, "patches": 30}
STMEM_BLOCK = [("attn.norm.weight", ("w",)), ("attn.norm.bias", ("w",)), ("attn.fn.to_qkv.weight", ("3hd", "w")),
               ("attn.fn.to_qkv.bias", ("3hd",)), ("attn.fn.to_out.0.weight", ("w", "hd")),
               ("attn.fn.to_out.0.bias", ("w",)), ("ff.norm.weight", ("w",)), ("ff.norm.bias", ("w",)),
               ("ff.fn.net.0.weight", ("m", "w")), ("ff.fn.net.0.bias", ("m",)), ("ff.fn.net.3.weight", ("w", "m")),
               ("ff.fn.net.3.bias", ("w",))]


def stmem_layout(c: dict) -> dict[str, tuple[int, ...]]:
    w = c["width"]
    out = {"pos_embedding": (1, c["patches"] + 2, w), "sep_embedding": (w,),
           **{f"lead_embeddings.{i}": (w,) for i in range(12)},
           "to_patch_embedding.1.weight": (c["patch"],), "to_patch_embedding.1.bias": (c["patch"],),
           "to_patch_embedding.2.weight": (w, c["patch"]), "to_patch_embedding.2.bias": (w,),
           "to_patch_embedding.3.weight": (w,), "to_patch_embedding.3.bias": (w,)}
    sizes = {"w": w, "m": c["mlp"], "hd": c["heads"] * c["dim_head"], "3hd": 3 * c["heads"] * c["dim_head"]}
    for i in range(c["depth"]):
        out.update({f"block{i}.{name}": tuple(sizes[d] for d in shape) for name, shape in STMEM_BLOCK})
    out["norm.weight"], out["norm.bias"] = (w,), (w,)
    return out


# ECG-FM (github.com/Jwoo5/fairseq-signals: models/ecg_transformer.py, models/wav2vec2/wav2vec2.py, modules/;
# the pretraining config w2v_cmsc_rlm.yaml: quantize_targets, final_dim 256, encoder_embed_dim 768, in_d 12): the
# file is a fairseq checkpoint whose "model" holds Wav2Vec2CMSCModel.state_dict(), pretraining parts included.
ECGFM_RELEASED = {"conv": 256, "convs": 4, "kernel": 2, "dim": 768, "ffn": 3072, "layers": 12, "pos": 128,
                  "pos_groups": 16, "final": 256, "vars": 320, "groups": 2}
ECGFM_TINY = {"conv": 16, "convs": 4, "kernel": 2, "dim": 32, "ffn": 64, "layers": 2, "pos": 16, "pos_groups": 4,
              "final": 8, "vars": 5, "groups": 2}
ECGFM_LAYER = [(f"self_attn.{p}_proj.{t}", ("d", "d") if t == "weight" else ("d",)) for p in "kvq" for t in
               ("weight", "bias")] + [("self_attn.out_proj.weight", ("d", "d")), ("self_attn.out_proj.bias", ("d",)),
                                      ("self_attn_layer_norm.weight", ("d",)), ("self_attn_layer_norm.bias", ("d",)),
                                      ("fc1.weight", ("f", "d")), ("fc1.bias", ("f",)), ("fc2.weight", ("d", "f")),
                                      ("fc2.bias", ("d",)), ("final_layer_norm.weight", ("d",)),
                                      ("final_layer_norm.bias", ("d",))]


def ecgfm_layout(c: dict, weight_norm: str = "weight_g") -> dict[str, tuple[int, ...]]:
    """``weight_norm``: ``weight_g`` (torch.nn.utils.weight_norm, the fairseq-signals of 2024) or ``parametrizations``
    (torch.nn.utils.parametrizations.weight_norm, its code since 2025)."""
    d, conv = c["dim"], c["conv"]
    out = {"mask_emb": (d,), "feature_extractor.conv_layers.0.0.weight": (conv, 12, c["kernel"]),
           "feature_extractor.conv_layers.0.2.weight": (conv,), "feature_extractor.conv_layers.0.2.bias": (conv,)}
    out.update({f"feature_extractor.conv_layers.{i}.0.weight": (conv, conv, c["kernel"]) for i in range(1, c["convs"])})
    out.update({"post_extract_proj.weight": (d, conv), "post_extract_proj.bias": (d,)})
    g, v = (("weight_g", "weight_v") if weight_norm == "weight_g" else
            ("parametrizations.weight.original0", "parametrizations.weight.original1"))
    out.update({f"conv_pos.pos_conv.0.{g}": (1, 1, c["pos"]), f"conv_pos.pos_conv.0.{v}": (d, d // c["pos_groups"], c["pos"]),
                "conv_pos.pos_conv.0.bias": (d,), "layer_norm.weight": (conv,), "layer_norm.bias": (conv,)})
    sizes = {"d": d, "f": c["ffn"]}
    for i in range(c["layers"]):
        out.update({f"encoder.layers.{i}.{name}": tuple(sizes[x] for x in shape) for name, shape in ECGFM_LAYER})
    out.update({"encoder.layer_norm.weight": (d,), "encoder.layer_norm.bias": (d,),
                "quantizer.vars": (1, c["groups"] * c["vars"], c["final"] // c["groups"]),
                "quantizer.weight_proj.weight": (c["groups"] * c["vars"], conv),
                "quantizer.weight_proj.bias": (c["groups"] * c["vars"],),
                "project_q.weight": (c["final"], c["final"]), "project_q.bias": (c["final"],),
                "final_proj.weight": (c["final"], d), "final_proj.bias": (c["final"],)})
    return out


#: name, released layout, toy layout, the layout's sub-tree in the file, how the release wraps it
ADAPTERS = {
    "ecgfounder": (founder_layout(FOUNDER_RELEASED), founder_layout(FOUNDER_TINY), "state_dict"),
    "st_mem": (stmem_layout(STMEM_RELEASED), stmem_layout(STMEM_TINY), "model"),
    "ecg_fm": (ecgfm_layout(ECGFM_RELEASED), ecgfm_layout(ECGFM_TINY), "model"),
}


def release_file(name: str, state: dict[str, torch.Tensor], path) -> None:
    """Save ``state`` the way each release's code saves its checkpoint (plain containers and tensors only)."""
    if name == "ecgfounder":
        torch.save({"state_dict": state, "epoch": 29}, path)
    elif name == "st_mem":
        torch.save({"epoch": 799, "model": state, "optimizer": None, "scaler": None,
                    "config": {"model_name": "st_mem_vit_base_dec256d4b", "model": {"seq_len": 2250, "patch_size": 75}}},
                   path)
    else:
        torch.save({"args": None, "cfg": {"model": {"_name": "wav2vec2_cmsc", "encoder_embed_dim": 768}}, "model": state,
                    "optimizer_history": [{"criterion_name": "Wav2Vec2WithCMSCCriterion", "num_updates": 1000}],
                    "extra_state": {"epoch": 200, "previous_training_time": 3600.5},
                    "last_optimizer_state": {"state": {0: {"exp_avg": torch.zeros(2)}}}}, path)


def given_suite(encoder: str, path, task: str = "ptbxl.superdiagnostic", data: str = ""):
    """A suite evaluating the tiny ``encoder`` with the weights at ``path`` as given (linear probe, all labels)."""
    return parse_suite(f"""
name = "fm"
tasks = ["{task}"]
objectives = ["pretrained"]
controls = false
[[encoders]]
name = "{encoder}"
preset = "tiny"
weights = "{path}"
[protocol]
stages = ["linear_probe"]
fractions = [1.0]
{data}
""")


def toy_state(layout: dict[str, tuple[int, ...]], seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {k: (torch.tensor(0) if not shape else torch.randn(shape, generator=generator) * 0.1 + 1.0)
            for k, shape in layout.items()}


# -- the released size: exactly the released tensors ---------------------------------------------------------------


@pytest.mark.parametrize("name", list(ADAPTERS))
def test_the_adapter_has_exactly_the_released_tensors(registry, name):
    """Built at the released size on the meta device, each adapter's tensors are the release's, less the parts its
    declared layout leaves out (a classification head, a pretraining quantizer), name for name and shape for shape."""
    released, _, subtree = ADAPTERS[name]
    spec = registry.encoders.get(name)
    module = build_for_checking(spec, None, {})
    in_file = {f"{subtree}.{k}": torch.empty(shape, device="meta") for k, shape in released.items()}
    selected = select(in_file, spec.weights_layout)
    fitted = check_layout(module, selected, strict=True)
    assert fitted.exact and len(fitted.matched) == len(module.state_dict())
    left_out = set(released) - set(selected)
    assert left_out == {"ecgfounder": {"dense.weight", "dense.bias"}, "st_mem": set(),
                        "ecg_fm": {k for k in released if k.startswith(("mask_emb", "quantizer.", "project_q.",
                                                                        "final_proj."))}}[name]
    assert spec.preset(None).embed_dim == module.embed_dim


def test_the_ecgfm_layout_has_the_90_9_million_parameters_its_readme_gives():
    released, _, _ = ADAPTERS["ecg_fm"]
    assert round(sum(int(np.prod(s)) for s in released.values()) / 1e6, 1) == 90.9


def test_ecgfm_layout_of_either_weight_norm_naming_loads(registry):
    spec = registry.encoders.get("ecg_fm")
    module = build_for_checking(spec, None, {})
    for naming in ("weight_g", "parametrizations"):
        in_file = {f"model.{k}": torch.empty(s, device="meta") for k, s in ecgfm_layout(ECGFM_RELEASED, naming).items()}
        assert check_layout(module, select(in_file, spec.weights_layout), strict=True).exact


# -- toy size: saved as the release saves it, loaded through a suite ------------------------------------------------


@pytest.mark.parametrize("name", list(ADAPTERS))
def test_a_file_in_the_released_layout_loads_through_a_suite_without_mapping(registry, name, tmp_path):
    _, toy, _ = ADAPTERS[name]
    state = toy_state(toy)
    path = tmp_path / f"{name}.pt"
    release_file(name, state, path)
    suite = given_suite(name, path)
    from stence_bench.protocol.evaluate import encoder_for

    (cell,) = plan(suite, registry)
    encoder, _ = encoder_for(cell, registry, tmp_path)
    loaded = encoder.state_dict()
    assert encoder.given_weights["missing"] == encoder.given_weights["unexpected"] == 0
    for key, value in loaded.items():
        assert torch.equal(value, state[key].to(value.dtype)), key
    x = torch.randn(2, len(registry.encoders.get(name).leads), registry.encoders.get(name).n_samples)
    with torch.no_grad():
        out = encoder.eval()(x)
    assert out.shape == (2, encoder.embed_dim) and torch.isfinite(out).all()
    assert_encoder_contract(name, preset="tiny", registry=registry)


def test_the_single_lead_ecgfounder_takes_lead_one(registry, tmp_path):
    spec = registry.encoders.get("ecgfounder_1lead")
    assert spec.leads == ("I",)
    layout = founder_layout({**FOUNDER_RELEASED, "leads": 1})
    module = build_for_checking(spec, None, {})
    in_file = {f"state_dict.{k}": torch.empty(s, device="meta") for k, s in layout.items()}
    assert check_layout(module, select(in_file, spec.weights_layout), strict=True).exact


# -- facts computed by hand ----------------------------------------------------------------------------------------


def test_ecgfounder_shortcut_pools_and_pads_channels_as_the_release():
    """With its last convolution at zero a block outputs its shortcut: [1, 3, 2, 5, 4] max-pooled by 2 after one zero
    on the right is [3, 5, 4]; widening 1 -> 4 channels puts 1 zero channel before and 2 after."""
    from stence_bench_plugins.encoders.ecgfounder import Net1DBlock

    block = Net1DBlock(1, 4, ratio=1.0, kernel_size=3, stride=2, groups=1, first=False)
    torch.nn.init.zeros_(block.conv3.conv.weight)
    torch.nn.init.zeros_(block.conv3.conv.bias)
    out = block(torch.tensor([[[1.0, 3.0, 2.0, 5.0, 4.0]]]))
    assert torch.equal(out, torch.tensor([[[0.0, 0.0, 0.0], [3.0, 5.0, 4.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]]))


def test_ecgfm_turns_five_seconds_into_156_steps():
    """Four convolutions of kernel 2 and stride 2 without padding: 2500 -> 1250 -> 625 -> 312 -> 156."""
    from stence_bench_plugins.encoders.ecg_fm import ecg_fm

    module = ecg_fm(n_leads=12, conv_layers=[[16, 2, 2]] * 4, embed_dim=32, ffn_dim=64, heads=2, layers=1, conv_pos=16,
                    conv_pos_groups=4).eval()
    seen = {}
    module.encoder.register_forward_hook(lambda m, inputs, output: seen.update(steps=output.shape[1]))
    with torch.no_grad():
        out = module(torch.randn(1, 12, 2500))
    assert seen["steps"] == 156 and out.shape == (1, 32)


def test_st_mem_without_blocks_is_the_normalised_mean_of_its_patch_tokens():
    """At depth 0 the embedding is LayerNorm(mean over leads c and patches j of PE(x_cj) + pos[j + 1] + lead[c]):
    the separators are dropped, whatever they hold."""
    from stence_bench_plugins.encoders.st_mem import st_mem

    module = st_mem(n_leads=12, width=8, depth=0, heads=2, dim_head=4, mlp_dim=16).eval()
    with torch.no_grad():
        module.pos_embedding.normal_()
        module.sep_embedding.normal_(std=100.0)
        x = torch.randn(1, 12, 2250)
        patches = x.reshape(1, 12, 30, 75)
        pe = module.to_patch_embedding
        tokens = pe._modules["3"](pe._modules["2"](pe._modules["1"](patches)))
        tokens = tokens + module.pos_embedding[0, 1:31][None, None] + torch.stack(list(module.lead_embeddings))[None, :, None]
        by_hand = torch.nn.functional.layer_norm(tokens.mean(dim=(1, 2)), (8,), module.norm.weight, module.norm.bias)
        assert torch.allclose(module(x), by_hand, atol=1e-6)


# -- real data: a released layout evaluated on real records through the harness ------------------------------------


def test_ecgfounder_as_given_on_real_records_sees_exactly_its_contract(registry, realdata, tmp_path):
    """Real 500 Hz CinC 2021 records through the run's data path (view cache: 0.67-40 Hz band-pass; windows: the
    10 s window standardised over all leads) and the given weights: each record's embedding is the module's output
    on the record prepared by hand with the contract (stence_bench.data.windows.apply_contract)."""
    from stence_bench.data.windows import apply_contract
    from stence_bench.data.wfdb_io import read_wfdb
    from stence_bench.protocol.data import Workspace
    from stence_bench.protocol.evaluate import cached_embeddings, encoder_for

    source = tmp_path / "cinc"
    source.mkdir()
    names = [f"E0750{i}" for i in range(4)] + [f"JS2000{i}" for i in range(3)]
    for name in names:
        for suffix in (".hea", ".mat"):
            shutil.copy(realdata / "cinc2021" / f"{name}{suffix}", source / f"{name}{suffix}")
    path = tmp_path / "12_lead_ECGFounder.pth"
    _, toy, _ = ADAPTERS["ecgfounder"]
    release_file("ecgfounder", toy_state(toy, seed=4), path)
    suite = given_suite("ecgfounder", path, "cinc2021.scored",
                        f'[data]\npretrain = "cinc2021"\n[data.sources.cinc2021]\npath = "{source}"')
    (cell,) = plan(suite, registry)
    ws = Workspace(suite, registry, tmp_path / "run", echo=lambda line: None)
    task = registry.tasks.get("cinc2021.scored")
    emb = cached_embeddings(cell, ws, registry, tmp_path / "run", task)
    windows = ws.windows(task.dataset, registry.encoders.get("ecgfounder"))
    encoder, _ = encoder_for(cell, registry, tmp_path / "run")
    spec = registry.encoders.get("ecgfounder")
    for i, record_id in enumerate(windows.record_ids):
        record, _ = read_wfdb(source / record_id)
        x = apply_contract(record.physical(), record.fs, record.leads, spec)
        assert abs(float(x.mean())) < 1e-5 and abs(float(x.std()) - 1.0) < 1e-4  # one mean and std for all leads
        with torch.no_grad():
            by_hand = encoder.eval()(torch.from_numpy(x)[None])[0].numpy()
        assert np.allclose(emb[i], by_hand, atol=1e-4), record_id
    assert sorted(windows.record_ids) == sorted(names)


# -- the worked suite ----------------------------------------------------------------------------------------------


def test_the_worked_suite_validates_and_plans_once_its_files_are_in_place(registry, tmp_path, monkeypatch):
    """leaderboards/foundation-models.toml with files of the released layouts at its paths (toy size: its encoders
    at their tiny presets): it validates, and plans every task x encoder x {pretrained, none} x stage x fraction x
    draw, each cell naming its file by hash."""
    from conftest import REPO

    from stence_bench.suite import check_code, check_names, load_suite

    suite, _ = load_suite(REPO / "leaderboards" / "foundation-models.toml")
    monkeypatch.chdir(tmp_path)  # the suite's paths are relative to the folder it runs from
    for choice in suite.encoders:
        path = tmp_path / choice.weights.path
        path.parent.mkdir(parents=True, exist_ok=True)
        release_file(choice.name, toy_state(ADAPTERS[choice.name][1]), path)
    tiny = suite.model_copy(update={"encoders": tuple(c.model_copy(update={"preset": "tiny"}) for c in suite.encoders)})
    assert check_names(tiny, registry, "fm") == [] and check_code(tiny, registry, "fm") == []
    cells = plan(tiny, registry)
    assert len(cells) == 5 * 3 * 2 * 2 * (1 + 3 + 3)  # tasks x encoders x objectives x stages x fraction draws
    assert {c.objective for c in cells} == {"pretrained", "none"} and all(c.weights is not None for c in cells)
    hashes = {c.encoder: c.weights.sha256 for c in cells}
    assert len(set(hashes.values())) == 3
