"""Ingest into the ECG store: real layouts, quarantine, resume after a kill, change detection, parallel workers."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pandas as pd
import pytest
import wfdb
from click.testing import CliRunner
from conftest import BUILTINS_ONLY, run_cli
from plugin_fixtures import TextLayout

from stence_bench.cli import cli
from stence_bench.data import ingest as ingest_module
from stence_bench.data.fake import write_ptbxl_layout
from stence_bench.data.ingest import ingest, read_quarantine
from stence_bench.data.layouts.base import RecordRef, Scan
from stence_bench.data.layouts.cinc2021 import Cinc2021Layout
from stence_bench.data.layouts.mimic_iv_ecg import MimicIvEcgLayout
from stence_bench.data.layouts.ptbxl import PtbxlLayout
from stence_bench.data.layouts.wfdb_folder import WfdbLayout
from stence_bench.data.store import ECGStore, StoreError
from stence_bench.errors import StenceBenchError
from stence_bench.registry import Registry
from stence_bench_tasks.ptbxl import label_sets

# the statements of ecg_id 6000-6004 and the SNOMED-CT codes the Challenge 2021 gave them
SCP_TO_SNOMED = {"NORM": "426783006", "SR": "426783006", "NT_": "164934002", "NST_": "55930002",
                 "IRBBB": "713426002", "SBRAD": "426177001", "STACH": "427084000"}


def test_cinc2021_records_carry_their_snomed_labels_and_agree_with_ptbxl(realdata, tmp_path):
    report = ingest(realdata / "cinc2021", Cinc2021Layout(), tmp_path / "store")
    assert (report.found, report.ingested, report.quarantined_now) == (25, 25, 0)
    store = ECGStore(tmp_path / "store")
    extract = pd.read_csv(realdata / "ptb-xl" / "ptbxl_database_extract.csv", index_col="ecg_id")
    for ecg_id in range(6000, 6005):
        meta = store.meta(f"HR{ecg_id:05d}")
        codes = eval(extract.loc[ecg_id, "scp_codes"])  # noqa: S307 - the dict literal of the real file
        assert set(meta["dx"]) == {SCP_TO_SNOMED[c] for c in codes}, ecg_id
        assert meta["age"] == extract.loc[ecg_id, "age"]
        assert meta["sex"] == ("Female" if extract.loc[ecg_id, "sex"] == 1 else "Male")
    assert store.meta("HR06000")["dx_names"] == ["t wave abnormal", "sinus rhythm"]
    # stored values are the reader's, which equal wfdb's
    expected = wfdb.rdrecord(str(realdata / "cinc2021" / "JS20003")).p_signal.T.astype(np.float32)
    np.testing.assert_array_max_ulp(store.signal("JS20003"), expected, maxulp=1)


def test_ptbxl_layout_from_the_real_extract(realdata, tmp_path):
    layout = PtbxlLayout(rate=100, database="ptbxl_database_extract.csv")
    report = ingest(realdata / "ptb-xl", layout, tmp_path / "store")
    # only 00001_lr is present; the other rows of the extract name files that are not there
    assert (report.found, report.ingested, report.quarantined_now) == (11, 1, 10)
    store = ECGStore(tmp_path / "store")
    row = store.manifest.iloc[0]
    assert (row["record_id"], row["patient_id"], row["fs"], row["n_samples"]) == ("1", "15709", 100.0, 1000)
    assert store.meta("1")["strat_fold"] == 3
    tables = store.tables()
    labels = label_sets(tables["ptbxl_database"].set_index("ecg_id"), tables["scp_statements"].set_index("scp_code"),
                        level="superdiagnostic")
    assert labels[1] == ("NORM",)
    quarantine = read_quarantine(tmp_path / "store")
    assert set(quarantine["what"]) == {"missing header"} and len(quarantine) == 10
    assert quarantine["file"].str.endswith("_lr.hea").all()


def test_ptbxl_layout_names_missing_columns(tmp_path, realdata):
    shutil.copy(realdata / "ptb-xl" / "scp_statements.csv", tmp_path)
    pd.read_csv(realdata / "ptb-xl" / "ptbxl_database_extract.csv").drop(columns="strat_fold").to_csv(
        tmp_path / "ptbxl_database.csv", index=False)
    with pytest.raises(StenceBenchError, match=r"ptbxl_database.csv: missing column\(s\) strat_fold"):
        ingest(tmp_path, PtbxlLayout(rate=100), tmp_path / "store")


def test_bad_records_are_quarantined_and_good_ones_ingested(tmp_path):
    source = tmp_path / "src"
    db = write_ptbxl_layout(source, 12, rates=(100,), seconds=2)
    (source / f"{db.filename_lr[1]}.dat").write_bytes(b"\0" * 10)                      # truncated
    (source / f"{db.filename_lr[2]}.dat").unlink()                                      # missing signal
    hea = source / f"{db.filename_lr[3]}.hea"
    hea.write_text(hea.read_text().replace(".dat 16 ", ".dat 311 "))                    # unknown format
    data = np.fromfile(source / f"{db.filename_lr[4]}.dat", dtype="<i2")
    data[5] = -32768
    data.tofile(source / f"{db.filename_lr[4]}.dat")                                    # a NaN sample
    report = ingest(source, PtbxlLayout(rate=100), tmp_path / "store", chunk_size=5)
    assert (report.ingested, report.quarantined_now, report.quarantined_total) == (8, 4, 4)
    quarantine = read_quarantine(tmp_path / "store").set_index("record_id")
    assert quarantine["what"].to_dict() == {"2": "truncated signal file", "3": "missing signal file",
                                            "4": "unknown format code", "5": "invalid samples"}
    assert all(len(line.splitlines()) == 1 for line in quarantine["why"])
    assert len(ECGStore(tmp_path / "store")) == 8


def test_resume_skips_done_records_and_reads_changed_ones(tmp_path):
    source = tmp_path / "src"
    db = write_ptbxl_layout(source, 10, rates=(100,), seconds=2)
    store_dir = tmp_path / "store"
    first = ingest(source, PtbxlLayout(rate=100), store_dir, chunk_size=4)
    assert first.ingested == 10
    again = ingest(source, PtbxlLayout(rate=100), store_dir, chunk_size=4)
    assert (again.ingested, again.skipped) == (0, 10)
    # change one record's signal: it is read again and its new values win
    path = source / f"{db.filename_lr[3]}.dat"
    data = np.fromfile(path, dtype="<i2")
    data[:] = 7
    data.tofile(path)
    hea = path.with_suffix(".hea")
    hea.write_text("\n".join(
        line if i == 0 or line.startswith("#") else " ".join(line.split()[:5] + ["7", str(7 * 200 % 65536)] + line.split()[7:])
        for i, line in enumerate(hea.read_text().splitlines())) + "\n")
    os.utime(path, ns=(1, 1))
    third = ingest(source, PtbxlLayout(rate=100), store_dir, chunk_size=4)
    assert (third.ingested, third.skipped) == (1, 9)
    store = ECGStore(store_dir)
    assert len(store) == 10 and np.allclose(store.signal("4"), 7 / 1000)


def test_a_kill_mid_ingest_leaves_a_store_that_opens_and_resumes(tmp_path, monkeypatch):
    source = tmp_path / "src"
    write_ptbxl_layout(source, 20, rates=(100,), seconds=2)
    store_dir = tmp_path / "store"
    real_read = PtbxlLayout.read
    calls = {"n": 0}

    def dying_read(self, ref):
        calls["n"] += 1
        if calls["n"] == 13:  # in the middle of the third chunk of 5
            raise KeyboardInterrupt
        return real_read(self, ref)

    monkeypatch.setattr(PtbxlLayout, "read", dying_read)
    with pytest.raises(KeyboardInterrupt):
        ingest(source, PtbxlLayout(rate=100), store_dir, chunk_size=5)
    monkeypatch.setattr(PtbxlLayout, "read", real_read)
    assert not list((store_dir / "shards").glob("*.tmp"))
    partial = ECGStore(store_dir)
    assert len(partial) == 10  # two whole chunks committed, the third not at all
    # debris of a hard kill (no chance to clean up) is ignored, then removed on resume
    (store_dir / "shards" / "shard-00007.f32.tmp").write_bytes(b"junk")
    (store_dir / "shards" / "shard-00008.f32").write_bytes(b"junk-without-part")
    assert len(ECGStore(store_dir)) == 10
    resumed = ingest(source, PtbxlLayout(rate=100), store_dir, chunk_size=5)
    assert (resumed.ingested, resumed.skipped) == (10, 10)
    assert len(ECGStore(store_dir)) == 20 and not (store_dir / "shards" / "shard-00008.f32").exists()


def test_parallel_ingest_gives_the_same_store(tmp_path):
    source = tmp_path / "src"
    write_ptbxl_layout(source, 30, rates=(100,), seconds=2)
    one = ingest(source, PtbxlLayout(rate=100), tmp_path / "one", chunk_size=4, workers=1)
    two = ingest(source, PtbxlLayout(rate=100), tmp_path / "two", chunk_size=4, workers=2)
    assert one.ingested == two.ingested == 30
    a, b = ECGStore(tmp_path / "one"), ECGStore(tmp_path / "two")
    assert a.fingerprint() == b.fingerprint()
    for rid in ("1", "17", "30"):
        np.testing.assert_array_equal(a.signal(rid), b.signal(rid))


def test_store_refuses_another_layout_or_source(tmp_path, realdata):
    ingest(realdata / "cinc2021", WfdbLayout(), tmp_path / "store")
    with pytest.raises(StoreError, match="holds layout 'wfdb'"):
        ingest(realdata / "cinc2021", Cinc2021Layout(), tmp_path / "store")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x.txt").write_text("x")
    with pytest.raises(StoreError, match="exists and is not an ECG store"):
        ingest(realdata / "cinc2021", WfdbLayout(), tmp_path / "other")
    with pytest.raises(StoreError, match="not an ECG store"):
        ECGStore(tmp_path / "nothing")


def test_mimic_iv_ecg_layout(tmp_path):
    from stence_bench.data.fake import noise_ecg
    from stence_bench.data.wfdb_io import write_wfdb

    source = tmp_path / "mimic"
    rng = np.random.default_rng(0)
    rows, measurements = [], []
    for subject, study in [(10000032, 40689238), (10000032, 44458630), (10000117, 45090959)]:
        rel = f"files/p{str(subject)[:4]}/p{subject}/s{study}/{study}"
        write_wfdb(source / rel, noise_ecg(rng, 12, 5000, 500), 500)
        rows.append({"subject_id": subject, "study_id": study, "file_name": study,
                     "ecg_time": "2180-07-23 08:44:00", "path": rel})
        measurements.append({"subject_id": subject, "study_id": study, "report_0": "Sinus rhythm",
                             "report_1": "Normal ECG", "report_2": None, "rr_interval": 659.0, "qrs_onset": 40.0})
    pd.DataFrame(rows).to_csv(source / "record_list.csv", index=False)
    pd.DataFrame(measurements).to_csv(source / "machine_measurements.csv", index=False)
    report = ingest(source, MimicIvEcgLayout(), tmp_path / "store")
    assert report.ingested == 3
    store = ECGStore(tmp_path / "store")
    assert store.summary()["patients"] == 2
    row = store.manifest.set_index("record_id").loc["44458630"]
    assert (row["patient_id"], row["time"]) == ("10000032", "2180-07-23T08:44:00")
    assert store.meta("44458630") == {"report": "Sinus rhythm Normal ECG", "statements": ["Sinus rhythm", "Normal ECG"],
                                      "rr_interval": 659.0, "qrs_onset": 40.0}
    assert set(store.tables()) == {"record_list", "machine_measurements"}
    # without record_list.csv, ids come from the folder names
    (source / "record_list.csv").unlink()
    refs = MimicIvEcgLayout().scan(source).refs
    assert sorted((r.record_id, r.patient_id) for r in refs)[0] == ("40689238", "10000032")


def test_cli_ingest_and_info(tmp_path, realdata):
    registry = Registry.load(environ=BUILTINS_ONLY)
    runner = CliRunner()
    store = tmp_path / "store"
    result = runner.invoke(cli, ["data", "ingest", str(realdata / "ptb-xl"), "--layout", "ptbxl", "--store", str(store),
                                 "-o", "rate=100", "-o", "database=ptbxl_database_extract.csv", "--workers", "1"],
                           obj=registry)
    assert result.exit_code == 0, result.output
    assert "11 records found, 1 ingested, 0 already in the store, 10 quarantined" in result.output
    assert f"10 record(s) quarantined in all; reasons in {store / 'quarantine.csv'}" in result.output
    info = runner.invoke(cli, ["data", "info", str(store), "--json"], obj=registry)
    summary = json.loads(info.output)
    assert (summary["records"], summary["patients"], summary["quarantined"]) == (1, 1, 10)
    assert summary["sampling_rates"] == {"100": 1}
    text = runner.invoke(cli, ["data", "info", str(store)], obj=registry).output
    assert "records      1  (1 patients)" in text and "quarantined  10" in text


@pytest.mark.parametrize("args, message", [
    (["--layout", "ptbxll"], "--layout: unknown dataset 'ptbxll'; did you mean 'ptbxl'? "
                             "(known: chapman-ningbo, cinc2021, code15, cpsc2018, dicom, echonext, mimic-iv-ecg, ptbxl, sph, wfdb)"),
    (["--layout", "ptbxl", "-o", "rate=250"], "layout 'ptbxl': --option rate: Input should be 100 or 500"),
    (["--layout", "ptbxl", "-o", "speed=1"], "layout 'ptbxl': --option speed: Extra inputs are not permitted"),
    (["--layout", "ptbxl", "-o", "rate"], "--option 'rate': expected KEY=VALUE"),
])
def test_cli_ingest_errors_are_one_line(tmp_path, args, message):
    proc = run_cli("data", "ingest", str(tmp_path), "--store", str(tmp_path / "s"), *args)
    assert proc.returncode == 2 and proc.stderr.strip() == f"Error: {message}", proc.stderr


def test_cli_info_on_a_non_store_is_one_line(tmp_path):
    proc = run_cli("data", "info", str(tmp_path))
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith(f"Error: {tmp_path}: not an ECG store")


def test_chunk_writer_failure_leaves_no_partial_shard(tmp_path, monkeypatch):
    source = tmp_path / "src"
    write_ptbxl_layout(source, 4, rates=(100,), seconds=1)

    def broken_commit(self):
        raise OSError("disk full")

    monkeypatch.setattr(ingest_module.ShardWriter, "commit", broken_commit)
    with pytest.raises(OSError, match="disk full"):
        ingest(source, PtbxlLayout(rate=100), tmp_path / "store")
    assert not (tmp_path / "store").exists()  # nothing was committed: nothing is left behind


def test_wfdb_records_are_stored_as_int16_with_their_calibration(realdata, tmp_path):
    ingest(realdata / "cinc2021", WfdbLayout(), tmp_path / "store")
    store = ECGStore(tmp_path / "store")
    assert set(store.manifest["encoding"]) == {"i16"}
    assert (tmp_path / "store" / "shards" / "shard-00000.i16").stat().st_size == 25 * 12 * 5000 * 2
    raw = store.samples("E07500")
    assert raw.dtype == np.int16
    physical = store.signal("E07500")
    assert physical.dtype == np.float32
    expected = wfdb.rdrecord(str(realdata / "cinc2021" / "E07500")).p_signal.T.astype(np.float32)
    np.testing.assert_array_max_ulp(physical, expected, maxulp=1)
    files = store.manifest.set_index("record_id").loc["E07500", "files"].split(";")
    assert [os.path.basename(f) for f in files] == ["E07500.hea", "E07500.mat"]


def test_dicom_layout_stores_float_ecgs_and_lists_angiograms(realdata, tmp_path):
    from stence_bench.data.dicom import read_angiography
    from stence_bench.data.layouts.dicom_folder import DicomLayout

    report = ingest(realdata / "dicom", DicomLayout(), tmp_path / "store")
    assert (report.found, report.ingested, report.quarantined_now) == (1, 1, 0)
    store = ECGStore(tmp_path / "store")
    row = store.manifest.iloc[0]
    assert (row["record_id"], row["encoding"], row["fs"], row["n_samples"]) == ("waveform_ecg", "f32", 1000.0, 10000)
    assert store.leads(0) == ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
    assert abs(float(store.signal(0)[0, 0]) - 0.1) < 1e-6  # mV, not microvolts
    angio = store.tables()["angiography"]
    assert angio[["record_id", "n_frames", "rows", "columns"]].values.tolist() == [["XA1_RLE", 1, 1024, 1024]]
    assert angio["path"].iloc[0] == "XA1_RLE.dcm"  # relative to the source folder, which the store knows
    assert read_angiography(store.path(angio["path"].iloc[0])).frames.shape == (1, 1024, 1024)
    median = ingest(realdata / "dicom", DicomLayout(group="median"), tmp_path / "median")
    assert median.ingested == 1 and ECGStore(tmp_path / "median").manifest.iloc[0]["n_samples"] == 1200


def test_dicom_layout_quarantines_what_is_not_an_ecg(tmp_path, realdata):
    from stence_bench.data.layouts.dicom_folder import DicomLayout

    (tmp_path / "src").mkdir()
    shutil.copy(realdata / "dicom" / "waveform_ecg.dcm", tmp_path / "src" / "good.dcm")
    (tmp_path / "src" / "noise.dcm").write_bytes(os.urandom(2000))
    data = (realdata / "dicom" / "waveform_ecg.dcm").read_bytes()
    (tmp_path / "src" / "cut.dcm").write_bytes(data[: len(data) // 2])
    report = ingest(tmp_path / "src", DicomLayout(), tmp_path / "store")
    assert (report.ingested, report.quarantined_now) == (1, 2)
    quarantine = read_quarantine(tmp_path / "store").set_index("record_id")
    assert quarantine.loc["noise", "what"] == "not DICOM"
    assert quarantine.loc["cut", "what"] in {"corrupt DICOM", "corrupt waveform", "not DICOM"}


def test_a_third_party_layout_ingests_through_the_cli(tmp_path):
    from plugin_fixtures import Plugin

    from stence_bench.specs import DatasetSpec

    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.txt").write_text("0.1,0.2,0.3\n0.0,-0.1,0.4\n")
    (tmp_path / "src" / "b.txt").write_text("0.1,x\n")
    plugin = Plugin("text_plugin", datasets=[DatasetSpec(name="text-ecg", reader="plugin_fixtures:TextLayout")])
    registry = Registry.load(extra=[plugin], environ=BUILTINS_ONLY)
    result = CliRunner().invoke(cli, ["data", "ingest", str(tmp_path / "src"), "--layout", "text-ecg", "--store",
                                      str(tmp_path / "store"), "-o", "fs=100"], obj=registry)
    assert result.exit_code == 0, result.output
    assert "2 records found, 1 ingested, 0 already in the store, 1 quarantined" in result.output
    store = ECGStore(tmp_path / "store")
    np.testing.assert_allclose(store.signal("a"), [[0.1, 0.2, 0.3], [0.0, -0.1, 0.4]], rtol=1e-6)
    assert store.manifest.iloc[0]["fs"] == 100.0
    assert read_quarantine(tmp_path / "store").loc[0, "what"] == "not numbers"


def test_each_record_decodes_with_its_own_encoding_and_calibration(tmp_path):
    """Records of both encodings and of several calibrations, interleaved over two shards, one of them rewritten in
    the newer shard: every record reads back as its own digital values through its own baseline and gain (the
    store keeps the calibrations once per distinct value, not once per record)."""
    from stence_bench.data.records import Record
    from stence_bench.data.store import SHARD_DIR, ShardWriter, StoreInfo, create_store

    root = tmp_path / "store"
    create_store(root, StoreInfo(layout="test", source=str(tmp_path), options={}, created="now"))
    rng = np.random.default_rng(0)
    expected = {}

    def record(i: int, version: int) -> Record:
        leads = ("I", "II")
        if i % 3 == 2:  # float32 millivolts
            signal = rng.normal(size=(2, 50 + i)).astype(np.float32)
            expected[f"r{i}"] = signal
            return Record(f"r{i}", 100.0, leads, f"r{i}.x", signal=signal)
        digital = rng.integers(-500, 500, size=(2, 50 + i)).astype(np.int16)
        baseline = np.array([i % 2, -version], dtype=np.float32)
        gain = np.array([200.0 * (1 + i % 2), 1000.0 + version], dtype=np.float32)
        expected[f"r{i}"] = (digital.astype(np.float32) - baseline[:, None]) / gain[:, None]
        return Record(f"r{i}", 100.0, leads, f"r{i}.x", digital=digital, baseline=baseline, gain=gain)

    for shard, (ids, version) in enumerate([(range(6), 0), ([1, 6, 7], 5)]):
        writer = ShardWriter(root, shard)
        for i in ids:
            writer.add(record(i, version))
        writer.commit()
    assert (root / SHARD_DIR / "shard-00001.csv").is_file()
    store = ECGStore(root)
    assert len(store) == 8 and set(store.manifest["encoding"]) == {"i16", "f32"}
    for rid, values in expected.items():
        np.testing.assert_allclose(store.signal(rid), values, rtol=1e-6, atol=1e-7, err_msg=rid)
    # r1 was stored again in shard 1 with baseline [1, -5] and gain [400, 1005]: the newer row wins
    raw = store.samples("r1").astype(np.float32)
    np.testing.assert_allclose(store.signal("r1"), (raw - np.array([[1.0], [-5.0]])) / np.array([[400.0], [1005.0]]),
                               rtol=1e-6)
    assert "r7" in store and "r9" not in store and store.index_of("r7") == store.manifest.index[
        store.manifest["record_id"] == "r7"][0]



_pulled: list[int] = []  # per reference pulled from the scan: how many records had been read by then
_read = [0]


class StreamedTextLayout(TextLayout):
    """The text layout whose scan yields its references one at a time (plus a repeated id at the end), counting
    how far the ingest has pulled them ahead of the records read (in this process)."""

    streamed: bool = True

    def scan(self, source):
        def refs():
            for p in sorted(source.glob("*.txt")):
                _pulled.append(_read[0])
                yield RecordRef(record_id=p.stem, path=str(p), files=(str(p),))
            _pulled.append(_read[0])
            yield RecordRef(record_id="r03", path=str(source / "r03.txt"), files=(str(source / "r03.txt"),))
        return Scan(refs=refs() if self.streamed else list(refs()))

    def read(self, ref):
        _read[0] += 1
        return super().read(ref)


def test_a_streamed_scan_is_read_as_it_comes_and_gives_the_same_store(tmp_path):
    """A layout's scan may yield its references (a million-record source is never listed in memory first): the
    ingest pulls them as chunks are read, at most a few chunks ahead of the shards written, and the store, counts
    and quarantine equal those of the same references given as a list (duplicate ids, a bad file, a resume)."""
    src = tmp_path / "src"
    src.mkdir()
    for i in range(40):
        (src / f"r{i:02d}.txt").write_text(f"0.{i % 10},0.2,0.3\n0.0,-0.1,0.{i % 7}\n")
    (src / "r40.txt").write_text("0.1,x\n")  # quarantined
    _pulled.clear()
    _read[0] = 0
    streamed = ingest(src, StreamedTextLayout(fs=100), tmp_path / "a", chunk_size=4)
    ahead = [i - done for i, done in enumerate(_pulled)]  # references pulled beyond the records read
    assert len(_pulled) == 42 and max(ahead) < 2 * 4 and _pulled[-1] >= 36  # a list would be pulled whole, at 0
    listed = ingest(src, StreamedTextLayout(fs=100, streamed=False), tmp_path / "b", chunk_size=4)
    for report in (streamed, listed):
        assert (report.found, report.ingested, report.skipped, report.quarantined_now) == (42, 40, 0, 2)
    a, b = ECGStore(tmp_path / "a"), ECGStore(tmp_path / "b")
    pd.testing.assert_frame_equal(a.manifest.drop(columns="fingerprint"), b.manifest.drop(columns="fingerprint"))
    pd.testing.assert_frame_equal(read_quarantine(tmp_path / "a"), read_quarantine(tmp_path / "b"))
    assert list(read_quarantine(tmp_path / "a")["record_id"]) == ["r40"]  # (r03's repeat: its id is stored)
    again = ingest(src, StreamedTextLayout(fs=100), tmp_path / "a", chunk_size=4, workers=2)
    assert (again.found, again.ingested, again.skipped) == (42, 0, 40)
