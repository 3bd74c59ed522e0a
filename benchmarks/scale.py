"""Real scale: memory and speed of the streaming input pipeline on stores of 20,000 and 200,000 records.

    python benchmarks/scale.py --sizes 20000 200000 --workdir /tmp/stence-scale
    python benchmarks/scale.py --manifest-rows 1000000 --workdir /tmp/stence-scale   # opening a 1M-record store

For each size the script builds a store directly (noise; 100 Hz x 10 s x 12 leads int16, 24 KB a record; not
through the synthetic generator), then runs each stage in a fresh process and samples its memory (and that of
its loader workers) every 0.2 s from /proc:

- ``open``: ``ECGStore(root)`` and ``stence-bench data info`` (wall time);
- ``view``: the per-contract view of the tiny ResNet's contract, built in 2 worker processes;
- ``pretrain``: one epoch (every record once) of ``resnet1d_wang[tiny]`` with ``patient_contrastive`` (VCG on:
  windows in millivolts, normalised after augmenting), batch 64, 2 loader workers, exactly as the runner does it
  (``pretraining_plan`` + ``loader`` + the objective);
- ``embed``: every record's sliding-window mean embedding, written to a memory-mapped cache;
- ``loader``: the loader alone (2 workers) against the model's consumption (forward and backward of the same
  batches), records per second, on the same machine in the same run.

Peak memory is reported as proportional anonymous memory (what the processes themselves hold; a page shared
with forked loader workers counts once) and file pages mapped from the store and the view (page cache: the kernel
reclaims them under pressure, and they are shared between processes).
Results are printed as JSON lines and a Markdown table (docs/benchmarks.md, "Scale").
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FS, SECONDS, LEADS = 100, 10, 12


def build_store(root: Path, n: int, seed: int = 0) -> None:
    """A store of ``n`` noise records written straight through the store's writer, then compacted."""
    from stence_bench.data.records import Record
    from stence_bench.data.store import ShardWriter, compact, create_store, new_store_info
    from stence_bench.specs import TWELVE_LEADS

    if (root / "store.json").is_file():
        return
    source = root.parent / f"{root.name}-source"
    source.mkdir(parents=True, exist_ok=True)
    create_store(root, new_store_info("wfdb", source, {}))
    rng = np.random.default_rng(seed)
    gain, baseline = np.full(LEADS, 1000.0, np.float32), np.zeros(LEADS, np.float32)
    per_shard = 2048
    for shard, start in enumerate(range(0, n, per_shard)):
        writer = ShardWriter(root, shard)
        noise = rng.integers(-1500, 1500, size=(min(per_shard, n - start), LEADS, FS * SECONDS), dtype=np.int16)
        for j, digital in enumerate(noise):
            i = start + j
            writer.add(Record(record_id=f"r{i:07d}", fs=float(FS), leads=TWELVE_LEADS, source=str(source / f"r{i}"),
                              digital=digital, baseline=baseline, gain=gain, patient_id=f"p{i // 3:07d}",
                              files=()))
        writer.commit()
    compact(root)


def sample_memory(pid: int, peaks: dict[str, int], stop: threading.Event) -> None:
    """Peak proportional anonymous and file-backed resident memory (kB, ``Pss_Anon`` / ``Pss_File``: a page shared
    by n processes counts 1/n in each, so forked loader workers are not counted twice) of ``pid`` and its
    children, from /proc."""
    def status(p: int) -> dict[str, int]:
        out = {}
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                key, _, value = line.partition(":")
                if key in ("Pss_Anon", "Pss_File"):
                    out[{"Pss_Anon": "RssAnon", "Pss_File": "RssFile"}[key]] = int(value.split()[0])
        except OSError:
            pass
        return out

    def children(p: int) -> list[int]:
        try:
            return [int(c) for c in Path(f"/proc/{p}/task/{p}/children").read_text().split()]
        except OSError:
            return []

    while not stop.is_set():
        me = status(pid)
        kids = [status(c) for c in children(pid)]
        peaks["anon_kb"] = max(peaks.get("anon_kb", 0), me.get("RssAnon", 0))
        peaks["file_kb"] = max(peaks.get("file_kb", 0), me.get("RssFile", 0))
        peaks["workers_anon_kb"] = max(peaks.get("workers_anon_kb", 0), sum(k.get("RssAnon", 0) for k in kids))
        stop.wait(0.2)


def stage(name: str, root: Path) -> dict:
    """Run one stage in this (fresh) process and return what it measured."""
    import torch

    from stence_bench.data.store import ECGStore
    from stence_bench.data.view_cache import build_view
    from stence_bench.data.windows import Windows, loader
    from stence_bench.protocol.evaluate import window_mean
    from stence_bench.protocol.pretrain import ecg_inputs, pretraining_plan
    from stence_bench.registry import Registry

    torch.set_num_threads(2)
    registry = Registry.load(environ={"STENCE_BENCH_DISABLE_PLUGIN_AUTOLOAD": "1"})
    spec = registry.encoders.get("resnet1d_wang").model_copy(update={"normalization": "zscore_record"})
    peaks: dict[str, int] = {}
    stop = threading.Event()
    sampler = threading.Thread(target=sample_memory, args=(os.getpid(), peaks, stop), daemon=True)
    sampler.start()
    started = time.perf_counter()
    out: dict = {"stage": name}
    if name == "open":
        store = ECGStore(root)
        out["open_s"] = time.perf_counter() - started
        out["records"] = len(store)
        t = time.perf_counter()
        info = subprocess.run([sys.executable, "-m", "stence_bench", "data", "info", str(root)],
                              capture_output=True, text=True, check=True)
        out["data_info_s"] = time.perf_counter() - t
        out["data_info_first_line"] = info.stdout.splitlines()[0]
    else:
        store = ECGStore(root)
        view = build_view(store, spec, workers=2)
        out["view_s"] = time.perf_counter() - started
        windows = Windows(spec, list(view.record_ids), view.at, view.lengths)
        encoder = spec.build("tiny")
        objective = registry.objectives.get("patient_contrastive").build(encoder, leads=spec.leads, vcg=True)
        patients = np.array([int(p[1:]) for p in store.manifest["patient_id"]], dtype=np.int64)
        rows = np.arange(len(view.record_ids))
        if name == "pretrain":
            optimiser = torch.optim.AdamW(objective.parameters(), lr=1e-3)
            t = time.perf_counter()
            steps = 0
            plan = pretraining_plan(windows, rows, patients, True, 0, 0, 64, slice(None), objective)
            max_steps = int(os.environ.get("SCALE_MAX_STEPS", "0"))
            for batch in loader(windows, plan, workers=2):
                if max_steps and steps >= max_steps:
                    break
                local = batch["tag"]
                loss = objective({**ecg_inputs(batch, objective), "patient_id": torch.from_numpy(patients[local])}).loss
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                steps += 1
            out.update(epoch_s=time.perf_counter() - t, steps=steps, of_steps=len(rows) // 64,
                       records_per_s=steps * 64 / (time.perf_counter() - t))
        elif name == "embed":
            cache = root.parent / f"{root.name}-embeddings.npy"
            emb = np.lib.format.open_memmap(cache, mode="w+", dtype=np.float32, shape=(len(rows), encoder.embed_dim))
            t = time.perf_counter()
            window_mean(encoder, windows, rows, None, out=emb)
            out.update(embed_s=time.perf_counter() - t, records_per_s=len(rows) / (time.perf_counter() - t))
            del emb
            cache.unlink()
        elif name == "loader":
            batches = 200
            plan = list(pretraining_plan(windows, rows, patients, True, 0, 1, 64, slice(None), objective))[:batches]
            t = time.perf_counter()
            for _ in loader(windows, plan, workers=2):
                pass
            out["loader_records_per_s"] = batches * 64 / (time.perf_counter() - t)
            optimiser = torch.optim.AdamW(objective.parameters(), lr=1e-3)
            cut = [windows.take(c) for c in plan[:10]]  # cut beforehand: the model alone
            t = time.perf_counter()
            for batch in cut:
                loss = objective({**ecg_inputs(batch, objective),
                                  "patient_id": torch.from_numpy(patients[batch["tag"]])}).loss
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
            out["model_records_per_s"] = len(cut) * 64 / (time.perf_counter() - t)
            out["loader_x_model"] = out["loader_records_per_s"] / out["model_records_per_s"]
    stop.set()
    sampler.join()
    out.update({k: round(v / 1024, 1) for k, v in {"peak_anon_mb": peaks.get("anon_kb", 0),
                                                    "peak_file_mb": peaks.get("file_kb", 0),
                                                    "peak_loader_workers_anon_mb": peaks.get("workers_anon_kb", 0)
                                                    }.items()})
    out["wall_s"] = time.perf_counter() - started
    return out


def manifest_benchmark(workdir: Path, rows: int) -> dict:
    """Opening (and ``data info`` on) a store whose compacted manifest has ``rows`` rows (no sample files: the
    manifest is what opening reads)."""
    import pandas as pd

    from stence_bench.data.store import (
        COMPACTED,
        MANIFEST_COLUMNS,
        PART_COLUMNS,
        SHARD_DIR,
        compact,
        create_store,
        new_store_info,
    )

    root = workdir / f"manifest-{rows}"
    if not (root / SHARD_DIR / COMPACTED).is_file():
        source = workdir / "manifest-source"
        source.mkdir(parents=True, exist_ok=True)
        create_store(root, new_store_info("wfdb", source, {}))
        i = np.arange(rows)
        frame = pd.DataFrame({
            "status": "ok", "record_id": [f"r{k:07d}" for k in i], "patient_id": [f"p{k // 3:07d}" for k in i],
            "time": "", "fs": "100.0", "leads": "I,II,III,aVR,aVL,aVF,V1,V2,V3,V4,V5,V6", "n_leads": "12",
            "n_samples": "1000", "encoding": "i16", "baseline": ",".join(["0.0"] * 12),
            "gain": ",".join(["1000.0"] * 12), "shard": (i // 2048).astype(str), "offset": ((i % 2048) * 12000).astype(str),
            "source": [f"r{k}.hea" for k in i], "files": [f"r{k}.hea;r{k}.dat" for k in i], "fingerprint": "1:1",
            "checksum": [f"{k:016x}" for k in i], "meta": "", "file": "", "what": "", "why": "",
        })[PART_COLUMNS]
        assert set(MANIFEST_COLUMNS) <= set(frame.columns)
        frame.to_parquet(root / SHARD_DIR / COMPACTED, index=False)
        compact(root)  # as an ingest leaves it: numbers typed
    out = json.loads(subprocess.run([sys.executable, __file__, "--stage", "open", "--root", str(root)],
                                    capture_output=True, text=True, check=True).stdout.splitlines()[-1])
    out["manifest_rows"] = rows
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="*", default=[])
    parser.add_argument("--manifest-rows", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/stence-scale"))
    parser.add_argument("--stages", nargs="*", default=["open", "view", "pretrain", "embed", "loader"])
    parser.add_argument("--max-steps", type=int, default=0,
                        help="stop the pretraining epoch after this many steps (0: the whole epoch)")
    parser.add_argument("--stage", help=argparse.SUPPRESS)
    parser.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stage:  # one stage, in this fresh process
        print(json.dumps(stage(args.stage, args.root)))
        return
    args.workdir.mkdir(parents=True, exist_ok=True)
    results = []
    for n in args.sizes:
        root = args.workdir / f"store-{n}"
        t = time.perf_counter()
        build_store(root, n)
        print(json.dumps({"records": n, "store_built_s": round(time.perf_counter() - t, 1)}), flush=True)
        for name in args.stages:
            proc = subprocess.run([sys.executable, __file__, "--stage", name, "--root", str(root)],
                                  capture_output=True, text=True,
                                  env={**os.environ, "SCALE_MAX_STEPS": str(args.max_steps)})
            if proc.returncode:
                raise SystemExit(f"stage {name} at {n} records failed:\n{proc.stderr[-3000:]}")
            result = {"records": n, **json.loads(proc.stdout.splitlines()[-1])}
            results.append(result)
            print(json.dumps(result), flush=True)
    if args.manifest_rows:
        result = manifest_benchmark(args.workdir, args.manifest_rows)
        results.append(result)
        print(json.dumps(result), flush=True)
    if results:
        print("\n| records | stage | wall s | peak anon MB | peak file MB | loader workers anon MB | other |")
        print("|---|---|---|---|---|---|---|")
        for r in results:
            other = {k: (round(v, 2) if isinstance(v, float) else v) for k, v in r.items()
                     if k not in ("records", "stage", "wall_s", "peak_anon_mb", "peak_file_mb",
                                  "peak_loader_workers_anon_mb", "manifest_rows", "data_info_first_line")}
            print(f"| {r.get('manifest_rows', r.get('records'))} | {r['stage']} | {r['wall_s']:.1f} | "
                  f"{r['peak_anon_mb']} | {r['peak_file_mb']} | {r['peak_loader_workers_anon_mb']} | "
                  f"{json.dumps(other)} |")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
