"""Contrastive objectives under torch.distributed: two gloo processes holding half a batch each compute the same
loss as one process holding all of it, and (averaged as DDP does) the same gradients."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from conftest import BUILTINS_ONLY

from stence_bench.protocol import distributed
from stence_bench.registry import Registry

BATCH = 8


def _objective(name: str):
    registry = Registry.load(environ=BUILTINS_ONLY)
    spec = registry.encoders.get("ecg_transformer")  # layer norm only: no batch statistics to differ by rank
    torch.manual_seed(0)
    encoder = spec.build("tiny")
    if name == "clip":
        obj = registry.objectives.get(name)
        angio = registry.modalities.get("angio_embedding").build(input_dim=16)
        objective = obj.build(encoder, leads=spec.leads, modality_encoders={"angiography": angio},
                              learn_temperature=False)
    elif name == "metric_learning":  # Jeong et al.'s miner draws each anchor's negative at random
        objective = registry.objectives.get(name).build(encoder, leads=spec.leads)
    else:  # clef (the released loss, or variant cross_view) without random views, so both processes see the same
        variant = name.partition(":")[2] or "published"
        objective = registry.objectives.get("clef").build(encoder, leads=spec.leads, noise_std=0.0,
                                                          single_lead_views=False, variant=variant)
    return objective, spec


def _batch(spec, start: int, stop: int) -> dict:
    generator = torch.Generator().manual_seed(1)
    full = {
        "ecg": torch.randn(BATCH, len(spec.leads), spec.n_samples, generator=generator),
        "angiography": torch.randn(BATCH, 16, generator=generator),
        "metadata": torch.where(torch.rand(BATCH, 5, generator=generator) < 0.3, float("nan"), 1.0),
        "risk": torch.rand(BATCH, generator=generator),
    }
    return {k: v[start:stop] for k, v in full.items()}


def _gradients(objective) -> dict[str, torch.Tensor]:
    return {n: p.grad.detach().clone() for n, p in objective.named_parameters() if p.grad is not None}


def _worker(rank: int, world: int, store: str, name: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        objective, spec = _objective(name)
        torch.manual_seed(100 + rank)  # ranks draw differently: a random miner must follow rank 0's draws
        half = BATCH // world
        loss = objective(_batch(spec, rank * half, (rank + 1) * half)).loss
        loss.backward()
        grads = _gradients(objective)
        for g in grads.values():  # what DDP does: average over ranks
            dist.all_reduce(g)
            g /= world
        if rank == 0:  # a file, not a queue: a full pipe would block while the parent waits to join
            torch.save({"loss": float(loss.detach()), "grads": grads}, out)
        # the graph of the loss holds the process group: free it before leaving the group, or gloo's threads
        # may still be alive at interpreter exit (an abort about one time in ten)
        del loss, objective, grads
    finally:
        distributed.teardown()  # as the runner leaves: garbage collected, a barrier, then the group destroyed


@pytest.mark.parametrize("name", ["clip", "clef", "clef:cross_view", "metric_learning"])
def test_two_processes_match_one_process_on_the_same_global_batch(name, tmp_path):
    objective, spec = _objective(name)
    torch.manual_seed(100)
    single = objective(_batch(spec, 0, BATCH)).loss
    single.backward()
    expected = _gradients(objective)

    out = tmp_path / "rank0.pt"
    mp.start_processes(_worker, args=(2, str(tmp_path / "store"), name, str(out)), nprocs=2, join=True,
                       start_method="spawn")
    result = torch.load(out, weights_only=True)
    assert result["loss"] == pytest.approx(float(single.detach()), abs=1e-4)
    assert set(result["grads"]) == set(expected)
    for key, value in result["grads"].items():
        assert torch.allclose(value, expected[key], atol=1e-4), key
