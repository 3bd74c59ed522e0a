"""The data layer under hostile input and interruptions: each defect a user can bring, what happens, what is said.

docs/data.md's table "What happens to bad input" is checked against these tests (the last test)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import BUILTINS_ONLY, alive, child_pids, cli_env, make_distribution

from stence_bench.cli import cli
from stence_bench.data.ingest import ingest
from stence_bench.data.layouts.wfdb_folder import WfdbLayout
from stence_bench.data.store import SHARD_DIR, STORE_LOCK, ECGStore
from stence_bench.data.wfdb_io import write_wfdb
from stence_bench.errors import StenceBenchError
from stence_bench.processes import FolderLock, LockedError
from stence_bench.registry import Registry

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


@pytest.fixture(scope="module")
def registry():
    return Registry.load(environ=BUILTINS_ONLY)


def wfdb_folder(folder: Path, n: int, *, seconds: float = 1.0, fs: float = 100.0, leads: tuple[str, ...] = ("I", "II"),
                seed: int = 0) -> Path:
    """``n`` small WFDB records r00, r01, ... in ``folder``."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        write_wfdb(folder / f"r{i:02d}", rng.normal(0, 0.3, (len(leads), int(fs * seconds))), fs, leads)
    return folder


def data_cli(registry, *args: str):
    return CliRunner().invoke(cli, ["data", *args], obj=registry)


def one_error(result) -> str:
    """The single ``Error:`` line of a refused command (exit 2, no traceback)."""
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "Traceback" not in result.output, result.output
    return errors[0][len("Error: "):]


# -- bug 1: a killed multi-worker ingest, and a second writer -------------------------------------------------------

#: A layout that stops reading at the records named in HOLD_IDS (in the worker reading them) and says so with a
#: file named by the worker's pid: the moment to kill the ingest.
HELD_LAYOUT = """
import os, time
from pathlib import Path
from typing import ClassVar
from stence_bench import hookimpl
from stence_bench.specs import DatasetSpec
from stence_bench.data.layouts.wfdb_folder import WfdbLayout

class HeldLayout(WfdbLayout):
    name: ClassVar[str] = "held-wfdb"

    def read(self, ref):
        if ref.record_id in os.environ.get("HOLD_IDS", "").split(","):
            Path(os.environ["HOLD_DIR"], f"held-{os.getpid()}").write_text(ref.record_id)
            time.sleep(600)
        return super().read(ref)

@hookimpl
def register_datasets(register):
    register(DatasetSpec(name="held-wfdb", reader="stence_bench_heldlayout:HeldLayout"))
"""


@pytest.fixture(scope="module")
def held_site(tmp_path_factory) -> Path:
    site = tmp_path_factory.mktemp("held-site")
    make_distribution(site, "stence-bench-heldlayout", "stence_bench_heldlayout", HELD_LAYOUT)
    return site


def start_ingest(source: Path, store: Path, site: Path, hold: Path, ids: str) -> subprocess.Popen:
    hold.mkdir(exist_ok=True)
    return subprocess.Popen([sys.executable, "-m", "stence_bench", "data", "ingest", str(source), "--layout",
                             "held-wfdb", "--store", str(store), "--workers", "2", "--chunk-size", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=cli_env(site, HOLD_IDS=ids, HOLD_DIR=str(hold)))


def wait_for(condition, proc: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + 120
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"the ingest ended before {what}: {proc.stderr.read()[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"never reached: {what}")
        time.sleep(0.1)




@linux_only
def test_a_killed_multi_worker_ingest_leaves_no_reader_and_a_rerun_stores_every_record_once(tmp_path, held_site):
    source, store, hold = wfdb_folder(tmp_path / "src", 10), tmp_path / "store", tmp_path / "hold"
    # chunks of two: [r00 r01] is committed, the two workers stop inside [r02 r03] and [r04 r05]
    proc = start_ingest(source, store, held_site, hold, "r03,r05")
    wait_for(lambda: len(list(hold.glob("held-*"))) == 2 and (store / SHARD_DIR / "shard-00000.csv").exists(),
             proc, "both readers held")
    readers = [int(p.name.split("-")[1]) for p in hold.glob("held-*")]
    assert sorted(readers) == sorted(child_pids(proc.pid))
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    deadline = time.monotonic() + 5
    while any(alive(p) for p in readers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(alive(p) for p in readers), "reader processes outlived their killed parent"

    again = start_ingest(source, store, held_site, hold, "")  # the same command at once, nothing held
    stdout, stderr = again.communicate(timeout=120)
    assert again.returncode == 0, stderr
    assert f"taking over the lock of pid {proc.pid}" in stderr
    assert "10 records found, 8 ingested, 2 already in the store, 0 quarantined" in stdout
    stored = ECGStore(store)
    from stence_bench.data.store import read_parts

    ok_rows = int((read_parts(store)["status"] == "ok").sum())  # the compacted manifest and any part
    assert ok_rows == len(stored) == 10 and sorted(stored.manifest["record_id"]) == [f"r{i:02d}" for i in range(10)]
    assert not list((store / SHARD_DIR).glob("*.tmp")) and not (store / STORE_LOCK).exists()


@linux_only
def test_a_second_ingest_into_a_store_being_written_is_refused_in_one_line_naming_the_writer(tmp_path, held_site,
                                                                                            registry):
    source, store, hold = wfdb_folder(tmp_path / "src", 4), tmp_path / "store", tmp_path / "hold"
    proc = start_ingest(source, store, held_site, hold, "r01")
    try:
        wait_for(lambda: list(hold.glob("held-*")), proc, "a reader held")
        message = one_error(data_cli(registry, "ingest", str(source), "--layout", "wfdb", "--store", str(store)))
        assert message.startswith(f"{store}: this store is in use by pid {proc.pid} on host ")
        assert f"ingest of {source} (held-wfdb)" in message
        with pytest.raises(LockedError, match=f"pid {proc.pid}"):  # code that may wait, waits, then says the same
            ingest(source, WfdbLayout(), store, wait_s=0.5, echo=lambda line: None)
    finally:
        proc.kill()
        proc.wait()


def test_a_store_lock_of_a_process_that_ended_is_taken_over(tmp_path):
    source, store = wfdb_folder(tmp_path / "src", 2), tmp_path / "store"
    store.mkdir()
    (store / STORE_LOCK).write_text(json.dumps({"pid": 2**22 + 12345, "host": os.uname().nodename}))
    notes: list[str] = []
    report = ingest(source, WfdbLayout(), store, echo=notes.append)
    assert report.ingested == 2 and len(notes) == 1 and "no longer running" in notes[0]
    with FolderLock(store / STORE_LOCK, what="this store"):
        with pytest.raises(LockedError, match=f"this store is in use by pid {os.getpid()}"):
            ingest(source, WfdbLayout(), store, wait_s=0)


# -- bug 6: a file given as SOURCE ---------------------------------------------------------------------------------


def test_a_file_given_as_source_is_one_line_and_leaves_no_store(tmp_path, registry):
    wfdb_folder(tmp_path / "src", 1)
    message = one_error(data_cli(registry, "ingest", str(tmp_path / "src" / "r00.hea"), "--layout", "wfdb",
                                 "--store", str(tmp_path / "store")))
    assert message == f"{tmp_path / 'src' / 'r00.hea'}: not a folder; the wfdb layout reads a folder of records"
    assert not (tmp_path / "store").exists()


# -- bug 2: a table name that is a path ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["../shards/shard-00000", "../../elsewhere", ".hidden", "a/b", ""])
def test_a_label_table_name_is_a_plain_name_and_nothing_is_written_outside_the_tables(tmp_path, registry, name):
    source, store = wfdb_folder(tmp_path / "src", 2), tmp_path / "store"
    ingest(source, WfdbLayout(), store)
    before = {p: p.read_bytes() for p in store.rglob("*") if p.is_file()}
    labels = tmp_path / "labels.csv"
    labels.write_text("record_id,y\nr00,1\nr01,0\n")
    message = one_error(data_cli(registry, "labels", str(store), str(labels), "--key", "record", "--name", name))
    assert message.startswith(f"--name {name!r}: a table name is a plain name")
    assert {p: p.read_bytes() for p in store.rglob("*") if p.is_file()} == before
    assert len(ECGStore(store)) == 2


# -- bugs 3, 4, 5: a negative sampling rate, a signal file outside the source, a comma in a lead name ---------------


def quarantined(store: Path) -> dict[str, tuple[str, str]]:
    from stence_bench.data.ingest import read_quarantine

    return {r.record_id: (r.what, r.why) for r in read_quarantine(store).itertuples()}


def test_a_negative_sampling_rate_is_a_bad_sampling_rate_not_250_hz(tmp_path):
    source = wfdb_folder(tmp_path / "src", 2)
    hea = source / "r01.hea"
    hea.write_text(hea.read_text().replace("r01 2 100 100", "r01 2 -500 100"))
    ingest(source, WfdbLayout(), tmp_path / "store")
    assert list(ECGStore(tmp_path / "store").manifest["record_id"]) == ["r00"]
    assert quarantined(tmp_path / "store") == {"r01": ("bad sampling rate", "-500 Hz in the record line")}


def test_a_header_naming_a_signal_file_outside_its_folder_is_refused(tmp_path):
    wfdb_folder(tmp_path / "other", 1)  # a real signal file, outside the source
    source = wfdb_folder(tmp_path / "src", 2)
    hea = source / "r01.hea"
    hea.write_text(hea.read_text().replace("r01.dat 16", "../other/r00.dat 16"))
    ingest(source, WfdbLayout(), tmp_path / "store")
    assert list(ECGStore(tmp_path / "store").manifest["record_id"]) == ["r00"]
    assert quarantined(tmp_path / "store") == {"r01": (
        "bad header", "signal 1: file name '../other/r00.dat' is not a plain file name in the record's folder")}


def test_lead_names_round_trip_whatever_they_hold(tmp_path):
    from stence_bench.data.views import prepare
    from stence_bench.specs import EncoderSpec

    source = tmp_path / "src"
    write_wfdb(source / "odd", np.full((2, 100), 0.5), 100, ("I,filtered", "II"))
    write_wfdb(source / "plain", np.full((2, 100), 0.5), 100, ("I", "II"))
    ingest(source, WfdbLayout(), tmp_path / "store")
    store = ECGStore(tmp_path / "store")
    assert store.leads("odd") == ("I,filtered", "II") and store.leads("plain") == ("I", "II")
    assert store.manifest.set_index("record_id").loc["plain", "leads"] == "I,II"  # the common case reads as before
    spec = EncoderSpec(name="two", factory="m:f", sampling_rate=100, window_s=1, leads=("I,filtered", "II"),
                       embed_dim=4, normalization="none")
    assert prepare(store.signal("odd"), 100.0, store.leads("odd"), spec).shape == (2, 100)
    assert json.loads(CliRunner().invoke(cli, ["data", "info", str(tmp_path / "store"), "--json"],
                                         obj=Registry.load(environ=BUILTINS_ONLY)).output)["leads"] == \
        {'["I,filtered", "II"]': 1, "I,II": 1}


# -- silent or unclear outcomes ------------------------------------------------------------------------------------


def test_a_layout_that_finds_no_record_is_an_error_and_writes_nothing_so_the_right_one_then_works(tmp_path, registry):
    source, store = wfdb_folder(tmp_path / "src", 3), tmp_path / "store"
    message = one_error(data_cli(registry, "ingest", str(source), "--layout", "dicom", "--store", str(store)))
    assert message == f"{source}: the dicom layout found no record (it holds 3 .dat, 3 .hea files)"
    assert not store.exists()
    right = data_cli(registry, "ingest", str(source), "--layout", "wfdb", "--store", str(store))
    assert right.exit_code == 0, right.output
    assert "3 records found, 3 ingested" in right.output
    empty = tmp_path / "empty"
    empty.mkdir()
    assert one_error(data_cli(registry, "ingest", str(empty), "--layout", "wfdb", "--store", str(tmp_path / "s2"))) \
        == f"{empty}: the wfdb layout found no record (the folder is empty)"


def test_a_signal_file_without_its_header_is_found_and_quarantined(tmp_path, realdata):
    import shutil

    source = wfdb_folder(tmp_path / "src", 1)
    shutil.copy(realdata / "cinc2021" / "E07500.mat", source / "E07500.mat")  # a real .mat, its .hea left behind
    # a record whose header names a file of another name is not an orphan
    write_wfdb(source / "multi", np.zeros((2, 50)), 100, ("I", "II"))
    (source / "multi.dat").rename(source / "multi_1.dat")
    (source / "multi.hea").write_text((source / "multi.hea").read_text().replace("multi.dat", "multi_1.dat"))
    report = ingest(source, WfdbLayout(), tmp_path / "store", workers=2, chunk_size=1)  # problems go to workers too
    assert (report.found, report.ingested, report.quarantined_now) == (3, 2, 1)
    assert quarantined(tmp_path / "store") == {"E07500": (
        "no header", "no E07500.hea beside it, and no header names it: a WFDB record is read from its header")}


def test_data_labels_says_what_matched_and_refuses_ragged_rows_missing_patients_and_silent_replacement(tmp_path,
                                                                                                      registry):
    from stence_bench.data.fake import write_ptbxl_layout
    from stence_bench.data.layouts.ptbxl import PtbxlLayout

    wfdb_store = tmp_path / "wfdb"
    ingest(wfdb_folder(tmp_path / "src", 4), WfdbLayout(), wfdb_store)
    labels = tmp_path / "y.csv"
    labels.write_text("record_id,y\nr00,1\nr01,0\nr99,1\nzz,0\n")
    done = data_cli(registry, "labels", str(wfdb_store), str(labels), "--key", "record")
    assert done.exit_code == 0, done.output
    assert done.output.strip() == (f"{wfdb_store / 'tables' / 'y.csv'}: 2 of 4 records labelled, 2 without a label; "
                                   f"2 row(s) of {labels} match no record of the store (e.g. 'r99', 'zz')")
    again = one_error(data_cli(registry, "labels", str(wfdb_store), str(labels), "--key", "record"))
    assert again == (f"{wfdb_store / 'tables' / 'y.csv'}: a label table of that name exists (joined from {labels}); "
                     "add --replace to replace it, or choose another --name")
    assert data_cli(registry, "labels", str(wfdb_store), str(labels), "--key", "record", "--replace").exit_code == 0

    ragged = tmp_path / "ragged.csv"
    ragged.write_text("record_id,y,z\nr00,1,2\nr01,0\nr02,1,1\n")
    assert one_error(data_cli(registry, "labels", str(wfdb_store), str(ragged), "--key", "record")) == (
        f"{ragged}: line 3 has 2 field(s), the header has 3; a missing value is an empty field (two commas)")
    assert one_error(data_cli(registry, "labels", str(wfdb_store), str(labels), "--key", "patient",
                              "--key-column", "record_id", "--name", "p")) == (
        f"{wfdb_store}: its records have no patient ids (layout wfdb); join by --key record or --key study")

    write_ptbxl_layout(tmp_path / "ptbxl", 2, rates=(100,), seconds=1)
    ptbxl_store = tmp_path / "ptbxl-store"
    ingest(tmp_path / "ptbxl", PtbxlLayout(rate=100), ptbxl_store)
    before = (ptbxl_store / "tables" / "ptbxl_database.csv").read_bytes()
    ecg_labels = tmp_path / "e.csv"
    ecg_labels.write_text("record_id,y\n1,1\n")
    assert one_error(data_cli(registry, "labels", str(ptbxl_store), str(ecg_labels), "--key", "record", "--name",
                              "ptbxl_database", "--replace")) == (
        f"{ptbxl_store / 'tables' / 'ptbxl_database.csv'}: a table of the ptbxl layout has that name; choose "
        "another --name")
    assert (ptbxl_store / "tables" / "ptbxl_database.csv").read_bytes() == before


def test_a_store_keeps_paths_relative_to_its_source_so_it_works_from_anywhere_and_can_move(tmp_path, realdata,
                                                                                            monkeypatch):
    import shutil

    from stence_bench.data.dicom import read_angiography
    from stence_bench.data.layouts.dicom_folder import DicomLayout

    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    wfdb_folder(work / "src", 3)
    elsewhere.mkdir()
    monkeypatch.chdir(work)
    first = ingest(Path("src"), WfdbLayout(), Path("store"))
    assert first.ingested == 3
    assert ECGStore(work / "store").manifest["files"].tolist() == [f"r{i:02d}.hea;r{i:02d}.dat" for i in range(3)]
    monkeypatch.chdir(elsewhere)
    again = ingest(Path("../work/src"), WfdbLayout(), Path("../work/store"))
    assert (again.ingested, again.skipped) == (0, 3)  # the same records, not new ones
    shutil.move(str(work / "store"), str(tmp_path / "moved"))
    moved = ECGStore(tmp_path / "moved")
    assert all(p.is_file() for p in moved.files("r01")) and len(moved) == 3

    shutil.copytree(realdata / "dicom", work / "dicom")
    monkeypatch.chdir(work)
    ingest(Path("dicom"), DicomLayout(), Path("dicom-store"))
    monkeypatch.chdir(elsewhere)
    store = ECGStore(work / "dicom-store")
    path = store.tables()["angiography"]["path"].iloc[0]
    assert read_angiography(store.path(path)).frames.shape == (1, 1024, 1024)


def test_a_record_with_non_ecg_channels_keeps_its_ecg_leads_and_says_what_it_left_out(tmp_path, registry):
    import wfdb

    source = tmp_path / "src"
    source.mkdir()
    rng = np.random.default_rng(3)
    n = 500
    signals = np.column_stack([rng.normal(0, 0.4, n), rng.normal(0, 0.4, n), rng.uniform(0, 1, n),
                               rng.normal(90, 15, n)])
    # as PhysioNet's ICU alarm records (a103l): two ECG leads beside a pleth and an arterial pressure
    wfdb.wrsamp("a103l", fs=250, units=["mV", "mV", "NU", "mmHg"], sig_name=["II", "V", "PLETH", "ABP"],
                p_signal=signals, fmt=["16"] * 4, write_dir=str(source))
    write_wfdb(source / "plain", rng.normal(0, 0.3, (2, 250)), 250, ("I", "II"))
    result = data_cli(registry, "ingest", str(source), "--layout", "wfdb", "--store", str(tmp_path / "store"))
    assert result.exit_code == 0, result.output
    assert "2 records found, 2 ingested, 0 already in the store, 0 quarantined" in result.output
    assert "records keep their ECG leads only; channels left out (records): ABP (1), PLETH (1)" in result.output
    store = ECGStore(tmp_path / "store")
    assert store.leads("a103l") == ("II", "V") and store.meta("a103l")["dropped_channels"] == ["PLETH", "ABP"]
    expected = wfdb.rdrecord(str(source / "a103l"), channels=[0, 1]).p_signal.T.astype(np.float32)
    np.testing.assert_array_max_ulp(store.signal("a103l"), expected, maxulp=1)
    assert "dropped_channels" not in store.meta("plain")


def test_unreadable_files_are_explained_in_our_words_and_pydicom_stays_quiet(tmp_path, realdata, capfd):
    from stence_bench.data.layouts.cinc2021 import Cinc2021Layout
    from stence_bench.data.layouts.dicom_folder import DicomLayout

    source = tmp_path / "cinc"
    source.mkdir()
    for name in ("E07500", "E07501"):
        (source / f"{name}.hea").write_bytes((realdata / "cinc2021" / f"{name}.hea").read_bytes())
    (source / "E07500.mat").write_bytes(b"")  # a zero-byte .mat
    (source / "E07501.mat").write_bytes((realdata / "cinc2021" / "E07501.mat").read_bytes()[:20])  # cut in its header
    ingest(source, Cinc2021Layout(), tmp_path / "cinc-store")
    assert quarantined(tmp_path / "cinc-store") == {
        "E07500": ("empty signal file", f"0 bytes (named by {source / 'E07500.hea'})"),
        "E07501": ("truncated signal file", "20 bytes; the header puts the first sample at byte 24"),
    }

    data = (realdata / "dicom" / "waveform_ecg.dcm").read_bytes()
    dicom = tmp_path / "dicom"
    dicom.mkdir()
    for n in (200, 400, 20000):
        (dicom / f"cut{n}.dcm").write_bytes(data[:n])
    (dicom / "good.dcm").write_bytes(data)
    capfd.readouterr()
    ingest(dicom, DicomLayout(), tmp_path / "dicom-store")
    assert quarantined(tmp_path / "dicom-store") == {
        "cut200": ("corrupt DICOM", "truncated: no data elements after the file meta information"),
        "cut400": ("corrupt DICOM", "truncated: the file ends inside element (0008,0016) (24 of 30 bytes)"),
        "cut20000": ("corrupt DICOM", "truncated: the file (20000 bytes) ends inside a data element"),
    }
    assert capfd.readouterr().err == ""  # no pydicom warning reaches the terminal


def test_rerunning_with_quarantined_records_does_not_pile_up_shard_parts(tmp_path):
    source = wfdb_folder(tmp_path / "src", 3)
    (source / "r01.dat").write_bytes(b"\0" * 10)  # truncated: quarantined on every run
    store = tmp_path / "store"
    from stence_bench.data.store import read_parts

    for _ in range(4):
        report = ingest(source, WfdbLayout(), store)
        assert report.quarantined_total == 1
        # each ingest ends by compacting its parts into one manifest, its quarantine rows replacing the last run's
        assert not list((store / SHARD_DIR).glob("*.csv"))
        rows = read_parts(store)
        assert sorted(rows["status"]) == ["ok", "ok", "quarantined"], rows
    assert quarantined(store) == {"r01": ("truncated signal file", "header says 100 samples per signal, the file holds 2")}
    assert len(ECGStore(store)) == 2
    write_wfdb(source / "r01", np.zeros((2, 100)), 100, ("I", "II"))  # fixed: ingested, and no longer quarantined
    assert ingest(source, WfdbLayout(), store).quarantined_total == 0
    assert len(ECGStore(store)) == 3 and sorted(read_parts(store)["status"]) == ["ok"] * 3


# -- docs/data.md: "What happens to bad input" is what the code does -------------------------------------------------

DOCS = Path(__file__).resolve().parents[1] / "docs" / "data.md"
TABLE_START = "<!-- bad-input table: checked by tests/test_bad_input.py; STENCE_BENCH_WRITE_DOCS=1 rewrites it -->"
TABLE_END = "<!-- end of bad-input table -->"
QUARANTINED = "the record is quarantined; the others are ingested"
REFUSED = "refused (exit 2); nothing is written"


def _observe_bad_input(tmp: Path, realdata: Path, registry) -> list[tuple[str, str, str]]:
    """Every defect of the table, made and met: (defect, outcome, message), paths as SRC, STORE, LABELS."""
    import wfdb
    from pydicom import dcmread
    from pydicom.uid import CTImageStorage

    from stence_bench.data.layouts.dicom_folder import DicomLayout

    rows: list[tuple[str, str, str]] = []
    src, store = tmp / "src", tmp / "store"

    def clean(text: str) -> str:
        for path, name in ((src, "SRC"), (store, "STORE"), (tmp / "labels.csv", "LABELS"), (tmp / "dcm", "SRC"),
                           (tmp / "dcm-store", "STORE"), (tmp / "ptb-xl", "SRC")):
            text = text.replace(str(path), name)
        return text

    # WFDB records, one defect each, in one ingest
    defects = {
        "r01": ("a signal file shorter than its header says", lambda: (src / "r01.dat").write_bytes(b"\0" * 10)),
        "r02": ("a signal file that is missing", lambda: (src / "r02.dat").unlink()),
        "r03": ("a zero-byte signal file", lambda: (src / "r03.dat").write_bytes(b"")),
        "r04": ("a format code no reader knows",
                lambda: (src / "r04.hea").write_text((src / "r04.hea").read_text().replace(".dat 16 ", ".dat 311 "))),
        "r05": ("a sample marked invalid (NaN)", lambda: _poke(src / "r05.dat", -32768)),
        "r06": ("samples that do not match the header's checksum", lambda: _poke(src / "r06.dat", 1234)),
        "r07": ("a negative sampling rate",
                lambda: (src / "r07.hea").write_text((src / "r07.hea").read_text().replace("r07 2 100", "r07 2 -500"))),
        "r08": ("a header naming a signal file outside its folder",
                lambda: (src / "r08.hea").write_text((src / "r08.hea").read_text().replace("r08.dat 16", "../x.dat 16"))),
        "r09": ("a signal file without a header", lambda: (src / "r09.hea").unlink()),
        "r10": ("no signal in a voltage unit",
                lambda: (src / "r10.hea").write_text((src / "r10.hea").read_text().replace("/mV", "/mmHg"))),
    }
    wfdb_folder(src, 11)
    for damage in defects.values():
        damage[1]()
    wfdb.wrsamp("icu", fs=100, units=["mV", "NU"], sig_name=["II", "PLETH"], p_signal=np.zeros((100, 2)) + 0.1,
                fmt=["16", "16"], write_dir=str(src))
    write_wfdb(src / "comma", np.zeros((2, 100)), 100, ("I,filtered", "II"))
    result = data_cli(registry, "ingest", str(src), "--layout", "wfdb", "--store", str(store))
    assert result.exit_code == 0, result.output
    bad = quarantined(store)
    assert set(bad) == set(defects), bad
    rows += [(what, QUARANTINED, clean(f"{bad[rid][0]}: {bad[rid][1]}")) for rid, (what, _) in defects.items()]
    dropped = next(line for line in result.output.splitlines() if "channels left out" in line)
    rows.append(("channels that are not ECG leads (a pleth in NU, a pressure in mmHg) beside ECG leads",
                 "the record keeps its ECG leads; the others are listed in its meta (dropped_channels)", dropped))
    assert ECGStore(store).leads("comma") == ("I,filtered", "II")
    rows.append(("a lead name holding a comma", "stored as it is (the manifest's leads become a JSON list)", "-"))

    # DICOM files
    dcm = tmp / "dcm"
    dcm.mkdir()
    data = (realdata / "dicom" / "waveform_ecg.dcm").read_bytes()
    (dcm / "noise.dcm").write_bytes(bytes(range(256)) * 8)
    (dcm / "cut.dcm").write_bytes(data[:20000])
    (dcm / "empty.dcm").write_bytes(data[:200])
    ct = dcmread(realdata / "dicom" / "XA1_RLE.dcm")
    ct.Modality, ct.SOPClassUID = "CT", CTImageStorage
    ct.save_as(dcm / "ct.dcm")
    (dcm / "good.dcm").write_bytes(data)
    ingest(dcm, DicomLayout(), tmp / "dcm-store")
    found = quarantined(tmp / "dcm-store")
    for rid, what in (("noise", "a file that is not DICOM"), ("cut", "a DICOM file cut short"),
                      ("empty", "a DICOM file cut right after its header"),
                      ("ct", "a DICOM file that is neither an ECG waveform nor an angiogram")):
        rows.append((what, QUARANTINED, clean(f"{found[rid][0]}: {found[rid][1]}")))

    # what stops an ingest before it writes anything
    def refused(defect: str, *args: str, store_dir: Path) -> None:
        existed = store_dir.exists() and sorted(p.name for p in store_dir.rglob("*"))
        message = one_error(data_cli(registry, "ingest", *args, "--store", str(store_dir)))
        assert (store_dir.exists() and sorted(p.name for p in store_dir.rglob("*"))) == existed
        rows.append((defect, REFUSED, clean(message)))

    refused("a layout that finds no record (here: dicom on a WFDB folder)", str(src), "--layout", "dicom",
            store_dir=tmp / "new")
    refused("a file given as SOURCE", str(src / "r00.hea"), "--layout", "wfdb", store_dir=tmp / "new")
    refused("a store made from another layout or source", str(src), "--layout", "cinc2021", store_dir=store)
    # a PTB-XL download whose record table is damaged (before: a pandas traceback)
    from stence_bench.data.fake import write_ptbxl_download

    write_ptbxl_download(tmp / "ptb-xl", 2, rates=(100,), seconds=1)
    table = tmp / "ptb-xl" / "ptbxl_database.csv"
    lines = table.read_text().splitlines()
    table.write_text("\n".join([*lines[:2], lines[2] + ",extra", *lines[3:]]) + "\n")
    refused("a ptbxl_database.csv row with more fields than its header", str(tmp / "ptb-xl"), "--layout", "ptbxl",
            store_dir=tmp / "new")
    cells = lines[2].split(",")
    cells[-3] = "nine"  # strat_fold
    table.write_text("\n".join([*lines[:2], ",".join(cells), *lines[3:]]) + "\n")
    refused("a ptbxl_database.csv strat_fold that is not a whole number", str(tmp / "ptb-xl"), "--layout", "ptbxl",
            store_dir=tmp / "new")
    with FolderLock(store / STORE_LOCK, what="this store", command=f"ingest of {src} (wfdb)"):
        message = one_error(data_cli(registry, "ingest", str(src), "--layout", "wfdb", "--store", str(store)))
    rows.append(("a second ingest into a store being written", "refused (exit 2); the first goes on",
                 _anonymous(clean(message))))
    (store / STORE_LOCK).write_text(json.dumps({"pid": 2**22 + 1, "host": os.uname().nodename, "since": "T",
                                                "command": f"ingest of {src} (wfdb)"}))
    taken = data_cli(registry, "ingest", str(src), "--layout", "wfdb", "--store", str(store))
    rows.append(("the lock of an ingest that was killed", "taken over; the ingest resumes",
                 _anonymous(clean(taken.output.splitlines()[0]))))

    # data labels
    labels = tmp / "labels.csv"

    def label_rows(defect: str, outcome: str, text: str, *args: str) -> None:
        labels.write_text(text)
        result = data_cli(registry, "labels", str(store), str(labels), *args)
        message = one_error(result) if outcome.startswith("refused") else result.output.strip()
        rows.append((defect, outcome, clean(message)))

    label_rows("a table name that is a path", "refused (exit 2)", "record_id,y\nr00,1\n", "--key", "record", "--name",
               "../shards/shard-00000")
    label_rows("a row with fewer or more fields than the header", "refused (exit 2)", "record_id,y,z\nr00,1,2\nr11,0\n",
               "--key", "record")
    label_rows("rows whose key is in no record, records without a row", "joined; the counts are said",
               "record_id,y\nr00,1\nr99,0\n", "--key", "record", "--name", "y")
    label_rows("a table name taken by an earlier label table", "refused (exit 2) unless --replace",
               "record_id,y\nr00,1\n", "--key", "record", "--name", "y")
    label_rows("--key patient on a store without patient ids", "refused (exit 2)", "patient_id,y\np1,1\n", "--key",
               "patient", "--name", "p")
    return rows


def _poke(path: Path, value: int) -> None:
    data = np.fromfile(path, dtype="<i2")
    data[5] = value
    data.tofile(path)


def _anonymous(text: str) -> str:
    """Pids, host names and times as PID, HOST, TIME."""
    import re

    text = re.sub(r"pid \d+ on host \S+", "pid PID on host HOST", text)
    return re.sub(r"since [^),]+", "since TIME", text)


def render_table(rows: list[tuple[str, str, str]]) -> str:
    lines = ["| defect | outcome | message |", "|---|---|---|"]
    lines += [f"| {d} | {o} | " + ("-" if m == "-" else f"`{m}`") + " |" for d, o, m in rows]
    return "\n".join(lines)


def test_the_docs_table_of_bad_input_is_what_the_code_does(tmp_path, realdata, registry):
    table = render_table(_observe_bad_input(tmp_path, realdata, registry))
    text = DOCS.read_text()
    assert TABLE_START in text and TABLE_END in text, f"{DOCS}: the bad-input table markers are missing"
    head, rest = text.split(TABLE_START)
    written, tail = rest.split(TABLE_END)
    if os.environ.get("STENCE_BENCH_WRITE_DOCS") == "1":
        DOCS.write_text(f"{head}{TABLE_START}\n{table}\n{TABLE_END}{tail}")
        written = f"\n{table}\n"
    assert written.strip() == table, ("docs/data.md's bad-input table differs from what the code does; run "
                                      "STENCE_BENCH_WRITE_DOCS=1 pytest tests/test_bad_input.py -k docs_table")


def test_a_refused_ingest_into_an_existing_store_leaves_it_whole(tmp_path):
    """A store made earlier is never removed by a later ingest that fails before committing (before: a refusal
    deleted store.json, the shards and the tables of a store whose parts had been compacted, or of any store
    when its parts were)."""
    source = wfdb_folder(tmp_path / "src", 3)
    store = tmp_path / "store"
    ingest(source, WfdbLayout(), store)
    before = sorted(p.relative_to(store).as_posix() for p in store.rglob("*"))
    from stence_bench.data.layouts.cinc2021 import Cinc2021Layout

    with pytest.raises(StenceBenchError):
        ingest(source, Cinc2021Layout(), store)  # another layout: refused
    assert sorted(p.relative_to(store).as_posix() for p in store.rglob("*")) == before
    assert len(ECGStore(store)) == 3


def test_an_ingest_after_a_compaction_never_reuses_a_shard_number(tmp_path):
    """The compacted manifest replaces the parts: the next ingest must still number its shards after every shard
    written (else it would overwrite the first shard's samples)."""
    source = wfdb_folder(tmp_path / "src", 3)
    store = tmp_path / "store"
    ingest(source, WfdbLayout(), store)
    first = ECGStore(store).signal("r00").copy()
    for i in range(3, 5):
        write_wfdb(source / f"r{i:02d}", np.full((2, 100), float(i)), 100, ("I", "II"))
    ingest(source, WfdbLayout(), store)
    opened = ECGStore(store)
    assert len(opened) == 5 and np.array_equal(opened.signal("r00"), first)
    assert sorted(set(opened.manifest["shard"])) == [0, 1]
