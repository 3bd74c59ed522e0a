"""Label fractions of a training split: nested, drawn by patient, stratified by label, reproducible."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from stence_bench.data.splits import (
    LABEL_FRACTIONS,
    label_fractions,
    patient_order,
    sample_hash,
)


def _binary(n_patients=1000, per_patient=2, positive_rate=0.2, seed=0):
    """Records indexed by id; a patient's records share its label, so the patient-level rate is ``positive_rate``."""
    rng = np.random.default_rng(seed)
    positive = rng.permutation(n_patients) < round(positive_rate * n_patients)
    patients = pd.Series([f"p{i:04d}" for i in range(n_patients) for _ in range(per_patient)],
                         index=[f"r{i:04d}_{j}" for i in range(n_patients) for j in range(per_patient)])
    labels = np.repeat(positive.astype(float), per_patient)
    return patients, labels


def _patient_rate(patients, labels, mask):
    per_patient = pd.Series(labels[mask], index=patients[mask].to_numpy()).groupby(level=0).max()
    return per_patient.mean(), len(per_patient)


@pytest.mark.parametrize("draw", [0, 1, 2, 3])
def test_fractions_are_nested_patient_level_and_one_is_everything(draw):
    patients, labels = _binary()
    masks = label_fractions(patients, labels, LABEL_FRACTIONS, draw=draw, seed=7)
    assert list(masks) == list(LABEL_FRACTIONS)
    for small, large in itertools.pairwise(LABEL_FRACTIONS):
        assert not (masks[small] & ~masks[large]).any(), (small, large)
        assert masks[small].sum() < masks[large].sum()
    assert masks[1.0].all()
    for f, mask in masks.items():
        # a patient's records are all in or all out
        assert (pd.Series(mask).groupby(patients.to_numpy()).nunique() == 1).all()
        assert pd.Series(mask).groupby(patients.to_numpy()).first().sum() == max(int(np.ceil(f * 1000)), 2)


def test_fractions_are_stratified_and_the_smallest_has_both_classes():
    patients, labels = _binary(n_patients=1000, positive_rate=0.2)
    for draw in range(5):
        masks = label_fractions(patients, labels, LABEL_FRACTIONS, draw=draw, seed=0)
        rate, n = _patient_rate(patients, labels, masks[0.1])
        assert n == 100 and abs(rate - 0.2) <= 0.05
        rate, n = _patient_rate(patients, labels, masks[0.01])
        assert n == 10 and 0 < rate < 1
        positives = labels[masks[0.01]]
        assert positives.max() == 1 and positives.min() == 0


def test_a_rare_class_is_in_the_smallest_fraction():
    n = 2000
    rng = np.random.default_rng(1)
    labels = (rng.random((n, 4)) < [0.5, 0.2, 0.05, 0.0]).astype(float)
    labels[:, 3] = 0
    labels[rng.choice(n, 3, replace=False), 3] = 1  # three positive patients in 2000
    labels[:, 0] = 1  # a class every patient has: no negative exists, none is asked for
    patients = [f"p{i}" for i in range(n)]
    for draw in range(5):
        masks = label_fractions(patients, labels, (0.001, 0.01), draw=draw, seed=3)
        small = labels[masks[0.001]]
        assert (small[:, 1:] == 1).any(axis=0).all() and (small[:, 1:] == 0).any(axis=0).all()
        assert (small[:, 0] == 1).all()
        order, _ = patient_order(patients, labels, draw=draw, seed=3)
        # the head (at most a positive and a negative per class) may enlarge a tiny fraction beyond ceil(0.001 n) = 2
        assert 2 <= order.head <= 6 and len(small) == max(2, order.head)
        assert not (masks[0.001] & ~masks[0.01]).any()
    order, _ = patient_order(patients, labels, draw=0, seed=3)
    assert {order.strata[p] for p in patients} == {"0", "1", "2", "3"}
    assert order.strata[patients[int(np.flatnonzero(labels[:, 3])[0])]] == "3"  # rarest positive class


def test_a_class_hidden_behind_rarer_ones_still_gets_a_positive():
    # class 0 is positive only for patients whose rarest class is another one: the head still covers it
    labels = np.zeros((60, 4))
    labels[[0, 1, 2], 0] = 1
    labels[[0, 3], 1] = 1
    labels[[1, 4], 2] = 1
    labels[[2, 5], 3] = 1
    masks = label_fractions([f"p{i}" for i in range(60)], labels, [0.01], draw=0, seed=0)
    assert (labels[masks[0.01]] == 1).any(axis=0).all()
    assert (labels[masks[0.01]] == 0).any(axis=0).all()


def test_multiclass_indices_are_one_hot_classes():
    labels = np.array([0] * 90 + [1] * 9 + [2])
    patients = [f"p{i}" for i in range(100)]
    masks = label_fractions(patients, labels, (0.01,), draw=0, seed=0, kind="multiclass")
    assert set(labels[masks[0.01]]) == {0, 1, 2}
    order, _ = patient_order(patients, labels, draw=0, seed=0, kind="multiclass")
    assert order.strata["p99"] == "2" and order.head == 3


def test_regression_is_stratified_by_quantile_bins_of_the_patient_mean():
    rng = np.random.default_rng(2)
    n_patients = 1000
    means = rng.normal(50, 10, n_patients)
    patients = np.repeat([f"p{i}" for i in range(n_patients)], 3)
    values = np.repeat(means, 3) + rng.normal(0, 1, 3 * n_patients)
    values[5] = np.nan  # a missing value is ignored by the patient's mean
    order, _ = patient_order(patients, values, draw=0, seed=0)
    counts = pd.Series(order.strata).value_counts()
    assert sorted(counts.index) == [f"bin{b}" for b in range(5)] and (counts == 200).all()
    masks = label_fractions(patients, values, (0.05, 0.1), draw=0, seed=0)
    chosen = pd.Series(order.strata)[pd.unique(patients[masks[0.1]])].value_counts()
    assert sorted(chosen.index) == [f"bin{b}" for b in range(5)] and chosen.between(19, 21).all()
    chosen = pd.Series(order.strata)[pd.unique(patients[masks[0.05]])].value_counts()
    assert chosen.between(9, 11).all()
    # 0/1-looking values are regression when the caller says so
    masks = label_fractions(patients, (values > 50).astype(float), [0.1], draw=0, seed=0, kind="regression")
    assert len(pd.unique(patients[masks[0.1]])) == 100


def test_draws_are_deterministic_order_independent_and_different():
    patients, labels = _binary(n_patients=300, per_patient=3)
    first = label_fractions(patients, labels, (0.1, 0.5), draw=1, seed=4)
    again = label_fractions(patients, labels, (0.1, 0.5), draw=1, seed=4)
    assert all((first[f] == again[f]).all() for f in first)

    shuffled = np.random.default_rng(0).permutation(len(patients))
    masks = label_fractions(patients.iloc[shuffled], labels[shuffled], (0.1, 0.5), draw=1, seed=4)
    for f in first:
        assert set(patients.index[first[f]]) == set(patients.index[shuffled][masks[f]])
        assert sample_hash(patients.index[first[f]]) == sample_hash(patients.index[shuffled][masks[f]])

    other_draw = label_fractions(patients, labels, (0.1,), draw=2, seed=4)
    other_seed = label_fractions(patients, labels, (0.1,), draw=1, seed=5)
    assert set(patients.index[other_draw[0.1]]) != set(patients.index[first[0.1]])
    assert set(patients.index[other_seed[0.1]]) != set(patients.index[first[0.1]])


def test_sample_hash_is_short_stable_and_order_free():
    h = sample_hash(["b", "a", "c"])
    assert h == sample_hash(["c", "b", "a"]) and len(h) == 16
    assert h != sample_hash(["a", "b"])
    assert sample_hash([]) == sample_hash(())


def test_records_without_a_patient_stand_for_themselves():
    patients = pd.Series(["p1", "p1", None, ""], index=["a", "b", "c", "d"])
    masks = label_fractions(patients, np.array([1.0, 1.0, 0.0, 0.0]), (0.34, 1.0), draw=0, seed=0)
    assert masks[1.0].all() and masks[0.34].sum() >= 2  # head: one positive (p1: a, b), one negative patient
    assert masks[0.34][0] == masks[0.34][1]


@pytest.mark.parametrize("bad", [0, 0.0, -0.1, 1.5, float("nan"), "half"])
def test_invalid_fractions_are_an_error_naming_the_fraction(bad):
    patients, labels = _binary(n_patients=20)
    with pytest.raises(ValueError, match=f"label fraction {bad!r}".replace("(", r"\(").replace(")", r"\)")):
        label_fractions(patients, labels, (0.1, bad), draw=0, seed=0)


def test_mismatched_labels_or_kind_are_an_error():
    with pytest.raises(ValueError, match="n = 3 records"):
        label_fractions(["a", "b", "c"], np.zeros(2), (0.5,), draw=0, seed=0)
    with pytest.raises(ValueError, match="label kind 'ordinal'"):
        label_fractions(["a", "b"], np.zeros(2), (0.5,), draw=0, seed=0, kind="ordinal")
