"""Statement labels (supervised pretraining, SigLIP soft targets, supervised metric learning) are the report's
statements, kept as a list from the layout on: never whole reports joined and split again."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from conftest import BUILTINS_ONLY

from stence_bench.data.layouts.mimic_iv_ecg import statements
from stence_bench.protocol.data import report_labels, report_statements
from stence_bench.registry import Registry


def test_mimic_statements_are_the_report_columns_in_number_order():
    row = pd.Series({"subject_id": 1, "study_id": 2, "report_0": "Sinus rhythm", "report_1": " Possible LAE ",
                     "report_2": np.nan, "report_10": "Abnormal ECG", "report_3": "", "bandwidth": "0.005-150 Hz"})
    assert statements(row) == ["Sinus rhythm", "Possible LAE", "Abnormal ECG"]


def test_statements_of_mimic_style_and_ptbxl_style_reports():
    dataset = SimpleNamespace(records=pd.DataFrame({"meta": [
        {"report": "Sinus rhythm Normal ECG", "statements": ["Sinus rhythm", "Normal ECG"]},  # MIMIC-IV-ECG
        {"report": "sinusrhythmus linkstyp. qrs(t) abnorm; inferiorer infarkt moeglich."},  # PTB-XL free text
        {},  # no report
    ]}))
    assert report_statements(dataset) == [["sinus rhythm", "normal ecg"],
                                          ["sinusrhythmus linkstyp", "qrs(t) abnorm", "inferiorer infarkt moeglich"],
                                          []]


def test_labels_are_the_most_frequent_statements_by_record():
    said = [["sinus rhythm", "normal ecg"], ["sinus rhythm", "abnormal ecg", "lvh"], ["sinus rhythm", "normal ecg"],
            ["atrial fibrillation", "abnormal ecg", "abnormal ecg"]]
    labels, vocab = report_labels(said, top=3)
    # records: sinus rhythm 3, abnormal ecg 2 (counted once in record 4), normal ecg 2, lvh 1, af 1; ties by text
    assert vocab == ["sinus rhythm", "abnormal ecg", "normal ecg"]
    assert labels.tolist() == [[1, 0, 1], [1, 1, 0], [1, 0, 1], [0, 1, 0]]


def test_supervised_pretraining_learns_statements_of_the_pretraining_records(tmp_path):
    """On the synthetic cohort (MIMIC's one-statement-per-column layout) the label vocabulary is statements such as
    'sinus rhythm' and 'normal ecg', learned from the pretraining records only; before, it was 32 whole reports
    ('sinus rhythm normal ecg', ...) counted over every record, test records included."""
    from stence_bench.protocol.data import Workspace
    from stence_bench.results import read_results
    from stence_bench.protocol.runner import run_suite
    from stence_bench.suite import parse_suite, plan

    registry = Registry.load(environ=BUILTINS_ONLY)
    suite = parse_suite("""
name = "labels"
tasks = ["stenosis.70"]
encoders = [{name = "resnet1d_wang", preset = "tiny"}]
objectives = ["supervised"]
controls = false
[protocol]
pretrain = {epochs = 1, batch_size = 32}
[data]
synthetic = {patients = 60, seed = 4, angiograms = false}
""")
    cells = [c for c in plan(suite, registry) if c.stage == "pretrain"]
    (outcome,) = run_suite(suite, registry, tmp_path, echo=lambda line: None, cells=cells)
    assert outcome.status == "done", outcome.error
    (result,) = read_results([tmp_path])
    vocab = result.pretrain["label_vocabulary"]
    assert "sinus rhythm" in vocab and ("normal ecg" in vocab or "abnormal ecg" in vocab)
    assert not any(s.endswith(" normal ecg") or s.endswith(" abnormal ecg") for s in vocab)  # no whole reports
    ws = Workspace(suite, registry, tmp_path, echo=lambda line: None)
    dataset = ws.dataset("mimic-iv-ecg")
    said = dict(zip(dataset.records["record_id"], report_statements(dataset)))
    by_hand = report_labels([said[rid] for rid in ws.pretraining_records().record_ids])[1]
    assert sorted(vocab) == sorted(by_hand)
    assert result.pretrain["n_labels"] == len(vocab)


@pytest.mark.parametrize("top", [1, 32])
def test_every_record_with_a_frequent_statement_has_a_label(top):
    said = [["sinus rhythm", "normal ecg"]] * 5 + [["sinus rhythm"]]
    labels, vocab = report_labels(said, top=top)
    assert labels[:, vocab.index("sinus rhythm")].sum() == 6


# -- labels declared by each dataset's layout (issue 21) ------------------------------------------------------------


def _source(refs_or_meta, tables=None):
    from stence_bench.task_data import TaskSource

    rows = [{"record_id": r.record_id, "patient_id": r.patient_id, "time": r.time or "", "meta": r.meta}
            for r in refs_or_meta]
    return TaskSource("x", pd.DataFrame(rows), tables or {})


def test_ptbxl_labels_are_the_scp_codes_of_the_real_records(realdata):
    from stence_bench.data.layouts.ptbxl import PtbxlLayout

    layout = PtbxlLayout(rate=100, database="ptbxl_database_extract.csv")
    scan = layout.scan(realdata / "ptb-xl")
    labels = dict(zip([r.record_id for r in scan.refs], layout.labels(_source(scan.refs, scan.tables))))
    # ptbxl_database_extract.csv: 1 {'NORM': 100, 'LVOLT': 0, 'SR': 0}; 6001 {'NST_': 100, 'SR': 0};
    # 6003 {'NORM': 80, 'STACH': 0} (any likelihood counts, as in the PTB-XL benchmark)
    assert labels["1"] == ["LVOLT", "NORM", "SR"] and labels["6001"] == ["NST_", "SR"]
    assert labels["6003"] == ["NORM", "STACH"]
    assert layout.label_source.startswith("SCP statements of each record's scp_codes")
    # the vocabulary over records 1, 6000-6004: SR in 4 (1, 6000, 6001, 6004), NORM in 5, ties by text
    _, vocab = report_labels([labels[i] for i in ("1", "6000", "6001", "6002", "6003", "6004")], top=3)
    assert vocab == ["NORM", "SR", "IRBBB"]


def test_ptbxl_labels_name_a_bad_scp_codes_value(realdata):
    from stence_bench.data.layouts.ptbxl import PtbxlLayout
    from stence_bench.errors import StenceBenchError

    layout = PtbxlLayout(rate=100, database="ptbxl_database_extract.csv")
    scan = layout.scan(realdata / "ptb-xl")
    broken = scan.tables["ptbxl_database"].copy()
    broken.loc[broken["ecg_id"] == 6002, "scp_codes"] = "{'NORM': 80.0, 'IRBBB'"
    with pytest.raises(StenceBenchError, match=r"ptbxl_database_extract.csv: ecg_id 6002: cannot read scp_codes "):
        layout.labels(_source(scan.refs, {**scan.tables, "ptbxl_database": broken}))


def test_cinc2021_labels_are_the_dx_codes_of_the_real_headers(realdata):
    from stence_bench.data.layouts.base import RecordRef
    from stence_bench.data.layouts.cinc2021 import Cinc2021Layout, parse_comments
    from stence_bench.data.wfdb_io import read_header

    names = [f"HR0600{i}" for i in range(5)]
    refs = [RecordRef(record_id=n, path="", meta=parse_comments(read_header(realdata / "cinc2021" / f"{n}.hea").comments, n))
            for n in names]
    labels = Cinc2021Layout().labels(_source(refs))
    assert labels == [["164934002", "426783006"], ["426783006", "55930002"], ["426177001", "426783006", "713426002"],
                      ["426783006", "427084000"], ["426783006"]]
    # sinus rhythm (426783006) in all five; each other code once: ties by their text
    assert report_labels(labels, top=3)[1] == ["426783006", "164934002", "426177001"]


def test_layouts_without_labels_say_so_and_a_plugin_layout_keeps_report_statements():
    from stence_bench.data.layouts.base import Layout, RecordRef
    from stence_bench.data.layouts.dicom_folder import DicomLayout
    from stence_bench.data.layouts.mimic_iv_ecg import MimicIvEcgLayout
    from stence_bench.data.layouts.wfdb_folder import WfdbLayout

    refs = [RecordRef(record_id="a", path="", meta={"report": "Sinus rhythm. Normal ECG."}),
            RecordRef(record_id="b", path="", meta={"statements": ["Atrial fibrillation", "Abnormal ECG"]})]
    assert WfdbLayout().labels(_source(refs)) == [[], []] and WfdbLayout.label_source == ""
    assert DicomLayout().labels(_source(refs)) == [[], []]
    expected = [["sinus rhythm", "normal ecg"], ["atrial fibrillation", "abnormal ecg"]]
    assert MimicIvEcgLayout().labels(_source(refs)) == expected

    class HospitalLayout(Layout):  # a third-party layout written before labels() existed
        name = "hospital"

    assert HospitalLayout().labels(_source(refs)) == expected


def test_the_public_layouts_labels_are_their_flags(tmp_path):
    """EchoNext's 12 flags and CODE-15%'s six abnormalities (both declare labels), and Chapman-Ningbo's # Dx codes."""
    from public_samples import code15_sample, echonext_sample

    from stence_bench.data.layouts.code15 import ABNORMALITIES, Code15Layout
    from stence_bench.data.layouts.echonext import FLAGS, EchoNextLayout

    for layout, make, columns, key in ((EchoNextLayout(), echonext_sample, FLAGS, "ecg_key"),
                                       (Code15Layout(), code15_sample, ABNORMALITIES, "exam_id")):
        table = make(tmp_path / layout.name)
        scan = layout.scan(tmp_path / layout.name)
        labels = dict(zip([r.record_id for r in scan.refs], layout.labels(_source(scan.refs))))
        assert labels and layout.label_source
        for _, row in table.iterrows():
            rid = str(int(row[key]))
            if rid in labels:  # (CODE-15%'s filler rows are no records)
                assert labels[rid] == [c for c in columns if row[c] == 1], rid
        assert any(labels.values())


def test_layouts_declaring_labels_give_some():
    """A DatasetSpec that lists the labels modality names a layout with a label source (validate relies on it)."""
    from stence_bench.specs import import_object

    registry = Registry.load(environ=BUILTINS_ONLY)
    for spec in registry.datasets:
        layout = import_object(spec.reader, what=spec.name)
        assert bool(layout.label_source) == ("labels" in spec.modalities or "text" in spec.modalities), spec.name


def test_sph_and_cpsc2018_labels_are_their_statements_and_classes(tmp_path):
    """SPH: the primary statements of AHA_Code (modifiers 200-499 left out); CPSC 2018: REFERENCE.csv's classes."""
    from public_samples import cpsc2018_sample, sph_sample

    from stence_bench.data.layouts.cpsc2018 import Cpsc2018Layout
    from stence_bench.data.layouts.sph import SphLayout

    sph_sample(tmp_path / "sph", ["1", "22;50+346", "147+310;1", "310"])
    scan = SphLayout().scan(tmp_path / "sph")
    assert SphLayout().labels(_source(scan.refs)) == [["1"], ["22", "50"], ["147", "1"], []]
    cpsc2018_sample(tmp_path / "cpsc", [[1], [2, 7], [5, 3, 9]])
    scan = Cpsc2018Layout().scan(tmp_path / "cpsc")
    assert Cpsc2018Layout().labels(_source(scan.refs)) == [["Normal"], ["AF", "PVC"], ["RBBB", "I-AVB", "STE"]]
