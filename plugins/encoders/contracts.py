"""The input contracts of the five source papers, as variants of the built-in encoders (``name.paper``).

An encoder's contract (sampling rate, window, filter, normalisation) is part of its spec, so a paper's contract is
a registered variant: the same factory and presets, the paper's rate and window (and filter). Registration only:
no model is imported here.

- ``*.stence``: StenCE (NikolaCenic/ecg-stenosis-cls: ``ecg.seconds: 3``, input ``[12, seconds * 500]``). Its
  encoders are ViTs (OTiS, 24-sample patches); ``ecg_transformer.stence`` cuts 25-sample patches (24 does not divide
  1,500 samples), 60 per lead.
- ``resnet1d18.jeong``: Jeong et al. (mandiehyewon/ssldml: a 1-D ResNet-18 over 12 leads, ``--ecg-len 2500``, the
  500 Hz ECGs taken every second sample: 250 Hz, 10 s).
- ``resnet1d18.clef``: CLEF (Nokia-Bell-Labs/ecg-foundation-model: 10 s at 500 Hz, ``input_len 5000``, band-pass
  0.67-40 Hz, each lead z-scored); its encoders are 1-D ResNets over one lead, trained on single-lead views.
"""

from __future__ import annotations

from collections.abc import Mapping

from stence_bench import EncoderSpec

STENCE = "Cenikj et al. 2026 (StenCE, arXiv:2606.02605); code: github.com/NikolaCenic/ecg-stenosis-cls"
JEONG = "Jeong, Stultz, Ghassemi, MLHC 2023; code: github.com/mandiehyewon/ssldml"
CLEF = "Shu et al. 2025 (CLEF, arXiv:2512.02180); code: github.com/Nokia-Bell-Labs/ecg-foundation-model"


def _variant(base: EncoderSpec, suffix: str, *, sampling_rate: float, window_s: float, what: str, citation: str,
             preset_options: Mapping[str, object] | None = None, **contract: object) -> EncoderSpec:
    presets = {name: preset.model_copy(update={"options": {**preset.options, **(preset_options or {})}})
               for name, preset in base.presets.items()}
    return EncoderSpec.model_validate({
        **dict(base), "name": f"{base.name}.{suffix}", "sampling_rate": sampling_rate, "window_s": window_s,
        "presets": presets, "description": f"{base.description}; {what}", "citation": f"{citation}; {base.citation}",
        **contract})


def paper_contracts(base: Mapping[str, EncoderSpec]) -> list[EncoderSpec]:
    """The papers' contract variants of the registered built-ins ``base`` (by name)."""
    out = []
    if "ecg_transformer" in base:
        out.append(_variant(base["ecg_transformer"], "stence", sampling_rate=500, window_s=3.0, citation=STENCE,
                            preset_options={"n_samples": 1500, "patch_size": 25},
                            what="StenCE's contract: 500 Hz, 3 s, 0.05 s patches"))
    if "resnet1d_wang" in base:
        out.append(_variant(base["resnet1d_wang"], "stence", sampling_rate=500, window_s=3.0, citation=STENCE,
                            what="StenCE's contract: 500 Hz, 3 s"))
    if "resnet1d18" in base:
        out.append(_variant(base["resnet1d18"], "jeong", sampling_rate=250, window_s=10.0, citation=JEONG,
                            what="Jeong et al.'s contract: 250 Hz, 10 s, 12 leads"))
        out.append(_variant(base["resnet1d18"], "clef", sampling_rate=500, window_s=10.0, citation=CLEF,
                            bandpass_hz=(0.67, 40.0), normalization="zscore_record",
                            what="CLEF's contract: 500 Hz, 10 s, 0.67-40 Hz band-pass, each lead z-scored"))
    return out


__all__ = ["paper_contracts"]
