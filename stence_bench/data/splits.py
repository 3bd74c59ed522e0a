"""Patient-level splits. A patient in two splits is an error, never a warning.

PTB-XL's ``strat_fold`` gives the benchmark's split (folds 1-8 train, 9 validation, 10 test); elsewhere patients
are assigned by a seeded hash of their id, so a patient's split never depends on which other records exist.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import xxhash
from numpy.typing import ArrayLike

from ..errors import StenceBenchError

SPLITS = ("train", "val", "test")


class LeakageError(StenceBenchError):
    """The same patient in two splits."""


def patients_or_records(patients: pd.Series) -> pd.Series:
    """Patient id per record; a record with no known patient stands for its own patient."""
    known = patients.astype("string").fillna("")
    own = pd.Series([f"record:{rid}" for rid in patients.index], index=patients.index, dtype="string")
    return known.where(known != "", own)


def link_duplicates(patients: pd.Series, checksums: pd.Series) -> pd.Series:
    """Patient id per record where records with equal signal checksums count as one patient (a record filed
    twice under two ids, as CinC 2021's E07509/E07510): every group of records joined by a shared patient or a
    shared signal takes the smallest patient id of the group, so its records share a split. ``patients`` as
    :func:`patients_or_records` gives them, both indexed by record id."""
    patients = patients_or_records(patients)
    checksums = checksums.reindex(patients.index).astype("string").fillna("")
    parent: dict[str, str] = {}

    def find(p: str) -> str:
        root = p
        while parent.get(root, root) != root:
            root = parent[root]
        while parent.get(p, p) != root:  # path compression
            parent[p], p = root, parent[p]
        return root

    first_of: dict[str, str] = {}
    for patient, checksum in zip(patients.to_numpy(), checksums.to_numpy()):
        if not checksum:
            continue
        if checksum not in first_of:
            first_of[checksum] = patient
            continue
        a, b = find(str(first_of[checksum])), find(str(patient))
        if a != b:
            parent[max(a, b)] = min(a, b)
    if not parent:
        return patients
    return patients.map(lambda p: find(str(p))).astype("string")


def duplicate_groups(checksums: pd.Series) -> list[list[str]]:
    """Record ids (the index) sharing a signal checksum, one list per checksum that more than one record has."""
    checksums = checksums.astype("string").fillna("")
    shared = checksums[(checksums != "") & checksums.duplicated(keep=False)]  # the few that repeat, not all
    groups: dict[str, list[str]] = {}
    for rid, checksum in zip(shared.index.tolist(), shared.tolist()):
        groups.setdefault(checksum, []).append(str(rid))
    return sorted(sorted(ids) for ids in groups.values())


def strat_fold_split(folds: pd.Series, *, train: Sequence[int] = tuple(range(1, 9)), val: Sequence[int] = (9,),
                     test: Sequence[int] = (10,)) -> pd.Series:
    """Split records by their ``strat_fold`` (PTB-XL: 1-8 train, 9 val, 10 test). Unknown folds are an error."""
    mapping = {**{f: "train" for f in train}, **{f: "val" for f in val}, **{f: "test" for f in test}}
    split = folds.map(mapping)
    if split.isna().any():
        bad = folds[split.isna()]
        raise StenceBenchError(f"strat_fold {bad.iloc[0]} of record {bad.index[0]!r} is not one of {sorted(mapping)}")
    return split.astype("string")


#: A record in none of the splits of a publisher's official split (EchoNext's ``no_split`` records, which share
#: patients with its validation and test sets): never trained or evaluated on, and kept out of pretraining.
NO_SPLIT = "none"


def official_split(splits: pd.Series) -> pd.Series:
    """The publisher's split of each record (``meta["split"]``): ``train``, ``val`` (or ``validation``), ``test``;
    any other value (``no_split``) is :data:`NO_SPLIT`; a missing one is an error naming the record."""
    text = splits.astype("string").str.strip().str.lower()
    missing = text.isna() | (text == "")
    if missing.any():
        raise StenceBenchError(f"record {text.index[missing][0]!r} has no official split (meta 'split'); "
                               "use a task with split = 'patient'")
    text = text.replace({"validation": "val", "valid": "val"})
    return text.where(text.isin(SPLITS), NO_SPLIT).astype("string")


def patient_split(patients: pd.Series, *, fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0) -> pd.Series:
    """Assign each patient (and so all their records) to train / val / test by a seeded hash of the patient id."""
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-9:
        raise ValueError(f"fractions must be three non-negative numbers summing to 1, got {list(fractions)}")
    edges = (fractions[0], fractions[0] + fractions[1])
    ids = patients_or_records(patients)

    def assign(patient: str) -> str:
        u = xxhash.xxh3_64_intdigest(f"{seed}:{patient}".encode()) / 2**64
        return "train" if u < edges[0] else ("val" if u < edges[1] else "test")

    return ids.map(assign).astype("string")


def check_patient_disjoint(split: pd.Series, patients: pd.Series) -> None:
    """Raise :class:`LeakageError` naming a patient whose records fall in two splits."""
    frame = pd.DataFrame({"split": split, "patient": patients_or_records(patients.reindex(split.index))})
    per_patient = frame.groupby("patient")["split"].nunique()
    leaking = per_patient[per_patient > 1]
    if len(leaking):
        patient = leaking.index[0]
        rows = frame[frame["patient"] == patient]
        where = ", ".join(f"{s} (record {rid})" for rid, s in rows.drop_duplicates("split")["split"].items())
        raise LeakageError(f"patient {patient!r} is in more than one split: {where}; "
                           f"{len(leaking)} patient(s) leak in all")


# --- label fractions ------------------------------------------------------------------------------------------------
#
# How a training split is cut down to 1 / 5 / 10 / 50 / 100 % of its labels (design section 5):
#
# 1. Records are grouped by patient (``patients_or_records``: a record with no patient stands for itself). Patients are
#    sorted by id, so nothing below depends on the order of the input rows.
# 2. Each patient gets a stratum from its records' labels: binary, whether any of its ECGs is positive; multi-label
#    and multi-class, its rarest positive class (rarity = number of positive *patients* in this training split, ties
#    to the lower column) or "none"; regression, the quantile bin (5 bins, edges at the 20/40/60/80 % quantiles of
#    the patients' mean values, a value on an edge goes to the upper bin) of the patient's mean, or "missing".
# 3. One draw is one ordering of the patients. Within each stratum the patients are shuffled by a seeded hash,
#    ``xxh3_64("label_fraction:{seed}:{draw}:{patient}")`` (stable across library versions; different draws, different
#    orders); the k-th of a stratum's n_s patients gets the key (k + u_s) / n_s, u_s in [0, 1) a seeded hash of the
#    stratum, and patients are merged by key (ties by patient hash, then id). Every prefix of this interleaving holds
#    each stratum's share of patients to within one patient.
# 4. Classification only, the *head*: for each class, rarest first, if no patient already in the head is positive for
#    it, the first patient in the ordering who is positive for it joins the head; then, in the same class order, if no
#    head patient is negative for a class (no positive ECG for it), the first negative patient joins. The head (in
#    ordering order) goes first, then everyone else in ordering order. Classes with no positive (negative) patient in
#    the training split are skipped.
# 5. Fraction f takes the first max(ceil(f * n_patients), 1, head size) patients (at most all of them): every
#    fraction holds the whole head, so each class has at least one positive and one negative patient wherever the
#    training split has them, even when that makes a tiny fraction slightly larger than f. Prefixes of one ordering
#    make the fractions nested, and 1.0 is every record.

#: The fractions of the benchmark's label-efficiency protocol.
LABEL_FRACTIONS = (0.01, 0.05, 0.1, 0.5, 1.0)
_LABEL_KINDS = ("binary", "multilabel", "multiclass", "regression")
_REGRESSION_BINS = 5


def sample_hash(record_ids: Iterable[str]) -> str:
    """A short stable hash (16 hex digits) of a set of record ids: sorted, so the order they come in does not matter."""
    return xxhash.xxh3_64_hexdigest("\n".join(sorted(str(r) for r in record_ids)).encode())


class PatientOrder(NamedTuple):
    """One draw's ordering of the training split's patients; fractions are prefixes of ``patients``."""

    patients: list[str]  # patient ids, head first
    head: int  # the first ``head`` patients guarantee each class a positive and a negative patient
    strata: dict[str, str]  # patient id -> stratum


def _patient_keys(patient_ids: pd.Series | Sequence[str]) -> pd.Series:
    if not isinstance(patient_ids, pd.Series):
        patient_ids = pd.Series(list(patient_ids), dtype="object")
    return patients_or_records(patient_ids)


def _label_kind(values: np.ndarray, kind: str | None) -> str:
    if kind is not None:
        if kind not in _LABEL_KINDS:
            raise ValueError(f"label kind {kind!r} is not one of {', '.join(_LABEL_KINDS)}")
        return kind
    if values.ndim == 2:
        return "multilabel"
    finite = values[~np.isnan(values)]
    return "binary" if np.isin(finite, (0.0, 1.0)).all() else "regression"


def _check_fractions(fractions: float | Iterable[float]) -> list[float]:
    if isinstance(fractions, (int, float)):
        fractions = [fractions]
    out = []
    for f in fractions:
        try:
            value = float(f)
        except (TypeError, ValueError):
            raise ValueError(f"label fraction {f!r} is not a number in (0, 1]") from None
        if isinstance(f, bool) or not 0 < value <= 1:
            raise ValueError(f"label fraction {f!r} is not in (0, 1]")
        out.append(value)
    if not out:
        raise ValueError("no label fractions given")
    return out


def _hash64(text: str) -> int:
    return xxhash.xxh3_64_intdigest(text.encode())


def patient_order(patient_ids: pd.Series | Sequence[str], labels: ArrayLike, *, draw: int, seed: int,
                  kind: str | None = None) -> tuple[PatientOrder, np.ndarray]:
    """The stratified ordering of one draw, and each record's position in ``PatientOrder.patients``.

    The rule is the comment that opens this module's label-fractions section; :func:`label_fractions` takes
    prefixes of it. ``strata`` names each patient's stratum (a class column index as a string: for 1-D multi-class labels the
    rank of the class value among those present, "none", "bin0".."bin4"
    or "missing").
    """
    keys = _patient_keys(patient_ids)
    values = np.asarray(labels, dtype=float)
    if values.ndim not in (1, 2) or len(values) != len(keys):
        raise ValueError(f"labels must be [n] or [n, classes] with n = {len(keys)} records, got shape {values.shape}")
    if len(keys) == 0:
        raise ValueError("no records to draw label fractions from")
    kind = _label_kind(values, kind)
    patients, inverse = np.unique(keys.to_numpy(dtype=str), return_inverse=True)  # sorted: input order is irrelevant
    n_pat = len(patients)

    if kind == "regression":
        if values.ndim == 2:
            if values.shape[1] != 1:
                raise ValueError(f"regression labels must be one value per record, got shape {values.shape}")
            values = values[:, 0]
        valid = ~np.isnan(values)
        sums = np.bincount(inverse, weights=np.where(valid, values, 0.0), minlength=n_pat)
        counts = np.bincount(inverse, weights=valid.astype(float), minlength=n_pat)
        with np.errstate(invalid="ignore", divide="ignore"):
            means = sums / counts
        known = ~np.isnan(means)
        edges: Any = np.quantile(means[known], np.arange(1, _REGRESSION_BINS) / _REGRESSION_BINS) if known.any() else []
        bins = np.searchsorted(edges, means, side="right")
        stratum = np.array([f"bin{b}" if k else "missing" for b, k in zip(bins, known)], dtype=object)
        positive = None
    else:
        if kind == "multiclass" and values.ndim == 1:
            values_seen = np.unique(values[~np.isnan(values)])  # column c is the c-th smallest class value
            onehot = values[:, None] == values_seen[None, :]
        else:
            onehot = (values if values.ndim == 2 else values[:, None]) > 0.5  # NaN: not positive
        positive = pd.DataFrame(onehot).groupby(inverse).max().to_numpy(dtype=bool)  # patient x class
        rarity = positive.sum(axis=0)
        # rarest positive class per patient; classes never positive sort last and are never chosen
        rank = np.argsort(np.where(rarity > 0, rarity, np.iinfo(np.int64).max), kind="stable")
        ranked = positive[:, rank]
        first = ranked.argmax(axis=1)
        stratum = np.where(ranked.any(axis=1), rank[first].astype(str), "none").astype(object)

    # one shuffled list per stratum, merged by evenly spaced keys
    prefix = f"label_fraction:{seed}:{draw}:"
    phash = np.array([_hash64(prefix + p) for p in patients], dtype=np.uint64)
    key = np.empty(n_pat)
    for s in np.unique(stratum):
        members = np.flatnonzero(stratum == s)
        members = members[np.lexsort((patients[members], phash[members]))]
        offset = _hash64(f"{prefix}stratum:{s}") / 2**64
        key[members] = (np.arange(len(members)) + offset) / len(members)
    order = np.lexsort((patients, phash, key))

    head = 0
    if positive is not None:
        pos = positive[order]
        in_head = np.zeros(n_pat, dtype=bool)
        classes = rank[rarity[rank] > 0]
        for want in (True, False):
            matrix = pos if want else ~pos
            for c in (classes if want else rank):
                if matrix[:, c].any() and not matrix[in_head, c].any():
                    in_head[matrix[:, c].argmax()] = True
        head = int(in_head.sum())
        order = np.concatenate([order[in_head], order[~in_head]])

    position = np.empty(n_pat, dtype=np.int64)
    position[order] = np.arange(n_pat)
    result = PatientOrder(patients=[str(p) for p in patients[order]], head=head,
                          strata={str(p): str(s) for p, s in zip(patients, stratum)})
    return result, position[inverse]


def label_fractions(patient_ids: pd.Series | Sequence[str], labels: ArrayLike,
                    fractions: float | Iterable[float] = LABEL_FRACTIONS, *, draw: int, seed: int,
                    kind: str | None = None) -> dict[float, np.ndarray]:
    """Nested, patient-level, label-stratified subsets of a training split, one boolean record mask per fraction.

    ``patient_ids`` has one patient id per training record (a Series indexed by record id, or a sequence; a missing
    id makes the record its own patient), ``labels`` one row per record in the same order: 0/1 ``[n]`` (binary),
    0/1 ``[n, C]`` (multi-label; ``[n, 1]`` is binary), class indices ``[n]`` or one-hot ``[n, C]`` with
    ``kind="multiclass"``, or values ``[n]`` (regression). ``kind`` is inferred when not given: 2-D is multi-label,
    1-D of only 0/1/NaN is binary, any other 1-D is regression. Returns ``{fraction: mask}``, each mask a bool array
    of length n aligned with the input rows (record ids: ``patient_ids.index[mask]``); the same (patients, labels,
    seed, draw) always give the same masks, whatever the row order. The rule is the comment that opens this module's
    label-fractions section; save ``sample_hash(record_ids[mask])`` with each result. Raises ``ValueError`` for a fraction outside (0, 1].
    """
    wanted = _check_fractions(fractions)
    order, position = patient_order(patient_ids, labels, draw=draw, seed=seed, kind=kind)
    n_pat = len(order.patients)
    masks = {}
    for f in wanted:
        take = min(n_pat, max(math.ceil(round(f * n_pat, 9)), 1, order.head))
        masks[f] = position < take
    return masks
