"""How much each paired modality of the synthetic cohort says about each label by itself.

Builds a cohort's paired modalities in memory (the same generator as `stence-bench data synth`, without the ECG
signals: `stence_bench.synth.cohort.paired_modalities`), splits it by patient (70 % train, 30 % test), and for each
modality and task fits a logistic regression on the modality alone on the training ECGs and reports its test AUROC
with a patient-bootstrap 95 % interval (`stence_bench.metrics.summarise`, 1,000 resamples). The modalities, as
features per ECG (a patient's modality on every one of its ECGs):

- report: the statements of the ECG's machine report, one indicator each (vocabulary of the training ECGs);
- report (ischaemia statements): only the three "ST-T changes in ... leads, consider ischemia" statements;
- angiography: the per-segment stenosis the patient's angiogram draws and the worst of them (what a perfect reader
  of it reports; the training median and a missing indicator where there is no angiogram);
- angiography embeddings: the 128 numbers of angiography_embeddings.csv;
- metadata: age, sex, BMI, SBP, DBP, smoking, diabetes, cholesterol (missing values: the training median and an
  indicator per column);
- risk: the SCORE2-style risk (and a missing indicator).

Labels are the ground truth at the ECG, from the latents (as benchmarks/synth_difficulty.py): stenosis.70 (max
segment stenosis >= 70 %), lvef.35 (LVEF <= 35 %), potassium.5.5 (K+ >= 5.5 mmol/L), pcwp.18 (mPCWP > 18 mmHg).
Anyone can re-run it (about a minute on 2 cores):

    python benchmarks/synth_side_information.py [--patients 3000] [--seed 0] [--side report.noise=0.5 ...]

The tables it prints are kept in docs/synthetic.md, "Side information".
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from stence_bench.metrics import summarise
from stence_bench.synth.cohort import METADATA_COLUMNS, paired_modalities
from stence_bench.synth.physiology import SEGMENTS, VESSELS
from stence_bench.synth.side import SideInformation

TASKS: dict[str, Callable[[pd.DataFrame], pd.Series]] = {
    "stenosis.70": lambda e: e[[f"max_{v}" for v in VESSELS]].max(axis=1) >= 70,
    "lvef.35": lambda e: e["lvef"] <= 35,
    "potassium.5.5": lambda e: e["potassium"] >= 5.5,
    "pcwp.18": lambda e: e["pcwp"] > 18,
}
MODALITY_ROWS = ("report", "report (ischaemia statements)", "angiography", "angiography embeddings", "metadata",
                 "risk")
ISCHAEMIA = "consider ischemia"


def _per_patient(frame: pd.DataFrame, subjects: np.ndarray) -> pd.DataFrame:
    """A per-patient frame (indexed by subject id) as one row per ECG (NaN where the patient has no row)."""
    return frame.reindex(subjects).reset_index(drop=True)


def _impute(values: pd.DataFrame, train: np.ndarray) -> np.ndarray:
    """Missing values: the training median (0 where the training rows have none) and an indicator per column that
    has any."""
    x = values.to_numpy(dtype=float)
    medians = np.nanmedian(np.where(np.isnan(x[train]).all(axis=0), 0.0, x[train]), axis=0) if len(x) else []
    missing = np.isnan(x)
    filled = np.where(missing, medians, x)
    return np.hstack([filled, missing[:, missing.any(axis=0)].astype(float)])


def features(modalities: dict, train: np.ndarray) -> dict[str, np.ndarray]:
    """Each modality's features, one row per ECG of ``modalities["ecgs"]``; ``train`` marks the training ECGs (the
    report vocabulary and the imputation medians come from them)."""
    ecgs = modalities["ecgs"]
    subjects = ecgs["subject_id"].to_numpy()
    reports = modalities["reports"]
    vocabulary = sorted({s for r, t in zip(reports, train) if t for s in r})
    position = {s: j for j, s in enumerate(vocabulary)}
    bag = np.zeros((len(reports), len(vocabulary)))
    for i, r in enumerate(reports):
        for s in r:
            if s in position:
                bag[i, position[s]] = 1.0
    ischaemia = bag[:, [j for s, j in position.items() if ISCHAEMIA in s]]
    drawn = pd.DataFrame.from_dict(modalities["angiograms"], orient="index", columns=[s for s, _ in SEGMENTS])
    drawn.index = 10000000 + drawn.index.astype(int)
    drawn["worst"] = drawn.max(axis=1)
    tables = modalities["tables"]
    embeddings = tables["angiography_embeddings"].set_index("subject_id")
    patients = tables["patients"].set_index("subject_id")
    metadata = patients[list(METADATA_COLUMNS)].assign(sex=patients["sex"].map({"F": 1.0, "M": 0.0}))
    return {
        "report": bag, "report (ischaemia statements)": ischaemia,
        "angiography": _impute(_per_patient(drawn, subjects), train),
        "angiography embeddings": _impute(_per_patient(embeddings, subjects), train),
        "metadata": _impute(_per_patient(metadata, subjects), train),
        "risk": _impute(_per_patient(patients[["score2"]], subjects), train),
    }


def patient_split(ecgs: pd.DataFrame, seed: int, train_share: float = 0.7) -> np.ndarray:
    """Whether each ECG is a training ECG: patients drawn at random, ``train_share`` of them."""
    patients = np.sort(ecgs["patient"].unique())
    order = np.random.default_rng(seed).permutation(patients)
    train_patients = set(order[: int(round(train_share * len(order)))].tolist())
    return ecgs["patient"].isin(train_patients).to_numpy()


def side_information(patients: int, seed: int = 0, side: SideInformation = SideInformation(), *,
                     n_resamples: int = 1000) -> pd.DataFrame:
    """One row per modality and task: the test AUROC of a logistic regression on that modality alone, its
    patient-bootstrap 95 % interval, the test patients and ECGs, the task's prevalence. A modality without any
    feature (every report empty, every value missing) scores every ECG alike: AUROC 0.5."""
    modalities = paired_modalities(patients, seed, side)
    ecgs = modalities["ecgs"]
    train = patient_split(ecgs, seed)
    test = ~train
    x = features(modalities, train)
    rows = []
    for task, label in TASKS.items():
        y = label(ecgs).to_numpy().astype(int)
        for name in MODALITY_ROWS:
            values = x[name]
            values = values[:, values[train].std(axis=0) > 0] if values.shape[1] else values
            if values.shape[1] == 0 or len(set(y[train])) < 2:
                score = np.zeros(int(test.sum()))
            else:
                model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
                model.fit(values[train], y[train])
                score = model.predict_proba(values[test])[:, 1]
            summary = summarise("binary", "auroc", y[test], score, ecgs["patient"].to_numpy()[test],
                                n_resamples=n_resamples, seed=seed)
            rows.append({"modality": name, "task": task, "auroc": summary["value"], "ci_low": summary["ci_low"],
                         "ci_high": summary["ci_high"], "test_patients": summary["n_patients"],
                         "test_ecgs": summary["n"], "prevalence": float(y.mean())})
    return pd.DataFrame(rows)


def markdown(table: pd.DataFrame) -> str:
    """Modalities as rows, tasks as columns: ``AUROC (low-high)``."""
    tasks = list(dict.fromkeys(table["task"]))
    lines = ["| modality | " + " | ".join(tasks) + " |", "|---|" + "---|" * len(tasks)]
    for name in dict.fromkeys(table["modality"]):
        cells = table[table["modality"] == name].set_index("task")
        lines.append(f"| {name} | " + " | ".join(
            f"{cells.loc[t, 'auroc']:.3f} ({cells.loc[t, 'ci_low']:.3f}-{cells.loc[t, 'ci_high']:.3f})"
            for t in tasks) + " |")
    prevalence = table.drop_duplicates("task").set_index("task")["prevalence"]
    lines.append("| *prevalence* | " + " | ".join(f"{prevalence[t]:.1%}" for t in tasks) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--side", action="append", default=[], metavar="MODALITY.KNOB=SHARE",
                        help="a knob of the cohort's side information (as stence-bench data synth --side)")
    parser.add_argument("--resamples", type=int, default=1000)
    args = parser.parse_args()
    side = SideInformation.from_assignments(args.side)
    started = time.perf_counter()
    table = side_information(args.patients, args.seed, side, n_resamples=args.resamples)
    first = table.iloc[0]
    print(f"{args.patients} patients, seed {args.seed}, side information {side.summary() or 'as generated'}: "
          f"{first['test_patients']} test patients ({first['test_ecgs']} ECGs); test AUROC (95 % patient-bootstrap "
          "interval) of a logistic regression on each modality alone")
    print(markdown(table))
    print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
