"""Pretraining throughput on a GPU: samples/s of the encoders' ``base`` presets, fp32 vs bf16, loader-bound or not.

    python benchmarks/gpu.py                                   # every built-in encoder family, base preset, CUDA
    python benchmarks/gpu.py --device cpu --preset tiny --steps 3 --batch 8   # a smoke run (the test does this)

For each encoder (``--encoders``) and precision (fp32, and bf16 autocast where the GPU supports it) the script
pretrains with ``patient_contrastive`` (VCG on) exactly as the runner does (``pretraining_plan`` + ``loader`` +
the objective, AdamW) on noise records four windows long, in the encoder's own contract, and reports:

- ``samples_per_s``: records per second through the whole step (loader, forward, backward, optimiser), after
  ``--warmup`` steps;
- ``model_samples_per_s``: the same steps on batches cut beforehand: the model alone;
- ``loader_samples_per_s``: the loader alone (``--loader-workers`` processes);
- ``loader_bound``: whether the whole step is more than 10 % slower than the model alone;
- ``gpu_utilisation``: mean of ``torch.cuda.utilization()`` sampled every 0.1 s (needs pynvml; ``null`` without),
  and ``peak_memory_gb`` (``torch.cuda.max_memory_allocated``).

With more than one GPU and outside torchrun, it runs the first encoder again under
``torchrun --nproc_per_node N`` (DDP, global batch ``--batch`` x N, as the runner scales) and reports the speed-up.
One invocation takes a few minutes on one GPU. Results are JSON lines, then a Markdown table (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ENCODERS = ("resnet1d_wang", "xresnet1d50", "ecg_transformer", "temporalnet")


def measure(encoder_name: str, preset: str, precision: str, args: argparse.Namespace) -> dict:
    import torch

    from stence_bench.data.windows import Windows, loader
    from stence_bench.protocol import distributed
    from stence_bench.protocol.pretrain import ecg_inputs, pretraining_plan
    from stence_bench.registry import Registry

    ctx = distributed.current()
    device = ctx.device
    registry = Registry.load(environ={"STENCE_BENCH_DISABLE_PLUGIN_AUTOLOAD": "1"})
    spec = registry.encoders.get(encoder_name).model_copy(update={"normalization": "zscore_record"})
    rng = np.random.default_rng(0)
    per_rank = args.batch
    n_records = per_rank * ctx.world * (args.steps + args.warmup + 1)
    length = spec.n_samples * 4
    records = [rng.normal(size=(len(spec.leads), length)).astype(np.float32) for _ in range(min(n_records, 512))]
    windows = Windows(spec, [f"r{i}" for i in range(n_records)], lambda i: records[i % len(records)],
                      np.full(n_records, length))
    torch.manual_seed(0)
    encoder = spec.build(preset)
    objective = registry.objectives.get("patient_contrastive").build(encoder, leads=spec.leads, vcg=True).to(device)
    model = ctx.wrap(objective)
    optimiser = torch.optim.AdamW(objective.parameters(), lr=1e-4)
    patients = np.arange(n_records) // 2
    global_batch = per_rank * ctx.world
    mine = ctx.part(global_batch)
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if precision == "bf16" and device.type == "cuda"
                else torch.autocast(device.type, enabled=False))

    def step(batch: dict) -> None:
        local = batch["tag"][mine]
        inputs = ecg_inputs(batch, objective)
        inputs = {k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v) for k, v in inputs.items()}
        with autocast:
            loss = model({**inputs, "patient_id": torch.from_numpy(patients[local]).to(device)}).loss
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    def plan() -> list:
        rows = np.arange(n_records)
        return list(pretraining_plan(windows, rows, patients, False, 0, 0, global_batch, mine, objective))

    cuts = plan()[: args.warmup + args.steps]
    utilisation: list[float] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            try:
                utilisation.append(float(torch.cuda.utilization(device)))
            except Exception:  # noqa: BLE001 - no pynvml: utilisation unknown
                return
            stop.wait(0.1)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        threading.Thread(target=sample, daemon=True).start()
    batches = iter(loader(windows, cuts, device=device, workers=args.loader_workers))
    for _ in range(args.warmup):
        step(next(batches))
    sync()
    t = time.perf_counter()
    for batch in batches:
        step(batch)
    sync()
    whole = time.perf_counter() - t
    stop.set()
    ready = [windows.take(c) for c in cuts[args.warmup :]]
    if device.type == "cuda":
        ready = [{**b, "x": b["x"].pin_memory()} for b in ready]
    sync()
    t = time.perf_counter()
    for batch in ready:
        step(batch)
    sync()
    model_only = time.perf_counter() - t
    t = time.perf_counter()
    for _ in loader(windows, cuts, device=device, workers=args.loader_workers):
        pass
    loader_only = time.perf_counter() - t
    samples = args.steps * global_batch
    return {
        "encoder": encoder_name, "preset": preset, "precision": precision, "device": ctx.describe(),
        "processes": ctx.world, "global_batch": global_batch, "steps": args.steps,
        "samples_per_s": samples / whole, "model_samples_per_s": samples / model_only,
        "loader_samples_per_s": (samples + args.warmup * global_batch) / loader_only,
        "loader_bound": whole > 1.1 * model_only,
        "gpu_utilisation": float(np.mean(utilisation)) if utilisation else None,
        "peak_memory_gb": (torch.cuda.max_memory_allocated(device) / 2**30) if device.type == "cuda" else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu")
    parser.add_argument("--encoders", default=",".join(ENCODERS))
    parser.add_argument("--preset", default="base")
    parser.add_argument("--batch", type=int, default=256, help="records per process and step")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--loader-workers", type=int, default=4)
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--no-ddp", action="store_true", help="skip the torchrun run on several GPUs")
    args = parser.parse_args()

    import torch

    from stence_bench.errors import StenceBenchError
    from stence_bench.protocol import distributed

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("benchmarks/gpu.py: no CUDA device here; run it on a GPU machine, or with --device cpu")
    try:
        ctx = distributed.setup({**os.environ, distributed.ENV_DEVICE: args.device})
    except StenceBenchError as exc:
        raise SystemExit(f"benchmarks/gpu.py: {exc}") from None
    precisions = [p for p in args.precisions.split(",") if p == "fp32" or (
        p == "bf16" and ctx.device.type == "cuda" and torch.cuda.is_bf16_supported())]
    results = []
    for name in args.encoders.split(","):
        for precision in precisions:
            result = measure(name, args.preset, precision, args)
            results.append(result)
            if ctx.main:
                print(json.dumps(result), flush=True)
    distributed.teardown()
    n_gpus = torch.cuda.device_count() if ctx.device.type == "cuda" else 0
    if ctx.main and not ctx.distributed and n_gpus > 1 and not args.no_ddp and shutil.which("torchrun"):
        first = args.encoders.split(",")[0]
        out = subprocess.run(["torchrun", "--standalone", f"--nproc_per_node={n_gpus}", __file__, "--device", "cuda",
                              "--encoders", first, "--preset", args.preset, "--batch", str(args.batch),
                              "--steps", str(args.steps), "--precisions", precisions[-1], "--no-ddp"],
                             capture_output=True, text=True, check=True)
        ddp = json.loads(out.stdout.strip().splitlines()[-1])
        single = next(r for r in results if r["encoder"] == first and r["precision"] == precisions[-1])
        ddp["speed_up"] = ddp["samples_per_s"] / single["samples_per_s"]
        results.append(ddp)
        print(json.dumps(ddp), flush=True)
    if ctx.main:
        print("\n| encoder | precision | processes | samples/s | model alone | loader alone | loader-bound | GPU util % | peak GB |")
        print("|---|---|---|---|---|---|---|---|---|")
        for r in results:
            util = "-" if r["gpu_utilisation"] is None else f"{r['gpu_utilisation']:.0f}"
            mem = "-" if r["peak_memory_gb"] is None else f"{r['peak_memory_gb']:.1f}"
            print(f"| {r['encoder']}[{r['preset']}] | {r['precision']} | {r['processes']} | {r['samples_per_s']:.0f} | "
                  f"{r['model_samples_per_s']:.0f} | {r['loader_samples_per_s']:.0f} | {r['loader_bound']} | {util} | "
                  f"{mem} |")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
