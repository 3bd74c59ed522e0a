"""Scores of one evaluated cell, and their uncertainty by bootstrap over the test set's *patients*.

Point metrics (:func:`score`) use torchmetrics' functional API. Confidence intervals (:func:`summarise`) come
from a bootstrap over patients: each resample draws the test set's patients with replacement and every drawn
patient brings all of its ECGs, so ECGs of one patient, which are correlated, never count as independent
evidence. A resample is a row of a weights matrix ``W [R, n_ecgs]`` (an ECG's multiplicity: ``k`` when its
patient is drawn ``k`` times, see :func:`bootstrap_indices`), and :func:`bootstrap` computes a metric on all
``R`` resamples at once with NumPy: scores are sorted once per class, and the weighted counts of positives and
negatives above every threshold, for every resample, are cumulative sums of the sorted weights (F1,
sensitivity and the regression metrics are matrix-vector products).

Why not torchmetrics or scikit-learn for the resamples: both compute one resample per call. A run has about
2000 cells x 1000 resamples; looping over the resamples costs far more than 100 times what the vectorised form
does (scikit-learn's ``roc_auc_score``: about 2 ms per resample and class, 10 s for a cell of 200 ECGs x 5
classes; here: about 1 us per resample and class, 5 ms for that cell). The weighted forms here are written to equal
scikit-learn's ``sample_weight`` definitions exactly, and ``tests/test_metrics.py`` checks each of them against
scikit-learn on random inputs with tied scores to 1e-9, and the point metrics against scikit-learn to 1e-6.

Conventions, the same for the point metrics and the resamples:

- ``binary``: ``y_true`` ``[n]`` (or ``[n, 1]``) in {0, 1}; ``y_score`` the same shape, any real scores
  (probabilities or logits; only their order matters to AUROC and AUPRC).
- ``multilabel``: ``[n, C]``; a metric is the macro average over the classes that have both positives and
  negatives in the evaluated set (in each resample, for the bootstrap); a class lacking either is skipped, and
  with none left the value is NaN. ``binary`` follows the same rule for its one class.
- ``multiclass``: ``y_true`` integer classes ``[n]`` (or one-hot ``[n, C]``), ``y_score`` ``[n, C]``; scored
  one-vs-rest, exactly as ``multilabel`` on the one-hot labels.
- ``regression``: ``[n]`` (or ``[n, 1]``) real values; MAE, RMSE, R2 (NaN when the targets have no variance).
- F1 and sensitivity predict positive when ``score >= threshold`` (one threshold per class, from
  :func:`choose_thresholds` on the validation set) and need a threshold.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

__all__ = [
    "CLASSIFICATION_METRICS",
    "REGRESSION_METRICS",
    "bootstrap",
    "bootstrap_indices",
    "choose_thresholds",
    "interval",
    "paired_difference",
    "score",
    "summarise",
]

Kind = Literal["binary", "multilabel", "multiclass", "regression"]
MetricName = Literal["auroc", "auprc", "f1", "sensitivity", "mae", "rmse", "r2"]
CLASSIFICATION_METRICS: tuple[str, ...] = ("auroc", "auprc", "f1", "sensitivity")
REGRESSION_METRICS: tuple[str, ...] = ("mae", "rmse", "r2")
THRESHOLD_METRICS = frozenset({"f1", "sensitivity"})
_KINDS = ("binary", "multilabel", "multiclass", "regression")


# --------------------------------------------------------------------------------------------- input checks
def _check_kind(kind: str) -> None:
    if kind not in _KINDS:
        raise ValueError(f"unknown task kind {kind!r}; expected one of {', '.join(_KINDS)}")


def _check_metric(kind: str, metric: str) -> None:
    _check_kind(kind)
    allowed = REGRESSION_METRICS if kind == "regression" else CLASSIFICATION_METRICS
    if metric not in allowed:
        raise ValueError(f"metric {metric!r} does not fit a {kind} task; expected one of {', '.join(allowed)}")


def _classification_arrays(kind: str, y_true: Any, y_score: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(labels [n, C] bool, scores [n, C] float64)`` for a classification kind, checked."""
    scores = np.asarray(y_score, dtype=np.float64)
    labels = np.asarray(y_true)
    if kind == "multiclass":
        if scores.ndim != 2:
            raise ValueError(f"multiclass y_score must be [n, C], got shape {scores.shape}")
        if labels.ndim == 1:
            classes = labels.astype(np.int64)
            if np.any(classes != labels) or classes.min(initial=0) < 0 or classes.max(initial=0) >= scores.shape[1]:
                raise ValueError(f"multiclass y_true must hold class indices in [0, {scores.shape[1]})")
            labels = np.eye(scores.shape[1], dtype=bool)[classes]
    elif kind == "binary":
        scores = scores.reshape(-1, 1) if scores.ndim == 1 else scores
        labels = labels.reshape(-1, 1) if labels.ndim == 1 else labels
        if scores.shape[1] != 1:
            raise ValueError(f"binary y_score must be [n] or [n, 1], got shape {scores.shape}")
    elif scores.ndim != 2:
        raise ValueError(f"multilabel y_score must be [n, C], got shape {scores.shape}")
    if labels.shape != scores.shape:
        raise ValueError(f"y_true has shape {labels.shape} but y_score has shape {scores.shape}")
    if not np.isin(labels, (0, 1)).all():
        raise ValueError(f"{kind} y_true must hold only 0 and 1")
    if not np.isfinite(scores).all():
        raise ValueError("y_score holds NaN or infinite values")
    return labels.astype(bool), scores


def _regression_arrays(y_true: Any, y_score: Any) -> tuple[np.ndarray, np.ndarray]:
    target = np.asarray(y_true, dtype=np.float64)
    pred = np.asarray(y_score, dtype=np.float64)
    target = target[:, 0] if target.ndim == 2 and target.shape[1] == 1 else target
    pred = pred[:, 0] if pred.ndim == 2 and pred.shape[1] == 1 else pred
    if target.ndim != 1 or target.shape != pred.shape:
        raise ValueError(f"regression y_true and y_score must both be [n], got {target.shape} and {pred.shape}")
    if not (np.isfinite(target).all() and np.isfinite(pred).all()):
        raise ValueError("regression y_true or y_score holds NaN or infinite values")
    return target, pred


def _thresholds_for(threshold: Any, n_classes: int) -> np.ndarray:
    values = np.atleast_1d(np.asarray(threshold, dtype=np.float64))
    if values.size == 1:
        values = np.repeat(values, n_classes)
    if values.shape != (n_classes,):
        raise ValueError(f"expected one threshold or {n_classes} (one per class), got {values.size}")
    return values


def _macro(per_class: np.ndarray) -> np.ndarray | float:
    """Mean over the last axis ignoring NaN (skipped classes); NaN where no class is left."""
    valid = ~np.isnan(per_class)
    count = valid.sum(axis=-1)
    total = np.where(valid, per_class, 0.0).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    return float(mean) if np.ndim(mean) == 0 else mean


# ------------------------------------------------------------------------------------------- point metrics
def _dense_rank_unit(scores: np.ndarray) -> np.ndarray:
    """Scores mapped to [0, 1] keeping their order and ties exactly.

    torchmetrics applies a sigmoid to scores outside [0, 1]; in floating point that merges large logits into
    false ties (sigmoid(40) == sigmoid(41) == 1.0). AUROC and AUPRC depend only on the order, so ranks are
    passed instead.
    """
    _, ranks = np.unique(scores, return_inverse=True)
    top = ranks.max(initial=0)
    return ranks / top if top > 0 else np.zeros_like(scores)


def score(kind: Kind, y_true: Any, y_score: Any, *, threshold: float | Sequence[float] | np.ndarray | None = None,
          metrics: Sequence[MetricName] | None = None) -> dict[str, float]:
    """Point metrics of one evaluated set, with torchmetrics.

    Classification kinds give ``auroc`` and ``auprc`` (average precision), plus ``f1`` and ``sensitivity``
    (recall) when ``threshold`` is given (a scalar, or one per class); each is computed per class and
    macro-averaged over the classes with both positives and negatives (NaN if there are none).
    ``regression`` gives ``mae``, ``rmse`` and ``r2`` (``r2`` is NaN when the targets have no variance).
    ``metrics`` restricts the result to those names (all that apply by default).
    """
    import torch
    from torchmetrics.functional import (
        mean_absolute_error,
        mean_squared_error,
        r2_score,
    )
    from torchmetrics.functional.classification import (
        binary_auroc,
        binary_average_precision,
        binary_f1_score,
        binary_recall,
    )

    _check_kind(kind)
    for metric in metrics or ():
        _check_metric(kind, metric)
        if metric in THRESHOLD_METRICS and threshold is None:
            raise ValueError(f"{metric} needs a threshold (see choose_thresholds)")
    if kind == "regression":
        target, pred = _regression_arrays(y_true, y_score)
        if target.size == 0:
            return {name: float("nan") for name in (metrics or REGRESSION_METRICS)}
        t, p = torch.from_numpy(target), torch.from_numpy(pred)
        wanted = metrics or REGRESSION_METRICS
        out: dict[str, float] = {}
        if "mae" in wanted:
            out["mae"] = float(mean_absolute_error(p, t))
        if "rmse" in wanted:
            out["rmse"] = float(mean_squared_error(p, t, squared=False))
        if "r2" in wanted:
            out["r2"] = float(r2_score(p, t)) if target.size > 1 and np.ptp(target) > 0 else float("nan")
        return out

    labels, scores = _classification_arrays(kind, y_true, y_score)
    n_classes = labels.shape[1]
    thresholds = None if threshold is None else _thresholds_for(threshold, n_classes)
    default = ("auroc", "auprc") + (("f1", "sensitivity") if thresholds is not None else ())
    names = tuple(metrics) if metrics else default
    per_class = {name: np.full(n_classes, np.nan) for name in names}
    for c in range(n_classes):
        positives = int(labels[:, c].sum())
        if positives == 0 or positives == labels.shape[0]:
            continue  # no positives or no negatives: the class is skipped
        truth = torch.from_numpy(labels[:, c].astype(np.int64))
        if "auroc" in names or "auprc" in names:
            ranked = torch.from_numpy(_dense_rank_unit(scores[:, c]))
        if "auroc" in names:
            per_class["auroc"][c] = float(binary_auroc(ranked, truth, validate_args=False))
        if "auprc" in names:
            per_class["auprc"][c] = float(binary_average_precision(ranked, truth, validate_args=False))
        if thresholds is not None and ("f1" in names or "sensitivity" in names):
            # integer predictions: torchmetrics uses them as labels (no sigmoid, no `>` of its own);
            # arguments are validated above, so torchmetrics' own checks are skipped
            predicted = torch.from_numpy((scores[:, c] >= thresholds[c]).astype(np.int64))
            if "f1" in names:
                per_class["f1"][c] = float(binary_f1_score(predicted, truth, validate_args=False))
            if "sensitivity" in names:
                per_class["sensitivity"][c] = float(binary_recall(predicted, truth, validate_args=False))
    return {name: float(_macro(values)) for name, values in per_class.items()}


def choose_thresholds(kind: Kind, y_true_val: Any, y_score_val: Any) -> np.ndarray:
    """One decision threshold per class: the one maximising F1 on the validation set.

    Candidates are the distinct validation scores; a sample is predicted positive when ``score >= threshold``.
    Among thresholds with the same (maximal) F1 the lower one is taken, i.e. the more sensitive rule. A class
    without positives in the validation set gets ``+inf`` (never predicted: no F1 can be earned). Returns
    ``[C]`` for classification kinds (``[1]`` for binary) and an empty array for regression.
    """
    _check_kind(kind)
    if kind == "regression":
        return np.empty(0)
    labels, scores = _classification_arrays(kind, y_true_val, y_score_val)
    thresholds = np.full(labels.shape[1], np.inf)
    for c in range(labels.shape[1]):
        y, s = labels[:, c], scores[:, c]
        n_pos = int(y.sum())
        if n_pos == 0:
            continue
        order = np.argsort(-s, kind="stable")
        s_sorted, y_sorted = s[order], y[order]
        ends = np.flatnonzero(np.r_[s_sorted[1:] != s_sorted[:-1], True])  # last index of each tie group
        tp = np.cumsum(y_sorted)[ends]
        predicted = ends + 1
        f1 = 2.0 * tp / (n_pos + predicted)  # 2TP / (2TP + FP + FN) with FP + TP = predicted, FN = P - TP
        best = np.flatnonzero(f1 == f1.max())[-1]  # descending scores: the last maximiser is the lowest threshold
        thresholds[c] = s_sorted[ends[best]]
    return thresholds


# --------------------------------------------------------------------------------------- patient bootstrap
def bootstrap_indices(patient_ids: Any, n_resamples: int = 1000, seed: int = 0) -> np.ndarray:
    """Resamples of the test *patients*, with replacement, as a weights matrix ``W [n_resamples, n_ecgs]``.

    Each resample draws ``n_patients`` patients uniformly with replacement; ``W[r, i]`` is the number of times
    ECG ``i``'s patient was drawn in resample ``r`` (so each drawn patient contributes all of its ECGs, once per
    draw). Patients are numbered in sorted order of their ids, so the result depends only on the ids and
    ``seed`` (NumPy's PCG64): two cells evaluated on the same test set get the same resamples, which is what
    :func:`paired_difference` needs. ``int32``; every metric here accepts such weights.
    """
    ids = np.asarray(patient_ids)
    if ids.ndim != 1 or ids.size == 0:
        raise ValueError(f"patient_ids must be a non-empty 1-d sequence, got shape {ids.shape}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be at least 1, got {n_resamples}")
    _, patient_of_ecg = np.unique(ids, return_inverse=True)
    n_patients = int(patient_of_ecg.max()) + 1
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_patients, size=(n_resamples, n_patients))
    flat = (np.arange(n_resamples)[:, None] * n_patients + draws).ravel()
    counts = np.bincount(flat, minlength=n_resamples * n_patients).reshape(n_resamples, n_patients)
    return counts.astype(np.int32)[:, patient_of_ecg.ravel()]


def _cumulative(weights: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """``[R, len(columns) + 1]``: cumulative sums of ``weights[:, columns]``, starting with a column of zeros."""
    out = np.empty((weights.shape[0], columns.size + 1))
    out[:, 0] = 0.0
    np.cumsum(weights[:, columns], axis=1, out=out[:, 1:])
    return out


def _weighted_auroc(y: np.ndarray, s: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Mann-Whitney AUROC per resample, ties counted 1/2 (= the trapezoid under the weighted ROC curve).

    ``U_r = sum_i w_ri [y_i] (N_r(s < s_i) + N_r(s <= s_i)) / 2`` over positives ``i``, where ``N_r`` is the
    weighted count of negatives: the negatives are sorted once, their weights summed cumulatively for all
    resamples at once, and each positive reads the sums at its two ``searchsorted`` positions.
    """
    positives, negatives = np.flatnonzero(y), np.flatnonzero(~y)
    negatives = negatives[np.argsort(s[negatives], kind="stable")]
    s_neg, s_pos = s[negatives], s[positives]
    below = np.searchsorted(s_neg, s_pos, side="left")  # negatives scored strictly lower
    at_or_below = np.searchsorted(s_neg, s_pos, side="right")
    neg_cum = _cumulative(weights, negatives)
    w_pos = weights[:, positives]
    half_u = neg_cum[:, below]
    half_u += neg_cum[:, at_or_below]
    u = 0.5 * np.einsum("rj,rj->r", w_pos, half_u)
    pos, neg = w_pos.sum(axis=1), neg_cum[:, -1]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((pos > 0) & (neg > 0), u / (pos * neg), np.nan)


def _weighted_average_precision(y: np.ndarray, s: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Average precision per resample: ``sum_k (R_k - R_{k-1}) P_k`` over thresholds (scikit-learn's).

    Tied scores form one threshold, so every positive ``i`` adds ``w_ri / P_r`` times the precision at
    ``score >= s_i``; the weighted counts of positives and negatives scored at least ``s_i`` are read from
    cumulative sums of the weights sorted by descending score, as in :func:`_weighted_auroc`.
    """
    positives, negatives = np.flatnonzero(y), np.flatnonzero(~y)
    positives = positives[np.argsort(-s[positives], kind="stable")]
    negatives = negatives[np.argsort(-s[negatives], kind="stable")]
    minus_pos, minus_neg = -s[positives], -s[negatives]  # ascending, for searchsorted
    pos_at_least = np.searchsorted(minus_pos, minus_pos, side="right")  # positives scored >= s_i
    neg_at_least = np.searchsorted(minus_neg, minus_pos, side="right")  # negatives scored >= s_i
    pos_cum, neg_cum = _cumulative(weights, positives), _cumulative(weights, negatives)
    tp = pos_cum[:, pos_at_least]
    predicted = tp + neg_cum[:, neg_at_least]
    # predicted == 0 only where w_ri == 0 (i counts itself), and then tp == 0: those terms add 0
    precision = tp / np.maximum(predicted, np.finfo(np.float64).tiny)
    pos, neg = pos_cum[:, -1], neg_cum[:, -1]
    with np.errstate(invalid="ignore", divide="ignore"):
        ap = np.einsum("rj,rj->r", weights[:, positives], precision) / pos
    return np.where((pos > 0) & (neg > 0), ap, np.nan)


def _weighted_threshold_metric(metric: str, y: np.ndarray, s: np.ndarray, weights: np.ndarray,
                               threshold: float) -> np.ndarray:
    """F1 or sensitivity (recall) of ``score >= threshold`` per resample."""
    predicted = s >= threshold
    w = weights
    tp = w @ (predicted & y).astype(np.float64)
    fp = w @ (predicted & ~y).astype(np.float64)
    fn = w @ (~predicted & y).astype(np.float64)
    pos, neg = tp + fn, w.sum(axis=1) - tp - fn
    with np.errstate(invalid="ignore", divide="ignore"):
        if metric == "f1":
            denominator = 2.0 * tp + fp + fn
            value = np.where(denominator > 0, 2.0 * tp / np.where(denominator > 0, denominator, 1.0), 0.0)
        else:
            value = tp / pos
    return np.where((pos > 0) & (neg > 0), value, np.nan)


def _weighted_regression(metric: str, target: np.ndarray, pred: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """MAE, RMSE or R2 per resample (``weights`` float64 ``[R, n]``)."""
    w = weights
    total = w.sum(axis=1)
    error = pred - target
    with np.errstate(invalid="ignore", divide="ignore"):
        if metric == "mae":
            return (w @ np.abs(error)) / total
        sse = w @ (error * error)
        if metric == "rmse":
            return np.sqrt(sse / total)
        mean = (w @ target) / total
        centred = target[None, :] - mean[:, None]
        sst = (w * centred * centred).sum(axis=1)
        return np.where(sst > 0, 1.0 - sse / np.where(sst > 0, sst, 1.0), np.nan)


def bootstrap(kind: Kind, metric: MetricName, y_true: Any, y_score: Any, weights: np.ndarray, *,
              threshold: float | Sequence[float] | np.ndarray | None = None) -> np.ndarray:
    """``metric`` on each resample ``weights[r]`` (``[R, n]``, from :func:`bootstrap_indices`): ``[R]``.

    Vectorised over resamples. Each value equals scikit-learn's metric with ``sample_weight=weights[r]``
    (``roc_auc_score``, ``average_precision_score``, ``f1_score``, ``recall_score``, ``mean_absolute_error``,
    ``mean_squared_error`` rooted, ``r2_score``). Classification metrics are macro averages over the classes with
    both positives and negatives *in that resample*; a resample with none such is NaN, as is ``r2`` for one
    whose targets have no variance. ``f1`` and ``sensitivity`` need ``threshold``.
    """
    _check_metric(kind, metric)
    w = np.asarray(weights, dtype=np.float64)  # once here; integer multiplicities stay exact up to 2**53
    if w.ndim == 1:
        w = w[None, :]
    if w.ndim != 2:
        raise ValueError(f"weights must be [R, n], got shape {w.shape}")
    if np.any(w < 0):
        raise ValueError("weights must be non-negative")
    if kind == "regression":
        target, pred = _regression_arrays(y_true, y_score)
        if w.shape[1] != target.shape[0]:
            raise ValueError(f"weights cover {w.shape[1]} samples but there are {target.shape[0]}")
        return _weighted_regression(metric, target, pred, w)

    labels, scores = _classification_arrays(kind, y_true, y_score)
    if w.shape[1] != labels.shape[0]:
        raise ValueError(f"weights cover {w.shape[1]} samples but there are {labels.shape[0]}")
    n_classes = labels.shape[1]
    if metric in THRESHOLD_METRICS:
        if threshold is None:
            raise ValueError(f"{metric} needs a threshold (see choose_thresholds)")
        thresholds = _thresholds_for(threshold, n_classes)
    per_class = np.full((w.shape[0], n_classes), np.nan)
    for c in range(n_classes):
        y, s = labels[:, c], scores[:, c]
        if not y.any() or y.all():
            continue  # no resample of this set can hold both positives and negatives
        if metric == "auroc":
            per_class[:, c] = _weighted_auroc(y, s, w)
        elif metric == "auprc":
            per_class[:, c] = _weighted_average_precision(y, s, w)
        else:
            per_class[:, c] = _weighted_threshold_metric(metric, y, s, w, thresholds[c])
    return np.asarray(_macro(per_class), dtype=np.float64).reshape(w.shape[0])


# ----------------------------------------------------------------------------------- intervals, summaries
def interval(values: Any, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of ``values`` at ``level``, ignoring NaN; ``(nan, nan)`` if nothing is left."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    finite = np.asarray(values, dtype=np.float64).ravel()
    finite = finite[~np.isnan(finite)]
    if finite.size == 0:
        return float("nan"), float("nan")
    tail = 100.0 * (1.0 - level) / 2.0
    low, high = np.percentile(finite, [tail, 100.0 - tail])
    return float(low), float(high)


def summarise(kind: Kind, metric: MetricName, y_true: Any, y_score: Any, patient_ids: Any, *,
              n_resamples: int = 1000, seed: int = 0,
              threshold: float | Sequence[float] | np.ndarray | None = None, level: float = 0.95,
              weights: np.ndarray | None = None) -> dict[str, Any]:
    """Point value (torchmetrics), patient-bootstrap interval and per-resample values of one cell's metric.

    Returns ``metric``, ``value``, ``ci_low``, ``ci_high``, ``level``, ``n`` (ECGs), ``n_patients``,
    ``n_resamples``, ``n_valid`` (resamples where the metric is defined), ``seed`` and ``values`` (``[R]``,
    kept for :func:`paired_difference` against another cell on the same test set and seed). ``weights`` may
    pass a precomputed :func:`bootstrap_indices` matrix for these ``patient_ids`` (and then wins over
    ``n_resamples`` and ``seed``).
    """
    _check_metric(kind, metric)
    if metric in THRESHOLD_METRICS and threshold is None:
        raise ValueError(f"{metric} needs a threshold (see choose_thresholds)")
    ids = np.asarray(patient_ids)
    n = int(np.asarray(y_score).shape[0])
    if ids.shape != (n,):
        raise ValueError(f"patient_ids must be [{n}] (one per ECG), got shape {ids.shape}")
    if weights is None:
        weights = bootstrap_indices(ids, n_resamples, seed)
    elif np.shape(weights)[1:] != (n,):
        raise ValueError(f"weights must be [R, {n}], got shape {np.shape(weights)}")
    values = bootstrap(kind, metric, y_true, y_score, weights, threshold=threshold)
    low, high = interval(values, level)
    return {
        "metric": metric,
        "value": score(kind, y_true, y_score, threshold=threshold, metrics=[metric])[metric],
        "ci_low": low,
        "ci_high": high,
        "level": level,
        "n": n,
        "n_patients": int(np.unique(ids).size),
        "n_resamples": int(values.shape[0]),
        "n_valid": int(np.count_nonzero(~np.isnan(values))),
        "seed": seed,
        "values": values,
    }


def paired_difference(values_a: Any, values_b: Any, level: float = 0.95) -> dict[str, Any]:
    """``a - b`` on the same resamples: mean, percentile interval, and whether the interval excludes zero.

    ``values_a`` and ``values_b`` are two cells' :func:`summarise` ``values`` computed with the same weights
    (same test set, patient ids and seed), e.g. a pretrained encoder and the random-init control. Resamples
    where either is NaN are dropped. ``excludes_zero`` is True when ``ci_low > 0`` or ``ci_high < 0``.
    """
    a = np.asarray(values_a, dtype=np.float64)
    b = np.asarray(values_b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired values must be two [R] arrays of one length, got {a.shape} and {b.shape}")
    difference = a - b
    difference = difference[~np.isnan(difference)]
    low, high = interval(difference, level)
    mean = float(difference.mean()) if difference.size else float("nan")
    return {"mean": mean, "ci_low": low, "ci_high": high, "level": level, "n_resamples": int(difference.size),
            "excludes_zero": bool(low > 0 or high < 0)}
