"""ResNet1D encoders: residual 1-D convolutional networks over ``[batch, leads, samples]``.

``resnet1d_wang`` follows the PTB-XL benchmark's ``resnet1d_wang`` (Wang et al. 2017; Strodthoff et al. 2021):
a stride-1 stem of kernel 7, three basic blocks of kernels (5, 3) at a fixed width, the last two downsampling,
and concat pooling (average and max). ``resnet1d18`` is ResNet-18 in 1-D: a stride-2 stem with max pooling,
four stages of two basic blocks (kernel 3) doubling the width, and average pooling.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class BasicBlock1d(nn.Module):
    """Two convolutions with batch norm and a residual connection (projected when the shape changes)."""

    def __init__(self, in_channels: int, channels: int, stride: int, kernel_sizes: Sequence[int]):
        super().__init__()
        k1, k2 = kernel_sizes
        self.conv1 = nn.Conv1d(in_channels, channels, k1, stride=stride, padding=k1 // 2, bias=False)
        self.bn1 = nn.BatchNorm1d(channels)
        self.conv2 = nn.Conv1d(channels, channels, k2, padding=k2 // 2, bias=False)
        self.bn2 = nn.BatchNorm1d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != channels:
            self.shortcut = nn.Sequential(
                nn.Conv1d(in_channels, channels, 1, stride=stride, bias=False), nn.BatchNorm1d(channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class ResNet1d(nn.Module):
    """A 1-D ResNet encoder; ``forward`` returns ``[batch, embed_dim]``."""

    def __init__(
        self,
        *,
        n_leads: int,
        widths: Sequence[int],
        blocks: Sequence[int],
        kernel_sizes: Sequence[int] = (3, 3),
        stem_kernel: int = 7,
        stem_stride: int = 2,
        stem_pool: bool = True,
        pooling: str = "avg",
    ):
        super().__init__()
        if len(widths) != len(blocks):
            raise ValueError(f"widths {tuple(widths)} and blocks {tuple(blocks)} must have the same length")
        if pooling not in ("avg", "concat"):
            raise ValueError(f"pooling must be 'avg' or 'concat', not {pooling!r}")
        stem: list[nn.Module] = [
            nn.Conv1d(n_leads, widths[0], stem_kernel, stride=stem_stride, padding=stem_kernel // 2, bias=False),
            nn.BatchNorm1d(widths[0]),
            nn.ReLU(inplace=True),
        ]
        if stem_pool:
            stem.append(nn.MaxPool1d(3, stride=2, padding=1))
        self.stem = nn.Sequential(*stem)
        layers: list[nn.Module] = []
        in_channels = widths[0]
        for stage, (width, n_blocks) in enumerate(zip(widths, blocks)):
            for i in range(n_blocks):
                stride = 2 if stage > 0 and i == 0 else 1
                layers.append(BasicBlock1d(in_channels, width, stride, kernel_sizes))
                in_channels = width
        self.layers = nn.Sequential(*layers)
        self.pooling = pooling
        self.embed_dim = in_channels * (2 if pooling == "concat" else 1)

    def finetuning_blocks(self) -> list[nn.Module]:
        """Input to output (partial finetuning): the stem, then each residual block."""
        return [self.stem, *self.layers]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.layers(self.stem(x))
        if self.pooling == "concat":
            return torch.cat([h.mean(dim=-1), h.amax(dim=-1)], dim=1)
        return h.mean(dim=-1)


def resnet1d_wang(*, n_leads: int, width: int = 128) -> ResNet1d:
    return ResNet1d(
        n_leads=n_leads,
        widths=(width, width, width),
        blocks=(1, 1, 1),
        kernel_sizes=(5, 3),
        stem_kernel=7,
        stem_stride=1,
        stem_pool=False,
        pooling="concat",
    )


def resnet1d18(*, n_leads: int, base_width: int = 64) -> ResNet1d:
    return ResNet1d(
        n_leads=n_leads,
        widths=tuple(base_width * m for m in (1, 2, 4, 8)),
        blocks=(2, 2, 2, 2),
        kernel_sizes=(3, 3),
        pooling="avg",
    )
