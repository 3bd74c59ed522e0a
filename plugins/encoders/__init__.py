"""Built-in ECG encoders. Registration only: the models live in sibling modules, imported when built."""

from __future__ import annotations

from stence_bench import TWELVE_LEADS, EncoderPreset, EncoderSpec, hookimpl
from stence_bench.specs import WeightsLayout

from .contracts import paper_contracts

_RESNET = "stence_bench_plugins.encoders.resnet1d"
_XRESNET = "stence_bench_plugins.encoders.xresnet1d"
_TRANSFORMER = "stence_bench_plugins.encoders.transformer"
_TEMPORALNET = "stence_bench_plugins.encoders.temporalnet"
_ECG_FM = "stence_bench_plugins.encoders.ecg_fm"
_ECGFOUNDER = "stence_bench_plugins.encoders.ecgfounder"
_ST_MEM = "stence_bench_plugins.encoders.st_mem"

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

    register_foundation_models(register)
    for variant in paper_contracts(registered):
        add(variant)


def register_foundation_models(register):
    """Public ECG foundation models whose weights are published, each with its true input contract, its released
    checkpoint's layout and the datasets it was pretrained on (docs/models.md). Nothing is downloaded: a suite
    names the file the user downloaded (``weights = "..."``) and evaluates it with the ``pretrained`` objective."""
    register(
        EncoderSpec(
            name="ecg_fm",
            description="ECG-FM: wav2vec 2.0 encoder (90.9 M parameters): 4 strided convolutions over the 12 leads, "
            "convolutional position embedding, 12 post-norm transformer layers of width 768, mean over time; "
            "weights: mimic_iv_ecg_physionet_pretrained.pt (huggingface.co/wanglab/ecg-fm)",
            factory=f"{_ECG_FM}:ecg_fm",
            sampling_rate=500,
            window_s=5.0,
            leads=TWELVE_LEADS,
            embed_dim=768,
            normalization="zscore_record",
            presets={
                "released": EncoderPreset(embed_dim=768, description="the published size (the released checkpoint)"),
                "tiny": EncoderPreset(
                    options={"conv_layers": [[16, 2, 2]] * 4, "embed_dim": 32, "ffn_dim": 64, "heads": 2, "layers": 2,
                             "conv_pos": 16, "conv_pos_groups": 4},
                    embed_dim=32, description="the same layout at toy size, for tests and the CPU demo"),
            },
            default_preset="released",
            # PhysioNet/CinC 2021 republishes PTB-XL: both are declared
            pretrained_on=("mimic-iv-ecg", "cinc2021", "ptbxl"),
            weights_layout=WeightsLayout(
                prefix="model.",
                ignore=("mask_emb", "quantizer.*", "project_q.*", "final_proj.*", "target_glu.*", "project_inp.*",
                        "input_quantizer.*"),
                rename={r"parametrizations\.weight\.original0$": "weight_g",
                        r"parametrizations\.weight\.original1$": "weight_v"},
            ),
            citation="McKeen et al., ECG-FM: An Open Electrocardiogram Foundation Model, arXiv:2408.05178 (2024); "
            "Baevski et al., wav2vec 2.0, NeurIPS 2020; Oh et al., fairseq-signals",
        )
    )
    founder = dict(
        factory=f"{_ECGFOUNDER}:ecgfounder",
        sampling_rate=500,
        window_s=10.0,
        embed_dim=1024,
        bandpass_hz=(0.67, 40.0),
        normalization="zscore_all_leads",
        presets={
            "released": EncoderPreset(embed_dim=1024, description="the published size (the released checkpoint)"),
            "tiny": EncoderPreset(
                options={"base_filters": 8, "filter_list": [8, 16, 16, 32, 32, 64, 64],
                         "m_blocks_list": [1, 1, 1, 1, 1, 1, 1], "groups_width": 8},
                embed_dim=64, description="the same layout at toy size, for tests and the CPU demo"),
        },
        default_preset="released",
        pretrained_on=("heedb",),  # the Harvard-Emory ECG Database
        weights_layout=WeightsLayout(prefix="state_dict.", ignore=("dense.*",)),
        citation="Li et al., An Electrocardiogram Foundation Model Built on over 10 Million Recordings, NEJM AI 2025; "
        "Hong et al. (Net1D)",
    )
    register(
        EncoderSpec(
            name="ecgfounder",
            description="ECGFounder: Net1D (30.6 M parameters), 7 stages of grouped convolutions with "
            "squeeze-and-excitation, mean over time (1024); weights: 12_lead_ECGFounder.pth "
            "(huggingface.co/PKUDigitalHealth/ECGFounder)",
            leads=TWELVE_LEADS,
            **founder,
        )
    )
    register(
        EncoderSpec(
            name="ecgfounder_1lead",
            description="ECGFounder for lead I alone (Net1D with one input channel); weights: 1_lead_ECGFounder.pth "
            "(huggingface.co/PKUDigitalHealth/ECGFounder)",
            leads=("I",),
            **founder,
        )
    )
    register(
        EncoderSpec(
            name="st_mem",
            description="ST-MEM: ViT-B/75 over per-lead 0.3 s patches with lead and separator embeddings (12 blocks "
            "of width 768), mean over patch tokens; weights: the released encoder.pth (github.com/bakqui/ST-MEM)",
            factory=f"{_ST_MEM}:st_mem",
            sampling_rate=250,
            window_s=9.0,
            leads=TWELVE_LEADS,
            embed_dim=768,
            bandpass_hz=(0.67, 40.0),
            normalization="zscore_all_leads",
            presets={
                "released": EncoderPreset(embed_dim=768, description="ViT-B/75, the released checkpoint"),
                "small": EncoderPreset(options={"width": 384, "depth": 12, "heads": 6, "mlp_dim": 1536}, embed_dim=384,
                                       description="ViT-S/75 of the public code (no checkpoint released)"),
                "tiny": EncoderPreset(options={"width": 32, "depth": 2, "heads": 2, "dim_head": 16, "mlp_dim": 64},
                                      embed_dim=32, description="the same layout at toy size, for tests and the CPU demo"),
            },
            default_preset="released",
            # Chapman and Ningbo are parts of PhysioNet/CinC 2021 ("dataset:part"); CODE-15 is not
            pretrained_on=("cinc2021:chapman", "cinc2021:ningbo", "code-15"),
            weights_layout=WeightsLayout(prefix="model.", ignore=("head.*",)),
            citation="Na et al., Guiding Masked Representation Learning to Capture Spatio-Temporal Relationship of "
            "Electrocardiogram, ICLR 2024",
        )
    )
