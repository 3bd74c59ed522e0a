"""Specs: frozen, unknown fields rejected, input contracts checked, heavy code imported only on build."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from stence_bench import TWELVE_LEADS, EncoderPreset, EncoderSpec, ObjectiveSpec, TaskSpec
from stence_bench.errors import PluginError, UnknownNameError
from stence_bench.specs import DatasetSpec, ModalitySpec

BASE = dict(name="net", factory="stence_bench_plugins.encoders.resnet1d:resnet1d_wang", sampling_rate=100,
            window_s=2.5, embed_dim=256)


def test_encoder_spec_is_frozen_and_rejects_unknown_fields():
    spec = EncoderSpec(**BASE)
    with pytest.raises(ValidationError):
        spec.embed_dim = 3  # type: ignore[misc]
    with pytest.raises(ValidationError, match="window_sec"):
        EncoderSpec(**BASE, window_sec=2.5)
    assert spec.leads == TWELVE_LEADS and spec.n_samples == 250


@pytest.mark.parametrize(
    "change, message",
    [
        ({"name": "Has Spaces"}, "name"),
        ({"factory": "no_colon_here"}, "factory"),
        ({"sampling_rate": 0}, "sampling_rate"),
        ({"leads": ("I", "I")}, "repeated lead"),
        ({"leads": ()}, "leads"),
        ({"sampling_rate": 100, "window_s": 2.555}, "whole number of samples"),
        ({"bandpass_hz": (40.0, 0.5)}, "bandpass_hz"),
        ({"bandpass_hz": (0.5, 60.0)}, "sampling_rate / 2"),
        ({"default_preset": "huge"}, "default_preset 'huge'"),
        ({"normalization": "minmax"}, "normalization"),
    ],
)
def test_encoder_contract_errors_name_the_field(change, message):
    with pytest.raises(ValidationError, match=message):
        EncoderSpec(**{**BASE, **change})


def test_presets_resolve_with_did_you_mean():
    spec = EncoderSpec(**BASE, presets={"tiny": EncoderPreset(options={"width": 16}, embed_dim=32),
                                        "base": EncoderPreset(options={"width": 128})}, default_preset="base")
    assert spec.preset("tiny").embed_dim == 32
    assert spec.preset(None).options == {"width": 128}
    assert spec.preset("base").embed_dim == 256  # inherits the spec's embed_dim
    with pytest.raises(UnknownNameError, match="did you mean 'tiny'"):
        spec.preset("tinny")
    assert EncoderSpec(**BASE).preset(None).embed_dim == 256


def test_build_imports_the_factory_only_then_and_names_the_encoder_on_failure():
    module = EncoderSpec(**BASE, presets={"tiny": EncoderPreset(options={"width": 8}, embed_dim=16)}).build("tiny")
    assert module.embed_dim == 16
    broken = EncoderSpec(**{**BASE, "name": "broken", "factory": "no_such_module_xyz:build"})
    with pytest.raises(PluginError, match=r"encoder 'broken': cannot import 'no_such_module_xyz:build'"):
        broken.build()


def test_objective_spec_modalities_and_pretrains():
    assert not ObjectiveSpec(name="none").pretrains
    assert ObjectiveSpec(name="clip", factory="m:f", modalities=("ecg", "text")).pretrains
    with pytest.raises(ValidationError, match="must include 'ecg'"):
        ObjectiveSpec(name="x", modalities=("text",))
    with pytest.raises(ValidationError, match="modalities"):
        ObjectiveSpec(name="x", modalities=("ecg", "smell"))


def test_task_metric_must_fit_its_kind():
    common = dict(name="t", dataset="d", labels="m:f")
    TaskSpec(**common, task_kind="regression", metric="mae")
    with pytest.raises(ValidationError, match="does not fit a regression task"):
        TaskSpec(**common, task_kind="regression", metric="auroc")
    with pytest.raises(ValidationError, match="does not fit a binary task"):
        TaskSpec(**common, task_kind="binary", metric="r2")


def test_dataset_and_modality_specs():
    assert DatasetSpec(name="wfdb", reader="m:f").modalities == ("ecg",)
    with pytest.raises(ValidationError, match="modality"):
        ModalitySpec(name="x", modality="audio", factory="m:f", embed_dim=8)
