"""Partial finetuning: the last blocks only, or a learning rate that decays towards the input.

An encoder says what its blocks are with an optional method ``finetuning_blocks()``: the blocks from input to
output, each an ``nn.Module`` or a list of modules and parameters, every parameter in exactly one block (the stem
with its embeddings first, a final norm with the last block). ``protocol.finetune`` then reads:

- ``train_blocks = k``: the last ``k`` blocks and the head are trained; the earlier blocks are frozen: no gradient,
  and kept in eval mode (their batch-norm statistics and dropout do not move);
- ``layer_decay = d``: block ``i`` of ``n`` learns at ``lr * d ** (n - i)``, the head at ``lr`` (as BEiT and MAE
  finetune a ViT).

Both are protocol settings, so they are in every finetuning cell's key.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..errors import StenceBenchError


def uses_partial_finetuning(settings: Any) -> bool:
    """Whether ``protocol.finetune`` asks for anything but the whole network at one learning rate."""
    return settings.train_blocks is not None or settings.layer_decay is not None


def encoder_blocks(encoder: nn.Module, name: str = "encoder") -> list[list[nn.Parameter]]:
    """The parameters of each of the encoder's ``finetuning_blocks()``, input to output; every parameter of the
    encoder in exactly one block, or a :class:`StenceBenchError` naming the encoder and what is wrong."""
    method = getattr(encoder, "finetuning_blocks", None)
    if not callable(method):
        raise StenceBenchError(f"encoder {name!r} does not say what its blocks are (a finetuning_blocks() method); "
                               "train_blocks and layer_decay need them")
    blocks: list[list[nn.Parameter]] = []
    for item in method():
        parts = [item] if isinstance(item, nn.Module | nn.Parameter) else list(item)
        params: list[nn.Parameter] = []
        for part in parts:
            params += list(part.parameters()) if isinstance(part, nn.Module) else [part]
        blocks.append(params)
    owner: dict[int, int] = {}
    for i, params in enumerate(blocks):
        for p in params:
            if id(p) in owner and owner[id(p)] != i:
                raise StenceBenchError(f"encoder {name!r}: finetuning_blocks() puts a parameter in blocks {owner[id(p)]} "
                                       f"and {i}")
            owner[id(p)] = i
    left_out = [n for n, p in encoder.named_parameters() if id(p) not in owner]
    if left_out:
        raise StenceBenchError(f"encoder {name!r}: finetuning_blocks() leaves out {len(left_out)} parameter(s), first "
                               f"{left_out[0]!r}: every parameter belongs to one block")
    if not blocks:
        raise StenceBenchError(f"encoder {name!r}: finetuning_blocks() gives no block")
    return [list({id(p): p for p in params}.values()) for params in blocks]


def _block_modules(encoder: nn.Module) -> list[list[nn.Module]]:
    out = []
    for item in encoder.finetuning_blocks():  # type: ignore[operator]  # the encoder's own method
        parts = [item] if isinstance(item, nn.Module | nn.Parameter) else list(item)
        out.append([part for part in parts if isinstance(part, nn.Module)])
    return out


def pin_eval(module: nn.Module) -> None:
    """Keep ``module`` (and its children) in eval mode whatever ``train()`` its parents are put in."""

    def train(mode: bool = True) -> nn.Module:
        return nn.Module.train(module, False)

    module.train = train  # type: ignore[method-assign]
    module.eval()


def finetuning_parameters(encoder: nn.Module, head: nn.Module, settings: Any, lr: float,
                          name: str = "encoder") -> list[dict[str, Any]]:
    """The optimiser's parameter groups for finetuning ``encoder`` with ``head`` under ``protocol.finetune``
    ``settings``: everything at ``lr`` by default; with partial finetuning the frozen blocks are left out (and
    frozen, :func:`pin_eval`) and each trained block gets its decayed learning rate. Call before wrapping the
    model for DDP."""
    if not uses_partial_finetuning(settings):
        return [{"params": [*encoder.parameters(), *head.parameters()], "lr": lr}]
    blocks = encoder_blocks(encoder, name)
    n = len(blocks)
    k = n if settings.train_blocks is None else settings.train_blocks
    if k > n:
        raise StenceBenchError(f"protocol.finetune.train_blocks = {k}, but encoder {name!r} has {n} blocks")
    modules = _block_modules(encoder)
    groups: list[dict[str, Any]] = []
    for i, params in enumerate(blocks):
        if i < n - k:
            for p in params:
                p.requires_grad_(False)
            for module in modules[i]:
                pin_eval(module)
            continue
        scale = 1.0 if settings.layer_decay is None else settings.layer_decay ** (n - i)
        groups.append({"params": params, "lr": lr * scale})
    groups.append({"params": list(head.parameters()), "lr": lr})
    return [g for g in groups if g["params"]]


def trainable_count(groups: list[dict[str, Any]]) -> int:
    """How many weights the groups train (a result records it)."""
    return int(sum(p.numel() for g in groups for p in g["params"] if isinstance(p, torch.Tensor)))
