"""What a user installs is the whole source tree: the wheel (built from the clone, and from the sdist, as a release
is) holds every module and every data file (templates, static files, SNOMED and PTB-XL tables, task cards,
shipped suites) of the four package roots of ``pyproject.toml``, and every entry point's module.

The other tests run against an editable install, which reads the source tree and so never sees a package or a
file missing from the wheel (issue 24: ``stence_bench.protocol`` was, and every non-editable ``stence-bench run``
failed). ``.ci/wheel`` installs the wheel into a fresh environment and runs the command line on it.
"""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest
from conftest import REPO

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
#: import package -> its folder in the clone (plugins/ ships as stence_bench_plugins, ...)
PACKAGE_DIRS: dict[str, str] = PYPROJECT["tool"]["setuptools"]["package-dir"]


def source_files() -> set[str]:
    """Every file of the package roots, as its path inside an installed wheel (caches left out)."""
    out = set()
    for package, folder in PACKAGE_DIRS.items():
        root = REPO / folder
        for path in root.rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                out.add(f"{package}/{path.relative_to(root).as_posix()}")
    return out


def build(kind: str, source: Path, out: Path) -> Path:
    """Build an sdist or a wheel of ``source`` with setuptools' build backend (offline, no isolation)."""
    out.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [sys.executable, "-c", f"from setuptools import build_meta; print(build_meta.build_{kind}({str(out)!r}))"],
        cwd=source, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, f"building the {kind} of {source} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return out / proc.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of what a build reads (pyproject, README, the package roots), so the build leaves the clone alone."""
    copy = tmp_path_factory.mktemp("clone")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(REPO / name, copy / name)
    for folder in PACKAGE_DIRS.values():
        shutil.copytree(REPO / folder, copy / folder, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return copy


@pytest.fixture(scope="module")
def wheel(clone: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build("wheel", clone, tmp_path_factory.mktemp("wheel"))


@pytest.fixture(scope="module")
def wheel_from_sdist(clone: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    sdist = build("sdist", clone, tmp_path_factory.mktemp("sdist"))
    unpacked = tmp_path_factory.mktemp("unpacked")
    with tarfile.open(sdist) as tar:
        tar.extractall(unpacked, filter="data")
    (top,) = unpacked.iterdir()
    return build("wheel", top, tmp_path_factory.mktemp("wheel-from-sdist"))


def shipped(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as zf:
        return {name for name in zf.namelist() if ".dist-info/" not in name}


def assert_ships_the_source_tree(wheel: Path) -> None:
    expected, files = source_files(), shipped(wheel)
    missing = sorted(expected - files)
    assert not missing, (
        f"{wheel.name} lacks {len(missing)} file(s) of the source tree: add their package to [tool.setuptools] packages "
        f"or their kind of file to [tool.setuptools.package-data] in pyproject.toml: {', '.join(missing)}")
    assert files == expected, f"{wheel.name} ships files that are not in the source tree: {sorted(files - expected)}"


def test_source_tree_has_the_packages_and_data_the_check_is_about():
    files = source_files()
    for path in ("stence_bench/protocol/runner.py", "stence_bench/data/snomed/dx_mapping_scored.csv",
                 "stence_bench/data/ptbxl/scp_statements.csv", "stence_bench/leaderboard/templates/index.html",
                 "stence_bench/leaderboard/static/stence.css", "stence_bench_plugins/encoders/resnet1d.py",
                 "stence_bench_tasks/stenosis.md", "stence_bench_leaderboards/quickstart.toml"):
        assert path in files, path


def test_source_tree_has_the_licence_and_the_typing_marker():
    licence = (REPO / "LICENSE").read_text()
    assert "Apache License" in licence and "Version 2.0, January 2004" in licence and "END OF TERMS AND CONDITIONS" in licence
    assert PYPROJECT["project"]["license"] == "Apache-2.0"
    assert "stence_bench/py.typed" in source_files()


def test_wheel_declares_the_licence_ships_its_text_and_is_typed(wheel, wheel_from_sdist):
    for built in (wheel, wheel_from_sdist):
        with zipfile.ZipFile(built) as zf:
            names = zf.namelist()
            (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
            headers = zf.read(metadata).decode().split("\n\n")[0].splitlines()
            (licence,) = [n for n in names if n.endswith(".dist-info/licenses/LICENSE")]
            assert zf.read(licence) == (REPO / "LICENSE").read_bytes(), f"{built.name}: {licence} is not LICENSE"
        assert "License-Expression: Apache-2.0" in headers, f"{built.name}: no licence in its METADATA"
        assert "stence_bench/py.typed" in names, f"{built.name} lacks stence_bench/py.typed (PEP 561)"


def test_wheel_ships_every_module_and_data_file_of_the_source_tree(wheel):
    assert_ships_the_source_tree(wheel)


def test_wheel_built_from_the_sdist_ships_the_same(wheel_from_sdist):
    assert_ships_the_source_tree(wheel_from_sdist)


def test_every_entry_point_of_the_wheel_names_a_module_it_ships(wheel):
    with zipfile.ZipFile(wheel) as zf:
        (name,) = [n for n in zf.namelist() if n.endswith(".dist-info/entry_points.txt")]
        entry_points = configparser.ConfigParser(delimiters=("=",))
        entry_points.read_string(zf.read(name).decode())
    assert entry_points["console_scripts"]["stence-bench"] == "stence_bench.cli:main"
    assert entry_points["pytest11"]["stence_bench"] == "stence_bench.testing"
    files = shipped(wheel)
    for group in entry_points.sections():
        for target in entry_points[group].values():
            module = target.partition(":")[0].replace(".", "/")
            assert f"{module}.py" in files or f"{module}/__init__.py" in files, f"[{group}] {target}: not in the wheel"
