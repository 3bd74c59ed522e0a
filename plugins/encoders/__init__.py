"""Built-in ECG encoders. Registration only: the models live in sibling modules, imported when built."""

from __future__ import annotations

from stence_bench import TWELVE_LEADS, EncoderPreset, EncoderSpec, hookimpl

_RESNET = "stence_bench_plugins.encoders.resnet1d"


@hookimpl
def register_encoders(register):
    register(
        EncoderSpec(
            name="resnet1d_wang",
            description="ResNet1D of Wang et al. (2017) as in the PTB-XL benchmark: 3 residual blocks, "
            "fixed width, concat (avg+max) pooling",
            factory=f"{_RESNET}:resnet1d_wang",
            sampling_rate=100,
            window_s=2.5,
            leads=TWELVE_LEADS,
            embed_dim=256,
            normalization="zscore_dataset",
            presets={
                "tiny": EncoderPreset(options={"width": 16}, embed_dim=32, description="for tests and the CPU demo"),
                "base": EncoderPreset(options={"width": 128}, embed_dim=256, description="the published size"),
            },
            default_preset="base",
            citation="Wang, Yan, Oates (2017); Strodthoff et al., IEEE JBHI 2021",
        )
    )
    register(
        EncoderSpec(
            name="resnet1d18",
            description="ResNet-18 with 1-D convolutions: 4 stages of 2 basic blocks, widths 64-512, avg pooling",
            factory=f"{_RESNET}:resnet1d18",
            sampling_rate=100,
            window_s=2.5,
            leads=TWELVE_LEADS,
            embed_dim=512,
            normalization="zscore_dataset",
            presets={
                "tiny": EncoderPreset(options={"base_width": 8}, embed_dim=64, description="for tests and the CPU demo"),
                "base": EncoderPreset(options={"base_width": 64}, embed_dim=512, description="the standard size"),
            },
            default_preset="base",
            citation="He et al. (2016), adapted to 1-D",
        )
    )
