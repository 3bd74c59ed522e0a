"""Third-party plugins through the `stence_bench` entry-point group, in fresh interpreters.

The example package is really installed by pip (offline, into a folder on PYTHONPATH): listed with its
distribution when present, hidden when blocked, gone when absent, and its own tests pass.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import EXAMPLE_DIR, cli_env, make_distribution, run_cli

ENCODER_PLUGIN = """
from stence_bench import EncoderSpec, hookimpl

@hookimpl
def register_encoders(register):
    register(EncoderSpec(name="{name}", factory="stence_bench_plugins.encoders.resnet1d:resnet1d18",
                         sampling_rate=100, window_s=2.5, embed_dim=512))
"""

COMMANDS = [
    ["list", "encoders"], ["list", "objectives"], ["list", "tasks"], ["list", "suites"], ["plugins"],
    ["validate", "quickstart"], ["run", "quickstart"],
]


def listed_encoders(proc: subprocess.CompletedProcess) -> dict[str, str]:
    assert proc.returncode == 0, proc.stderr
    return {line.split()[0]: " ".join(line.split()[1:3]) for line in proc.stdout.splitlines()[2:]}


def test_example_plugin_listed_with_its_distribution_blocked_hidden_absent_gone(example_site):
    present = listed_encoders(run_cli("list", "encoders", pythonpath=example_site))
    assert present["example_cnn"] == "stence-bench-example 0.1.0"
    assert present["resnet1d18"].startswith("stence-bench ")

    for name in ("stence-bench-example", "example", "stence_bench_example.plugin"):
        blocked = run_cli("list", "encoders", pythonpath=example_site, STENCE_BENCH_BLOCK_PLUGINS=name)
        assert "example_cnn" not in listed_encoders(blocked), name
    no_autoload = run_cli("list", "encoders", pythonpath=example_site, STENCE_BENCH_DISABLE_PLUGIN_AUTOLOAD="1")
    assert "example_cnn" not in listed_encoders(no_autoload)
    assert "example_cnn" not in listed_encoders(run_cli("list", "encoders"))

    plugins = run_cli("plugins", pythonpath=example_site)
    assert ["example", "stence-bench-example", "0.1.0", "loaded", "register_encoders"] in [
        line.split() for line in plugins.stdout.splitlines()]
    blocked = run_cli("plugins", pythonpath=example_site, STENCE_BENCH_BLOCK_PLUGINS="stence-bench-example")
    assert ["example", "stence-bench-example", "0.1.0", "blocked", "-"] in [
        line.split() for line in blocked.stdout.splitlines()]


def test_example_plugin_own_tests_pass(example_site):
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=EXAMPLE_DIR, capture_output=True, text=True, env=cli_env(example_site), timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 passed" in proc.stdout


def test_same_encoder_from_two_distributions_fails_every_command_but_the_one_that_diagnoses_it(tmp_path):
    make_distribution(tmp_path, "acme-ecg", "acme_plugin", ENCODER_PLUGIN.format(name="shared_net"), version="2.0")
    make_distribution(tmp_path, "other-ecg", "other_plugin", ENCODER_PLUGIN.format(name="shared_net"))
    for args in [c for c in COMMANDS if c != ["plugins"]]:
        proc = run_cli(*args, pythonpath=tmp_path)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        lines = proc.stderr.splitlines()
        assert len(lines) == 1 and "Traceback" not in proc.stderr, (args, proc.stderr)
        assert "encoder 'shared_net' is registered twice" in lines[0], (args, lines[0])
        assert "acme-ecg 2.0 (acme_plugin)" in lines[0] and "other-ecg 1.0 (other_plugin)" in lines[0]
    # `stence-bench plugins` lists the plugins and marks the clash
    listing = run_cli("plugins", pythonpath=tmp_path)
    assert listing.returncode == 0 and listing.stderr == "", listing.stderr
    rows = {line.split()[0]: line for line in listing.stdout.splitlines()[2:] if not line.startswith("clash:")}
    assert "loaded CLASH" in rows["acme_plugin"] and "loaded CLASH" in rows["other_plugin"]
    assert "CLASH" not in rows["stence_bench_plugins.encoders"]
    assert listing.stdout.splitlines()[-1] == (
        "clash: encoder 'shared_net' is registered by acme-ecg 2.0 (acme_plugin) and by other-ecg 1.0 (other_plugin); "
        "uninstall one, or block one with STENCE_BENCH_BLOCK_PLUGINS=other-ecg")
    # blocking one of them is the fix the message suggests
    fixed = run_cli("list", "encoders", pythonpath=tmp_path, STENCE_BENCH_BLOCK_PLUGINS="other-ecg")
    assert listed_encoders(fixed)["shared_net"] == "acme-ecg 2.0"
    assert fixed.stderr == ""
    # a blocked name that matches nothing is a warning, not silence
    typo = run_cli("list", "encoders", pythonpath=tmp_path, STENCE_BENCH_BLOCK_PLUGINS="other-ekg")
    assert typo.returncode == 2 and typo.stderr.splitlines()[0].startswith(
        "Warning: STENCE_BENCH_BLOCK_PLUGINS: 'other-ekg' matches no plugin; did you mean 'other-ecg'? (plugins: ")


def test_plugin_that_fails_to_import_is_named_with_its_distribution(tmp_path):
    make_distribution(tmp_path, "broken-ecg", "broken_plugin", "import no_such_dependency_xyz\n", version="0.3")
    proc = run_cli("list", "encoders", pythonpath=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith(
        "Error: plugin 'broken_plugin' of broken-ecg 0.3 (broken_plugin) failed to import: "
        "ModuleNotFoundError: No module named 'no_such_dependency_xyz'"
    )
    assert "STENCE_BENCH_BLOCK_PLUGINS=broken-ecg" in proc.stderr
    assert run_cli("list", "encoders", pythonpath=tmp_path, STENCE_BENCH_BLOCK_PLUGINS="broken-ecg").returncode == 0


@pytest.mark.parametrize("hook_code, expected", [
    ("from stence_bench import hookimpl\n@hookimpl\ndef register_encoderz(register):\n    pass\n",
     "unknown hook 'register_encoderz'"),
])
def test_misspelled_hook_in_an_installed_plugin_fails_at_start(tmp_path, hook_code, expected):
    make_distribution(tmp_path, "typo-ecg", "typo_plugin", hook_code)
    proc = run_cli("plugins", pythonpath=tmp_path)
    assert proc.returncode == 2 and expected in proc.stderr and "typo-ecg 1.0" in proc.stderr
