"""Public datasets: dataset cards, units of a store, the publisher's official splits, and each public layout read
from a small sample in its exact published file layout (tests/public_samples.py), ingested and run through a tiny
suite."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import BUILTINS_ONLY, run_cli
from public_samples import ECHONEXT_FLAGS, echonext_sample

from stence_bench.data.ingest import ingest
from stence_bench.data.layouts.base import build_layout
from stence_bench.data.splits import NO_SPLIT, official_split
from stence_bench.data.store import ECGStore
from stence_bench.errors import StenceBenchError
from stence_bench.data.windows import Windows
from stence_bench.protocol.data import Workspace
from stence_bench.registry import Registry
from stence_bench.specs import EncoderSpec, import_object
from stence_bench.suite import parse_suite


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry.load(environ=BUILTINS_ONLY)


def quiet(line: str) -> None:
    pass


# -- dataset cards --------------------------------------------------------------------------------------------


def test_every_registered_layout_has_a_card_whose_units_are_the_layouts_own(registry):
    for spec in registry.datasets:
        assert spec.card is not None, f"dataset {spec.name!r} has no card"
        layout_cls = import_object(spec.reader, what=spec.name)
        assert spec.card.units == layout_cls.units, spec.name
        assert spec.card.licence and spec.card.patient_id and spec.card.splits
    assert registry.datasets.get("echonext").card.access == "restricted"
    assert registry.datasets.get("ptbxl").card.access == "open"


def test_list_datasets_json_carries_the_cards():
    out = run_cli("list", "datasets", "--json", STENCE_BENCH_DISABLE_PLUGIN_AUTOLOAD="1")
    assert out.returncode == 0, out.stderr
    cards = {e["spec"]["name"]: e["spec"]["card"] for e in json.loads(out.stdout)}
    assert cards["echonext"]["units"] == "z-score" and cards["echonext"]["sampling_rates"] == [250.0]
    assert cards["ptbxl"]["licence"] == "CC-BY-4.0" and "strat_fold" in cards["ptbxl"]["splits"]
    table = run_cli("list", "datasets", STENCE_BENCH_DISABLE_PLUGIN_AUTOLOAD="1").stdout
    assert "restricted" in table and "z-score" in table


def test_a_card_is_left_out_of_the_layouts_fingerprint(registry):
    """A corrected licence or note must not make every store of the layout be ingested again."""
    from plugin_fixtures import Plugin

    from stence_bench.specs import DatasetCard, DatasetSpec

    def with_card(note: str) -> Registry:
        card = DatasetCard(title="t", licence="CC0-1.0", access="open", patient_id="p", splits="none", notes=note)
        spec = DatasetSpec(name="hospital", reader="stence_bench.data.layouts.wfdb_folder:WfdbLayout", card=card)
        return Registry.load(extra=[Plugin("hosp", datasets=[spec])], environ=BUILTINS_ONLY)

    assert with_card("a").fingerprint("dataset", "hospital") == with_card("b").fingerprint("dataset", "hospital")


# -- official splits ------------------------------------------------------------------------------------------


def test_official_split_reads_the_publishers_split_and_puts_the_rest_in_none():
    split = official_split(pd.Series(["train", "val", "Validation", "test", "no_split"], index=list("abcde")))
    assert split.tolist() == ["train", "val", "val", "test", NO_SPLIT]
    with pytest.raises(StenceBenchError, match="record 'b' has no official split"):
        official_split(pd.Series(["train", None], index=["a", "b"]))


# -- EchoNext ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def echonext(tmp_path_factory):
    folder = tmp_path_factory.mktemp("echonext")
    table = echonext_sample(folder)
    store = tmp_path_factory.mktemp("stores") / "echonext"
    report = ingest(folder, build_layout(Registry.load(environ=BUILTINS_ONLY), "echonext", {}), store, echo=quiet)
    return folder, table, store, report


def test_echonext_records_are_the_published_rows_of_each_split_in_order(echonext):
    folder, table, store_root, report = echonext
    assert report.ingested == len(table) and report.quarantined_total == 0
    store = ECGStore(store_root)
    assert store.info.units == "z-score" and store.summary()["units"] == "z-score"
    for split in ("train", "val", "test", "no_split"):
        rows = table[table["split"] == split]
        array = np.load(folder / f"EchoNext_{split}_waveforms.npy")
        for i, (ecg, patient) in enumerate(zip(rows["ecg_key"], rows["patient_key"])):
            rid = str(ecg)
            assert store.leads(rid)[:3] == ("I", "II", "III") and store.manifest.set_index("record_id").loc[rid, "fs"] == 250
            # the i-th metadata row of a split is the i-th ECG of its array, leads on the first axis
            np.testing.assert_array_equal(store.signal(rid), array[i, 0].T.astype(np.float32))
            meta = store.meta(rid)
            assert meta["split"] == split and meta["row"] == i
            assert store.manifest.set_index("record_id").loc[rid, "patient_id"] == str(patient)
    assert "echonext_metadata" in store.tables()


def test_echonext_layout_names_what_is_wrong_with_the_folder(tmp_path, registry):
    layout = build_layout(registry, "echonext", {})
    with pytest.raises(StenceBenchError, match="echonext_metadata_100k.csv"):
        layout.scan(tmp_path)
    table = echonext_sample(tmp_path / "short")
    np.save(tmp_path / "short" / "EchoNext_val_waveforms.npy", np.zeros((1, 1, 2500, 12)))
    n_val = int((table["split"] == "val").sum())
    with pytest.raises(StenceBenchError, match=rf"EchoNext_val_waveforms.npy: 1 ECGs, but the metadata lists {n_val}"):
        layout.scan(tmp_path / "short")
    echonext_sample(tmp_path / "missing")
    (tmp_path / "missing" / "EchoNext_test_waveforms.npy").unlink()
    with pytest.raises(StenceBenchError, match=r"EchoNext_test_waveforms.npy: not found; .* lists 8 test ECG"):
        layout.scan(tmp_path / "missing")
    # the no_split array is optional: its ECGs are in no split
    echonext_sample(tmp_path / "no-nosplit", with_no_split_file=False)
    refs = layout.scan(tmp_path / "no-nosplit").refs
    assert {r.meta["split"] for r in refs} == {"train", "val", "test"}


def echonext_suite(folder, tasks: str = '["echonext.lvef", "echonext.findings"]', encoder: str = "resnet1d_wang",
                   objectives: str = '["none"]', extra: str = "") -> str:
    return f"""
name = "echonext"
tasks = {tasks}
encoders = [{{name = "{encoder}", preset = "tiny"}}]
objectives = {objectives}
controls = false
[protocol]
stages = ["linear_probe"]
fractions = [1.0]
bootstrap = 10
{extra}
[data]
pretrain = "echonext"
[data.sources.echonext]
path = "{folder}"
"""


def test_echonext_tasks_use_the_publishers_split_and_labels(echonext, registry, tmp_path):
    folder, table, _, _ = echonext
    ws = Workspace(parse_suite(echonext_suite(folder)), registry, tmp_path, echo=quiet)
    dataset = ws.dataset("echonext")
    assert dataset.default_policy == "official"
    split = dict(zip(dataset.records["record_id"], dataset.split("official", 0)))
    published = dict(zip(table["ecg_key"].astype(str), table["split"]))
    assert split == {rid: (s if s != "no_split" else NO_SPLIT) for rid, s in published.items()}

    lvef = ws.labels(registry.tasks.get("echonext.lvef"))
    expected = table.set_index(table["ecg_key"].astype(str))["lvef_lte_45_flag"].sort_index()
    assert list(lvef.columns) == ["lvef_lte_45_flag"]
    pd.testing.assert_series_equal(lvef["lvef_lte_45_flag"], expected.rename_axis("record_id"), check_names=False)
    findings = ws.labels(registry.tasks.get("echonext.findings"))
    assert list(findings.columns) == list(ECHONEXT_FLAGS) and len(findings) == len(table)

    # no_split ECGs' patients are validation/test patients: held out, so never pretraining data
    held = ws.held_out()
    no_split_patients = set(table.loc[table["split"] == "no_split", "patient_key"].astype(str))
    assert {("echonext", p) for p in no_split_patients} <= held.patients
    pretraining = set(ws.pretraining_records().record_ids)
    assert not pretraining & set(table.loc[table["split"] != "train", "ecg_key"].astype(str))


def test_echonext_runs_through_a_tiny_suite_scored_on_the_publishers_test_split(echonext, registry, tmp_path):
    from stence_bench.protocol.evaluate import task_data
    from stence_bench.results import read_results
    from stence_bench.protocol.runner import run_suite

    folder, table, _, _ = echonext
    suite = parse_suite(echonext_suite(folder))
    outcomes = run_suite(suite, registry, tmp_path, echo=quiet)
    assert [o.status for o in outcomes] == ["done", "done"], [o.error for o in outcomes]
    results = read_results([tmp_path])
    assert {r.cell.task for r in results} == {"echonext.lvef", "echonext.findings"}
    ws = Workspace(suite, registry, tmp_path, echo=quiet)
    task = registry.tasks.get("echonext.lvef")
    data = task_data(ws, task, ws.windows("echonext", registry.encoders.get("resnet1d_wang")))
    scored = set(data.record_ids[data.part("test")])
    assert scored == set(table.loc[table["split"] == "test", "ecg_key"].astype(str))
    used = {rid for part in ("train", "val", "test") for rid in data.record_ids[data.part(part)]}
    assert not used & set(table.loc[table["split"] == "no_split", "ecg_key"].astype(str))


# -- units: a store that is not in millivolts ----------------------------------------------------------------


def test_zscore_contracts_see_the_same_windows_from_publisher_zscored_signals_as_from_millivolts():
    """The documented equivalent: a per-lead (x - m) / s of the whole record (the publisher's standardisation)
    changes nothing a normalising contract feeds its encoder. Hand-made: lead 0 = 1 mV * sin, scaled by 1/0.25 and
    shifted by -3 for the z-scored copy."""
    from stence_bench.data.windows import Normalizer

    contract = EncoderSpec(name="net", factory="m:f", sampling_rate=250, window_s=2, embed_dim=8, leads=("I", "II"))

    def zscore_record(x: np.ndarray) -> np.ndarray:  # what the harness feeds a zscore_record encoder
        return Normalizer(contract, None, [x.shape[1]])(torch.from_numpy(x.astype(np.float32))[None])[0].numpy()

    t = np.arange(500) / 250
    mv = np.stack([np.sin(2 * np.pi * t), 0.5 * np.cos(2 * np.pi * 3 * t) + 0.2]).astype(np.float64)
    m, s = np.array([[3.0], [-1.0]]), np.array([[0.25], [2.0]])
    published = (mv - m) / s
    np.testing.assert_allclose(zscore_record(published), zscore_record(mv), atol=1e-4)
    # and the dataset scaler: mean/std of the published values are (mean - m) / s and std / s, so it cancels
    a = (published - published.mean(axis=1, keepdims=True)) / published.std(axis=1, keepdims=True)
    b = (mv - mv.mean(axis=1, keepdims=True)) / mv.std(axis=1, keepdims=True)
    np.testing.assert_allclose(a, b, atol=1e-9)


def test_a_contract_feeding_millivolts_is_refused_on_a_zscored_store(echonext):
    from stence_bench.data.view_cache import UnitsError, build_view

    _, _, store_root, _ = echonext
    store = ECGStore(store_root)
    raw = EncoderSpec(name="raw_net", factory="m:f", sampling_rate=250, window_s=2, embed_dim=8,
                      normalization="none")
    with pytest.raises(UnitsError, match=r"'z-score'.*'raw_net'.*normalization 'none'.*zscore_record"):
        build_view(store, raw)
    assert len(build_view(store, raw.model_copy(update={"normalization": "zscore_record"}))) == len(store)


def test_an_objective_augmenting_in_millivolts_is_refused_on_a_zscored_store():
    spec = EncoderSpec(name="net", factory="m:f", sampling_rate=250, window_s=2, embed_dim=8)
    arrays = [np.zeros((12, 600), np.float32) + i for i in range(3)]
    mv = Windows.of_arrays(spec, ["a", "b", "c"], arrays)
    x, _ = mv.crops_physical(np.arange(3), np.random.default_rng(0))
    assert isinstance(x, torch.Tensor) and x.shape == (3, 12, 500)
    zscored = Windows(spec, ["a", "b", "c"], arrays.__getitem__, np.array([600] * 3), units="z-score")
    from stence_bench.data.view_cache import UnitsError

    with pytest.raises(UnitsError, match="millivolts.*'z-score'"):
        zscored.crops_physical(np.arange(3), np.random.default_rng(0))
    assert zscored.crops(np.arange(3), np.random.default_rng(0)).shape == (3, 12, 500)


def test_data_info_says_the_units(echonext):
    _, _, store_root, _ = echonext
    out = run_cli("data", "info", str(store_root))
    assert out.returncode == 0 and "units        z-score  (standardised by the publisher" in out.stdout


# -- MIMIC-IV recipes ---------------------------------------------------------------------------------------------


def test_potassium_recipe_keeps_serum_potassium_draws_with_a_plausible_number(tmp_path):
    from public_samples import labevents_rows

    from stence_bench.data.recipes import potassium_table

    rows = labevents_rows([
        (10000032, 50971, "2180-05-06 22:25:00", "4.1"),
        (10000032, 50983, "2180-05-06 22:25:00", "137"),     # sodium: another item
        (10000032, 50822, "2180-05-07 01:00:00", "5.9"),     # whole-blood potassium: not serum
        (10000032, 50971, "2180-05-07 09:00:00", "HEMOLYZED SAMPLE"),  # no number
        (10000048, 50971, "2126-11-22 20:45:00", "6.2"),
        (10000048, 50971, "2126-11-23 06:10:00", "0"),       # implausible
        (10000048, 50971, "2126-11-24 06:10:00", "99"),      # implausible
    ])
    path = tmp_path / "labevents.csv.gz"
    rows.to_csv(path, index=False, compression="gzip")
    table = potassium_table(path, chunk_rows=2)  # chunks cross the rows
    assert table[["subject_id", "charttime", "potassium", "itemid"]].values.tolist() == [
        ["10000032", "2180-05-06 22:25:00", 4.1, 50971], ["10000048", "2126-11-22 20:45:00", 6.2, 50971]]
    both = potassium_table(path, itemids=[50971, 50822])
    assert both["potassium"].tolist() == [4.1, 5.9, 6.2]
    rows.drop(columns=["valuenum"]).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(StenceBenchError, match=r"bad.csv: missing column\(s\) valuenum"):
        potassium_table(tmp_path / "bad.csv")


def test_lvef_recipe_takes_one_value_per_study_by_preference(tmp_path):
    from public_samples import measurement_rows

    from stence_bench.data.recipes import lvef_table

    rows = measurement_rows([
        (10000032, 1, "2180-05-08 10:00:00", "lvef", "55"),
        (10000032, 1, "2180-05-08 10:00:00", "biplane_lvef", "52"),  # the reported LVEF comes first
        (10000032, 1, "2180-05-08 10:00:00", "lvidd", "4.8"),
        (10000032, 2, "2181-01-02 09:00:00", "biplane_lvef", "30"),  # only the biplane estimate
        (10000048, 3, "2126-11-20 12:00:00", "lvef", "Normal"),       # not a number: no value
        (10000048, 4, "2126-12-20 12:00:00", "lvef", "140"),          # implausible
    ])
    rows.to_csv(tmp_path / "structured_measurement.csv", index=False)
    table = lvef_table(tmp_path / "structured_measurement.csv")
    assert table[["subject_id", "echo_time", "lvef", "measurement"]].values.tolist() == [
        ["10000032", "2180-05-08 10:00:00", 55.0, "lvef"], ["10000032", "2181-01-02 09:00:00", 30.0, "biplane_lvef"]]
    only_biplane = lvef_table(tmp_path / "structured_measurement.csv", measurements=["biplane_lvef"])
    assert only_biplane["lvef"].tolist() == [52.0, 30.0]


def test_recipe_tables_feed_the_clinical_tasks_on_mimic_iv_ecg_records(tmp_path, registry):
    """The recipes' tables joined to MIMIC-IV-ECG-like records by subject_id and time, through the tasks'
    own windows: K+ 6.2 drawn 1 h after an ECG labels it positive for potassium.5.5; a draw 5 h away labels
    nothing; the LVEF of an echo 3 days after the ECG labels it."""
    from public_samples import labevents_rows, measurement_rows

    from stence_bench.task_data import TaskSource

    labs = tmp_path / "labevents.csv.gz"
    labevents_rows([(101, 50971, "2150-01-01 11:00:00", "6.2"), (102, 50971, "2150-01-01 15:00:00", "3.0")]
                   ).to_csv(labs, index=False, compression="gzip")
    echo = tmp_path / "structured_measurement.csv"
    measurement_rows([(101, 7, "2150-01-04 10:00:00", "lvef", "30")]).to_csv(echo, index=False)
    tables = tmp_path / "tables"
    for args in (["potassium", str(labs)], ["lvef", str(echo)]):
        out = run_cli("data", "recipe", *args, "--out", str(tables))
        assert out.returncode == 0, out.stderr
    assert "1 echo studies of 1 patients with an LVEF (from: lvef 1)" in out.stdout
    about = json.loads((tables / "labs.recipe.json").read_text())
    assert about["itemids"] == [50971] and about["rows"] == 2
    records = pd.DataFrame({"record_id": ["40000001", "40000002"], "patient_id": ["101", "102"],
                            "time": ["2150-01-01 10:00:00", "2150-01-01 10:00:00"], "meta": [{}, {}]})
    source = TaskSource("mimic-iv-ecg", records, {"labs": pd.read_csv(tables / "labs.csv"),
                                                  "echo": pd.read_csv(tables / "echo.csv")})
    k = import_object(registry.tasks.get("potassium.5.5").labels, what="t")(source, **registry.tasks.get("potassium.5.5").options)
    assert k.to_dict("index") == {"40000001": {"potassium_ge_5.5": 1.0}}
    lvef = import_object(registry.tasks.get("lvef.35").labels, what="t")(source, **registry.tasks.get("lvef.35").options)
    assert lvef.to_dict("index") == {"40000001": {"lvef_le_35": 1.0}}


def test_recipe_errors_are_one_line(tmp_path):
    out = run_cli("data", "recipe", "potassium", str(tmp_path / "nope.csv.gz"), "--out", str(tmp_path / "t"))
    assert out.returncode == 2 and out.stderr.strip().startswith("Error:") and "no such file" in out.stderr
    assert "Traceback" not in out.stderr


# -- CODE-15% -------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def code15(tmp_path_factory):
    from public_samples import code15_sample

    folder = tmp_path_factory.mktemp("code15")
    table = code15_sample(folder, shards=2, per_shard=10)
    store = tmp_path_factory.mktemp("stores") / "code15"
    report = ingest(folder, build_layout(Registry.load(environ=BUILTINS_ONLY), "code15", {}), store, echo=quiet)
    return folder, table, store, report


def test_code15_exams_are_read_from_their_shards_without_the_publishers_padding(code15):
    import h5py

    folder, table, store_root, report = code15
    assert report.ingested == len(table) and report.quarantined_total == 0  # filler rows (exam_id 0) skipped
    store = ECGStore(store_root)
    assert store.info.units == "mV" and set(store.manifest["fs"]) == {400.0}
    with h5py.File(folder / "exams_part1.hdf5", "r") as fh:
        ids, tracings = fh["exam_id"][:], fh["tracings"][:]
    for row, exam in enumerate(ids[:3]):
        n = 2800 if row % 3 == 0 else 4000  # the sample's 7 s and 10 s exams, centred in 4096
        pad = (4096 - n) // 2
        np.testing.assert_array_equal(store.signal(str(exam)), tracings[row, pad : pad + n].T)
    patients = store.manifest.set_index("record_id")["patient_id"]
    assert patients[str(table["exam_id"][0])] == str(table["patient_id"][0])
    meta = store.meta(str(table["exam_id"][0]))
    assert meta["AF"] == bool(table["AF"][0]) and meta["age"] == table["age"][0]


def test_code15_quarantines_unknown_and_empty_exams_and_names_a_bad_folder(tmp_path, registry):
    import h5py
    from public_samples import code15_sample

    table = code15_sample(tmp_path / "src", shards=1, per_shard=4)
    with h5py.File(tmp_path / "src" / "exams_part0.hdf5", "r+") as fh:
        fh["exam_id"][1] = 42  # not in exams.csv
        fh["tracings"][2] = 0.0  # zero throughout
    report = ingest(tmp_path / "src", build_layout(registry, "code15", {}), tmp_path / "store", echo=quiet)
    assert report.ingested == 2 and report.quarantined_total == 2
    reasons = pd.read_csv(report.report, dtype=str).set_index("record_id")["why"]
    assert "exam_id 42 (row 1) is not in exams.csv" in reasons["42"]
    assert "zero on every lead" in reasons[str(table["exam_id"][2])]
    layout = build_layout(registry, "code15", {})
    with pytest.raises(StenceBenchError, match="exams.csv: not found"):
        layout.scan(tmp_path)
    (tmp_path / "only").mkdir()
    table.to_csv(tmp_path / "only" / "exams.csv", index=False)
    with pytest.raises(StenceBenchError, match="no exams_part"):
        layout.scan(tmp_path / "only")


def test_code15_abnormalities_run_through_a_tiny_suite(code15, registry, tmp_path):
    from stence_bench.protocol.runner import run_suite

    folder, table, _, _ = code15
    suite = parse_suite(echonext_suite(folder, tasks='["code15.abnormalities"]').replace(
        'pretrain = "echonext"', 'pretrain = "code15"').replace("sources.echonext", "sources.code15"))
    ws = Workspace(suite, registry, tmp_path, echo=quiet)
    labels = ws.labels(registry.tasks.get("code15.abnormalities"))
    expected = table.set_index(table["exam_id"].astype(str))[["1dAVb", "RBBB", "LBBB", "SB", "ST", "AF"]].astype(float)
    pd.testing.assert_frame_equal(labels, expected.sort_index().rename_axis("record_id"), check_names=False)
    outcomes = run_suite(suite, registry, tmp_path, echo=quiet)
    assert [o.status for o in outcomes] == ["done"], [o.error for o in outcomes]


# -- Chapman-Shaoxing / Ningbo ------------------------------------------------------------------------------------


def test_chapman_ningbo_reads_the_real_js_records_in_the_releases_folders(realdata, registry, tmp_path):
    """The Challenge's JS20000-JS20009 are Chapman-Shaoxing/Ningbo ECGs; laid out as the PhysioNet release does
    (WFDBRecords/NN/NNN/). Their classes, read by hand from the headers' '# Dx': sinus tachycardia (427084000) is
    GSVT, 426177001 SB, 427393009 (sinus arrhythmia) SR; JS20002 has no rhythm code of the four groups."""
    import shutil

    from stence_bench.task_data import TaskSource

    folder = tmp_path / "ecg-arrhythmia" / "WFDBRecords" / "20" / "200"
    folder.mkdir(parents=True)
    for path in (realdata / "cinc2021").glob("JS200*"):
        shutil.copy(path, folder / path.name)
    pd.DataFrame({"Acronym Name": ["SB"], "Full Name": ["Sinus Bradycardia"], "Snomed_CT": ["426177001"]}).to_csv(
        tmp_path / "ecg-arrhythmia" / "ConditionNames_SNOMED-CT.csv", index=False)
    report = ingest(tmp_path / "ecg-arrhythmia", build_layout(registry, "chapman-ningbo", {}), tmp_path / "store",
                    echo=quiet)
    assert report.ingested == 10 and report.quarantined_total == 0
    store = ECGStore(tmp_path / "store")
    assert "condition_names" in store.tables() and set(store.manifest["fs"]) == {500.0}
    records = pd.DataFrame({"record_id": store.manifest["record_id"], "patient_id": "", "time": "",
                            "meta": [store.meta(i) for i in range(len(store))]})
    labels = import_object(registry.tasks.get("chapman.rhythm").labels, what="t")(TaskSource("c", records, {}))
    assert list(labels.columns) == ["SB", "AFIB", "GSVT", "SR"]
    got = labels.idxmax(axis=1).to_dict()
    expected = {f"JS2000{i}": "GSVT" for i in (0, 1, 3, 4, 5, 6, 9)} | {"JS20007": "SB", "JS20008": "SR"}
    assert got == expected and (labels.sum(axis=1) == 1).all()


def chapman_sample(folder, n: int = 48, seed: int = 0) -> list[str]:
    """Generated WFDB records in the release's layout, cycling through the four groups' codes."""
    from stence_bench.data.wfdb_io import write_wfdb

    rng = np.random.default_rng(seed)
    codes = ["426177001", "164889003", "427084000", "426783006"]
    written = []
    for i in range(n):
        rid = f"JS{i + 1:05d}"
        sub = folder / "WFDBRecords" / "01" / f"0{i // 10:02d}"
        sub.mkdir(parents=True, exist_ok=True)
        code = codes[i % 4]
        signal = rng.normal(0, 0.2, (12, 1000)) + (0.5 if code == "164889003" else 0.0)
        write_wfdb(sub / rid, signal, 500, comments=["Age: 60", "Sex: Female", f"Dx: {code},164934002",
                                                     "Rx: Unknown", "Hx: Unknown", "Sx: Unknown"])
        written.append(code)
    return written


def test_chapman_rhythm_runs_through_a_tiny_suite(registry, tmp_path):
    from stence_bench.protocol.runner import run_suite

    chapman_sample(tmp_path / "src")
    suite = parse_suite(echonext_suite(tmp_path / "src", tasks='["chapman.rhythm"]').replace(
        'pretrain = "echonext"', 'pretrain = "chapman-ningbo"').replace("sources.echonext", "sources.chapman-ningbo"))
    outcomes = run_suite(suite, registry, tmp_path / "run", echo=quiet)
    assert [o.status for o in outcomes] == ["done"], [o.error for o in outcomes]


# -- Croissant ----------------------------------------------------------------------------------------------------


def test_croissant_export_has_the_specs_required_fields_and_the_stores_files(echonext, tmp_path):
    import hashlib

    _, table, store_root, _ = echonext
    out = run_cli("data", "croissant", str(store_root), "-o", str(tmp_path / "echonext.json"),
                  STENCE_BENCH_DISABLE_PLUGIN_AUTOLOAD="1")
    assert out.returncode == 0, out.stderr
    doc = json.loads((tmp_path / "echonext.json").read_text())
    # Croissant 1.0: required dataset-level properties
    for key in ("@context", "@type", "conformsTo", "name", "description", "license", "url", "creator",
                "datePublished", "distribution", "recordSet"):
        assert doc.get(key), key
    assert doc["@type"] == "sc:Dataset" and doc["conformsTo"] == "http://mlcommons.org/croissant/1.0"
    assert doc["@context"]["cr"] == "http://mlcommons.org/croissant/" and doc["@context"]["citeAs"] == "cr:citeAs"
    assert doc["stence:units"] == "z-score" and doc["stence:records"] == len(table)
    assert doc["stence:card"]["access"] == "restricted" and "EchoNext" in doc["name"]
    files = {d["@id"]: d for d in doc["distribution"] if d["@type"] == "cr:FileObject"}
    table_file = files["tables/echonext_metadata.csv"]
    assert table_file["sha256"] == hashlib.sha256((store_root / "tables" / "echonext_metadata.csv").read_bytes()).hexdigest()
    ids = {d["@id"] for d in doc["distribution"]}
    (records,) = doc["recordSet"]
    for field in records["field"]:
        source = field["source"]
        assert source["fileSet"]["@id"] in ids and field["@id"].startswith("records/")
    assert {f["name"] for f in records["field"]} >= {"record_id", "patient_id", "fs", "leads", "checksum"}
    printed = run_cli("data", "croissant", str(store_root), STENCE_BENCH_DISABLE_PLUGIN_AUTOLOAD="1")
    assert json.loads(printed.stdout)["name"] == doc["name"]


# -- SPH (Shandong Provincial Hospital) -----------------------------------------------------------------------------

#: AHA_Code per record of the SPH sample: statements split by ';', modifiers (200-499) joined by '+'
SPH_AHA = ["1", "22;50+346", "23;147+310", "104", "1", "50", "22;104", "147+310;1", "1", "50+346", "23", "104;147",
           "1", "22", "50", "104", "1", "23;50", "147", "1", "22", "104+310", "50", "1"]
#: their primary statements, read by hand
SPH_PRIMARY = [["1"], ["22", "50"], ["23", "147"], ["104"], ["1"], ["50"], ["22", "104"], ["147", "1"], ["1"], ["50"],
               ["23"], ["104", "147"], ["1"], ["22"], ["50"], ["104"], ["1"], ["23", "50"], ["147"], ["1"], ["22"],
               ["104"], ["50"], ["1"]]
#: two records per patient for the first eight patients, then one each
SPH_PATIENTS = [f"{i // 2:05d}" if i < 16 else f"{i:05d}" for i in range(len(SPH_AHA))]


def test_parse_aha_splits_statements_and_leaves_modifiers_out():
    from stence_bench.data.layouts.sph import parse_aha

    assert parse_aha("22;50+346") == (["22", "50+346"], ["22", "50"])
    assert parse_aha(" 147+310 ; 1 ") == (["147+310", "1"], ["147", "1"])
    assert parse_aha("22;22+310") == (["22", "22+310"], ["22"])  # one statement, once
    assert parse_aha("310") == (["310"], [])  # a modifier alone is no primary statement
    assert parse_aha("499;500;199") == (["499", "500", "199"], ["500", "199"])  # 200-499 are the modifiers
    assert parse_aha(float("nan")) == ([], []) and parse_aha("") == ([], [])


@pytest.fixture(scope="module")
def sph(tmp_path_factory):
    from public_samples import sph_sample

    folder = tmp_path_factory.mktemp("sph")
    table = sph_sample(folder, SPH_AHA, patients=SPH_PATIENTS)
    store = tmp_path_factory.mktemp("stores") / "sph"
    report = ingest(folder, build_layout(Registry.load(environ=BUILTINS_ONLY), "sph", {}), store, echo=quiet)
    return folder, table, store, report


def test_sph_records_are_the_h5_files_with_their_patients_dates_and_statements(sph):
    import h5py

    folder, table, store_root, report = sph
    assert report.ingested == len(table) and report.quarantined_total == 0
    store = ECGStore(store_root)
    assert store.info.units == "mV" and set(store.manifest["fs"]) == {500.0}
    assert {"sph_metadata", "code"} <= set(store.tables())
    manifest = store.manifest.set_index("record_id")
    for i, row in table.iterrows():
        rid = row["ECG_ID"]
        with h5py.File(folder / "records" / f"{rid}.h5", "r") as fh:
            np.testing.assert_array_equal(store.signal(rid), fh["ecg"][()])  # [12, N] as published, leads first
        assert store.leads(rid) == ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
        assert manifest.loc[rid, "patient_id"] == SPH_PATIENTS[i] and manifest.loc[rid, "n_samples"] == row["N"]
        assert str(manifest.loc[rid, "time"]).startswith(row["Date"])
        meta = store.meta(rid)
        assert meta["primary"] == SPH_PRIMARY[i] and meta["aha"] == SPH_AHA[i].split(";")
        assert meta["sex"] == row["Sex"] and meta["age"] == row["Age"]


def test_sph_quarantines_unlisted_and_malformed_files_and_names_a_bad_folder(tmp_path, registry):
    import h5py
    from public_samples import sph_sample

    table = sph_sample(tmp_path / "src", ["1", "22", "23", "50"])
    with h5py.File(tmp_path / "src" / "records" / "A09999.h5", "w") as fh:  # not in metadata.csv
        fh.create_dataset("ecg", data=np.zeros((12, 5000), np.float32))
    with h5py.File(tmp_path / "src" / "records" / "A00002.h5", "w") as fh:  # another dataset name
        fh.create_dataset("signal", data=np.zeros((12, 5000), np.float32))
    with h5py.File(tmp_path / "src" / "records" / "A00003.h5", "w") as fh:  # leads last
        fh.create_dataset("ecg", data=np.zeros((5000, 12), np.float32))
    (tmp_path / "src" / "records" / "A00004.h5").unlink()  # listed, not downloaded: not read
    report = ingest(tmp_path / "src", build_layout(registry, "sph", {}), tmp_path / "store", echo=quiet)
    assert report.ingested == 1 and report.quarantined_total == 3
    reasons = pd.read_csv(report.report, dtype=str).set_index("record_id")["why"]
    assert "A09999 is not in metadata.csv" in reasons["A09999"]
    assert "not 'ecg'" in reasons["A00002"] and "(5000, 12), expected [12, samples]" in reasons["A00003"]
    layout = build_layout(registry, "sph", {})
    with pytest.raises(StenceBenchError, match="metadata.csv: not found"):
        layout.scan(tmp_path)
    table.drop(columns=["Patient_ID"]).to_csv(tmp_path / "src" / "metadata.csv", index=False)
    with pytest.raises(StenceBenchError, match=r"metadata.csv: missing column\(s\) Patient_ID"):
        layout.scan(tmp_path / "src")
    (tmp_path / "empty").mkdir()
    table.to_csv(tmp_path / "empty" / "metadata.csv", index=False)
    with pytest.raises(StenceBenchError, match="no .h5 record beside metadata.csv"):
        layout.scan(tmp_path / "empty")


def test_sph_mv_per_unit_rescales_the_samples(tmp_path, registry):
    from public_samples import sph_sample

    sph_sample(tmp_path / "src", ["1"])
    layout = build_layout(registry, "sph", {"mv_per_unit": 0.001})
    (ref,) = layout.scan(tmp_path / "src").refs
    plain = build_layout(registry, "sph", {}).read(ref).signal
    np.testing.assert_allclose(layout.read(ref).signal, plain * np.float32(0.001), rtol=1e-6)


def test_sph_statements_are_the_primary_statements_of_code_csv_split_by_patient(sph, registry, tmp_path):
    from stence_bench.protocol.runner import run_suite

    folder, table, _, _ = sph
    suite = parse_suite(echonext_suite(folder, tasks='["sph.statements"]').replace(
        'pretrain = "echonext"', 'pretrain = "sph"').replace("sources.echonext", "sources.sph"))
    ws = Workspace(suite, registry, tmp_path, echo=quiet)
    labels = ws.labels(registry.tasks.get("sph.statements"))
    # code.csv lists 1, 22, 23, 50, 104, 147 and the modifiers 310 and 346, which are no class
    assert list(labels.columns) == ["1", "22", "23", "50", "104", "147"]
    expected = pd.DataFrame([[1.0 if c in primary else 0.0 for c in labels.columns] for primary in SPH_PRIMARY],
                            index=pd.Index(table["ECG_ID"], name="record_id"), columns=labels.columns)
    pd.testing.assert_frame_equal(labels, expected.sort_index(), check_names=False)
    dataset = ws.dataset("sph")
    split = pd.Series(dataset.split("patient", 0), index=dataset.records["record_id"].to_numpy())
    for patient in set(SPH_PATIENTS):  # a patient's records share a split
        assert split[table.loc[table["Patient_ID"] == patient, "ECG_ID"]].nunique() == 1, patient
    assert set(split) == {"train", "val", "test"}
    outcomes = run_suite(suite, registry, tmp_path, echo=quiet)
    assert [o.status for o in outcomes] == ["done"], [o.error for o in outcomes]


def test_sph_statements_need_code_csv(tmp_path, registry):
    from stence_bench.task_data import TaskDataError, TaskSource

    records = pd.DataFrame({"record_id": ["A00001"], "patient_id": ["1"], "time": [""],
                            "meta": [{"primary": ["22"]}]})
    fn = import_object(registry.tasks.get("sph.statements").labels, what="t")
    with pytest.raises(TaskDataError, match="needs table 'code'"):
        fn(TaskSource("sph", records, {}))
    codes = pd.DataFrame({"Code": ["22", "310"], "Description": ["Sinus bradycardia", "Possible"]})
    assert fn(TaskSource("sph", records, {"code": codes})).to_dict("index") == {"A00001": {"22": 1.0}}


# -- CPSC 2018 ------------------------------------------------------------------------------------------------------

CPSC_LABELS = [[1], [2, 7], [5, 3, 9], [4], [6], [8], [1], [2], [5], [3], [7, 8], [1], [2], [5, 4], [9], [6, 1],
               [1], [2], [3], [5], [7], [8], [1], [2]]


def test_cpsc2018_reads_the_mat_struct_and_reference_csv_across_the_training_sets(tmp_path, registry):
    from scipy.io import loadmat
    from public_samples import cpsc2018_sample

    table = cpsc2018_sample(tmp_path / "src", CPSC_LABELS[:6])
    report = ingest(tmp_path / "src", build_layout(registry, "cpsc2018", {}), tmp_path / "store", echo=quiet)
    assert report.ingested == 6 and report.quarantined_total == 0
    store = ECGStore(tmp_path / "store")
    assert store.info.units == "mV" and set(store.manifest["fs"]) == {500.0} and "reference" in store.tables()
    manifest = store.manifest.set_index("record_id")
    names = {1: "Normal", 2: "AF", 3: "I-AVB", 4: "LBBB", 5: "RBBB", 6: "PAC", 7: "PVC", 8: "STD", 9: "STE"}
    for i, name in enumerate(table["Recording"]):
        ecg = loadmat(tmp_path / "src" / f"TrainingSet{1 + i % 3}" / f"{name}.mat")["ECG"][0, 0]
        # whole microvolts: kept as int16 at 1000 per mV, the physical values are the file's
        assert manifest.loc[name, "encoding"] == "i16"
        np.testing.assert_allclose(store.signal(name), ecg["data"], rtol=0, atol=1e-6)
        assert store.signal(name).shape == (12, 500 * (6 + i % 7))
        meta = store.meta(name)
        assert meta["labels"] == [names[n] for n in CPSC_LABELS[i]]
        assert meta["sex"] == ("Male" if i % 2 else "Female") and meta["age"] == 20.0 + i


def test_cpsc2018_keeps_values_that_are_not_whole_microvolts_as_float32(tmp_path, registry):
    from public_samples import cpsc2018_mat

    data = np.full((12, 3000), 0.0001234)
    data[0, :10] = np.arange(10) * 1e-4
    (tmp_path / "src").mkdir()
    cpsc2018_mat(tmp_path / "src" / "A0001.mat", data, age=float("nan"))  # as A0608, A1549, ... are published
    (tmp_path / "src" / "REFERENCE.csv").write_text("Recording,First_label,Second_label,Third_label\nA0001,1,,\n")
    layout = build_layout(registry, "cpsc2018", {})
    (ref,) = layout.scan(tmp_path / "src").refs
    record = layout.read(ref)
    assert record.digital is None and record.meta == {"sex": "Male"}  # an unknown age is no age
    np.testing.assert_array_equal(record.signal, data.astype(np.float32))


def test_cpsc2018_names_bad_labels_and_quarantines_bad_files(tmp_path, registry):
    from public_samples import cpsc2018_mat, cpsc2018_sample
    from scipy.io import savemat

    cpsc2018_sample(tmp_path / "src", [[1], [2], [3], [4]], sets=1)
    folder = tmp_path / "src" / "TrainingSet1"
    cpsc2018_mat(folder / "A9999.mat", np.zeros((12, 3000)))  # not in REFERENCE.csv
    savemat(folder / "A0002.mat", {"val": np.zeros((12, 3000))})  # no ECG struct
    cpsc2018_mat(folder / "A0003.mat", np.zeros((3000, 12)))  # leads last
    report = ingest(tmp_path / "src", build_layout(registry, "cpsc2018", {}), tmp_path / "store", echo=quiet)
    assert report.ingested == 2 and report.quarantined_total == 3
    reasons = pd.read_csv(report.report, dtype=str).set_index("record_id")["why"]
    assert "A9999 is not in REFERENCE.csv" in reasons["A9999"]
    assert "struct 'ECG'" in reasons["A0002"] and "(3000, 12), expected [12, samples]" in reasons["A0003"]
    layout = build_layout(registry, "cpsc2018", {})
    (tmp_path / "src" / "REFERENCE.csv").write_text(
        "Recording,First_label,Second_label,Third_label\nA0001,1,10,\n")
    with pytest.raises(StenceBenchError, match=r"REFERENCE.csv: recording A0001: Second_label '?10'? is not a class"):
        layout.scan(tmp_path / "src")
    (tmp_path / "src" / "REFERENCE.csv").unlink()
    with pytest.raises(StenceBenchError, match="holds one REFERENCE.csv"):
        layout.scan(tmp_path / "src")


def test_cpsc2018_classes_run_through_a_tiny_suite(registry, tmp_path):
    from public_samples import cpsc2018_sample

    from stence_bench.protocol.runner import run_suite

    table = cpsc2018_sample(tmp_path / "src", CPSC_LABELS)
    suite = parse_suite(echonext_suite(tmp_path / "src", tasks='["cpsc2018.classes"]').replace(
        'pretrain = "echonext"', 'pretrain = "cpsc2018"').replace("sources.echonext", "sources.cpsc2018"))
    ws = Workspace(suite, registry, tmp_path / "run", echo=quiet)
    labels = ws.labels(registry.tasks.get("cpsc2018.classes"))
    order = ["Normal", "AF", "I-AVB", "LBBB", "RBBB", "PAC", "PVC", "STD", "STE"]
    assert list(labels.columns) == order
    expected = pd.DataFrame([[1.0 if k + 1 in numbers else 0.0 for k in range(9)] for numbers in CPSC_LABELS],
                            index=pd.Index(table["Recording"], name="record_id"), columns=order)
    pd.testing.assert_frame_equal(labels, expected, check_names=False)
    outcomes = run_suite(suite, registry, tmp_path / "run", echo=quiet)
    assert [o.status for o in outcomes] == ["done"], [o.error for o in outcomes]


def cpsc_copies_of_real_challenge_records(realdata, tmp_path):
    """The CinC 2021 CPSC part republishes CPSC 2018's recordings at 1000 units per mV. Reversed on real records:
    each of the 20 real Challenge records (Georgia E07500-E07509, Chapman JS20000-JS20009) written as a CPSC 2018
    recording (A0001-A0020: its millivolts in the ECG struct), beside the Challenge folder holding the originals."""
    import shutil

    from public_samples import cpsc2018_mat

    from stence_bench.data.wfdb_io import read_wfdb

    cinc, cpsc = tmp_path / "cinc", tmp_path / "cpsc"
    cinc.mkdir()
    cpsc.mkdir()
    names = [*(f"E0750{i}" for i in range(10)), *(f"JS2000{i}" for i in range(10))]
    rows = []
    for i, name in enumerate(names):
        for suffix in (".hea", ".mat"):
            shutil.copy(realdata / "cinc2021" / f"{name}{suffix}", cinc / f"{name}{suffix}")
        record, _ = read_wfdb(realdata / "cinc2021" / name)
        mv = record.digital.astype(np.float64) / 1000.0  # the published file's millivolts
        cpsc2018_mat(cpsc / f"A{i + 1:04d}.mat", mv)
        rows.append(f"A{i + 1:04d},{1 + i % 9},,")
    (cpsc / "REFERENCE.csv").write_text("Recording,First_label,Second_label,Third_label\n" + "\n".join(rows) + "\n")
    return cinc, cpsc, dict(zip((f"A{i + 1:04d}" for i in range(len(names))), names))


def cpsc_overlap_suite(cinc, cpsc, policy: str | None) -> str:
    setting = f'test_overlap = "{policy}"\n' if policy else ""
    return f"""
name = "cpsc-overlap"
tasks = ["cpsc2018.classes"]
encoders = [{{name = "resnet1d_wang", preset = "tiny"}}]
objectives = ["metric_learning"]
controls = false
[protocol.pretrain]
{setting}epochs = 1
batch_size = 4
[data]
pretrain = "cinc2021"
[data.sources.cinc2021]
path = "{cinc}"
[data.sources.cpsc2018]
path = "{cpsc}"
"""


def test_cinc2021_contains_cpsc2018_and_the_shared_recordings_are_found_by_their_signals(realdata, registry,
                                                                                         tmp_path):
    from stence_bench.protocol.data import HeldOutOverlapError
    from stence_bench.suite import check_names

    assert "cpsc2018" in registry.datasets.get("cinc2021").contains
    cinc, cpsc, original = cpsc_copies_of_real_challenge_records(realdata, tmp_path)
    problems = check_names(parse_suite(cpsc_overlap_suite(cinc, cpsc, None)), registry, "overlap.toml")
    assert len(problems) == 1 and "test_overlap" in problems[0] and "cpsc2018.classes" in problems[0]
    assert check_names(parse_suite(cpsc_overlap_suite(cinc, cpsc, "exclude")), registry) == []

    ws = Workspace(parse_suite(cpsc_overlap_suite(cinc, cpsc, None)), registry, tmp_path / "a", echo=quiet)
    # one recording, one checksum: the CPSC copy is stored as the Challenge stores it (int16, 1000 per mV)
    ingested = {name: ws.dataset(name).store.manifest.set_index("record_id")["checksum"]
                for name in ("cinc2021", "cpsc2018")}
    for copy, name in original.items():
        assert ingested["cpsc2018"][copy] == ingested["cinc2021"][name], copy
    cpsc_set = ws.dataset("cpsc2018")
    held = {original[r] for r, s in zip(cpsc_set.records["record_id"], cpsc_set.split("patient", 0)) if s != "train"}
    cinc_set = ws.dataset("cinc2021")
    train = set(cinc_set.records["record_id"][cinc_set.split("patient", 0) == "train"])
    shared = held & train
    assert shared, "the situation needs a held-out CPSC recording among the Challenge's training records"
    with pytest.raises(HeldOutOverlapError, match=r"cpsc2018\.classes.*test_overlap"):
        ws.pretraining_records()
    ws = Workspace(parse_suite(cpsc_overlap_suite(cinc, cpsc, "exclude")), registry, tmp_path / "a", echo=quiet)
    chosen = ws.pretraining_records()
    assert set(chosen.record_ids) == train - shared
    assert chosen.test_overlap == {"cpsc2018.classes": len(shared)}


def test_sph_store_exports_its_card_as_croissant(sph, tmp_path):
    _, table, store_root, _ = sph
    out = run_cli("data", "croissant", str(store_root), STENCE_BENCH_DISABLE_PLUGIN_AUTOLOAD="1")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert "Shandong Provincial Hospital" in doc["name"] and doc["stence:records"] == len(table)
    assert doc["stence:card"]["patient_id"].startswith("Patient_ID") and doc["stence:units"] == "mV"
    assert {"tables/sph_metadata.csv", "tables/code.csv"} <= {d["@id"] for d in doc["distribution"]}
