"""Interrupting a run, from the user's side: a `kill -9` of `stence-bench run` leaves no worker behind and the
same command resumes (saying so) to the weights of an uninterrupted run; Ctrl-C and SIGTERM stop the workers,
keep what is finished and exit 130 / 143; a run folder has one writer (a second run is refused, a stale lock is
taken over)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from conftest import BUILTINS_ONLY, alive, child_pids, cli_env, make_distribution

from stence_bench.cli import RUN_LOCK, cli
from stence_bench.processes import FolderLock, LockedError, WorkerPool
from stence_bench.results import read_results
from stence_bench.protocol.runner import run_suite
from stence_bench.registry import Registry
from stence_bench.suite import parse_suite, plan

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; PR_SET_PDEATHSIG is Linux")

#: two pretraining cells (patient_contrastive and the supervised control), so two workers pretrain side by side
SUITE = """
name = "interrupt"
tasks = ["stenosis.70"]
objectives = ["patient_contrastive"]
encoders = [{name = "resnet1d_wang", preset = "tiny"}]
controls = true

[protocol]
stages = ["linear_probe"]
fractions = [1.0]
draws = 1
bootstrap = 20
pretrain = {epochs = 2, batch_size = 16}

[data]
synthetic = {patients = 40, seed = 5, angiograms = false}
"""

#: A plugin that stops the pretraining of the objectives named in HOLD_OBJECTIVES after their first epoch (its
#: state saved) in the worker running it, and says so with a file named by the worker's pid: the moment to
#: interrupt the run.
HOLD = """
import os, time
from pathlib import Path
from stence_bench import hookimpl

@hookimpl
def epoch_finished(cell, epoch, metrics):
    if cell.objective in os.environ["HOLD_OBJECTIVES"].split(",") and epoch == 1:
        Path(os.environ["HOLD_DIR"], f"held-{os.getpid()}").write_text(cell.key)
        time.sleep(600)
"""


@pytest.fixture(scope="module")
def hold_site(tmp_path_factory) -> Path:
    site = tmp_path_factory.mktemp("hold-site")
    make_distribution(site, "stence-bench-hold", "stence_bench_hold", HOLD)
    return site


@pytest.fixture(scope="module")
def suite_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("suite") / "interrupt.toml"
    path.write_text(SUITE)
    return path




def start(suite: Path, out: Path, site: Path | None = None, hold: Path | None = None,
          objectives: tuple[str, ...] = ()) -> subprocess.Popen:
    """`stence-bench run` with two workers, in its own process group (as a shell starts a command); with
    ``site`` (the HOLD plugin), the pretraining of ``objectives`` stops after its first epoch."""
    extra = {"OMP_NUM_THREADS": "1", "STENCE_BENCH_DEVICE": "cpu"}
    if hold is not None:
        hold.mkdir(exist_ok=True)
        extra.update(HOLD_DIR=str(hold), HOLD_OBJECTIVES=",".join(objectives))
    return subprocess.Popen([sys.executable, "-m", "stence_bench", "run", str(suite), "--out", str(out), "--workers",
                             "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=cli_env(site, **extra), start_new_session=True)


def wait_until_held(proc: subprocess.Popen, hold: Path, out: Path, held: int, finished: int) -> list[int]:
    """Wait until ``held`` workers hold a pretraining after its first epoch and ``finished`` results are
    written; returns the worker pids."""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the run ended early ({proc.returncode}):\n{proc.stderr.read()[-3000:]}")
        if len(list(hold.glob("held-*"))) == held and len(list(out.glob("results/*.json"))) == finished:
            workers = child_pids(proc.pid)
            assert len(workers) == 2, workers
            return workers
        time.sleep(0.2)
    proc.kill()
    raise AssertionError("the run never reached its first epoch")


def wait_gone(pids: list[int], seconds: float = 5.0) -> list[int]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.05)
    return [p for p in pids if alive(p)]


def state_epochs(out: Path) -> list[int]:
    return [int(torch.load(state, weights_only=True)["epoch"]) for state in (out / "checkpoints").glob("*.state.pt")]


def pretraining(objective: str):
    registry = Registry.load(environ=BUILTINS_ONLY)
    return next(c for c in plan(parse_suite(SUITE), registry) if c.stage == "pretrain" and c.objective == objective)


def test_a_killed_run_leaves_no_worker_alive_and_the_same_command_resumes_to_the_uninterrupted_weights(
        suite_file, hold_site, tmp_path):
    out, hold = tmp_path / "run", tmp_path / "hold"
    both = ("patient_contrastive", "supervised")  # both workers pretraining when the kill comes
    proc = start(suite_file, out, hold_site, hold, both)
    workers = wait_until_held(proc, hold, out, held=2, finished=0)
    os.kill(proc.pid, signal.SIGKILL)  # as `kill -9` or the OOM killer would
    proc.communicate()
    assert wait_gone(workers) == [], "worker processes outlived their killed parent"
    assert state_epochs(out) == [1, 1]
    assert json.loads((out / RUN_LOCK).read_text())["pid"] == proc.pid  # left behind by the kill

    again = start(suite_file, out)  # the same command, without the plugin that held the pretraining
    stdout, stderr = again.communicate(timeout=300)
    assert again.returncode == 0, stderr[-3000:]
    assert f"taking over the lock of pid {proc.pid}" in stderr
    assert "resuming 2 pretraining cell(s) from the last epoch an interrupted run finished:" in stderr
    for objective in both:
        cell = pretraining(objective)
        assert f"  {cell.label}: from epoch 1/2" in stderr  # said before the cells run
        assert f"{cell.label}: resuming from epoch 1/2" in stderr  # and by the worker that resumes it
    results = read_results([out])
    assert len(results) == 5 and {r.status for r in results} == {"done"}
    assert not list((out / "checkpoints").glob("*.state.pt")) and not (out / RUN_LOCK).exists()

    # the resumed pretrainings end with the weights of a run that was never interrupted
    reference = tmp_path / "reference"
    cells = [pretraining(objective) for objective in both]
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the run's processes (OMP_NUM_THREADS=1): the same sums in the same order
    try:
        run_suite(parse_suite(SUITE), Registry.load(environ=BUILTINS_ONLY), reference, echo=lambda line: None,
                  cells=cells, workers=2)
    finally:
        torch.set_num_threads(torch_threads)
    from safetensors.torch import load_file

    for cell in cells:
        weights = load_file(out / "checkpoints" / f"{cell.key}.safetensors")
        expected = load_file(reference / "checkpoints" / f"{cell.key}.safetensors")
        assert weights.keys() == expected.keys()
        assert all(torch.allclose(weights[k].float(), expected[k].float(), atol=1e-6) for k in weights), cell.label


@pytest.mark.parametrize(("signum", "code", "group"), [(signal.SIGINT, 130, True), (signal.SIGTERM, 143, False)],
                         ids=["ctrl-c", "sigterm"])
def test_ctrl_c_and_sigterm_stop_the_workers_keep_finished_work_and_say_how_to_resume(
        suite_file, hold_site, tmp_path, signum, code, group):
    out, hold = tmp_path / "run", tmp_path / "hold"
    proc = start(suite_file, out, hold_site, hold, ("patient_contrastive",))  # supervised finishes
    workers = wait_until_held(proc, hold, out, held=1, finished=1)
    finished = {p.name: p.read_bytes() for p in (out / "results").glob("*.json")}
    if group:  # Ctrl-C in a terminal: the whole foreground process group gets SIGINT
        os.killpg(proc.pid, signum)
    else:  # `kill PID`, or SLURM ending a job
        os.kill(proc.pid, signum)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == code, stderr[-3000:]
    assert wait_gone(workers) == []
    # nothing finished is lost: the finished pretraining's result and checkpoint, the other's last epoch
    assert {p.name: p.read_bytes() for p in (out / "results").glob("*.json")} == finished
    assert len(list((out / "checkpoints").glob("*.safetensors"))) == 1
    assert state_epochs(out) == [1]
    assert not (out / RUN_LOCK).exists()
    lines = stderr.splitlines()
    held, done = pretraining("patient_contrastive"), pretraining("supervised")
    assert any(line.startswith("interrupted: 1 of 5 cells finished (1 in this run, 0 earlier), 4 left") for line in lines)
    assert f"  {held.label}: training state kept at epoch 1/2" in lines
    assert f"to resume: stence-bench run {suite_file} --out {out} --workers 2" in lines
    assert "Traceback" not in stderr

    # the run goes on from there: the finished pretraining reused, the other resumed
    said: list[str] = []
    outcomes = run_suite(parse_suite(SUITE), Registry.load(environ=BUILTINS_ONLY), out, echo=said.append)
    assert {o.key: o.status for o in outcomes if o.status == "cached"} == {done.key: "cached"}
    assert {o.status for o in outcomes} == {"cached", "done"} and len(outcomes) == 5
    assert said[1:4] == ["reusing 1 finished cell(s): 1 pretrain", f"  {done.label}",
                         "resuming 1 pretraining cell(s) from the last epoch an interrupted run finished:"]
    assert said[4] == f"  {held.label}: from epoch 1/2"


SLOW_CLEANUP = """
import sys, time
from stence_bench.processes import stop_on_signals

with stop_on_signals():
    try:
        print("ready", flush=True)
        time.sleep(60)
    except KeyboardInterrupt:
        print("stopping", flush=True)
        time.sleep(60)  # a slow clean-up, which a second Ctrl-C cuts short
        sys.exit(5)
"""


def test_a_second_ctrl_c_stops_at_once():
    proc = subprocess.Popen([sys.executable, "-c", SLOW_CLEANUP], stdout=subprocess.PIPE, text=True, env=cli_env())
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGINT)
    assert proc.stdout.readline().strip() == "stopping"
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=20) == 130


HOLDER = """
import sys, time
from pathlib import Path
from stence_bench.processes import FolderLock

lock = FolderLock(Path(sys.argv[1]), what="this run folder", command="stence-bench run other.toml")
lock.acquire()
print("locked", flush=True)
time.sleep(120)
"""


def test_a_second_run_on_a_live_run_folder_is_refused_in_one_line_and_a_stale_lock_is_taken_over(tmp_path):
    out = tmp_path / "run"
    suite = tmp_path / "tiny.toml"
    suite.write_text(SUITE.replace('objectives = ["patient_contrastive"]', 'objectives = ["none"]')
                     .replace("controls = true", "controls = false"))
    registry = Registry.load(environ=BUILTINS_ONLY)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(out / RUN_LOCK)], stdout=subprocess.PIPE, text=True,
                              env=cli_env())
    try:
        assert holder.stdout.readline().strip() == "locked"
        refused = CliRunner().invoke(cli, ["run", str(suite), "--out", str(out), "--workers", "1"], obj=registry)
        assert refused.exit_code == 2
        errors = [line for line in refused.output.splitlines() if line.startswith("Error:")]
        assert len(errors) == 1 and f"is in use by pid {holder.pid} on host" in errors[0], refused.output
        assert "stence-bench run other.toml" in errors[0]
        assert not (out / "results").exists()  # refused before anything was written
    finally:
        holder.kill()
        holder.wait()
    assert json.loads((out / RUN_LOCK).read_text())["pid"] == holder.pid  # the kill left its lock behind
    taken = CliRunner().invoke(cli, ["run", str(suite), "--out", str(out), "--workers", "1"], obj=registry)
    assert taken.exit_code == 0, taken.output
    assert f"taking over the lock of pid {holder.pid}" in taken.output and "no longer running" in taken.output
    assert len(read_results([out])) == 1 and not (out / RUN_LOCK).exists()


def test_a_lock_is_one_owner_at_a_time_and_a_reused_pid_is_not_an_owner(tmp_path):
    path = tmp_path / "folder" / "x.lock"
    with FolderLock(path, what="x") as first:
        assert first.held and json.loads(path.read_text())["pid"] == os.getpid()
        with pytest.raises(LockedError, match=rf"x is in use by pid {os.getpid()} on host"):
            FolderLock(path, what="x").acquire()
        notes: list[str] = []
        with pytest.raises(LockedError):
            FolderLock(path, what="x", wait_s=0.3, echo=notes.append).acquire()
        assert notes and notes[0].startswith(f"{path.parent}: waiting for pid {os.getpid()}")
    assert not path.exists()
    # a lock file naming a live pid that started at another time (the pid was reused) is stale
    mine = json.loads(json.dumps({"pid": os.getpid(), "host": os.uname().nodename, "proc_start": "1"}))
    path.write_text(json.dumps(mine))
    notes = []
    with FolderLock(path, what="x", echo=notes.append) as lock:
        assert lock.taken_over == mine and "no longer running" in notes[0]
    # a lock from another host cannot be judged from here: refused, with what to do if it is stale
    path.write_text(json.dumps({"pid": 1, "host": "elsewhere.example"}))
    with pytest.raises(LockedError, match=r"pid 1 on host elsewhere.example.*if it has ended, delete"):
        FolderLock(path, what="x").acquire()


def _sleep_forever() -> None:
    time.sleep(600)


def test_pool_workers_die_with_their_parent_and_kill_stops_them_at_once():
    """The pool in a child process that is then SIGKILLed: its workers go too (PR_SET_PDEATHSIG / the pipe)."""
    code = textwrap.dedent("""
        import sys, time
        sys.path.insert(0, sys.argv[1])
        from test_interrupt import _sleep_forever
        from stence_bench.processes import WorkerPool
        pool = WorkerPool(2)
        futures = [pool.submit(_sleep_forever) for _ in range(2)]
        while len(pool.worker_pids()) < 2:
            time.sleep(0.05)
        print(*pool.worker_pids(), flush=True)
        time.sleep(600)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code, str(Path(__file__).parent)], stdout=subprocess.PIPE,
                            text=True, env=cli_env())
    workers = [int(p) for p in proc.stdout.readline().split()]
    assert len(workers) == 2 and all(alive(p) for p in workers)
    proc.kill()
    proc.wait()
    assert wait_gone(workers) == []

    pool = WorkerPool(2)
    pool.submit(_sleep_forever)
    deadline = time.monotonic() + 30
    while not pool.worker_pids() and time.monotonic() < deadline:
        time.sleep(0.05)
    pids = pool.worker_pids()
    pool.kill()  # the task would sleep for ten minutes: kill does not wait for it
    pool.shutdown(wait=True)
    assert pids and not any(alive(p) for p in pids)
