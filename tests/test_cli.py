"""The command line: listings, plugins, validate, run; user errors are one line with exit code 2."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from conftest import BUILTINS_ONLY, REPO, run_cli

import stence_bench
from stence_bench.cli import cli, format_table
from stence_bench.registry import Registry


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry.load(environ=BUILTINS_ONLY)


@pytest.fixture(autouse=True)
def _in_repo(monkeypatch):
    monkeypatch.chdir(REPO)  # ./leaderboards is where suites are looked up by name


def invoke(registry, *args):
    return CliRunner().invoke(cli, list(args), obj=registry, prog_name="stence-bench")


def test_version(registry):
    result = invoke(registry, "--version")
    assert result.exit_code == 0 and result.output.strip() == f"stence-bench, version {stence_bench.__version__}"


def test_list_encoders_is_a_table_with_origin_and_contract(registry):
    result = invoke(registry, "list", "encoders")
    assert result.exit_code == 0, result.output
    header, rule, *rows = result.output.splitlines()
    assert header.split() == ["name", "origin", "fs", "Hz", "window", "s", "leads", "dim", "presets", "normalization"]
    wang = next(r for r in rows if r.startswith("resnet1d_wang "))
    assert wang.split() == ["resnet1d_wang", "stence-bench", stence_bench.__version__, "100", "2.5", "12", "(I..V6)",
                            "256", "tiny,base", "zscore_dataset"]


def test_list_with_pattern_and_json(registry):
    assert invoke(registry, "list", "tasks", "rhythm").output.splitlines()[2].startswith("ptbxl.rhythm ")
    assert invoke(registry, "list", "tasks", "nothing-like-it").output.strip() == "no tasks match 'nothing-like-it'"
    import json

    payload = json.loads(invoke(registry, "list", "objectives", "--json").output)
    assert payload[0]["spec"]["name"] == "none" and payload[0]["origin"].startswith("stence-bench ")
    assert invoke(registry, "list", "modalities", "nothing-like-it").output.strip() == "no modalities match 'nothing-like-it'"
    angio = invoke(registry, "list", "modalities", "angio").output.splitlines()[2:]
    assert [row.split()[0] for row in angio] == ["angio_cnn", "angio_embedding"]
    assert angio[0].split()[3:5] == ["angiography", "64"]
    assert invoke(registry, "list", "datasets", "mimic").output.splitlines()[2].split()[:2] == ["mimic-iv-ecg", "stence-bench"]


def test_list_suites_shows_the_quickstart(registry):
    result = invoke(registry, "list", "suites")
    assert result.exit_code == 0
    assert any(line.startswith("quickstart ") and "leaderboards/quickstart.toml" in line
               for line in result.output.splitlines())


def test_plugins_lists_distributions_and_hooks(registry):
    result = invoke(registry, "plugins")
    assert result.exit_code == 0
    rows = [line.split() for line in result.output.splitlines()[2:]]
    assert ["stence_bench_plugins.encoders", "stence-bench", stence_bench.__version__, "built-in",
            "register_encoders"] in rows


def test_validate_and_run_plan_the_quickstart(registry):
    from stence_bench.suite import load_suite, plan

    suite, _ = load_suite("leaderboards/quickstart.toml")
    cells = plan(suite, registry)
    n_pre = sum(c.stage == "pretrain" for c in cells)
    ok = invoke(registry, "validate", "leaderboards/quickstart.toml")
    assert ok.exit_code == 0 and "ok: suite 'quickstart'" in ok.output and f"{len(cells)} cells" in ok.output
    run = invoke(registry, "run", "quickstart", "--plan")
    assert run.exit_code == 0, run.output
    lines = run.output.splitlines()
    assert lines[-1] == f"{len(cells)} cells planned ({n_pre} pretraining, {len(cells) - n_pre} evaluation)."
    assert sum(" linear_probe " in line for line in lines) == sum(c.stage == "linear_probe" for c in cells) > 0
    # every encoder family, every objective and its controls (but 'pretrained': no encoder has weights), every task
    assert {c.encoder for c in cells} == {"resnet1d_wang", "ecg_transformer", "temporalnet"}
    assert {c.objective for c in cells} == {spec.name for spec in registry.objectives if not spec.as_given}
    assert {c.task for c in cells if c.task} >= {"stenosis.70", "lvef.35", "potassium.5.5", "pcwp.18",
                                                "ptbxl.superdiagnostic"}


def test_user_errors_are_one_line_exit_2(registry, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text((REPO / "leaderboards" / "quickstart.toml").read_text().replace("resnet1d_wang", "resnet1d18x"))
    result = invoke(registry, "validate", str(bad))
    assert result.exit_code == 2
    assert result.output == (
        f"Error: {bad}: encoders[0].name: unknown encoder 'resnet1d18x'; did you mean 'resnet1d18'? "
        "(known: ecg_fm, ecg_transformer, ecg_transformer.stence, ecgfounder, ecgfounder_1lead, resnet1d18, resnet1d18.clef, "
        "resnet1d18.jeong, resnet1d_wang, resnet1d_wang.stence, st_mem, temporalnet, xresnet1d101, xresnet1d18, xresnet1d50)\n"
    )
    missing = invoke(registry, "run", "no-such-suite.toml")
    assert missing.exit_code == 2 and missing.output == "Error: no-such-suite.toml: no such file\n"


def test_the_installed_command_reports_errors_without_traceback(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\ntasks = ["ptbxl.rhythm"]\nobjectives = ["none"]\nencoders = ["resnet1d_wang"]\n'
                   "[protocol]\nfractionz = [0.1]\n")
    proc = run_cli("validate", str(bad))
    assert proc.returncode == 2
    assert proc.stderr == f"Error: {bad}: protocol.fractionz: unknown field; did you mean 'fractions'?\n"
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_format_table_aligns_columns():
    assert format_table(["a", "bb"], [["xxx", 1], ["y", 22]]).splitlines() == ["a    bb", "---  --", "xxx  1", "y    22"]


# -- messages that said the wrong thing (issue 22) ------------------------------------------------------------------


def test_a_folder_given_as_suite_is_called_a_folder(registry, tmp_path):
    """Before: "no such file or suite" for a folder that exists."""
    result = invoke(registry, "run", str(REPO / "leaderboards"))
    assert result.exit_code == 2
    inside = sorted(p.name for p in (REPO / "leaderboards").glob("*.toml"))
    assert "quickstart.toml" in inside and len(inside) > 5  # the papers' suites
    held = ", ".join(inside[:5]) + ", ..."  # the first five, then "..."
    assert result.output.strip() == (f"Error: {REPO / 'leaderboards'}: a folder, not a suite; give a suite file "
                                     f"(.toml) or a suite's name (it holds {held})")
    assert invoke(registry, "validate", str(tmp_path)).output.strip() == (
        f"Error: {tmp_path}: a folder, not a suite; give a suite file (.toml) or a suite's name")


def test_a_device_the_machine_lacks_names_the_flag_the_user_typed(registry, tmp_path, monkeypatch):
    """Before: `--device cuda` on a CPU machine named STENCE_BENCH_DEVICE, which the user never set."""
    import torch

    from stence_bench.protocol import distributed

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: --device cuda is not refused here")
    monkeypatch.delenv(distributed.ENV_DEVICE, raising=False)
    result = invoke(registry, "run", "quickstart", "--out", str(tmp_path / "run"), "--device", "cuda")
    assert result.exit_code == 2 and result.output.splitlines()[-1] == (
        "Error: --device cuda: no GPU is visible to this process")
    assert not (tmp_path / "run").exists()
    monkeypatch.setenv(distributed.ENV_DEVICE, "cuda")
    with pytest.raises(stence_bench.errors.StenceBenchError, match="^STENCE_BENCH_DEVICE='cuda': no GPU is visible"):
        distributed.setup()
    with pytest.raises(stence_bench.errors.StenceBenchError, match=r"^--device gpu: not a device \(auto, cpu, cuda"):
        distributed.setup(device="gpu")


def test_results_show_says_when_no_task_matches(registry, tmp_path):
    """Before: an empty table and exit 0 for a pattern that matches nothing."""
    fixture = REPO / "tests" / "fixtures" / "leaderboard" / "mini"
    result = invoke(registry, "results", "show", str(fixture), "--task", "stenosis.7")
    assert result.exit_code == 2 and result.output.strip() == (
        "Error: --task 'stenosis.7': no task of the results matches; did you mean 'stenosis.70'? "
        "(tasks: ptbxl.superdiagnostic, stenosis.70)")
    shown = invoke(registry, "results", "show", str(fixture), "--task", "stenosis.*")
    assert shown.exit_code == 0 and "stenosis.70" in shown.output and "ptbxl" not in shown.output


def test_list_datasets_shows_every_format_the_wfdb_reader_reads(registry):
    """Before: wfdb-16, wfdb-212, wfdb-mat, although the reader reads 16, 24, 32, 61, 80, 160, 212 and .mat."""
    from stence_bench.data.wfdb_io import SUPPORTED_FORMATS

    rows = invoke(registry, "list", "datasets").output.splitlines()[2:]
    formats = next(r for r in rows if r.startswith("wfdb ")).split()[3].split(",")
    assert sorted(formats) == sorted([*(f"wfdb-{f}" for f in SUPPORTED_FORMATS), "wfdb-mat"])
