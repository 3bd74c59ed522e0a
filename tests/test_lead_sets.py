"""Lead I for real (issue 23): single-lead and reduced-lead records are kept by the views (their lacking leads zero
and named), normalised over the leads they have, scored on the lead sets they have, and pretraining on lead I alone
is a suite setting."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
import wfdb
from conftest import BUILTINS_ONLY

from stence_bench.data.ingest import ingest
from stence_bench.data.layouts.wfdb_folder import WfdbLayout
from stence_bench.data.store import ECGStore
from stence_bench.data.view_cache import build_view
from stence_bench.data.views import Standardizer
from stence_bench.data.wfdb_io import write_wfdb
from stence_bench.data.windows import Normalizer, Windows
from stence_bench import results as res
from stence_bench.protocol.data import lead_mask
from stence_bench.protocol.runner import run_suite
from stence_bench.registry import Registry
from stence_bench.suite import check_names, parse_suite, plan
from stence_bench.synth.cohort import synthesize


@pytest.fixture(scope="module")
def registry():
    return Registry.load(environ=BUILTINS_ONLY)


def three_lead(registry, normalization):
    return registry.encoders.get("resnet1d_wang").model_copy(
        update={"leads": ("I", "II", "V1"), "normalization": normalization, "window_s": 0.02, "sampling_rate": 100})


# -- normalisation over the leads a record has -----------------------------------------------------------------


def test_one_mean_and_std_over_the_leads_a_record_has(registry):
    spec = three_lead(registry, "zscore_all_leads")  # a window of 2 samples
    x = torch.tensor([[[1.0, 3.0], [5.0, 7.0], [0.0, 0.0]]])
    out = Normalizer(spec, None, [2], present=np.array([[True, True, False]]))(x.clone())
    # leads I and II: samples 1, 3, 5, 7: mean 4, population std sqrt(5); V1 (lacking) stays zero
    s = math.sqrt(5) + 1e-6
    expected = [[(1 - 4) / s, (3 - 4) / s], [(5 - 4) / s, (7 - 4) / s], [0.0, 0.0]]
    np.testing.assert_allclose(out[0].numpy(), expected, atol=1e-6)
    # with every lead taken as present, the zeros would move the statistics
    assert not np.allclose(Normalizer(spec, None, [2])(x.clone())[0].numpy(), expected)
    # a record lacking no lead is normalised as before
    full = torch.tensor([[[1.0, 3.0], [5.0, 7.0], [2.0, 4.0]]])
    assert torch.equal(Normalizer(spec, None, [2], present=np.ones((1, 3), bool))(full.clone()),
                       Normalizer(spec, None, [2])(full.clone()))


def test_dataset_statistics_of_a_lead_come_from_the_records_that_have_it(registry):
    a = np.array([[1.0, 3.0], [2.0, 2.0], [4.0, 8.0]])
    b = np.array([[5.0, 7.0], [0.0, 4.0], [0.0, 0.0]])  # lacks V1
    scaler = Standardizer(leads=("I", "II", "V1")).partial_fit(a).partial_fit(b, np.array([True, True, False]))
    # I: 1, 3, 5, 7 -> 4, sqrt 5; II: 2, 2, 0, 4 -> 2, sqrt 2; V1: 4, 8 (record a only) -> 6, 2
    assert scaler.mean.tolist() == pytest.approx([4.0, 2.0, 6.0])
    assert scaler.std.tolist() == pytest.approx([math.sqrt(5), math.sqrt(2), 2.0])
    state = scaler.to_dict()
    assert state["count"] == [4, 4, 2] and Standardizer.from_dict(state).std.tolist() == pytest.approx(scaler.std.tolist())
    # a lead no record had: mean 0, std 1
    only_i = Standardizer(leads=("I", "II", "V1")).partial_fit(b, np.array([True, False, False]))
    assert only_i.mean.tolist() == pytest.approx([6.0, 0.0, 0.0]) and only_i.std.tolist() == pytest.approx([1.0, 1.0, 1.0])
    spec = three_lead(registry, "zscore_dataset")
    out = Normalizer(spec, scaler, [2], present=np.array([[True, True, False]]))(torch.tensor(b[None], dtype=torch.float32))
    e = 1e-6
    expected = [[1 / (math.sqrt(5) + e), 3 / (math.sqrt(5) + e)], [-2 / (math.sqrt(2) + e), 2 / (math.sqrt(2) + e)],
                [0.0, 0.0]]  # V1 lacking: zero, not (0 - 6) / 2
    np.testing.assert_allclose(out[0].numpy(), expected, atol=1e-5)


def test_lead_masks_and_records_that_have_a_lead_set(registry):
    spec = three_lead(registry, "zscore_record")
    assert lead_mask(spec, "I").tolist() == [1.0, 0.0, 0.0]
    assert lead_mask(spec, "I+V1").tolist() == [1.0, 0.0, 1.0]
    assert lead_mask(spec, "all") is None
    windows = Windows.of_arrays(spec, ["a", "b", "c"], [np.ones((3, 4))] * 3,
                                present=np.array([[1, 1, 1], [1, 0, 0], [0, 1, 1]], dtype=bool))
    assert windows.has_leads(["I"]).tolist() == [True, True, False]
    assert windows.has_leads(spec.leads).tolist() == [True, False, False]
    assert windows.has_leads(["II", "V1"]).tolist() == [True, False, True]


# -- suite settings --------------------------------------------------------------------------------------------

BASE = """
name = "l"
tasks = ["ptbxl.superdiagnostic"]
encoders = [{name = "resnet1d_wang", preset = "tiny"}]
objectives = ["patient_contrastive"]
controls = false
"""


def test_lead_sets_are_checked_against_every_encoder(registry):
    suite = parse_suite(BASE + '[protocol]\nleads = ["all", "I", "I+II", "I+I", "V7"]\npretrain = {leads = "avR"}\n')
    problems = [p for p in check_names(suite, registry, "s.toml") if "leads" in p]
    assert problems == [
        "s.toml: protocol.leads[3]: 'I+I' names a lead twice",
        "s.toml: protocol.leads[4]: encoder 'resnet1d_wang[tiny]' (encoders[0]) has no lead V7 (its leads: I, II, III, "
        "aVR, aVL, aVF, V1, V2, V3, V4, V5, V6)",
        "s.toml: protocol.pretrain.leads: encoder 'resnet1d_wang[tiny]' (encoders[0]) has no lead avR; did you mean "
        "'aVR'? (its leads: I, II, III, aVR, aVL, aVF, V1, V2, V3, V4, V5, V6)",
    ]
    with pytest.raises(Exception, match="protocol.leads"):
        parse_suite(BASE + '[protocol]\nleads = ["I II"]\n')


def test_pretraining_on_lead_one_is_another_pretraining_and_keys_stay_at_the_default(registry):
    default = plan(parse_suite(BASE), registry)
    explicit = plan(parse_suite(BASE + '[protocol]\npretrain = {leads = "all"}\n'), registry)
    lead_one = plan(parse_suite(BASE + '[protocol]\npretrain = {leads = "I"}\n'), registry)
    assert [c.key for c in default] == [c.key for c in explicit]
    assert "leads" not in default[0].settings["pretrain"]
    assert lead_one[0].settings["pretrain"]["leads"] == "I"
    assert {c.key for c in default}.isdisjoint(c.key for c in lead_one)
    evaluation = next(c for c in lead_one if c.stage != "pretrain")
    assert evaluation.pretrain_cell().key == lead_one[0].key


# -- a real record, cut to fewer leads ---------------------------------------------------------------------------


def test_a_real_record_with_one_or_two_leads_is_in_the_view_with_its_leads_as_recorded(realdata, tmp_path, registry):
    record = wfdb.rdrecord(str(realdata / "ptb-xl" / "records100" / "00000" / "00001_lr"))
    signal, names = record.p_signal.T.astype(np.float32), [n.upper().replace("AVR", "aVR").replace("AVL", "aVL")
                                                           .replace("AVF", "aVF") for n in record.sig_name]
    folder = tmp_path / "src"
    write_wfdb(folder / "twelve", signal, 100, names)
    write_wfdb(folder / "lead1", signal[:1], 100, ["I"])
    write_wfdb(folder / "two", signal[[1, 7]], 100, ["II", "V2"])
    ingest(folder, WfdbLayout(), tmp_path / "store")
    store = ECGStore(tmp_path / "store")
    spec = registry.encoders.get("resnet1d_wang")  # 12 leads, 100 Hz, dataset z-scoring
    view = build_view(store, spec)
    assert sorted(view.record_ids) == ["lead1", "twelve", "two"] and len(view.excluded) == 0
    present = dict(zip(view.record_ids, view.present.tolist()))
    assert present["twelve"] == [True] * 12
    assert present["lead1"] == [True] + [False] * 11
    assert present["two"] == [spec.leads.index(n) in (1, 7) for n in spec.leads]
    twelve, lead1, two = (view.prepared(r) for r in ("twelve", "lead1", "two"))
    assert np.array_equal(lead1[0], twelve[0]) and not lead1[1:].any()
    assert np.array_equal(two[[1, 7]], twelve[[1, 7]]) and not np.delete(two, [1, 7], axis=0).any()
    # the dataset scaler's lead I is over all three records, its lead V2 over the two that have it
    scaler = view.fit_standardizer(view.record_ids)
    assert scaler.mean[0] == pytest.approx(float(np.mean(twelve[0])), rel=1e-6)
    assert scaler.mean[7] == pytest.approx(float(np.mean(twelve[7])), rel=1e-6)
    assert scaler.mean[2] == pytest.approx(float(np.mean(twelve[2])), rel=1e-6)  # III: the 12-lead record only


# -- end to end: single-lead records in a PTB-XL source --------------------------------------------------------

SUITE = """
name = "leads"
tasks = ["ptbxl.superdiagnostic"]
encoders = [{name = "resnet1d_wang", preset = "tiny"}]
objectives = [{name = "patient_contrastive", options = {vcg = false}}]
controls = true

[protocol]
stages = ["linear_probe"]
fractions = [1.0]
leads = ["all", "I"]
bootstrap = 20
pretrain = {epochs = 1, batch_size = 16, leads = "I"}

[data]
pretrain = "ptbxl"
[data.sources.ptbxl]
path = "PATH"
layout = "ptbxl"
options = {rate = 100}
"""


def test_single_lead_records_are_scored_on_lead_one_and_pretrain_on_it(tmp_path, registry):
    cohort = tmp_path / "cohort"
    synthesize(cohort, patients=60, seed=3, angiograms=False)
    ptbxl = cohort / "ptbxl"
    database = pd.read_csv(ptbxl / "ptbxl_database.csv")
    single = set(database["ecg_id"].iloc[::3])  # every third ECG recorded with lead I alone
    for ecg_id, filename in zip(database["ecg_id"], database["filename_lr"]):
        if ecg_id in single:
            path = ptbxl / filename
            record = wfdb.rdrecord(str(path))
            for suffix in (".hea", ".dat"):
                path.with_name(path.name + suffix).unlink()
            write_wfdb(path, record.p_signal.T[:1].astype(np.float32), record.fs, ["I"])
    shutil.rmtree(ptbxl / "records500")
    root = tmp_path / "run"
    suite = parse_suite(SUITE.replace("PATH", str(ptbxl)))
    assert check_names(suite, registry, "s") == []
    run_suite(suite, registry, root, echo=lambda line: None)
    results = res.read_results([root])
    assert all(r.status == "done" for r in results), [r.error for r in results if r.error]
    pretraining = next(r for r in results if r.cell.stage == "pretrain")
    assert pretraining.pretrain["leads"] == "I"
    evaluations = {(r.cell.objective, r.cell.leads): r for r in results if r.cell.stage != "pretrain"}
    for objective in ("patient_contrastive", "none"):
        on_all = res.read_predictions(root / "results" / evaluations[(objective, "all")].predictions)
        on_one = res.read_predictions(root / "results" / evaluations[(objective, "I")].predictions)
        ids_all, ids_one = set(on_all["test_ids"]), set(on_one["test_ids"])
        # lead I: every test record; all leads: the 12-lead ones only
        assert ids_all == {i for i in ids_one if int(i) not in single}
        assert {int(i) for i in ids_one - ids_all} <= single and ids_one - ids_all
    # pretraining read every training record (folds 1-8) with lead I: the single-lead ones too
    assert pretraining.pretrain["records"] == int((database["strat_fold"] <= 8).sum())


def test_a_lead_geometry_augmentation_cannot_pretrain_on_lead_one(tmp_path, registry):
    suite = parse_suite(BASE + '[protocol]\nstages = ["linear_probe"]\nfractions = [1.0]\nbootstrap = 5\n'
                        'pretrain = {epochs = 1, leads = "I"}\n[data]\nsynthetic = {patients = 30, angiograms = false}\n')
    run_suite(suite, registry, tmp_path, echo=lambda line: None)
    failed = next(r for r in res.read_results([tmp_path]) if r.cell.stage == "pretrain")
    assert failed.status == "failed"
    assert ("objective 'patient_contrastive' augments in the body's lead geometry (physical_units, such as a VCG "
            "rotation), which needs every lead: it cannot pretrain on leads I") in failed.error.splitlines()[-1]
