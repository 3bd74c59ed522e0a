"""Built-in pretraining objectives. Registration only: the losses live in sibling modules, imported when built."""

from __future__ import annotations

from stence_bench import ObjectiveSpec, hookimpl

_HERE = "stence_bench_plugins.objectives"


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
        name="clip", factory=f"{_HERE}.contrastive:Clip", modalities=("ecg", "angiography"),
        gathers_across_ranks=True, modality_encoders={"angiography": "angio_cnn"},
        options={"paired": "angiography", "temperature": 0.2},
        description="CLIP between ECG and coronary angiography: symmetric InfoNCE, learnable temperature "
        "(0.2 at start), direction weights, optional auxiliary stenosis BCE on the angiography branch",
        citation="StenCE",
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
        options={"paired": "text", "soft_target_weight": 0.5},
        description="sigmoid pairwise ECG-text loss, learnable scale and bias; soft targets from the Jaccard "
        "similarity of the statement sets soften false negatives",
        citation="Zhai et al. 2023 (SigLIP); FG-CLEP",
    ))
    register(ObjectiveSpec(
        name="patient_contrastive", factory=f"{_HERE}.contrastive:PatientContrastive",
        modalities=("ecg", "patient_id"), gathers_across_ranks=True,
        options={"patient_positives": True, "segment_positives": True},
        description="NT-Xent with patient-aware positives (other ECGs of the patient, other segments, optionally "
        "other lead groups); VCG rotation/scaling (Kors), partial lead blanking, noise",
        citation="Dade et al., Heart Rhythm O2 2026; Kiyasseh et al. 2021 (CLOCS)",
    ))
    register(ObjectiveSpec(
        name="metric_learning", factory=f"{_HERE}.metric:MetricLearning", modalities=("ecg",),
        gathers_across_ranks=True, options={"miner": "distance", "distance": "euclidean", "loss": "triplet"},
        description="self-supervised deep metric learning: triplet loss, positives mined as each ECG's nearest "
        "neighbour by Euclidean or DTW distance",
        citation="Jeong et al., MLHC 2023",
    ))
    register(ObjectiveSpec(
        name="metric_learning_supervised", factory=f"{_HERE}.metric:MetricLearning", modalities=("ecg", "labels"),
        gathers_across_ranks=True, options={"miner": "label", "loss": "triplet"},
        description="supervised deep metric learning: triplet loss over every label-consistent triplet",
        citation="Jeong et al., MLHC 2023",
    ))
    register(ObjectiveSpec(
        name="clef", factory=f"{_HERE}.contrastive:Clef", modalities=("ecg", "metadata"),
        gathers_across_ranks=True, modality_encoders={},
        options={"floor": 0.2, "align_weight": 0.5},
        description="clinically-guided contrastive: negatives weighted by the squared SCORE2-style risk "
        "difference (min-max, floor 0.2) times exp(-m_i m_j) for missing-metadata rates, plus similarity alignment",
        citation="Shu et al. 2025 (CLEF, arXiv:2512.02180)",
    ))
