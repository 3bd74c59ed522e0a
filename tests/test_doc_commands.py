"""Every shell block of the README and docs/ runs as written, or says why it cannot here.

A shell block is a fenced ```bash block. One that installs packages, downloads, needs a GPU, a cluster or
minutes is preceded by ``<!-- not run by the doc test: REASON -->``; every other one runs, in the order of its page,
in a folder of its own that is also ``$HOME`` (so ``~/data/ptb-xl`` is a folder the test made), holding what the
page says a user has: downloads generated in their publishers' layouts (stence_bench.data.fake), the real DICOM
ECG of ../shared/realdata, the suite files the page shows. A block passes when it exits 0 (``bash -e``: every
command of it)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from conftest import REALDATA, REPO, cli_env, need

SKIP = re.compile(r"<!-- not run by the doc test: (?P<why>[^>]*?) -->\n$")
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def shell_blocks(page: Path) -> list[tuple[int, str | None, str]]:
    """``(line, reason it is not run or None, code)`` for each ```bash block of ``page``."""
    text = page.read_text()
    out = []
    for m in re.finditer(r"^```bash\n(.*?)^```", text, re.S | re.M):
        before = text[: m.start()]
        skip = SKIP.search(before[before.rfind("\n", 0, len(before) - 1) + 1 :])
        out.append((before.count("\n") + 1, skip["why"].strip() if skip else None, m.group(1)))
    return out


def test_every_shell_block_is_run_or_says_why_not():
    found = {page.name: shell_blocks(page) for page in PAGES}
    assert sum(len(b) for b in found.values()) >= 15
    for name, blocks in found.items():
        for line, why, _ in blocks:
            assert why is None or len(why) > 10, f"{name}:{line}: say why the block is not run"
    runnable = {name for name, blocks in found.items() if any(why is None for _, why, _ in blocks)}
    assert runnable == set(SETUP), f"pages with blocks to run: {sorted(runnable)}; the test prepares {sorted(SETUP)}"
    untagged = re.compile(r"^```\n(?:stence-bench run |torchrun |\.ci/)", re.M)
    for page in PAGES:
        assert not untagged.search(page.read_text()), f"{page.name}: a command block without ```bash"


# -- what each page's reader has at hand -----------------------------------------------------------------------------


def _wfdb_folder(folder: Path) -> None:
    from stence_bench.data.fake import noise_ecg
    from stence_bench.data.wfdb_io import write_wfdb

    rng = np.random.default_rng(0)
    for i in range(3):
        write_wfdb(folder / f"rec{i}", noise_ecg(rng, 12, 2500, 250), 250)


def _data_page(home: Path) -> None:
    from stence_bench.data.fake import write_cinc2021_download, write_mimic_iv_ecg_download, write_ptbxl_download

    data = home / "data"
    write_ptbxl_download(data / "ptb-xl", 3, rates=(100, 500), seconds=3)
    write_cinc2021_download(data / "challenge-2021", 4, seconds=3)
    write_mimic_iv_ecg_download(home / "generated", 20)
    (home / "generated" / "mimic-iv-ecg").rename(data / "mimic-iv-ecg")
    (home / "labs").mkdir()
    shutil.copy(home / "generated" / "tables" / "labs.csv", home / "labs" / "potassium.csv")
    need(REALDATA.is_dir(), f"real ECG files not found at {REALDATA} (the DICOM ECG of docs/data.md's example)")
    (data / "hospital-dicom").mkdir()
    shutil.copy(REALDATA / "dicom" / "waveform_ecg.dcm", data / "hospital-dicom" / "ecg-0001.dcm")
    _wfdb_folder(data / "any-wfdb-folder")
    from public_samples import (code15_sample, cpsc2018_sample, echonext_sample, labevents_rows, measurement_rows,
                                sph_sample)

    from stence_bench.data.fake import noise_ecg, write_cinc_mat

    echonext_sample(data / "echonext" / "1.1.1")
    code15_sample(data / "code15")
    sph_sample(data / "sph", ["1", "22;50+346", "23"])
    cpsc2018_sample(data / "cpsc2018", [[1], [2, 7], [5]])
    rng = np.random.default_rng(1)
    for i, dx in enumerate(("426783006", "164889003,426783006")):  # PhysioNet's ecg-arrhythmia: WFDBRecords/NN/NNN
        write_cinc_mat(data / "ecg-arrhythmia" / "1.0.0" / "WFDBRecords" / "01" / "010" / f"JS0000{i + 1}",
                       noise_ecg(rng, 12, 1500, 500), 500, comments=["Age: 60", "Sex: Male", f"Dx: {dx}"])
    hosp = data / "mimiciv" / "3.1" / "hosp"  # MIMIC-IV's tables, for the recipes
    hosp.mkdir(parents=True)
    labevents_rows([(10000001, 50971, "2150-01-01 08:00:00", "4.1"), (10000002, 50971, "2150-01-02 09:30:00", "5.9")]
                   ).to_csv(hosp / "labevents.csv.gz", index=False)
    echo = data / "mimic-iv-echo" / "1.0"
    echo.mkdir(parents=True)
    measurement_rows([(10000001, 1, "2150-01-03 10:00:00", "lvef", "55"), (10000002, 2, "2150-01-04 11:00:00",
                                                                          "lvef", "30")]
                     ).to_csv(echo / "structured_measurement.csv.gz", index=False)


def _real_data_page(home: Path) -> None:
    from stence_bench.data.fake import write_cinc2021_download, write_mimic_iv_ecg_download, write_ptbxl_download

    files = home / "physionet.org" / "files"
    write_ptbxl_download(files / "ptb-xl" / "1.0.3", 10, rates=(100,), seconds=3)
    write_cinc2021_download(files / "challenge-2021" / "1.0.3", 6, seconds=3)
    write_mimic_iv_ecg_download(home / "generated", 20)
    (files / "mimic-iv-ecg").mkdir()
    (home / "generated" / "mimic-iv-ecg").rename(files / "mimic-iv-ecg" / "1.0")
    (home / "generated" / "tables").rename(home / "clinical-tables")
    page = (REPO / "docs" / "real-data.md").read_text()
    for block in re.findall(r"```toml\n(.*?)```", page, re.S):
        name = re.search(r'^name = "([^"]+)"$', block, re.M)[1]
        (home / f"{name}.toml").write_text(block)


#: page -> what its reader has (the folder is given); pages whose blocks need nothing map to a no-op.
SETUP: dict[str, Callable[[Path], None]] = {
    "data.md": _data_page,
    "real-data.md": _real_data_page,
    "synthetic.md": lambda home: None,
}


@pytest.mark.parametrize("page", sorted(SETUP))
def test_the_shell_blocks_of_the_page_run(page, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    SETUP[page](home)
    path = REPO / "docs" / page if (REPO / "docs" / page).is_file() else REPO / page
    env = cli_env(HOME=str(home), PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]),
                  STENCE_BENCH_DISABLE_PLUGIN_AUTOLOAD="1")
    for line, why, code in shell_blocks(path):
        if why is not None:
            continue
        done = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", code], cwd=home, env=env, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, f"{page}:{line}: exit {done.returncode}\n{code}\n{done.stdout}\n{done.stderr}"
        assert "Traceback" not in done.stderr, f"{page}:{line}:\n{done.stderr}"
