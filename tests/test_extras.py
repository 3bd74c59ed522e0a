"""Optional dependencies are extras: pyproject.toml declares each, and a path that needs a missing one says, in one
line, which extra to install. A missing package is simulated the way Python itself reports one: ``sys.modules[name]
= None`` makes ``import name`` raise ImportError."""

from __future__ import annotations

import re
import sys
import tomllib

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import BUILTINS_ONLY, REPO

from stence_bench import extras
from stence_bench.errors import StenceBenchError
from stence_bench.extras import EXTRAS, MissingExtra, require
from stence_bench.registry import Registry

PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
OPTIONAL: dict[str, list[str]] = PROJECT["optional-dependencies"]


def names(requirements: list[str]) -> set[str]:
    """The distribution names of requirement strings (``submitit>=1.5`` -> ``submitit``)."""
    return {re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0].lower() for r in requirements}


def self_extras(requirements: list[str]) -> set[str]:
    """The extras of stence-bench that requirement strings pull in (``stence-bench[a,b]`` -> {a, b})."""
    out: set[str] = set()
    for r in requirements:
        m = re.fullmatch(r"stence-bench\[([a-z0-9_,\- ]+)\]", r.strip())
        if m:
            out |= {e.strip() for e in m.group(1).split(",")}
    return out


def missing(monkeypatch: pytest.MonkeyPatch, *modules: str) -> None:
    """Make ``modules`` (and every submodule already imported) unimportable, as when the package is absent."""
    for module in modules:
        for name in [n for n in sys.modules if n == module or n.startswith(f"{module}.")]:
            monkeypatch.setitem(sys.modules, name, None)
        monkeypatch.setitem(sys.modules, module, None)


def hint(extra: str) -> str:
    return f'pip install "stence-bench[{extra}]"'


def test_pyproject_declares_every_extra_and_the_core_needs_none_of_them():
    core = names(PROJECT["dependencies"])
    for module, (extra, distribution) in EXTRAS.items():
        assert distribution in names(OPTIONAL[extra]), f"{module}: {distribution} is not in the extra {extra!r}"
        assert distribution not in core, f"{distribution} is the extra {extra!r} and a core dependency"
    assert self_extras(OPTIONAL["all"]) == {e for e, _ in EXTRAS.values()}, "the extra 'all' is not every extra"
    # the README's test command installs .[test]: the extras whose paths the tests run
    assert {"slurm", "dicom", "dtw"} <= self_extras(OPTIONAL["test"])
    assert {"ruff", "mypy", "pytest"} <= names(OPTIONAL["test"])


def test_require_returns_the_module_when_installed():
    import submitit

    assert require("submitit", "--launcher slurm") is submitit


def test_a_package_that_is_installed_but_does_not_import_is_named_with_the_reason(monkeypatch):
    def broken(name):
        raise ImportError("libgdcm.so.3.0: cannot open shared object file", name="_gdcmswig")

    monkeypatch.setattr(extras.importlib, "import_module", broken)
    with pytest.raises(MissingExtra) as info:
        require("gdcm", "JPEG pixel data")
    assert str(info.value) == ("JPEG pixel data needs python-gdcm, which does not import (libgdcm.so.3.0: cannot "
                               'open shared object file): pip install "stence-bench[dicom]"')


# ----------------------------------------------------------------------------------------- each extra, missing


def test_slurm_launcher_without_submitit_names_the_extra(monkeypatch, tmp_path):
    from stence_bench.protocol.slurm import make_executor

    missing(monkeypatch, "submitit")
    with pytest.raises(StenceBenchError) as info:
        make_executor(tmp_path, "local")
    assert str(info.value) == f"--launcher slurm needs submitit, which is not installed: {hint('slurm')}"


def test_run_launcher_slurm_without_submitit_is_one_line_and_exit_2(monkeypatch, tmp_path):
    from stence_bench.cli import cli

    suite = tmp_path / "s.toml"
    suite.write_text('name = "s"\ntasks = ["stenosis.70"]\nobjectives = ["supervised"]\n'
                     'encoders = [{name = "resnet1d_wang", preset = "tiny"}]\n'
                     '[protocol]\nstages = ["linear_probe"]\nfractions = [1.0]\ndraws = 1\n'
                     '[data]\nsynthetic = {patients = 20, seed = 0, angiograms = false}\n')
    missing(monkeypatch, "submitit")
    result = CliRunner().invoke(cli, ["run", str(suite), "--out", str(tmp_path / "run"), "--launcher", "slurm"],
                                obj=Registry.load(environ=BUILTINS_ONLY), prog_name="stence-bench")
    assert result.exit_code == 2, result.output
    (line,) = [line for line in result.output.splitlines() if "submitit" in line]
    assert line.endswith(f"--launcher slurm needs submitit, which is not installed: {hint('slurm')}")
    assert "Traceback" not in result.output
    assert not (tmp_path / "run" / "slurm").exists()  # nothing submitted, no job folder


def test_dicom_12_bit_jpeg_without_gdcm_names_the_extra(monkeypatch, tmp_path):
    from test_dicom import pydicom_as_xa

    from stence_bench.data.dicom import read_angiography
    from stence_bench.data.records import BadRecord

    path = pydicom_as_xa("JPGExtended.dcm", tmp_path)
    missing(monkeypatch, "gdcm")
    with pytest.raises(BadRecord) as err:
        read_angiography(path)
    assert err.value.what == "no pixel handler"
    assert err.value.why == f"no installed package decodes JPEG Extended (Process 2 and 4), it needs python-gdcm: " \
                            f"{hint('dicom')}"


def test_dtw_mining_without_dtaidistance_names_the_extra(monkeypatch):
    from stence_bench.testing import build_objective
    from stence_bench_plugins.objectives.losses import pairwise_distances

    registry = Registry.load(environ=BUILTINS_ONLY)
    build_objective("metric_learning", registry=registry, distance="euclidean")  # euclidean needs no extra
    missing(monkeypatch, "dtaidistance")
    with pytest.raises(StenceBenchError) as info:
        build_objective("metric_learning", registry=registry, distance="dtw")
    assert str(info.value) == ("objective 'metric_learning' with distance = \"dtw\" needs dtaidistance, which is not "
                               f"installed: {hint('dtw')}")
    build_objective("metric_learning", registry=registry, distance="euclidean")
    with pytest.raises(StenceBenchError, match=re.escape(hint("dtw"))):
        pairwise_distances(np.zeros((3, 2, 8)), metric="dtw")
    assert pairwise_distances(np.zeros((3, 2, 8)), metric="euclidean").shape == (3, 3)


def test_text_sentence_without_sentence_transformers_names_the_extra(monkeypatch):
    from stence_bench.specs import import_object

    spec = Registry.load(environ=BUILTINS_ONLY).modalities.get("text_sentence")
    missing(monkeypatch, "sentence_transformers")
    with pytest.raises(StenceBenchError) as info:
        import_object(spec.factory, what="modality 'text_sentence'")(**{**spec.options, "model_path": "/nowhere"})
    assert str(info.value) == ("text_sentence needs sentence-transformers, which is not installed: "
                               f"{hint('text')} (and set option model_path to a local model directory)")
