"""Built-in ECG encoders. Registration only: the models live in sibling modules, imported when built."""

from __future__ import annotations

from stence_bench import TWELVE_LEADS, EncoderPreset, EncoderSpec, hookimpl

from .contracts import paper_contracts

_RESNET = "stence_bench_plugins.encoders.resnet1d"
_XRESNET = "stence_bench_plugins.encoders.xresnet1d"
_TRANSFORMER = "stence_bench_plugins.encoders.transformer"
_TEMPORALNET = "stence_bench_plugins.encoders.temporalnet"

_XRESNET_CITATION = (
    "Strodthoff, Wagner, Schaeffter, Samek, IEEE JBHI 2021 (PTB-XL benchmark); "
    "He et al., Bag of Tricks for Image Classification, CVPR 2019 (fastai XResNet)"
)


@hookimpl
def register_encoders(register):
    registered: dict[str, EncoderSpec] = {}
    add = register

    def register(spec: EncoderSpec) -> None:  # the papers' contract variants derive from what is registered here
        registered[spec.name] = spec
        add(spec)

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
    # XResNet1d of the PTB-XL benchmark: constant stage width 64 (x4 in bottlenecks), concat pooling
    for depth, blocks, base_dim, tiny_width, tiny_dim in (
        (18, "basic blocks 2-2-2-2", 128, 16, 32),
        (50, "bottleneck blocks 3-4-6-3", 512, 8, 64),
        (101, "bottleneck blocks 3-4-23-3", 512, 8, 64),
    ):
        register(
            EncoderSpec(
                name=f"xresnet1d{depth}",
                description=f"XResNet1d-{depth} as in the PTB-XL benchmark: 3-conv stem, {blocks} of kernel 5, "
                "ResNet-D avg-pool shortcuts, zero-init last BN, concat (max+avg) pooling",
                factory=f"{_XRESNET}:xresnet1d{depth}",
                sampling_rate=100,
                window_s=2.5,
                leads=TWELVE_LEADS,
                embed_dim=base_dim,
                normalization="zscore_dataset",
                presets={
                    "tiny": EncoderPreset(
                        options={"width": tiny_width}, embed_dim=tiny_dim, description="for tests and the CPU demo"
                    ),
                    "base": EncoderPreset(options={"width": 64}, embed_dim=base_dim, description="the published size"),
                },
                default_preset="base",
                citation=_XRESNET_CITATION,
            )
        )
    register(
        EncoderSpec(
            name="ecg_transformer",
            description="ViT-style transformer: 0.25 s patches of every lead, shared patch embedding, learned lead "
            "and position embeddings, pre-norm encoder, CLS pooling",
            factory=f"{_TRANSFORMER}:ecg_transformer",
            sampling_rate=100,
            window_s=2.5,
            leads=TWELVE_LEADS,
            embed_dim=256,
            normalization="zscore_record",
            presets={
                "tiny": EncoderPreset(
                    options={"dim": 32, "depth": 2, "heads": 2, "mlp_ratio": 2.0, "dropout": 0.0},
                    embed_dim=32,
                    description="for tests and the CPU demo",
                ),
                "base": EncoderPreset(
                    options={"dim": 256, "depth": 8, "heads": 8, "mlp_ratio": 4.0, "dropout": 0.1},
                    embed_dim=256,
                    description="8 layers of width 256 for GPU runs",
                ),
            },
            default_preset="base",
            citation="Dosovitskiy et al., An Image is Worth 16x16 Words, ICLR 2021; Vaswani et al., NeurIPS 2017",
        )
    )
    register(
        EncoderSpec(
            name="temporalnet",
            description="Dual-stream TemporalNet: limb (I-aVF) and precordial (V1-V6) leads through separate "
            "dilated residual TCN streams, pooled, concatenated and fused by a linear layer",
            factory=f"{_TEMPORALNET}:temporalnet",
            sampling_rate=100,
            window_s=2.5,
            leads=TWELVE_LEADS,
            embed_dim=256,
            normalization="zscore_dataset",
            presets={
                "tiny": EncoderPreset(
                    options={"width": 16, "depth": 2, "kernel_size": 5, "stem_kernel_size": 5, "dilations": [1, 2],
                             "dropout": 0.0, "embed_dim": 32},
                    embed_dim=32,
                    description="for tests and the CPU demo",
                ),
                "base": EncoderPreset(
                    options={"width": 128, "depth": 8, "kernel_size": 7, "stem_kernel_size": 7,
                             "dilations": [1, 2, 4, 8], "dropout": 0.1, "embed_dim": 256},
                    embed_dim=256,
                    description="two streams of 8 blocks of width 128 for GPU runs",
                ),
            },
            default_preset="base",
            citation="Dade et al., Heart Rhythm O2 2026; Bai, Kolter, Koltun 2018 (temporal convolutional networks)",
        )
    )
    for variant in paper_contracts(registered):
        add(variant)
