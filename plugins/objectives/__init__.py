"""Built-in pretraining objectives. Registration only: the losses live in sibling modules, imported when built."""

from __future__ import annotations

from stence_bench import ObjectiveSpec, hookimpl

_HERE = "stence_bench_plugins.objectives"
STENCE = ("Cenikj et al. 2026 (StenCE, arXiv:2606.02605); code: github.com/NikolaCenic/ecg-stenosis-cls")
JEONG = "Jeong, Stultz, Ghassemi, MLHC 2023; code: github.com/mandiehyewon/ssldml"


@hookimpl
def register_objectives(register):
    register(ObjectiveSpec(
        name="none", factory=None, modalities=("ecg",), control=True,
        description="random initialisation, no pretraining: the control every matrix includes",
        citation="Evaluation of ECG Representations Must Be Fixed (ICML 2026 position paper)",
    ))
    register(ObjectiveSpec(
        name="pretrained", factory=None, modalities=("ecg",), control=True, as_given=True,
        description="the encoder entry's given weights (weights = in the suite) evaluated as loaded, no pretraining: "
        "planned for every encoder with weights, beside the random-init control of the same architecture",
        citation="docs/models.md",
    ))
    register(ObjectiveSpec(
        name="supervised", factory=f"{_HERE}.supervised:Supervised", modalities=("ecg", "labels"), control=True,
        description="supervised pretraining on the pretraining data's labels (multi-label BCE): the baseline "
        "every self-supervised objective must beat",
    ))
    register(ObjectiveSpec(
        name="clip", factory=f"{_HERE}.contrastive:Clip", modalities=("ecg", "angiography"), version="2",
        gathers_across_ranks=True, modality_encoders={"angiography": "angio_cnn"},
        options={"paired": "angiography", "temperature": 0.2, "learn_temperature": False},
        description="CLIP between ECG and coronary angiography: symmetric InfoNCE at StenCE's fixed temperature 0.2 "
        "(its CLIP loss without the auxiliary stenosis term: objective 'stence')",
        citation=STENCE,
    ))
    register(ObjectiveSpec(
        name="stence", factory=f"{_HERE}.contrastive:StenCE", modalities=("ecg", "angiography", "targets"),
        gathers_across_ranks=True, modality_encoders={"angiography": "angio_cnn"},
        targets=("stenosis.70", "stenosis.vessels"),
        options={"temperature": 0.2, "learn_temperature": False, "proj_dim": 256, "aux_stenosis_weight": 1.0,
                 "level_weights": [0.4, 0.4]},
        description="StenCE as released: CLIP between ECG and angiography (fixed temperature 0.2, 256-d) plus the "
        "auxiliary stenosis loss on the angiography branch (weight 1; patient >= 70 % and per-artery levels, 0.4 each) "
        "on the pretraining patients' stenosis labels",
        citation=STENCE,
    ))
    register(ObjectiveSpec(
        name="clip_text", factory=f"{_HERE}.contrastive:Clip", modalities=("ecg", "text"),
        gathers_across_ranks=True, modality_encoders={"text": "text_transformer"},
        options={"paired": "text", "temperature": 0.07},
        description="CLIP between ECG and its report text: symmetric InfoNCE, learnable temperature",
        citation="Radford et al. 2021; MERL (Liu et al., ICML 2024)",
    ))
    register(ObjectiveSpec(
        name="siglip", factory=f"{_HERE}.contrastive:SigLIP", modalities=("ecg", "text", "labels"),
        gathers_across_ranks=True, modality_encoders={"text": "text_transformer"},
        options={"paired": "text", "soft_target_weight": 0.5, "soft_targets": "auto"},
        description="sigmoid pairwise ECG-text loss, learnable scale and bias; soft targets from the semantic "
        "similarity of the reports under a pretrained text encoder (text_sentence), else the Jaccard similarity of "
        "their statements, soften false negatives",
        citation="Zhai et al. 2023 (SigLIP); Li et al. 2025 (FG-CLEP, arXiv:2505.11939)",
    ))
    register(ObjectiveSpec(
        name="patient_contrastive", factory=f"{_HERE}.contrastive:PatientContrastive", version="2",
        modalities=("ecg", "patient_id"), gathers_across_ranks=True,
        options={"patient_positives": True, "segment_positives": True, "lead_group_positives": "auto"},
        description="NT-Xent with patient-aware positives as Dade et al.: other ECGs of the patient, other segments, "
        "the other lead group (limb vs precordial); VCG rotation/scaling (Kors), partial lead blanking, noise",
        citation="Dade et al., Heart Rhythm O2 2026; Kiyasseh et al. 2021 (CLOCS)",
    ))
    register(ObjectiveSpec(
        name="metric_learning", factory=f"{_HERE}.metric:MetricLearning", modalities=("ecg",), version="2",
        gathers_across_ranks=True,
        options={"variant": "published", "miner": "distance", "distance": "euclidean", "loss": "triplet"},
        description="self-supervised deep metric learning as Jeong et al.: one triplet per ECG, positive its nearest "
        "ECG by mean absolute signal difference (or DTW), negative one of its two farthest; squared-L2 triplet loss",
        citation=JEONG,
    ))
    register(ObjectiveSpec(
        name="metric_learning_supervised", factory=f"{_HERE}.metric:MetricLearning", modalities=("ecg", "targets"),
        version="2", gathers_across_ranks=True, targets=("pcwp.regression",),
        options={"variant": "published", "miner": "continuous", "loss": "triplet"},
        description="supervised deep metric learning as Jeong et al.: one triplet per ECG mined on its mPCWP (the "
        "cath table), positive the closest value, negative the farthest; squared-L2 triplet loss",
        citation=JEONG,
    ))
    register(ObjectiveSpec(
        name="metric_learning_labels", factory=f"{_HERE}.metric:MetricLearning", modalities=("ecg", "labels"),
        gathers_across_ranks=True, options={"variant": "batch_all", "miner": "label", "loss": "triplet"},
        description="stence-bench's supervised deep metric learning: triplet loss over every triplet consistent "
        "with the pretraining data's labels (normalised embeddings, active triplets averaged)",
        citation=JEONG,
    ))
    register(ObjectiveSpec(
        name="clef", factory=f"{_HERE}.contrastive:Clef", modalities=("ecg", "metadata"), version="2",
        gathers_across_ranks=True, modality_encoders={},
        options={"variant": "published", "floor": 0.2},
        description="clinically-guided contrastive as CLEF released it: 2N x 2N SimCLR loss whose negatives are "
        "weighted by a softmax of the squared SCORE2 risk difference (0.8 d + 0.2), plus the alignment of "
        "similarities, temperature 0.07, single-lead views (variant 'cross_view': stence-bench's own)",
        citation="Shu et al. 2025 (CLEF, arXiv:2512.02180)",
    ))
