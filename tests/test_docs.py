"""The README and docs are true to the code: CI runs the README's commands, its plugin example works."""

from __future__ import annotations

import re

from conftest import BUILTINS_ONLY, REPO

from stence_bench.registry import Registry


def readme_commands() -> list[str]:
    readme = (REPO / "README.md").read_text()
    return [line for block in re.findall(r"```bash\n(.*?)```", readme, re.S) for line in block.splitlines()
            if line.startswith("python3 -m venv")]


def test_readme_has_two_setup_commands_and_ci_runs_both():
    commands = readme_commands()
    assert len(commands) == 2
    assert commands[0].endswith("stence-bench run leaderboards/quickstart.toml")
    assert commands[1].endswith("python -m pytest")
    ci_lines = (REPO / ".ci" / "run").read_text().splitlines()
    for command in commands:
        assert command in ci_lines, f".ci/run does not run the README command: {command}"
    assert "export STENCE_BENCH_STRICT=1" in "\n".join(ci_lines)


def test_ci_checks_the_installed_wheel_after_the_tests_and_the_readme_says_how_to_install_a_release():
    ci_lines = (REPO / ".ci" / "run").read_text().splitlines()
    tests = ci_lines.index(readme_commands()[1])
    assert "bash .ci/wheel" in ci_lines[tests + 1:], ".ci/run does not run .ci/wheel after the tests"
    assert (REPO / ".ci" / "wheel").is_file()
    readme = (REPO / "README.md").read_text()
    release = next(block for block in re.findall(r"```bash\n(.*?)```", readme, re.S) if "pip install stence-bench" in block)
    assert release.index("pip install torch==") < release.index("pip install stence-bench")


def test_ci_runs_ruff_and_mypy_before_the_tests_and_the_test_extra_installs_them():
    import tomllib

    ci_lines = (REPO / ".ci" / "run").read_text().splitlines()
    tests = ci_lines.index(readme_commands()[1])
    assert ".venv/bin/ruff check" in ci_lines[:tests] and ".venv/bin/mypy" in ci_lines[:tests]
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    test_extra = " ".join(pyproject["project"]["optional-dependencies"]["test"])
    assert "ruff" in test_extra and "mypy" in test_extra
    assert pyproject["tool"]["mypy"]["files"] == ["stence_bench"] and pyproject["tool"]["ruff"]["lint"]["select"]


def test_readme_plugin_example_registers_an_encoder():
    readme = (REPO / "README.md").read_text()
    example = next(block for block in re.findall(r"```python\n(.*?)```", readme, re.S) if "register_encoders" in block)
    namespace: dict = {"__name__": "readme_example"}
    exec(compile(example, "README.md", "exec"), namespace)

    class Module:
        __name__ = "readme_example"
        register_encoders = staticmethod(namespace["register_encoders"])

    spec = Registry.load(extra=[Module()], environ=BUILTINS_ONLY).encoders.get("my_net")
    assert spec.n_samples == 5000 and spec.factory == "my_package.model:build"


def test_plugin_guide_example_matches_the_example_package():
    guide = (REPO / "docs" / "plugins.md").read_text()
    pyproject = (REPO / "examples" / "stence-bench-example" / "pyproject.toml").read_text()
    assert 'example = "stence_bench_example.plugin"' in guide and 'example = "stence_bench_example.plugin"' in pyproject


def test_cli_help_lists_the_documented_commands():
    from click.testing import CliRunner

    from stence_bench.cli import cli

    registry = Registry.load(environ=BUILTINS_ONLY)
    out = CliRunner().invoke(cli, ["--help"], obj=registry).output
    for command in ("list", "plugins", "validate", "run", "results", "leaderboard"):
        assert re.search(rf"^  {command}\b", out, re.M), command
    listed = CliRunner().invoke(cli, ["list", "--help"], obj=registry).output
    for kind in ("encoders", "objectives", "tasks", "datasets", "modalities", "suites"):
        assert re.search(rf"^  {kind}\b", listed, re.M), kind


def test_the_plugin_guide_gives_assert_encoder_contracts_signature():
    """Before: plugins.md gave (name_or_spec, preset=None, registry=None, batch_size=3)."""
    import inspect

    from stence_bench.testing import assert_encoder_contract

    def plain(parameter: inspect.Parameter) -> str:
        return parameter.name + ("" if parameter.default is parameter.empty else f"={parameter.default!r}")

    parts, starred = [], False
    for parameter in inspect.signature(assert_encoder_contract).parameters.values():
        if parameter.kind is parameter.KEYWORD_ONLY and not starred:
            parts.append("*")
            starred = True
        parts.append(plain(parameter))
    signature = f"assert_encoder_contract({', '.join(parts)})"
    assert signature == "assert_encoder_contract(encoder, *, preset=None, registry=None, batch_size=3, atol=0.0001)"
    assert f"`{signature}`" in (REPO / "docs" / "plugins.md").read_text()


def test_the_readme_lists_every_command():
    """Before: the README's command list lacked `data compare-real` (and `results rescore`)."""
    import click

    from stence_bench.cli import cli

    readme = (REPO / "README.md").read_text()
    listing = readme[readme.index("## The command line"):]
    listing = listing[: listing.index("\n```\n", listing.index("```") + 3)]

    def leaves(group: click.Group, prefix: str) -> list[str]:
        out = []
        for name, command in group.commands.items():
            out += leaves(command, f"{prefix}{name} ") if isinstance(command, click.Group) else [f"{prefix}{name}"]
        return out

    import itertools

    listed = set()  # "stence-bench list encoders|objectives ..." lists each of the alternatives
    for line in listing.splitlines():
        words = line.split()
        if words[:1] != ["stence-bench"]:
            continue
        for k in range(1, min(4, len(words))):
            for chosen in itertools.product(*(w.split("|") for w in words[1 : k + 1])):
                listed.add(" ".join(["stence-bench", *chosen]))
    commands = leaves(cli, "stence-bench ")
    assert "stence-bench data compare-real" in commands and len(commands) >= 12
    for command in commands:
        assert command in listed, f"README's command list lacks {command!r}"


def test_the_worked_mimic_example_in_the_cluster_guide_is_a_valid_suite(tmp_path):
    """docs/cluster.md's MIMIC-IV-ECG -> PTB-XL / CinC 2021 suite: every name, option and field checks out; only its
    download folders are absent here."""
    from stence_bench.suite import check_names, parse_suite

    guide = (REPO / "docs" / "cluster.md").read_text()
    (block,) = [b for b in re.findall(r"```toml\n(.*?)```", guide, re.S) if 'name = "mimic-pretraining"' in b]
    suite = parse_suite(block, "docs/cluster.md")
    registry = Registry.load(environ=BUILTINS_ONLY)
    problems = [p for p in check_names(suite, registry, "docs/cluster.md") if "/data/physionet.org" not in p]
    assert problems == []
    assert suite.protocol.pretrain.epochs == 50 and suite.cluster.gpus_per_job == 8
