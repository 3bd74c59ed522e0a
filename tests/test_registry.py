"""Registry and plugin loading: origins, duplicates, did-you-mean, broken plugins, env switches, laziness."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import BUILTINS_ONLY, cli_env
from plugin_fixtures import Plugin, encoder

from stence_bench import ObjectiveSpec, hookimpl
from stence_bench.errors import DuplicateNameError, PluginError, UnknownNameError
from stence_bench.plugin_loader import DEFAULT_PLUGINS, load_plugins
from stence_bench.registry import Registry


def test_builtins_are_loaded_as_plugins_with_their_origin():
    registry = Registry.load(environ=BUILTINS_ONLY)
    assert [p.name for p in registry.plugins.plugins] == list(DEFAULT_PLUGINS)
    entry = registry.encoders.entry("resnet1d_wang")
    assert entry.plugin.distribution == "stence-bench" and entry.plugin.builtin
    assert entry.plugin.module == "stence_bench_plugins.encoders"
    assert "none" in registry.objectives and "ptbxl.superdiagnostic" in registry.tasks


def test_unknown_name_suggests_the_closest():
    registry = Registry.load(environ=BUILTINS_ONLY)
    with pytest.raises(UnknownNameError) as info:
        registry.encoders.get("resnet1d18x")
    assert str(info.value).startswith("unknown encoder 'resnet1d18x'; did you mean 'resnet1d18'?")
    assert ("known: ecg_fm, ecg_transformer, ecg_transformer.stence, ecgfounder, ecgfounder_1lead, resnet1d18, resnet1d18.clef, "
            "resnet1d18.jeong, resnet1d_wang, resnet1d_wang.stence, st_mem, temporalnet, xresnet1d101, xresnet1d18, xresnet1d50") in str(info.value)
    with pytest.raises(UnknownNameError, match=r"unknown task 'zzz' \(known: "):
        registry.tasks.get("zzz")


def test_pattern_is_a_glob_or_a_substring():
    registry = Registry.load(environ=BUILTINS_ONLY)
    assert [e.name for e in registry.tasks.entries("diag")] == [
        "ptbxl.diagnostic", "ptbxl.subdiagnostic", "ptbxl.superdiagnostic"]
    assert [e.name for e in registry.tasks.entries("ptbxl.*diag*")] == [
        "ptbxl.diagnostic", "ptbxl.subdiagnostic", "ptbxl.superdiagnostic"]
    assert [e.name for e in registry.tasks.entries("*.form")] == ["ptbxl.form"]


def test_duplicate_name_names_both_origins():
    first, second = Plugin("first_plugin", encoders=[encoder("twin")]), Plugin("second_plugin", encoders=[encoder("twin")])
    registry = Registry.load(extra=[first, second], environ=BUILTINS_ONLY)
    with pytest.raises(DuplicateNameError) as info:
        registry.encoders.get("twin")
    assert "encoder 'twin' is registered twice" in str(info.value)
    assert "(first_plugin)" in str(info.value) and "(second_plugin)" in str(info.value)


def test_duplicate_of_a_builtin_names_stence_bench():
    registry = Registry.load(extra=[Plugin("shadow", encoders=[encoder("resnet1d18")])], environ=BUILTINS_ONLY)
    with pytest.raises(DuplicateNameError, match=r"by stence-bench .*\(stence_bench_plugins.encoders\) and by .*\(shadow\)"):
        registry.check()


def test_invalid_spec_inside_a_plugin_names_the_plugin_and_field():
    class Bad:
        __name__ = "bad_plugin"

        @hookimpl
        def register_encoders(self, register):
            register(encoder("ok", embed_dim=-1))

    with pytest.raises(PluginError, match=r"plugin 'bad_plugin' .*register_encoders: embed_dim: "):
        Registry.load(extra=[Bad()], environ=BUILTINS_ONLY).encoders


def test_wrong_spec_type_and_failing_hook_name_the_plugin():
    registry = Registry.load(extra=[Plugin("mixed", encoders=[ObjectiveSpec(name="oops")])], environ=BUILTINS_ONLY)
    with pytest.raises(PluginError, match="'mixed'.*given ObjectiveSpec, expected EncoderSpec"):
        registry.encoders

    class Crashing:
        __name__ = "crashing"

        @hookimpl
        def register_tasks(self):
            raise RuntimeError("boom")

    with pytest.raises(PluginError, match="plugin 'crashing' .*register_tasks failed: RuntimeError: boom"):
        Registry.load(extra=[Crashing()], environ=BUILTINS_ONLY).tasks


def test_misspelled_hook_fails_at_start():
    class Typo:
        __name__ = "typo_plugin"

        @hookimpl
        def register_encoder(self, register):  # missing "s"
            pass

    with pytest.raises(PluginError, match="typo_plugin.*unknown hook 'register_encoder'"):
        load_plugins(extra=[Typo()], environ=BUILTINS_ONLY)


def test_hookimpl_with_an_argument_the_hook_does_not_have_is_rejected():
    class WrongArgs:
        __name__ = "wrong_args"

        @hookimpl
        def register_encoders(self, register, extra_thing):
            pass

    with pytest.raises(PluginError, match="wrong_args.*extra_thing"):
        load_plugins(extra=[WrongArgs()], environ=BUILTINS_ONLY)


def test_block_builtins_by_module_or_by_distribution():
    registry = Registry.load(environ={**BUILTINS_ONLY, "STENCE_BENCH_BLOCK_PLUGINS": "stence_bench_plugins.encoders"})
    assert len(registry.encoders) == 0 and "none" in registry.objectives
    assert [p.name for p in registry.plugins.blocked] == ["stence_bench_plugins.encoders"]
    everything = Registry.load(environ={**BUILTINS_ONLY, "STENCE_BENCH_BLOCK_PLUGINS": " Stence_Bench , x"})
    assert not everything.plugins.plugins and len(everything.tasks) == 0


def test_listing_never_imports_torch_or_model_code():
    code = (
        "import sys\n"
        "from stence_bench.cli import main\n"
        "sys.argv = ['stence-bench', 'list', 'encoders']\n"
        "try:\n"
        "    main()\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = [m for m in sys.modules if m.split('.')[0] in ('torch', 'pandas', 'wfdb', 'pydicom', 'scipy')\n"
        "         or m.endswith('.resnet1d')]\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=cli_env(), check=True)
    assert "resnet1d_wang" in out.stdout and out.stdout.strip().splitlines()[-1] == "[]"
