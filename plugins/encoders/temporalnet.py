"""TemporalNet: a dual-stream temporal convolutional encoder, ``[batch, leads, samples] -> [batch, embed_dim]``.

After the TemporalNet of Dade et al. (Heart Rhythm O2, 2026). The 12 leads are split by the plane they view:
the limb (frontal-plane) leads I, II, III, aVR, aVL, aVF, input channels 0-5 of the standard order, and the
precordial (horizontal-plane) leads V1-V6, channels 6-11. Each group goes through its own stream, with its own
parameters:

- a stem convolution (``stem_kernel_size``) from the group's leads to ``width`` channels, batch norm, ReLU;
- ``depth`` temporal blocks: two dilated convolutions (``kernel_size``, dilation ``dilations[i % len]``,
  "same" padding, so non-causal: the encoder sees the whole window at once) each with batch norm, ReLU and
  dropout, wrapped by a residual connection (the TCN block of Bai et al. 2018). The default dilations
  (1, 2, 4, 8) grow the receptive field geometrically: with kernels of 7 and eight blocks it spans 367 samples,
  more than the whole 2.5 s window at 100 Hz;
- global pooling over time: average and max concatenated (``pooling="concat"``, ``2 * width`` features) or
  the average alone (``pooling="avg"``).

The pooled features of the streams are concatenated and fused by a linear layer, LayerNorm and GELU into the
``embed_dim`` embedding. :meth:`TemporalNet.stream_features` returns each stream's pooled features before
fusion.

Lead groups. ``groups`` lists, per stream, the input channels it reads. The default for 12 leads is
``[[0, 1, 2, 3, 4, 5], [6, 7, 8, 9, 10, 11]]`` (limb, precordial). With any other number of leads there is no
limb/precordial split to make, so by default both streams read every lead (for lead I alone, ``n_leads=1``,
each stream is a single-lead TCN; the two differ only by their initialisation). Pass ``groups`` to choose
other splits (any number of streams; a channel may feed several streams).

The registered contract is 100 Hz, 2.5 s (250 samples), the window of the PTB-XL benchmark's convolutional
models, rather than the paper's 500 Hz: every encoder of the benchmark then reads the same view of the data, and
the tiny preset stays fast on a CPU. Input is z-scored with dataset statistics, not per record, so the
amplitude relations between the leads of a stream (R-wave progression, voltage criteria) survive.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

LIMB_CHANNELS: tuple[int, ...] = (0, 1, 2, 3, 4, 5)
PRECORDIAL_CHANNELS: tuple[int, ...] = (6, 7, 8, 9, 10, 11)


def default_groups(n_leads: int) -> list[list[int]]:
    """Limb and precordial channels for 12 leads; otherwise two streams that both read every lead."""
    if n_leads == 12:
        return [list(LIMB_CHANNELS), list(PRECORDIAL_CHANNELS)]
    return [list(range(n_leads)), list(range(n_leads))]


def _conv_bn(in_channels: int, out_channels: int, kernel_size: int, dilation: int = 1) -> list[nn.Module]:
    padding = dilation * (kernel_size - 1) // 2
    return [
        nn.Conv1d(in_channels, out_channels, kernel_size, dilation=dilation, padding=padding, bias=False),
        nn.BatchNorm1d(out_channels),
    ]


class TemporalBlock(nn.Module):
    """Two dilated convolutions with batch norm, ReLU and dropout, and a residual connection."""

    def __init__(self, in_channels: int, channels: int, *, kernel_size: int, dilation: int, dropout: float):
        super().__init__()
        self.branch = nn.Sequential(
            *_conv_bn(in_channels, channels, kernel_size, dilation),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            *_conv_bn(channels, channels, kernel_size, dilation),
        )
        self.shortcut: nn.Module = nn.Identity()
        if in_channels != channels:
            self.shortcut = nn.Sequential(*_conv_bn(in_channels, channels, 1))
        self.out = nn.Sequential(nn.ReLU(inplace=True), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.branch(x) + self.shortcut(x))


class TemporalStream(nn.Module):
    """One stream: selects its channels, a stem, ``depth`` temporal blocks, global pooling."""

    def __init__(
        self,
        channels: Sequence[int],
        *,
        width: int,
        depth: int,
        kernel_size: int,
        stem_kernel_size: int,
        dilations: Sequence[int],
        dropout: float,
        pooling: str,
    ):
        super().__init__()
        self.register_buffer("channels", torch.tensor(list(channels), dtype=torch.long), persistent=False)
        self.stem = nn.Sequential(*_conv_bn(len(channels), width, stem_kernel_size), nn.ReLU(inplace=True))
        self.blocks = nn.Sequential(
            *(
                TemporalBlock(
                    width, width, kernel_size=kernel_size, dilation=dilations[i % len(dilations)], dropout=dropout
                )
                for i in range(depth)
            )
        )
        self.pooling = pooling
        self.out_features = width * (2 if pooling == "concat" else 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.blocks(self.stem(x.index_select(1, self.channels)))
        if self.pooling == "concat":
            return torch.cat([h.mean(dim=-1), h.amax(dim=-1)], dim=1)
        return h.mean(dim=-1)


class TemporalNet(nn.Module):
    """Streams over lead groups, pooled, concatenated and fused to ``embed_dim``."""

    def __init__(
        self,
        *,
        n_leads: int,
        groups: Sequence[Sequence[int]] | None = None,
        width: int = 128,
        depth: int = 8,
        kernel_size: int = 7,
        stem_kernel_size: int = 7,
        dilations: Sequence[int] = (1, 2, 4, 8),
        dropout: float = 0.1,
        pooling: str = "concat",
        embed_dim: int = 256,
    ):
        super().__init__()
        groups = default_groups(n_leads) if groups is None else [list(g) for g in groups]
        if not groups or any(not g for g in groups):
            raise ValueError(f"groups must be a non-empty list of non-empty channel lists, got {groups!r}")
        bad = sorted({c for g in groups for c in g if not 0 <= c < n_leads})
        if bad:
            raise ValueError(f"groups name channels {bad} outside 0..{n_leads - 1} (n_leads={n_leads})")
        if kernel_size % 2 == 0 or stem_kernel_size % 2 == 0:
            raise ValueError(
                f"kernel sizes must be odd, got kernel_size={kernel_size}, stem_kernel_size={stem_kernel_size}"
            )
        if not dilations or any(d < 1 for d in dilations):
            raise ValueError(f"dilations must be positive integers, got {tuple(dilations)!r}")
        if depth < 1 or width < 1:
            raise ValueError(f"depth and width must be positive, got depth={depth}, width={width}")
        if pooling not in ("avg", "concat"):
            raise ValueError(f"pooling must be 'avg' or 'concat', not {pooling!r}")
        self.groups = groups
        self.streams = nn.ModuleList(
            TemporalStream(
                g,
                width=width,
                depth=depth,
                kernel_size=kernel_size,
                stem_kernel_size=stem_kernel_size,
                dilations=dilations,
                dropout=dropout,
                pooling=pooling,
            )
            for g in groups
        )
        fused = sum(s.out_features for s in self.streams)
        self.fusion = nn.Sequential(nn.Linear(fused, embed_dim), nn.LayerNorm(embed_dim), nn.GELU())
        self.embed_dim = embed_dim

    def finetuning_blocks(self) -> list[list[nn.Module]]:
        """Input to output (partial finetuning): the streams' stems, then their ``i``-th blocks side by side, then
        the fusion."""
        depth = len(self.streams[0].blocks)
        return [[s.stem for s in self.streams], *([s.blocks[i] for s in self.streams] for i in range(depth)),
                [self.fusion]]

    def stream_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Each stream's pooled features ``[batch, out_features]``, before fusion."""
        return [stream(x) for stream in self.streams]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fusion(torch.cat(self.stream_features(x), dim=1))


def temporalnet(*, n_leads: int, **options: Any) -> TemporalNet:
    return TemporalNet(n_leads=n_leads, **options)
