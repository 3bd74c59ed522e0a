"""The built-in modality encoders (angiography, text, metadata) meet the protocol of ``stence_bench_plugins.modalities``."""

from __future__ import annotations

import importlib
import io

import numpy as np
import pytest
import torch
from conftest import BUILTINS_ONLY

from stence_bench.data.dicom import read_angiography
from stence_bench.errors import StenceBenchError
from stence_bench.plugin_loader import DEFAULT_PLUGINS
from stence_bench.registry import Registry
from stence_bench.specs import import_object
from stence_bench.synth.angiography import write_angiogram
from stence_bench.synth.cohort import report

PLUGIN = "stence_bench_plugins.modalities"
#: Loaded explicitly until the package is one of the built-ins.
EXTRA = [] if PLUGIN in DEFAULT_PLUGINS else [importlib.import_module(PLUGIN)]
REGISTRY = Registry.load(extra=EXTRA, environ=BUILTINS_ONLY)
NAMES = ["angio_cnn", "angio_embedding", "text_transformer", "text_sentence", "metadata_mlp"]
#: text_sentence needs sentence-transformers and a local model, absent here: only its errors are tested.
BUILDABLE = [name for name in NAMES if name != "text_sentence"]

REPORTS = [
    ". ".join(report({"SR": 0.0, "NORM": 100.0})),
    ". ".join(report({"STACH": 0.0, "AMI": 100.0, "ISCAN": 50.0})),
    ". ".join(report({"SBRAD": 0.0, "1AVB": 100.0, "CLBBB": 100.0})),
    ". ".join(report({"SR": 0.0, "LVH": 100.0, "LOWT": 50.0})),
]


def build(name: str, seed: int = 0, **options):
    spec = REGISTRY.modalities.get(name)
    torch.manual_seed(seed)
    return import_object(spec.factory, what=f"modality {name!r}")(**{**spec.options, **options})


def sample_items(name: str, n: int = 3, seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    if name == "angio_cnn":  # different frame counts, sizes and pixel types
        shapes = [(5, 40, 40), (9, 72, 64), (2, 64, 64), (1, 32, 48)]
        return [rng.integers(0, 1024, shapes[i % 4]).astype(np.uint16 if i % 2 == 0 else np.uint8)
                for i in range(n)]
    if name == "angio_embedding":
        return [rng.standard_normal(128).astype(np.float32) for _ in range(n)]
    if name in ("text_transformer", "text_sentence"):
        return [REPORTS[i % len(REPORTS)] for i in range(n)]
    if name == "metadata_mlp":
        rows = rng.normal([60.0, 27.0, 130.0, 5.0], [10.0, 4.0, 15.0, 1.0], (n, 4))
        rows[rng.random((n, 4)) < 0.3] = np.nan
        return list(rows)
    raise KeyError(name)


def fitted(name: str, seed: int = 0, **options):
    module = build(name, seed, **options)
    if hasattr(module, "fit"):
        module.fit(sample_items(name, 8, seed=1))
    return module


def embed(module, items) -> torch.Tensor:
    with torch.no_grad():
        return module.eval()(module.collate(items))


# -- every modality ---------------------------------------------------------------------------------------------


def test_the_plugin_registers_every_modality_with_its_kind():
    assert REGISTRY.modalities.names() == NAMES
    kinds = {spec.name: spec.modality for spec in REGISTRY.modalities}
    assert kinds == {"angio_cnn": "angiography", "angio_embedding": "angiography", "text_transformer": "text",
                     "text_sentence": "text", "metadata_mlp": "metadata"}


@pytest.mark.parametrize("name", BUILDABLE)
def test_collate_forward_backward_give_finite_embeddings_and_grads(name):
    spec = REGISTRY.modalities.get(name)
    module = fitted(name).train()
    assert module.embed_dim == spec.embed_dim
    out = module(module.collate(sample_items(name, 3)))
    assert out.dtype == torch.float32 and out.shape == (3, spec.embed_dim)
    assert torch.isfinite(out).all()
    trainable = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
    if not trainable:  # the pass-through at input_dim == embed_dim
        assert name == "angio_embedding"
        return
    out.square().mean().backward()
    for param_name, param in trainable:
        assert param.grad is not None, f"{name}: no gradient reaches {param_name}"
        assert torch.isfinite(param.grad).all(), f"{name}: non-finite gradient in {param_name}"


@pytest.mark.parametrize("name", BUILDABLE)
def test_same_seed_same_output_and_no_dependence_on_the_batch(name):
    items = sample_items(name, 3)
    a, b = embed(fitted(name, seed=3), items), embed(fitted(name, seed=3), items)
    assert torch.equal(a, b)
    alone = embed(fitted(name, seed=3), items[:1])
    torch.testing.assert_close(alone[0], a[0], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", BUILDABLE)
def test_a_saved_and_reloaded_module_gives_the_same_output(name):
    items = sample_items(name, 3)
    module = fitted(name, seed=1)
    buffer = io.BytesIO()
    torch.save(module.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    fresh = build(name, seed=2)  # not fitted, other weights
    fresh.load_state_dict(state)
    assert torch.equal(embed(fresh, items), embed(module, items))


# -- angiography ------------------------------------------------------------------------------------------------


def test_angio_cnn_reads_synthetic_angiograms_of_different_lengths(tmp_path):
    write_angiogram(tmp_path / "a.dcm", {"pLAD": 90.0}, patient_id="p1", seed=1, frames=5, size=64)
    write_angiogram(tmp_path / "b.dcm", {}, patient_id="p2", seed=2, frames=3, size=48)
    a, b = read_angiography(tmp_path / "a.dcm"), read_angiography(tmp_path / "b.dcm")
    assert a.frames.shape == (5, 64, 64) and b.frames.shape == (3, 48, 48)
    module = build("angio_cnn")
    batch = module.collate([a.frames, b.frames, a])  # arrays, or the Angiogram with its bits_stored
    assert batch.shape == (3, module.frames, 1, module.size, module.size) and batch.dtype == torch.float32
    assert 0.0 <= float(batch.min()) and float(batch.max()) <= 1.0
    assert float(batch[0].max()) > 0.5  # a 10-bit run in uint16 is divided by 1023, not 65535
    torch.testing.assert_close(batch[0], batch[2])  # bits_stored = 10 is what the inference gives
    assert torch.equal(batch[0, 0], batch[0, 1]) is False  # 8 samples of 5 frames: evenly spread, not one frame
    out = embed(module, [a.frames, b.frames])
    assert out.shape == (2, module.embed_dim) and torch.isfinite(out).all()


def test_angio_cnn_samples_frames_evenly_and_scales_by_pixel_type():
    module = build("angio_cnn", frames=4, size=8)
    run = np.stack([np.full((8, 8), v, np.uint8) for v in (0, 51, 102, 153, 204, 255, 255)])
    x = module.collate([run])[0, :, 0, 0, 0]
    torch.testing.assert_close(x, torch.tensor([0.0, 0.4, 0.8, 1.0]))  # frames 0, 2, 4, 6
    still = module.collate([np.full((8, 8), 0.5, np.float32)])  # one float frame in [0, 1], repeated
    assert torch.allclose(still, torch.tensor(0.5))
    assert module.collate([np.full((2, 8, 8, 3), 1023, np.uint16)]).max() == 1.0  # colour -> grey, 10 bits
    with pytest.raises(ValueError, match=r"expected frames \[n_frames, rows, cols\]"):
        module.collate([np.zeros(8)])


def test_angio_cnn_attention_pooling_builds_and_runs():
    module = build("angio_cnn", temporal="attention", widths=[8, 16], embed_dim=12)
    out = module(module.collate(sample_items("angio_cnn", 2)))
    assert out.shape == (2, 12)
    out.sum().backward()
    assert module.frame_position.grad is not None


def test_angio_embedding_checks_the_length_and_projects_when_asked():
    module = build("angio_embedding")
    vectors = sample_items("angio_embedding", 2)
    assert torch.equal(embed(module, vectors), torch.from_numpy(np.stack(vectors)))  # identity
    with pytest.raises(ValueError, match=r"item 1 has length 100, expected input_dim=128"):
        module.collate([vectors[0], np.zeros(100)])
    with pytest.raises(ValueError, match=r"1-D vector of length input_dim=128"):
        module.collate([np.zeros((2, 64))])
    projected = build("angio_embedding", embed_dim=16)
    assert projected(projected.collate(vectors)).shape == (2, 16)
    assert isinstance(build("angio_embedding", project=True).proj, torch.nn.Linear)
    with pytest.raises(ValueError, match="project=False needs embed_dim == input_dim"):
        build("angio_embedding", embed_dim=16, project=False)


# -- text ---------------------------------------------------------------------------------------------------------


def test_text_vocabulary_is_countvectorizers_and_unknown_words_are_unk():
    from sklearn.feature_extraction.text import CountVectorizer
    from stence_bench_plugins.modalities.text import CLS, PAD, UNK

    module = build("text_transformer")
    with pytest.raises(RuntimeError, match=r"call fit\(train_reports\) before collate"):
        module.collate(REPORTS)
    module.fit(REPORTS)
    expected = CountVectorizer(token_pattern=module.token_pattern).fit(REPORTS).vocabulary_
    assert module.vocabulary == sorted(expected)
    batch = module.collate(["Sinus rhythm", "zebra sinus quagga", ""])
    ids, mask = batch["ids"], batch["mask"]
    sinus, rhythm = (module.vocabulary.index(w) + 3 for w in ("sinus", "rhythm"))
    assert ids.dtype == torch.int64 and mask.dtype == torch.bool and ids.shape == mask.shape == (3, 4)
    assert ids.tolist() == [[CLS, sinus, rhythm, PAD], [CLS, UNK, sinus, UNK], [CLS, PAD, PAD, PAD]]
    assert mask.tolist() == [[True, True, True, False], [True, True, True, True], [True, False, False, False]]
    out = embed(module, ["Sinus rhythm", "zebra sinus quagga", ""])
    assert torch.isfinite(out).all()


def test_text_truncates_to_max_length_and_caps_the_vocabulary():
    module = build("text_transformer", max_length=5, max_features=3)
    module.fit(REPORTS + ["ecg ecg ecg"])
    assert len(module.vocabulary) == 3 and "ecg" in module.vocabulary
    assert module.collate([" ".join(["ecg"] * 20)])["ids"].shape == (1, 5)
    with pytest.raises(ValueError, match="cannot learn a vocabulary"):
        build("text_transformer").fit(["", "  "])
    with pytest.raises(TypeError, match="item 1 is float"):
        module.collate(["ok", float("nan")])


def test_text_cls_pooling_runs():
    module = build("text_transformer", pooling="cls", width=32, heads=2, layers=1, embed_dim=16)
    module.fit(REPORTS)
    assert embed(module, REPORTS).shape == (len(REPORTS), 16)


def test_text_sentence_says_what_to_install(monkeypatch):
    from stence_bench_plugins.modalities import text

    real = text.importlib.util.find_spec
    monkeypatch.setattr(text.importlib.util, "find_spec",
                        lambda name, *a: None if name == "sentence_transformers" else real(name, *a))
    with pytest.raises(StenceBenchError, match=r'pip install "stence-bench\[text\]"') as info:
        build("text_sentence", model_path="/nowhere")
    assert "\n" not in str(info.value)


def test_text_sentence_names_a_missing_model_directory(monkeypatch, tmp_path):
    from stence_bench_plugins.modalities import text

    real = text.importlib.util.find_spec
    monkeypatch.setattr(text.importlib.util, "find_spec",
                        lambda name, *a: object() if name == "sentence_transformers" else real(name, *a))
    missing = tmp_path / "all-MiniLM-L6-v2"
    with pytest.raises(StenceBenchError, match=rf"model_path '{missing}' does not exist") as info:
        build("text_sentence", model_path=str(missing))
    assert "\n" not in str(info.value)
    with pytest.raises(StenceBenchError, match="option model_path is required"):
        build("text_sentence")


# -- metadata -----------------------------------------------------------------------------------------------------


def test_metadata_standardises_with_the_fitted_statistics():
    module = build("metadata_mlp")
    with pytest.raises(RuntimeError, match="give option n_fields or call fit"):
        module(torch.zeros(1, 3))
    module.fit([np.array([1.0, np.nan, 5.0]), np.array([3.0, np.nan, 5.0]), np.array([np.nan, np.nan, 5.0])])
    assert module.n_fields == 3
    assert module.mean.tolist() == [2.0, 0.0, 5.0] and module.std.tolist() == [1.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="item 1 has 2 fields, expected n_fields=3"):
        module.collate([np.zeros(3), np.zeros(2)])


@pytest.mark.parametrize("fill", ["zero", "learned"])
def test_metadata_missing_values_are_masked_and_the_mask_matters(fill):
    module = fitted("metadata_mlp", fill=fill)
    values = torch.tensor([[61.0, 25.0, 120.0, 4.0]])
    missing = torch.tensor([[False, True, False, True]])
    out = module({"values": values, "missing": missing})
    changed = values.clone()
    changed[missing] = torch.tensor([999.0, -5.0])
    assert torch.equal(module({"values": changed, "missing": missing}), out)
    nan = values.clone()
    nan[missing] = float("nan")
    torch.testing.assert_close(module(nan), out)  # NaN in the collated tensor is the same as the mask
    assert not torch.allclose(module({"values": values, "missing": torch.zeros_like(missing)}), out)
    everything_missing = module(module.collate([np.full(4, np.nan), np.array([np.nan, np.inf, np.nan, np.nan])]))
    assert torch.isfinite(everything_missing).all()
    torch.testing.assert_close(everything_missing[0], everything_missing[1])  # inf is missing too
    if fill == "learned":
        everything_missing.sum().backward()
        assert module.fill_value.grad is not None and torch.isfinite(module.fill_value.grad).all()


def test_metadata_with_given_n_fields_runs_before_fit():
    module = build("metadata_mlp", n_fields=2)
    assert module(torch.tensor([[1.0, float("nan")]])).shape == (1, 32)
