"""ECG Transformer: a ViT-style encoder over lead patches, ``[batch, leads, samples] -> [batch, embed_dim]``.

After the Vision Transformer (Dosovitskiy et al., ICLR 2021), with the tokenisation used by multi-lead ECG
transformers: every lead is cut into non-overlapping patches of ``patch_size`` samples, each patch is embedded
by one linear layer shared by all leads, and the token gets a learned lead embedding (which lead it came from)
plus a position embedding (which patch of the lead: ``position="learned"`` as in ViT, or the fixed sinusoidal
table of Vaswani et al. 2017). The tokens of all leads form one sequence, lead by lead, so attention mixes
time and leads freely: ``n_leads * n_samples / patch_size`` tokens, plus a learned CLS token in front with
``pooling="cls"``. A pre-norm ``torch.nn.TransformerEncoder`` (``norm_first=True``, GELU MLP) and a final
LayerNorm follow; the embedding is the CLS token's output (``pooling="cls"``) or the mean of the lead-patch
tokens (``pooling="mean"``).

The lead-embedding table is sized from ``n_leads``, so the encoder builds for any lead set (lead I alone
included). A learned position table covers ``n_samples // patch_size`` patches: shorter inputs use its first
rows, longer ones are refused; the sinusoidal table takes any length. ``n_samples`` must be a multiple of
``patch_size`` (a ``ValueError`` says so, when building and when called).

The registered contract is 100 Hz, 2.5 s (250 samples; 25-sample, 0.25 s patches: 10 per lead, 120 tokens for
12 leads), the window of the PTB-XL benchmark's convolutional models, so the encoders compare on the same input.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn


def sinusoidal_positions(n_positions: int, dim: int) -> torch.Tensor:
    """The fixed ``[n_positions, dim]`` sine/cosine table of Vaswani et al. (2017)."""
    position = torch.arange(n_positions, dtype=torch.float32)[:, None]
    frequency = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(n_positions, dim)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency[: dim // 2])
    return table


class ECGTransformer(nn.Module):
    """Patch tokens of every lead, a pre-norm transformer encoder, CLS or mean pooling."""

    def __init__(
        self,
        *,
        n_leads: int,
        n_samples: int = 250,
        patch_size: int = 25,
        dim: int = 256,
        depth: int = 8,
        heads: int = 8,
        mlp_ratio: float = 4.0,
        dropout: float = 0.1,
        pooling: str = "cls",
        position: str = "learned",
    ):
        super().__init__()
        if n_leads < 1:
            raise ValueError(f"n_leads must be at least 1, not {n_leads!r}")
        if patch_size < 1 or n_samples < patch_size or n_samples % patch_size:
            raise ValueError(
                f"n_samples ({n_samples}) must be a positive multiple of patch_size ({patch_size}): "
                "the leads are cut into whole, non-overlapping patches"
            )
        if dim % heads:
            raise ValueError(f"dim ({dim}) must be divisible by heads ({heads})")
        if pooling not in ("cls", "mean"):
            raise ValueError(f"pooling must be 'cls' or 'mean', not {pooling!r}")
        if position not in ("learned", "sinusoidal"):
            raise ValueError(f"position must be 'learned' or 'sinusoidal', not {position!r}")
        self.n_leads = n_leads
        self.patch_size = patch_size
        self.n_patches = n_samples // patch_size
        self.pooling = pooling
        self.position = position
        self.embed_dim = dim

        self.patch_embed = nn.Linear(patch_size, dim)
        self.lead_embed = nn.Parameter(torch.empty(n_leads, dim))
        nn.init.trunc_normal_(self.lead_embed, std=0.02)
        self.pos_embed: nn.Parameter | None = None
        if position == "learned":
            self.pos_embed = nn.Parameter(torch.empty(self.n_patches, dim))
            nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.cls_token: nn.Parameter | None = None
        if pooling == "cls":  # only then: an unused parameter would get no gradient (DDP refuses that)
            self.cls_token = nn.Parameter(torch.empty(1, 1, dim))
            nn.init.trunc_normal_(self.cls_token, std=0.02)
        self.dropout = nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(
            dim,
            heads,
            dim_feedforward=round(dim * mlp_ratio),
            dropout=dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, depth, norm=nn.LayerNorm(dim), enable_nested_tensor=False)

    def finetuning_blocks(self) -> list[list[nn.Module | nn.Parameter]]:
        """Input to output (partial finetuning): the patch, lead, position and CLS embeddings, then each encoder
        layer (the final LayerNorm with the last)."""
        stem: list[nn.Module | nn.Parameter] = [self.patch_embed, self.lead_embed]
        stem += [p for p in (self.pos_embed, self.cls_token) if p is not None]
        layers: list[list[nn.Module | nn.Parameter]] = [[layer] for layer in self.encoder.layers]
        layers[-1].append(self.encoder.norm)
        return [stem, *layers]

    def n_tokens(self, n_samples: int) -> int:
        """The sequence length for inputs of ``n_samples`` samples (CLS included)."""
        return self.n_leads * (n_samples // self.patch_size) + (1 if self.cls_token is not None else 0)

    def _positions(self, n_patches: int, like: torch.Tensor) -> torch.Tensor:
        if self.pos_embed is not None:
            if n_patches > self.n_patches:
                raise ValueError(
                    f"input has {n_patches} patches per lead, the learned position table only {self.n_patches}; "
                    "build with a larger n_samples or position='sinusoidal'"
                )
            return self.pos_embed[:n_patches]
        # on like's device; never below float32 (under bf16 autocast like is bf16 and would round the table)
        table = sinusoidal_positions(n_patches, self.embed_dim)
        return table.to(device=like.device, dtype=torch.promote_types(like.dtype, table.dtype))

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """The input sequence of the transformer, ``[batch, n_tokens, dim]``: CLS first, then lead by lead."""
        if x.ndim != 3 or x.shape[1] != self.n_leads:
            raise ValueError(f"expected input [batch, {self.n_leads} leads, samples], got {tuple(x.shape)}")
        batch, n_leads, n_samples = x.shape
        if n_samples % self.patch_size:
            raise ValueError(
                f"n_samples ({n_samples}) is not divisible by patch_size ({self.patch_size}): "
                "crop or pad the input to a whole number of patches"
            )
        n_patches = n_samples // self.patch_size
        h = self.patch_embed(x.reshape(batch, n_leads, n_patches, self.patch_size))
        h = h + self.lead_embed[None, :, None, :] + self._positions(n_patches, h)[None, None]
        h = h.reshape(batch, n_leads * n_patches, self.embed_dim)
        if self.cls_token is not None:
            h = torch.cat([self.cls_token.expand(batch, -1, -1), h], dim=1)
        return h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.encoder(self.dropout(self.tokens(x)))
        if self.cls_token is not None:
            return h[:, 0]
        return h.mean(dim=1)


def ecg_transformer(*, n_leads: int, **options: Any) -> ECGTransformer:
    return ECGTransformer(n_leads=n_leads, **options)
