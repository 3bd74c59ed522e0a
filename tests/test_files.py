"""write_atomic: a target is the old file or the new one, never half of one, and no temporary file is left behind
by a writer that fails. Also its callers: checkpoints, training state, the store's manifest, the synthetic cohort."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
import torch

from stence_bench.files import temporaries, write_atomic


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_bytes_and_text_replace_the_file_whole(tmp_path):
    target = tmp_path / "a.json"
    assert write_atomic(target, b"\x00\x01old") == target
    assert target.read_bytes() == b"\x00\x01old"
    write_atomic(str(target), "nouveau \u00e9")  # a str path; text as UTF-8
    assert target.read_bytes() == "nouveau \u00e9".encode()
    assert listing(tmp_path) == ["a.json"]


def test_a_writer_callback_writes_the_temporary_file_beside_the_target(tmp_path):
    target = tmp_path / "w.pt"
    seen = []

    def writer(tmp: Path) -> None:
        seen.append(tmp)
        assert not target.exists()  # the target appears only once the writer is done
        torch.save({"x": torch.arange(3)}, tmp)

    write_atomic(target, writer=writer)
    (tmp,) = seen
    assert tmp.parent == tmp_path and tmp.name.startswith("w.pt.") and tmp.name.endswith(".tmp")
    assert torch.load(target, weights_only=True)["x"].tolist() == [0, 1, 2]
    assert listing(tmp_path) == ["w.pt"]


@pytest.mark.parametrize("error", [ValueError("disk on fire"), KeyboardInterrupt()])
def test_a_writer_that_raises_leaves_the_old_file_and_no_temporary_file(tmp_path, error):
    target = tmp_path / "state.bin"
    target.write_bytes(b"old and whole")

    def half_then_fail(tmp: Path) -> None:
        tmp.write_bytes(b"new but ha")
        raise error

    with pytest.raises(type(error)):
        write_atomic(target, writer=half_then_fail)
    assert target.read_bytes() == b"old and whole"
    assert listing(tmp_path) == ["state.bin"]


def test_a_writer_that_raises_before_any_file_exists_leaves_nothing(tmp_path):
    def fail(tmp: Path) -> None:
        raise OSError("no space left")

    with pytest.raises(OSError, match="no space left"):
        write_atomic(tmp_path / "new.csv", writer=fail)
    assert listing(tmp_path) == []


def test_a_writer_that_writes_nothing_is_an_error_and_the_old_file_stays(tmp_path):
    target = tmp_path / "t.txt"
    target.write_text("old")
    with pytest.raises(FileNotFoundError, match="wrote nothing"):
        write_atomic(target, writer=lambda tmp: None)
    assert target.read_text() == "old" and listing(tmp_path) == ["t.txt"]


def test_data_and_writer_are_exclusive(tmp_path):
    with pytest.raises(TypeError):
        write_atomic(tmp_path / "x", b"a", writer=lambda tmp: tmp.write_bytes(b"b"))
    with pytest.raises(TypeError):
        write_atomic(tmp_path / "x")
    assert listing(tmp_path) == []


def test_a_folder_appears_whole_or_not_at_all(tmp_path):
    def fill(tmp: Path, fail: bool = False) -> None:
        tmp.mkdir()
        (tmp / "a.csv").write_text("1\n")
        (tmp / "sub").mkdir()
        (tmp / "sub" / "b.csv").write_text("2\n")
        if fail:
            raise RuntimeError("killed half way")

    with pytest.raises(RuntimeError):
        write_atomic(tmp_path / "cohort", writer=lambda tmp: fill(tmp, fail=True))
    assert listing(tmp_path) == []
    write_atomic(tmp_path / "cohort", writer=fill)
    assert listing(tmp_path) == ["cohort"] and (tmp_path / "cohort" / "sub" / "b.csv").read_text() == "2\n"


def test_a_process_killed_while_writing_leaves_the_old_file_and_a_temporary_that_temporaries_finds(tmp_path):
    target = tmp_path / "results.json"
    target.write_text('{"old": true}')
    (tmp_path / "results.json.bak").write_text("not a temporary")
    (tmp_path / "other.json.123.abcdef01.tmp").write_text("another file's")
    script = textwrap.dedent(f"""
        import os, signal
        from stence_bench.files import write_atomic
        def killed(tmp):
            tmp.write_text('{{"new": tr')
            os.kill(os.getpid(), signal.SIGKILL)
        write_atomic({str(target)!r}, writer=killed)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    assert target.read_text() == '{"old": true}'
    (leftover,) = temporaries(target)
    assert leftover.read_text() == '{"new": tr' and leftover.name.startswith("results.json.")
    assert list(temporaries(tmp_path / "absent" / "x")) == []


def test_two_processes_writing_one_file_never_leave_it_half_written(tmp_path):
    """Two writers of one file (two SLURM jobs writing a run's suite.json): the file is one of them, whole."""
    target = tmp_path / "suite.json"
    script = textwrap.dedent(f"""
        import sys
        from stence_bench.files import write_atomic
        for i in range(200):
            write_atomic({str(target)!r}, sys.argv[1] * 100_000)
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script, letter]) for letter in "ab"]
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    assert target.read_text() in ("a" * 100_000, "b" * 100_000)
    assert listing(tmp_path) == ["suite.json"]


# ------------------------------------------------------------------------------------------------ its callers


def test_training_state_whose_save_fails_keeps_the_previous_state(tmp_path, monkeypatch):
    from stence_bench.protocol import pretrain
    from stence_bench.suite import Cell

    cell = Cell(stage="pretrain", encoder="resnet1d_wang", objective="clip", seed=0)
    objective = torch.nn.Linear(3, 2)
    optimiser = torch.optim.SGD(objective.parameters(), lr=0.1)
    path = tmp_path / "checkpoints" / "c.state.pt"
    pretrain.save_training_state(path, cell, objective, optimiser, epoch=1, losses=[0.5])
    real_save = torch.save

    def save_half_then_fail(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)
        with open(f, "r+b") as fh:
            fh.truncate(10)
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", save_half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        pretrain.save_training_state(path, cell, objective, optimiser, epoch=2, losses=[0.5, 0.4])
    monkeypatch.undo()
    state = torch.load(path, weights_only=True)
    assert state["epoch"] == 1 and state["losses"] == [0.5]
    assert listing(path.parent) == ["c.state.pt"]


def test_checkpoint_and_objective_files_leave_no_temporary_file(tmp_path):
    from safetensors import safe_open

    from stence_bench.protocol import pretrain
    from stence_bench.suite import Cell

    cell = Cell(stage="pretrain", encoder="resnet1d_wang", objective="clip", seed=0)
    encoder = torch.nn.Linear(4, 2)
    path = tmp_path / "ck" / "k.safetensors"
    pretrain.save_checkpoint(path, encoder, cell, {"epochs": 1})
    pretrain.save_objective(tmp_path / "ck" / "k.objective.safetensors", torch.nn.Linear(2, 2))
    assert listing(path.parent) == ["k.objective.safetensors", "k.safetensors"]
    with safe_open(str(path), "pt") as f:
        assert f.metadata()["format"] == "stence-bench-encoder/1"
        assert torch.equal(f.get_tensor("weight"), encoder.weight.detach())


def test_store_compaction_that_fails_keeps_the_manifest(tmp_path, monkeypatch, realdata):
    """A real store (the PTB-XL records of ../shared/realdata): a compaction whose Parquet write fails half way
    leaves the manifest as it was, no temporary file, and a store that opens with every row."""
    from stence_bench.data.ingest import ingest
    from stence_bench.data.store import COMPACTED, SHARD_DIR, ECGStore, compact
    from stence_bench.data.layouts.ptbxl import PtbxlLayout

    store = tmp_path / "store"
    ingest(realdata / "ptb-xl", PtbxlLayout(rate=100, database="ptbxl_database_extract.csv"), store)
    manifest = (store / SHARD_DIR / COMPACTED).read_bytes()
    rows = len(ECGStore(store).manifest)
    assert rows > 0

    def fail(self, path, *args, **kwargs):
        Path(path).write_bytes(manifest[: len(manifest) // 2])
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", fail)
    with pytest.raises(OSError, match="disk full"):
        compact(store)
    monkeypatch.undo()
    assert (store / SHARD_DIR / COMPACTED).read_bytes() == manifest
    assert not [p.name for p in (store / SHARD_DIR).iterdir() if p.name.endswith(".tmp")]
    assert len(ECGStore(store).manifest) == rows
