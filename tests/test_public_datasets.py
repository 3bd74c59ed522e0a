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
