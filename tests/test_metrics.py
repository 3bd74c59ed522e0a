"""Metrics: point values agree with scikit-learn, every vectorised weighted metric equals scikit-learn's
``sample_weight`` form, thresholds maximise validation F1, and the patient bootstrap covers the truth."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import REPO
from scipy.stats import norm
from sklearn.metrics import (
    average_precision_score,
    f1_score,
    mean_absolute_error,
    mean_squared_error,
    r2_score,
    recall_score,
    roc_auc_score,
)

from stence_bench import metrics
from stence_bench.metrics import (
    bootstrap,
    bootstrap_indices,
    choose_thresholds,
    interval,
    paired_difference,
    score,
    summarise,
)


def tied_classification(rng: np.random.Generator, n: int, n_classes: int, levels: int = 7,
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Labels and scores with many ties (scores on a coarse grid), informative about the labels."""
    y = (rng.random((n, n_classes)) < rng.uniform(0.15, 0.6, n_classes)).astype(np.int64)
    s = np.round((y * 0.8 + rng.normal(size=(n, n_classes))) * levels / 3) / levels
    return y, s


SKLEARN_CLASSIFICATION = {
    "auroc": lambda y, s, w, t: roc_auc_score(y, s, sample_weight=w),
    "auprc": lambda y, s, w, t: average_precision_score(y, s, sample_weight=w),
    "f1": lambda y, s, w, t: f1_score(y, (s >= t).astype(int), sample_weight=w, zero_division=0),
    "sensitivity": lambda y, s, w, t: recall_score(y, (s >= t).astype(int), sample_weight=w, zero_division=0),
}


# ------------------------------------------------------------------------------------------- point metrics
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_point_metrics_match_sklearn_multilabel(seed):
    rng = np.random.default_rng(seed)
    y, s = tied_classification(rng, 120, 4)
    y[:, 3] = 0  # a class without positives is skipped
    thresholds = np.array([0.1, 0.0, 0.3, 0.2])
    got = score("multilabel", y, s, threshold=thresholds)
    ones = np.ones(len(y))
    for metric, fn in SKLEARN_CLASSIFICATION.items():
        values = [fn(y[:, c], s[:, c], ones, thresholds[c]) for c in range(3)]
        expected = float(np.mean(values))
        assert got[metric] == pytest.approx(expected, abs=1e-6), metric


def test_point_metrics_binary_logits_keep_their_order():
    """Large logits must not become false ties (torchmetrics would apply a sigmoid to them)."""
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 200)
    s = 40.0 + 5.0 * y + rng.normal(size=200) * 3  # sigmoid(s) == 1.0 in float64 for most
    got = score("binary", y, s, threshold=44.0)
    assert got["auroc"] == pytest.approx(roc_auc_score(y, s), abs=1e-6)
    assert got["auprc"] == pytest.approx(average_precision_score(y, s), abs=1e-6)
    assert got["f1"] == pytest.approx(f1_score(y, s >= 44.0), abs=1e-6)
    assert got["sensitivity"] == pytest.approx(recall_score(y, s >= 44.0), abs=1e-6)
    assert set(score("binary", y, s)) == {"auroc", "auprc"}  # no threshold, no f1/sensitivity


def test_point_metrics_regression_match_sklearn():
    rng = np.random.default_rng(4)
    y = rng.normal(50, 10, 150)
    p = y + rng.normal(0, 4, 150)
    got = score("regression", y, p)
    assert got["mae"] == pytest.approx(mean_absolute_error(y, p), abs=1e-6)
    assert got["rmse"] == pytest.approx(math.sqrt(mean_squared_error(y, p)), abs=1e-6)
    assert got["r2"] == pytest.approx(r2_score(y, p), abs=1e-6)


def test_score_restricted_to_named_metrics():
    rng = np.random.default_rng(12)
    y, s = tied_classification(rng, 80, 2)
    full = score("multilabel", y, s, threshold=0.1)
    assert score("multilabel", y, s, threshold=0.1, metrics=["f1"]) == {"f1": full["f1"]}
    assert set(score("regression", y[:, 0], s[:, 0], metrics=["r2"])) == {"r2"}
    with pytest.raises(ValueError, match="needs a threshold"):
        score("binary", y[:, 0], s[:, 0], metrics=["sensitivity"])


def test_point_metrics_without_valid_classes_are_nan():
    y = np.zeros((10, 2), dtype=int)
    s = np.linspace(0, 1, 20).reshape(10, 2)
    got = score("multilabel", y, s, threshold=0.5)
    assert all(math.isnan(v) for v in got.values())
    assert math.isnan(score("binary", np.ones(5), np.arange(5.0))["auroc"])


def test_multiclass_is_scored_one_vs_rest():
    rng = np.random.default_rng(5)
    classes = rng.integers(0, 3, 90)
    logits = rng.normal(size=(90, 3)) + np.eye(3)[classes]
    s = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    got = score("multiclass", classes, s)
    assert got == score("multilabel", np.eye(3, dtype=int)[classes], s)
    assert got["auroc"] == pytest.approx(roc_auc_score(classes, s, multi_class="ovr", average="macro"), abs=1e-6)


def test_metric_and_kind_mismatch_is_named():
    with pytest.raises(ValueError, match="does not fit a binary task"):
        bootstrap("binary", "mae", np.ones(3), np.ones(3), np.ones((2, 3)))
    with pytest.raises(ValueError, match="unknown task kind"):
        score("ordinal", np.ones(3), np.ones(3))
    with pytest.raises(ValueError, match="needs a threshold"):
        bootstrap("binary", "f1", np.array([0, 1]), np.array([0.1, 0.9]), np.ones((2, 2)))


# ------------------------------------------------------------------------------------------ thresholds
def test_choose_thresholds_maximises_f1_lowest_on_ties():
    rng = np.random.default_rng(6)
    y, s = tied_classification(rng, 150, 3)
    chosen = choose_thresholds("multilabel", y, s)
    assert chosen.shape == (3,)
    for c in range(3):
        candidates = np.unique(s[:, c])
        f1s = np.array([f1_score(y[:, c], s[:, c] >= t) for t in candidates])
        best = candidates[f1s == f1s.max()].min()
        assert chosen[c] == best


def test_choose_thresholds_tie_takes_the_lower_threshold_and_handles_edge_cases():
    # threshold 0.9 -> TP 1, FP 0, FN 1: F1 2/3; threshold 0.5 -> TP 2, FP 2, FN 0: F1 2/3; 0.8 is worse
    y = np.array([1, 0, 1, 0, 0])
    s = np.array([0.9, 0.8, 0.5, 0.5, 0.1])
    assert choose_thresholds("binary", y, s).tolist() == [0.5]
    assert choose_thresholds("binary", np.zeros(4), np.arange(4.0)).tolist() == [np.inf]
    assert choose_thresholds("binary", np.ones(4), np.arange(4.0)).tolist() == [0.0]
    assert choose_thresholds("regression", np.ones(4), np.ones(4)).shape == (0,)


# ---------------------------------------------------------------------------------- bootstrap resamples
def test_bootstrap_indices_resample_patients_deterministically():
    patient_ids = np.array(["p3", "p1", "p1", "p2", "p3", "p3", "p9"])
    w = bootstrap_indices(patient_ids, 500, seed=11)
    assert w.shape == (500, 7) and w.dtype == np.int32
    assert np.array_equal(w, bootstrap_indices(patient_ids, 500, seed=11))
    assert not np.array_equal(w, bootstrap_indices(patient_ids, 500, seed=12))
    # ECGs of one patient share a weight; each resample draws n_patients = 4 patients
    assert (w[:, 1] == w[:, 2]).all() and (w[:, 0] == w[:, 4]).all() and (w[:, 0] == w[:, 5]).all()
    per_patient = w[:, [1, 3, 0, 6]]
    assert (per_patient.sum(axis=1) == 4).all()
    # each patient is drawn once per resample on average
    assert per_patient.mean() == pytest.approx(1.0, abs=0.1)
    # the ECG order does not change a patient's multiplicities
    perm = np.random.default_rng(0).permutation(7)
    assert np.array_equal(bootstrap_indices(patient_ids[perm], 500, seed=11), w[:, perm])


@pytest.mark.parametrize("metric", ["auroc", "auprc", "f1", "sensitivity"])
@pytest.mark.parametrize("kind", ["binary", "multilabel"])
def test_weighted_classification_metrics_equal_sklearn_sample_weight(kind, metric):
    rng = np.random.default_rng([["binary", "multilabel"].index(kind), list(SKLEARN_CLASSIFICATION).index(metric)])
    n_classes = 1 if kind == "binary" else 4
    y, s = tied_classification(rng, 60, n_classes, levels=4)
    patient_ids = rng.integers(0, 35, 60)
    w = bootstrap_indices(patient_ids, 40, seed=1)
    w[0] = 1  # include the unweighted set
    thresholds = np.quantile(s, 0.6, axis=0)
    y_in, s_in = (y[:, 0], s[:, 0]) if kind == "binary" else (y, s)
    got = bootstrap(kind, metric, y_in, s_in, w, threshold=thresholds)
    assert got.shape == (40,)
    fn = SKLEARN_CLASSIFICATION[metric]
    for r in range(40):
        values = [fn(y[:, c], s[:, c], w[r], thresholds[c]) for c in range(n_classes)
                  if w[r][y[:, c] == 1].sum() > 0 and w[r][y[:, c] == 0].sum() > 0]
        expected = float(np.mean(values)) if values else float("nan")
        if math.isnan(expected):
            assert math.isnan(got[r])
        else:
            assert got[r] == pytest.approx(expected, abs=1e-9), r


@pytest.mark.parametrize("metric", ["auroc", "auprc", "f1", "sensitivity"])
def test_fractional_weights_equal_sklearn_sample_weight(metric):
    """Any non-negative weights, not only bootstrap multiplicities, with zeros among them."""
    rng = np.random.default_rng(13)
    y, s = tied_classification(rng, 50, 1, levels=3)
    w = rng.random((20, 50)) * (rng.random((20, 50)) > 0.3)
    got = bootstrap("binary", metric, y[:, 0], s[:, 0], w, threshold=0.0)
    for r in range(20):
        expected = SKLEARN_CLASSIFICATION[metric](y[:, 0], s[:, 0], w[r], 0.0)
        assert got[r] == pytest.approx(expected, abs=1e-9), r


def test_macro_skips_classes_invalid_in_a_resample():
    # class 1 has a single positive ECG: resamples that miss its patient skip class 1
    y = np.array([[1, 0], [0, 0], [1, 1], [0, 0], [1, 0], [0, 0]])
    s = np.array([[0.9, 0.2], [0.1, 0.3], [0.8, 0.9], [0.4, 0.1], [0.3, 0.5], [0.6, 0.4]])
    w = bootstrap_indices(np.arange(6), 200, seed=0)
    got = bootstrap("multilabel", "auroc", y, s, w)
    class0 = bootstrap("binary", "auroc", y[:, 0], s[:, 0], w)
    missing = w[:, 2] == 0
    assert missing.any() and (~missing).any()
    np.testing.assert_allclose(got[missing], class0[missing], equal_nan=True)
    both = bootstrap("binary", "auroc", y[:, 1], s[:, 1], w)
    valid = ~missing & ~np.isnan(class0) & ~np.isnan(both)
    np.testing.assert_allclose(got[valid], (class0[valid] + both[valid]) / 2)


@pytest.mark.parametrize("metric", ["mae", "rmse", "r2"])
def test_weighted_regression_metrics_equal_sklearn_sample_weight(metric):
    rng = np.random.default_rng(7)
    y = rng.normal(1000.0, 5.0, 80)  # a large mean: R2 must not lose precision to cancellation
    p = np.round(y + rng.normal(0, 2, 80))
    w = bootstrap_indices(rng.integers(0, 50, 80), 50, seed=3)
    got = bootstrap("regression", metric, y, p, w)
    for r in range(50):
        if metric == "mae":
            expected = mean_absolute_error(y, p, sample_weight=w[r])
        elif metric == "rmse":
            expected = math.sqrt(mean_squared_error(y, p, sample_weight=w[r]))
        else:
            expected = r2_score(y, p, sample_weight=w[r])
        assert got[r] == pytest.approx(expected, abs=1e-9, rel=1e-12)


@pytest.mark.parametrize("metric", ["auroc", "auprc", "f1", "sensitivity"])
def test_unit_weights_reproduce_the_point_value(metric):
    rng = np.random.default_rng(8)
    y, s = tied_classification(rng, 100, 3)
    point = score("multilabel", y, s, threshold=0.2)[metric]  # torchmetrics returns float32
    assert bootstrap("multilabel", metric, y, s, np.ones((1, 100)), threshold=0.2)[0] == pytest.approx(point, abs=1e-6)


# --------------------------------------------------------------------------------- intervals and summaries
def test_interval_ignores_nan():
    values = np.r_[np.arange(101.0), np.nan, np.nan]
    assert interval(values, 0.9) == pytest.approx((5.0, 95.0))
    assert all(math.isnan(v) for v in interval([np.nan, np.nan]))


def test_summarise_reports_value_interval_and_resamples():
    rng = np.random.default_rng(9)
    y, s = tied_classification(rng, 200, 5)
    patient_ids = np.repeat(np.arange(100), 2)
    out = summarise("multilabel", "auroc", y, s, patient_ids, n_resamples=300, seed=4)
    assert out["n"] == 200 and out["n_patients"] == 100 and out["n_resamples"] == 300
    assert out["values"].shape == (300,) and out["n_valid"] == 300
    assert out["ci_low"] < out["value"] < out["ci_high"]
    again = summarise("multilabel", "auroc", y, s, patient_ids, weights=bootstrap_indices(patient_ids, 300, 4))
    np.testing.assert_array_equal(out["values"], again["values"])


# ------------------------------------------------------------------------------------- paired differences
def test_paired_difference_of_identical_cells_is_zero():
    rng = np.random.default_rng(10)
    y, s = tied_classification(rng, 150, 1)
    ids = np.arange(150)
    a = summarise("binary", "auroc", y[:, 0], s[:, 0], ids, n_resamples=300)
    b = summarise("binary", "auroc", y[:, 0], s[:, 0], ids, n_resamples=300)
    diff = paired_difference(a["values"], b["values"])
    assert diff["mean"] == 0.0 and diff["ci_low"] <= 0.0 <= diff["ci_high"] and not diff["excludes_zero"]


def test_paired_difference_of_a_better_cell_excludes_zero():
    rng = np.random.default_rng(11)
    n = 300
    y = rng.integers(0, 2, n)
    noise = rng.normal(size=n)
    control = 0.5 * y + noise
    better = 1.5 * y + noise  # same noise, stronger signal: better on every resample
    ids = np.repeat(np.arange(n // 2), 2)
    a = summarise("binary", "auroc", y, better, ids, n_resamples=300)
    b = summarise("binary", "auroc", y, control, ids, n_resamples=300)
    diff = paired_difference(a["values"], b["values"])
    assert diff["mean"] > 0 and diff["ci_low"] > 0 and diff["excludes_zero"]
    assert paired_difference(b["values"], a["values"])["ci_high"] < 0


# ------------------------------------------------------------------------------------ bootstrap validity
def clustered_auroc_sets(rng: np.random.Generator, n_patients: int, ecgs_per_patient: int, delta: float,
                         patient_sd: float, ecg_sd: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Patient-level labels; score = delta * label + patient effect + ECG noise."""
    label = (rng.random(n_patients) < 0.4).astype(int)
    effect = rng.normal(0, patient_sd, n_patients)
    ids = np.repeat(np.arange(n_patients), ecgs_per_patient)
    y = label[ids]
    s = delta * y + effect[ids] + rng.normal(0, ecg_sd, ids.size)
    return y, s, ids


def test_patient_bootstrap_covers_the_true_auroc():
    """Two ECGs per patient sharing a random effect (total variance 1): true AUROC = Phi(delta / sqrt 2)."""
    rng = np.random.default_rng(2024)
    delta = 1.0
    truth = norm.cdf(delta / math.sqrt(2))
    covered = 0
    n_sets = 200
    for i in range(n_sets):
        y, s, ids = clustered_auroc_sets(rng, 150, 2, delta, patient_sd=math.sqrt(0.6), ecg_sd=math.sqrt(0.4))
        values = bootstrap("binary", "auroc", y, s, bootstrap_indices(ids, 300, seed=i))
        low, high = interval(values)
        covered += low <= truth <= high
    coverage = covered / n_sets
    assert 0.88 <= coverage <= 0.99, coverage


def test_patient_bootstrap_is_wider_than_ecg_bootstrap_for_clustered_ecgs():
    rng = np.random.default_rng(5)
    y, s, ids = clustered_auroc_sets(rng, 60, 5, 1.0, patient_sd=1.0, ecg_sd=0.05)  # near-identical ECGs
    patient = summarise("binary", "auroc", y, s, ids, n_resamples=500, seed=1)
    naive = summarise("binary", "auroc", y, s, np.arange(ids.size), n_resamples=500, seed=1)
    patient_width = patient["ci_high"] - patient["ci_low"]
    naive_width = naive["ci_high"] - naive["ci_low"]
    assert patient["value"] == naive["value"]
    assert patient_width > 1.6 * naive_width, (patient_width, naive_width)


def test_module_and_docs_say_why_it_is_vectorised_and_name_the_api():
    assert "vectorised" in metrics.__doc__ and "100 times" in metrics.__doc__
    guide = (REPO / "docs" / "metrics.md").read_text()
    for name in metrics.__all__:
        if not name.isupper():
            assert f"{name}(" in guide, name
