"""Label tables joined to records, patient-level splits, and per-encoder views cached in the store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from conftest import BUILTINS_ONLY

from stence_bench.cli import cli
from stence_bench.data.fake import write_ptbxl_layout
from stence_bench.data.ingest import ingest
from stence_bench.data.layouts.ptbxl import PtbxlLayout
from stence_bench.data.splits import LeakageError, check_patient_disjoint, patient_split, strat_fold_split
from stence_bench.data.store import ECGStore
from stence_bench.data.tables import join_labels, read_label_table
from stence_bench.data.view_cache import build_view
from stence_bench.data.windows import apply_contract
from stence_bench.errors import StenceBenchError
from stence_bench.registry import Registry

MANIFEST = pd.DataFrame({
    "record_id": ["a", "b", "c", "d"],
    "patient_id": ["p1", "p1", "p2", ""],
    "time": ["2020-01-01T08:00:00", "2020-01-03T08:00:00", "2020-01-01T12:00:00", "2020-01-01T12:00:00"],
})


def test_timed_patient_join_takes_the_nearest_label_within_the_window():
    labs = pd.DataFrame({"patient_id": ["p1", "p1", "p2"],
                         "drawn": pd.to_datetime(["2020-01-01T10:00:00Z", "2020-01-02T20:00:00Z", "2020-01-05T00:00:00Z"]),
                         "potassium": [5.9, 4.1, 6.3]})
    joined = join_labels(MANIFEST, labs, key="patient", time_column="drawn", within="12h")
    assert joined.to_dict("records") == [
        {"record_id": "a", "potassium": 5.9, "gap_hours": 2.0},
        {"record_id": "b", "potassium": 4.1, "gap_hours": -12.0},
    ]  # c: the only lab of p2 is days away; d: no patient
    before = join_labels(MANIFEST, labs, key="patient", time_column="drawn", within="48h", direction="forward")
    assert before.set_index("record_id")["potassium"].to_dict() == {"a": 5.9}


def test_untimed_joins_and_their_errors(tmp_path):
    table = pd.DataFrame({"record_id": ["a", "c", "zz"], "lvef": [30.0, 60.0, 50.0]})
    assert join_labels(MANIFEST, table, key="record").to_dict("records") == [
        {"record_id": "a", "lvef": 30.0}, {"record_id": "c", "lvef": 60.0}]
    studies = pd.DataFrame({"study_id": ["c", "b"], "lvef": [55.0, 20.0]})
    assert join_labels(MANIFEST, studies, key="study").to_dict("records") == [
        {"record_id": "b", "lvef": 20.0}, {"record_id": "c", "lvef": 55.0}]
    twice = pd.DataFrame({"patient_id": ["p1", "p1"], "x": [1, 2]})
    with pytest.raises(StenceBenchError, match="patient 'p1' has several label rows"):
        join_labels(MANIFEST, twice, key="patient")
    path = tmp_path / "labs.csv"
    pd.DataFrame({"subject": ["p1"], "k": [5.0]}).to_csv(path, index=False)
    with pytest.raises(StenceBenchError, match=r"labs.csv: missing column\(s\) patient_id \(has: subject, k\)"):
        read_label_table(path, key="patient")
    pd.DataFrame({"patient_id": ["p1"], "t": ["not a time"]}).to_csv(path, index=False)
    with pytest.raises(StenceBenchError, match=r"labs.csv: t row 2: cannot read 'not a time' as a time"):
        read_label_table(path, key="patient", time_column="t")


def test_strat_fold_and_patient_splits():
    folds = pd.Series([1, 8, 9, 10], index=["w", "x", "y", "z"])
    assert list(strat_fold_split(folds)) == ["train", "train", "val", "test"]
    with pytest.raises(StenceBenchError, match="strat_fold 11 of record 'q'"):
        strat_fold_split(pd.Series([11], index=["q"]))
    patients = pd.Series([f"p{i // 3}" for i in range(3000)], index=[str(i) for i in range(3000)])
    split = patient_split(patients, seed=1)
    check_patient_disjoint(split, patients)
    shares = split.value_counts(normalize=True)
    assert abs(shares["train"] - 0.8) < 0.05 and abs(shares["test"] - 0.1) < 0.03
    # a patient's split does not depend on which other records exist, and changes with the seed
    assert patient_split(patients.iloc[:30], seed=1).equals(split.iloc[:30])
    assert not patient_split(patients, seed=2).equals(split)


def test_a_patient_in_two_splits_is_an_error():
    patients = pd.Series(["p1", "p1", "p2"], index=["a", "b", "c"])
    split = pd.Series(["train", "test", "test"], index=["a", "b", "c"])
    with pytest.raises(LeakageError, match=r"patient 'p1' is in more than one split: train \(record a\), test \(record b\)"):
        check_patient_disjoint(split, patients)
    unknown = pd.Series(["", ""], index=["a", "b"])  # unknown patients stand for themselves
    check_patient_disjoint(pd.Series(["train", "test"], index=["a", "b"]), unknown)


@pytest.fixture
def store(tmp_path) -> ECGStore:
    write_ptbxl_layout(tmp_path / "src", 6, rates=(500,), seconds=3)
    ingest(tmp_path / "src", PtbxlLayout(), tmp_path / "store")
    return ECGStore(tmp_path / "store")


def test_view_is_built_once_per_contract_and_matches_apply_contract(store):
    registry = Registry.load(environ=BUILTINS_ONLY)
    spec = registry.encoders.get("resnet1d_wang")  # 100 Hz, 2.5 s, zscore_dataset
    view = build_view(store, spec)
    assert len(view) == 6 and view.prepared("1").shape == (12, 300)
    scaler = view.fit_standardizer(["1", "2", "3"])
    direct = apply_contract(store.signal("4"), 500.0, store.leads("4"), spec, standardizer=scaler)
    np.testing.assert_allclose(view.window("4", standardizer=scaler), direct, atol=1e-6)
    stamp = (store.root / "views").stat().st_mtime_ns
    marker = next((store.root / "views").glob("*/contract.json"))
    before = marker.stat().st_mtime_ns
    same = build_view(store, registry.encoders.get("resnet1d18"))  # the same contract: the same view, not rebuilt
    assert same.folder == view.folder and marker.stat().st_mtime_ns == before and stamp
    lead_one = spec.model_copy(update={"name": "one_lead", "leads": ("I",), "normalization": "zscore_record"})
    other = build_view(store, lead_one)
    assert other.folder != view.folder and other.window("2").shape == (1, 250)


def test_a_view_is_built_in_chunks_in_worker_processes_as_one_process_builds_it(store, tmp_path, monkeypatch):
    import shutil

    from stence_bench.data import view_cache

    monkeypatch.setattr(view_cache, "CHUNK", 2)  # six records: three chunks
    spec = Registry.load(environ=BUILTINS_ONLY).encoders.get("resnet1d_wang")
    seen: list[int] = []
    parallel = build_view(store, spec, workers=2, progress=seen.append)
    assert sorted(seen) == [2, 2, 2] and len(list((store.root / "views").glob("*/chunk-*.f32"))) == 3
    copy = tmp_path / "copy"
    shutil.copytree(store.root, copy, ignore=shutil.ignore_patterns("views"))
    sequential = build_view(ECGStore(copy), spec, workers=1)
    assert parallel.record_ids == sequential.record_ids
    for rid in parallel.record_ids:
        assert np.array_equal(parallel.prepared(rid), sequential.prepared(rid))


def test_a_killed_view_build_goes_on_from_its_finished_chunks(store, monkeypatch):
    from stence_bench.data import view_cache

    monkeypatch.setattr(view_cache, "CHUNK", 2)
    spec = Registry.load(environ=BUILTINS_ONLY).encoders.get("resnet1d_wang")
    full = build_view(store, spec)
    expected = {rid: full.prepared(rid).copy() for rid in full.record_ids}
    folder = Path(full.folder)
    (folder / "contract.json").unlink()  # killed before the view was complete: two chunks done, one not
    last = sorted(folder.glob("chunk-*.csv"))[-1]
    last.unlink()
    built: list[str] = []
    real = view_cache._build_chunk
    monkeypatch.setattr(view_cache, "_build_chunk", lambda *a: built.append(a[3]) or real(*a))
    again = build_view(store, spec)
    assert built == [last.stem]  # only the missing chunk
    assert {rid: again.prepared(rid) for rid in again.record_ids}.keys() == expected.keys()
    assert all(np.array_equal(again.prepared(rid), x) for rid, x in expected.items())


def test_records_a_contract_cannot_take_are_left_out_with_their_reason(store):
    registry = Registry.load(environ=BUILTINS_ONLY)
    posterior = registry.encoders.get("resnet1d18").model_copy(update={"leads": ("V7", "V8")})
    view = build_view(store, posterior)
    assert len(view) == 0 and len(view.excluded) == 6
    assert "V7, V8" in view.excluded["reason"].iloc[0]


def test_records_lacking_some_of_a_contracts_leads_are_kept_with_those_leads_zero_and_named(store):
    registry = Registry.load(environ=BUILTINS_ONLY)
    needs_v7 = registry.encoders.get("resnet1d18").model_copy(update={"leads": ("I", "V7")})
    full = build_view(store, registry.encoders.get("resnet1d18").model_copy(update={"leads": ("I",)}))
    view = build_view(store, needs_v7)
    assert len(view) == 6 and len(view.excluded) == 0
    assert view.present.tolist() == [[True, False]] * 6
    for rid in view.record_ids:
        assert np.array_equal(view.prepared(rid)[0], full.prepared(rid)[0])  # lead I as it is
        assert not view.prepared(rid)[1].any()  # V7: zeros


def test_cli_labels_joins_a_table_into_the_store(store, tmp_path):
    labs = tmp_path / "potassium.csv"
    pd.DataFrame({"patient_id": ["1", "2", "9"], "drawn": ["2000-02-01 03:00", "2000-02-03 00:00", "2000-02-01 00:00"],
                  "potassium": [6.1, 4.0, 5.0]}).to_csv(labs, index=False)
    result = CliRunner().invoke(cli, ["data", "labels", str(store.root), str(labs), "--key", "patient",
                                      "--time-column", "drawn", "--within", "6h"], obj=Registry.load(environ=BUILTINS_ONLY))
    assert result.exit_code == 0, result.output
    # patient 1 has records 1 and 2; patient 2's lab is two days away; patient 9 is not in the store
    assert result.output.strip().endswith(f"potassium.csv: 2 of 6 records labelled, 4 without a label; 1 row(s) of "
                                          f"{labs} match no patient of the store (e.g. '9')")
    joined = pd.read_csv(store.root / "tables" / "potassium.csv", dtype={"record_id": str})
    assert joined["record_id"].tolist() == ["1", "2"] and joined["gap_hours"].tolist() == [3.0, 3.0]
    bad = CliRunner().invoke(cli, ["data", "labels", str(store.root), str(labs), "--key", "patient", "--within", "6h"],
                             obj=Registry.load(environ=BUILTINS_ONLY))
    assert bad.exit_code == 2 and bad.output.strip() == "Error: --within needs --time-column"
