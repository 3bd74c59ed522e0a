"""Processes and devices: one process on CPU or a GPU, or many under ``torchrun`` (DistributedDataParallel).

``torchrun`` sets ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK`` (so do SLURM jobs launched through submitit, see
:mod:`stence_bench.protocol.slurm`); :func:`setup` joins the process group they describe: ``nccl`` when the
process has a GPU, ``gloo`` on CPU. Every rank runs the same plan; pretraining and finetuning cells run on all
ranks at once (DDP), the other cells (linear probes, zero-shot) on rank 0 alone, and rank 0 alone writes
checkpoints, logs and results.

Batches: every rank draws the same global order from the cell's seed and takes its contiguous slice of each
global batch (:meth:`Context.part`), so a gathered contrastive loss sees the same negatives whatever the
number of processes, and ``protocol.pretrain.batch_size`` is the global batch.
"""

from __future__ import annotations

import contextlib
import datetime
import gc
import os
import platform
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..errors import StenceBenchError

#: Environment variable naming the device of a single-process run: ``auto`` (a GPU when there is one), ``cpu``,
#: ``cuda`` or ``cuda:N``. Under torchrun each rank takes ``cuda:LOCAL_RANK`` when GPUs are visible.
ENV_DEVICE = "STENCE_BENCH_DEVICE"


@dataclass(frozen=True)
class Context:
    """Where this process stands: its rank among ``world`` processes and its device."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def distributed(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        """Rank 0: the one process that writes files and prints."""
        return self.rank == 0

    @property
    def backend(self) -> str | None:
        if not self.distributed:
            return None
        return "nccl" if self.device.type == "cuda" else "gloo"

    @property
    def precision(self) -> str:
        """``bf16`` autocast on GPUs that support it, ``fp32`` otherwise."""
        if self.device.type == "cuda" and torch.cuda.is_bf16_supported():
            return "bf16"
        return "fp32"

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """bf16 autocast on a GPU; nothing on CPU (its results stay bit-comparable with other runs)."""
        if self.precision == "bf16":
            return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def part(self, n: int) -> slice:
        """This rank's contiguous part of ``n`` items (equal parts when ``world`` divides ``n``, else they differ
        by one)."""
        bounds = np.linspace(0, n, self.world + 1).round().astype(int)
        return slice(int(bounds[self.rank]), int(bounds[self.rank + 1]))

    def barrier(self) -> None:
        if self.distributed:
            torch.distributed.barrier()

    def broadcast(self, value: Any) -> Any:
        """Rank 0's ``value`` on every rank (any picklable object)."""
        if not self.distributed:
            return value
        box = [value]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def sum(self, *values: float) -> list[float]:
        """Each value summed over ranks (float64)."""
        if not self.distributed:
            return list(values)
        tensor = torch.tensor(values, dtype=torch.float64, device=self.device)
        torch.distributed.all_reduce(tensor)
        return tensor.tolist()

    def wrap(self, module: torch.nn.Module) -> torch.nn.Module:
        """``module`` in DistributedDataParallel under torchrun (rank 0's parameters broadcast to all); itself on
        one process. ``find_unused_parameters``: an objective may leave parameters out of a step (a paired
        encoder, an auxiliary head); the extra graph traversal is cheap next to the step. (``static_graph`` is not
        an option: with a gathered loss it desynchronises the ranks after the first step, as
        tests/test_distributed_runs.py shows.)"""
        if not self.distributed:
            return module
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=ids, find_unused_parameters=True)

    def describe(self) -> str:
        """What a result records as its ``device``: e.g. ``cuda:0 (NVIDIA H100 80GB HBM3), bf16, torch 2.13.0,
        8 processes (nccl)`` or ``cpu (x86_64, 2 cores), fp32, torch 2.13.0``."""
        if self.device.type == "cuda":
            where = f"{self.device} ({torch.cuda.get_device_name(self.device)})"
        else:
            where = f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"
        text = f"{where}, {self.precision}, torch {torch.__version__}"
        return f"{text}, {self.world} processes ({self.backend})" if self.distributed else text


_CURRENT = Context()


def current() -> Context:
    """The context of this process (one CPU or GPU process until :func:`setup` joins a process group)."""
    return _CURRENT


def _device(spec: str, local_rank: int, distributed: bool, given: str | None = None) -> torch.device:
    """The device ``spec`` names; ``given`` is how the user gave it, for messages (default: the variable)."""
    spec = spec.strip().lower() or "auto"
    given = given or f"{ENV_DEVICE}={spec!r}"
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(spec)
    except RuntimeError as exc:
        raise StenceBenchError(f"{given}: not a device (auto, cpu, cuda or cuda:N)") from exc
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise StenceBenchError(f"{given}: no GPU is visible to this process")
        if device.index is None:
            device = torch.device("cuda", local_rank if distributed else torch.cuda.current_device())
        torch.cuda.set_device(device)
    elif device.type != "cpu":
        raise StenceBenchError(f"{given}: stence-bench runs on cpu or cuda")
    return device


def setup(environ: dict[str, str] | None = None, *, device: str | None = None) -> Context:
    """Join the process group torchrun (or a SLURM job) describes, if any, and choose this process's device:
    ``device`` (the command line's ``--device``), else ``STENCE_BENCH_DEVICE``, else ``auto``. Idempotent;
    :func:`teardown` leaves the group."""
    global _CURRENT
    environ = dict(os.environ) if environ is None else environ
    world = int(environ.get("WORLD_SIZE", "1") or 1)
    rank = int(environ.get("RANK", "0") or 0)
    local_rank = int(environ.get("LOCAL_RANK", "0") or 0)
    if device is not None:
        chosen = _device(device, local_rank, world > 1, given=f"--device {device}")
    else:
        chosen = _device(environ.get(ENV_DEVICE, "auto"), local_rank, world > 1)
    context = Context(rank=rank, world=world, local_rank=local_rank, device=chosen)
    if context.distributed and not torch.distributed.is_initialized():
        if "MASTER_ADDR" not in environ:
            raise StenceBenchError("WORLD_SIZE is set but MASTER_ADDR is not: launch with torchrun "
                                   "(torchrun --nproc_per_node N -m stence_bench run SUITE)")
        # one timeout for every collective: rank 0 runs the probes alone while the others wait at a barrier
        torch.distributed.init_process_group(context.backend, rank=rank, world_size=world,
                                             timeout=datetime.timedelta(hours=6))
    _CURRENT = context
    return context


def teardown() -> None:
    global _CURRENT
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        # a DDP wrapper or an autograd graph still alive holds the group: if gloo's threads outlive
        # destroy_process_group the interpreter aborts at exit (seen about one time in ten in tests)
        gc.collect()
        torch.distributed.barrier()  # no rank leaves while another still talks to it
        torch.distributed.destroy_process_group()
    _CURRENT = Context(device=_CURRENT.device)


def to_device(value: Any, device: torch.device) -> Any:
    """Tensors of a batch (nested in dicts, lists and tuples) moved to ``device``."""
    if isinstance(value, torch.Tensor):
        return value.to(device, non_blocking=True)
    if isinstance(value, dict):
        return {k: to_device(v, device) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(to_device(v, device) for v in value)
    return value
