"""ST-MEM's encoder: a ViT over per-lead patches with lead and separator embeddings, as released.

Written from the architecture of the public code (github.com/bakqui/ST-MEM, ``models/encoder/st_mem_vit.py``;
CC BY-NC 4.0) and the paper (Na et al., ICLR 2024), so that the released encoder checkpoint (``encoder.pth``: a
``model`` entry holding the encoder's tensors) loads under its own names:

- ``to_patch_embedding``: each lead cut into patches of ``patch_size`` samples (75 at 250 Hz: 0.3 s), then
  LayerNorm over the patch, a linear layer to ``width`` and LayerNorm (modules 1, 2, 3 of the release's Sequential);
- ``pos_embedding`` ``[1, patches + 2, width]``: patch ``j`` of every lead gets row ``j + 1``; each lead is framed by
  a left and a right separator (``sep_embedding`` plus rows 0 and -1); ``lead_embeddings.<i>`` is added to every
  token of lead ``i``. All leads' tokens form one sequence;
- ``block<i>``: pre-norm transformer blocks: LayerNorm -> multi-head attention (one ``to_qkv`` linear with bias,
  ``heads`` x ``dim_head``, ``to_out.0``) and LayerNorm -> MLP (``net.0``, GELU, ``net.3``), each residual;
- the embedding: the mean of the patch tokens (separators dropped) over leads and time, then ``norm``.

Pretraining initialises ``pos_embedding`` with a fixed sine-cosine table (separator rows zero); the random
initialisation here does the same, and the table is trainable as in the release's downstream encoder.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

#: ViT-B/75 of the release (``st_mem_vit_base``): 2250 samples (9 s at 250 Hz) in 30 patches of 75.
RELEASED = {"seq_len": 2250, "patch_size": 75, "width": 768, "depth": 12, "mlp_dim": 3072, "heads": 12, "dim_head": 64}


def sincos_positions(n_patches: int, width: int) -> torch.Tensor:
    """``[n_patches + 2, width]``: zero separator rows around the sine-cosine table of MAE (sines, then cosines)."""
    omega = 1.0 / 10000 ** (torch.arange(width // 2, dtype=torch.float32) / (width / 2))
    grid = torch.arange(n_patches, dtype=torch.float32)[:, None] * omega[None, :]
    table = torch.cat([grid.sin(), grid.cos()], dim=1)
    return torch.cat([torch.zeros(1, width), table, torch.zeros(1, width)])


class PreNorm(nn.Module):
    def __init__(self, width: int, fn: nn.Module):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(self.norm(x))


class Attention(nn.Module):
    def __init__(self, width: int, heads: int, dim_head: int, qkv_bias: bool, dropout: float):
        super().__init__()
        inner = heads * dim_head
        self.heads, self.dropout = heads, dropout
        self.to_qkv = nn.Linear(width, inner * 3, bias=qkv_bias)
        self.to_out = nn.Sequential(nn.Linear(inner, width), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, _ = x.shape
        q, k, v = (t.reshape(batch, tokens, self.heads, -1).transpose(1, 2) for t in self.to_qkv(x).chunk(3, dim=-1))
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        return self.to_out(out.transpose(1, 2).reshape(batch, tokens, -1))


class FeedForward(nn.Module):
    def __init__(self, width: int, hidden: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, width),
                                 nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Block(nn.Module):
    def __init__(self, width: int, mlp_dim: int, heads: int, dim_head: int, qkv_bias: bool, dropout: float):
        super().__init__()
        self.attn = PreNorm(width, Attention(width, heads, dim_head, qkv_bias, dropout))
        self.ff = PreNorm(width, FeedForward(width, mlp_dim, dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(x)
        return x + self.ff(x)


class PatchEmbedding(nn.Module):
    """Modules 1-3 of the release's ``to_patch_embedding`` (module 0 is its reshape)."""

    def __init__(self, patch_size: int, width: int):
        super().__init__()
        self.patch_size = patch_size
        self.add_module("1", nn.LayerNorm(patch_size))
        self.add_module("2", nn.Linear(patch_size, width))
        self.add_module("3", nn.LayerNorm(width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, leads, samples = x.shape
        h = x.reshape(batch, leads, samples // self.patch_size, self.patch_size)
        for name in ("1", "2", "3"):
            h = self._modules[name](h)
        return h


class STMEM(nn.Module):
    """The ST-MEM ViT encoder: ``[batch, leads, seq_len] -> [batch, width]``."""

    def __init__(self, *, n_leads: int, seq_len: int = 2250, patch_size: int = 75, width: int = 768, depth: int = 12,
                 mlp_dim: int = 3072, heads: int = 12, dim_head: int = 64, qkv_bias: bool = True, dropout: float = 0.0):
        super().__init__()
        if seq_len % patch_size:
            raise ValueError(f"seq_len ({seq_len}) must be a multiple of patch_size ({patch_size})")
        if width % 2:
            raise ValueError(f"width ({width}) must be even (sine-cosine positions)")
        self.n_leads, self.seq_len, self.patch_size, self.depth = n_leads, seq_len, patch_size, depth
        self.n_patches = seq_len // patch_size
        self.to_patch_embedding = PatchEmbedding(patch_size, width)
        self.pos_embedding = nn.Parameter(sincos_positions(self.n_patches, width)[None])
        self.sep_embedding = nn.Parameter(torch.empty(width).normal_(std=0.02))
        self.lead_embeddings = nn.ParameterList(nn.Parameter(torch.empty(width).normal_(std=0.02))
                                                for _ in range(n_leads))
        for i in range(depth):
            self.add_module(f"block{i}", Block(width, mlp_dim, heads, dim_head, qkv_bias, dropout))
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(width)
        self.embed_dim = width
        self.apply(_init)

    def blocks(self) -> list[Block]:
        return [getattr(self, f"block{i}") for i in range(self.depth)]

    def finetuning_blocks(self) -> list[list[nn.Module | nn.Parameter]]:
        """Input to output (partial finetuning): the patch, position, separator and lead embeddings, then each
        transformer block (the final LayerNorm with the last)."""
        stem: list[nn.Module | nn.Parameter] = [self.to_patch_embedding, self.pos_embedding, self.sep_embedding,
                                                self.lead_embeddings]
        blocks: list[list[nn.Module | nn.Parameter]] = [[block] for block in self.blocks()]
        blocks[-1].append(self.norm)
        return [stem, *blocks]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, leads, samples = x.shape
        if leads > len(self.lead_embeddings):
            raise ValueError(f"input has {leads} leads, the encoder {len(self.lead_embeddings)} lead embeddings")
        if samples % self.patch_size or samples > self.seq_len:
            raise ValueError(f"input of {samples} samples: need a multiple of {self.patch_size} up to {self.seq_len}")
        h = self.to_patch_embedding(x)  # [batch, leads, patches, width]
        n = h.shape[2]
        h = h + self.pos_embedding[:, 1 : n + 1][:, None]
        sep = self.sep_embedding[None, None, None, :].expand(batch, leads, 1, -1)
        left = sep + self.pos_embedding[:, :1][:, None]
        right = sep + self.pos_embedding[:, -1:][:, None]
        h = torch.cat([left, h, right], dim=2)
        h = h + torch.stack(list(self.lead_embeddings[:leads]))[None, :, None, :]
        h = self.dropout(h.reshape(batch, leads * (n + 2), -1))
        for block in self.blocks():
            h = block(h)
        h = h.reshape(batch, leads, n + 2, -1)[:, :, 1:-1]
        return self.norm(h.mean(dim=(1, 2)))


def _init(module: nn.Module) -> None:
    """As the release initialises before pretraining: Xavier-uniform linear weights, zero biases, unit LayerNorms."""
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def st_mem(*, n_leads: int, **options: Any) -> STMEM:
    return STMEM(n_leads=n_leads, **options)

