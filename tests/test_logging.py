"""Logging: -v / -q set what a run prints, every line goes to <run>/logs/run.log, only rank 0 prints."""

from __future__ import annotations

import logging

import pytest
from click.testing import CliRunner
from conftest import BUILTINS_ONLY

from stence_bench import log
from stence_bench.cli import cli
from stence_bench.registry import Registry

#: One linear probe of the random-init encoder: the smallest run that has cells to print.
SUITE = """name = "quiet"
tasks = ["stenosis.70"]
objectives = ["none"]
encoders = [{name = "resnet1d_wang", preset = "tiny"}]
controls = false
[protocol]
stages = ["linear_probe"]
fractions = [1.0]
draws = 1
bootstrap = 10
[data]
synthetic = {patients = 60, seed = 1, angiograms = false}
"""


@pytest.fixture(scope="module")
def registry():
    return Registry.load(environ=BUILTINS_ONLY)


@pytest.fixture(autouse=True)
def _default_logging():
    """Each test starts (and leaves) the logger as a plain command sets it up."""
    log.configure(0, main=True)
    yield
    log.configure(0, main=True)


def _run(registry, *args):
    return CliRunner().invoke(cli, list(args), obj=registry, prog_name="stence-bench")


def test_quiet_verbose_and_the_run_log(registry, tmp_path):
    suite = tmp_path / "s.toml"
    suite.write_text(SUITE)
    out = tmp_path / "run"

    quiet = _run(registry, "-q", "run", str(suite), "--out", str(out), "--workers", "1")
    assert quiet.exit_code == 0, quiet.output
    # no progress line at all; the results and the summary are still printed
    assert quiet.stderr == "", quiet.stderr
    assert "to run" not in quiet.output and "[1/1]" not in quiet.output
    assert f"results: {out / 'results'}" in quiet.stdout and "leaderboard: " in quiet.stdout

    # the log file holds every line of the run, the quiet ones and the debug ones included
    text = (out / "logs" / "run.log").read_text()
    assert "1 cells: 0 finished earlier, 1 to run" in text
    assert "[1/1] linear_probe stenosis.70 resnet1d_wang[tiny] none" in text and " ETA " in text
    assert "DEBUG" in text and "starting (key " in text
    assert f"results: {out / 'results'}" in text and "suite 'quiet'" in text

    verbose = _run(registry, "-v", "run", str(suite), "--out", str(out), "--workers", "1")
    assert verbose.exit_code == 0, verbose.output
    assert "1 cells: 1 finished earlier, 0 to run" in verbose.stderr
    debug = [line for line in verbose.stderr.splitlines() if line.startswith("debug: ")]
    assert debug and "linear_probe stenosis.70" in debug[0] and "finished earlier (key " in debug[0]

    plain = _run(registry, "run", str(suite), "--out", str(out), "--workers", "1")
    assert plain.exit_code == 0, plain.output
    assert "1 cells: 1 finished earlier, 0 to run" in plain.stderr and "debug:" not in plain.output
    # three runs appended to one file, each with its own lines
    assert (out / "logs" / "run.log").read_text().count(" to run; results in ") == 3


def test_the_console_prints_on_rank_0_only(capsys, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    assert not log.is_main_process()
    log.configure(1)  # even with -v, rank 1 prints nothing
    logging.getLogger("stence_bench.run").warning("from rank 1")
    logging.getLogger("stence_bench.run").info("from rank 1")
    assert capsys.readouterr().err == ""
    monkeypatch.setenv("RANK", "0")
    log.configure(0)
    logging.getLogger("stence_bench.run").info("from rank 0")
    logging.getLogger("stence_bench.run").debug("not at the default verbosity")
    logging.getLogger("stence_bench.run").warning("careful")
    assert capsys.readouterr().err == "from rank 0\nWarning: careful\n"


def test_configuring_twice_keeps_one_console_handler(capsys):
    log.configure(0)
    log.configure(-1)
    logging.getLogger("stence_bench").warning("once")
    logging.getLogger("stence_bench").info("not with -q")
    assert capsys.readouterr().err == "Warning: once\n"
