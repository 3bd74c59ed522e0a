"""Shared test helpers: paths to ../shared/realdata and the example plugin, CLI runners, fake distributions.

Tests that need ``../shared`` (absent in a user's clone) skip with a reason; with ``STENCE_BENCH_STRICT=1``
(set by ``.ci/run``) such a skip is a failure instead, so CI always runs them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from stence_bench.plugin_loader import ENV_BLOCK, ENV_DISABLE_AUTOLOAD

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
REALDATA = SHARED / "realdata"
EXAMPLE_DIR = REPO / "examples" / "stence-bench-example"
STRICT_ENV = "STENCE_BENCH_STRICT"
#: Built-ins only, whatever the environment has installed: for tests that assert exact listings.
BUILTINS_ONLY = {ENV_DISABLE_AUTOLOAD: "1"}


def need(condition: bool, reason: str) -> None:
    """Skip with ``reason`` unless ``condition``; under STENCE_BENCH_STRICT=1, fail instead."""
    if condition:
        return
    if os.environ.get(STRICT_ENV, "").strip() not in ("", "0"):
        pytest.fail(f"{reason} (a skip, made a failure by {STRICT_ENV}=1)")
    pytest.skip(reason)


@pytest.fixture
def realdata() -> Path:
    need(REALDATA.is_dir(), f"real ECG files not found at {REALDATA} (../shared is absent in a plain clone)")
    return REALDATA


@pytest.fixture(autouse=True)
def _clean_plugin_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests start from no plugin switches, whatever the developer's shell has set."""
    monkeypatch.delenv(ENV_BLOCK, raising=False)
    monkeypatch.delenv(ENV_DISABLE_AUTOLOAD, raising=False)


def cli_env(pythonpath: Path | None = None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in (ENV_BLOCK, ENV_DISABLE_AUTOLOAD)}
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(pythonpath), *filter(None, [env.get("PYTHONPATH")])])
    env.update(extra)
    return env


def run_cli(*args: str, pythonpath: Path | None = None, cwd: Path = REPO, **env: str) -> subprocess.CompletedProcess:
    """Run ``stence-bench ARGS`` in a fresh interpreter (entry points are read at start-up)."""
    return subprocess.run(
        [sys.executable, "-m", "stence_bench", *args],
        capture_output=True, text=True, cwd=cwd, env=cli_env(pythonpath, **env), timeout=120,
    )


def make_distribution(site: Path, dist: str, module: str, code: str, *, version: str = "1.0",
                      entry_point: str | None = None) -> None:
    """Install a minimal distribution into ``site`` by hand: a module and a dist-info with a stence_bench entry point."""
    site.mkdir(parents=True, exist_ok=True)
    (site / f"{module}.py").write_text(textwrap.dedent(code))
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[stence_bench]\n{entry_point or module} = {module}\n")


@pytest.fixture(scope="session")
def example_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example plugin package, really installed by pip (offline) into a folder put on PYTHONPATH."""
    target = tmp_path_factory.mktemp("example-site")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
         "--target", str(target), str(EXAMPLE_DIR)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, f"pip could not install {EXAMPLE_DIR}:\n{proc.stdout}\n{proc.stderr}"
    return target


def alive(pid: int) -> bool:
    """A process that exists and is not a zombie (killed, waiting to be reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"


def child_pids(pid: int) -> list[int]:
    """The pids of the processes whose parent is ``pid`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2 :].split()[1]) == pid:
                found.append(int(entry.name))
    return found
