"""XResNet1d encoders: the ``xresnet1d`` family of the PTB-XL benchmark, over ``[batch, leads, samples]``.

Follows ``code/models/xresnet1d.py`` of Strodthoff et al. (IEEE JBHI 2021, github.com/helme/ecg_ptbxl_benchmarking),
which adapts fastai's XResNet, the ResNet of "Bag of Tricks for Image Classification" (He et al., CVPR 2019), to 1-D:

- a stem of three convolutions (``n_leads -> width/2 -> width/2 -> width``, the first with stride 2; kernel
  ``stem_kernel_size``, 5 in the benchmark) followed by max pooling (kernel 3, stride 2) instead of one large
  convolution;
- four stages; the first keeps the length, each later one halves it in its first block;
- basic blocks (two ``kernel_size`` convolutions; depth 18 and 34) or bottleneck blocks (1x1, ``kernel_size``,
  1x1 with expansion 4; depth 50, 101 and 152), with the stride on the ``kernel_size`` convolution (ResNet-B);
- a ResNet-D shortcut: when a block downsamples, the identity path is average pooling (kernel 2, stride 2, ceil
  mode) followed by a 1x1 convolution and batch norm where the channel count changes, never a strided 1x1
  convolution that drops three quarters of the input;
- the batch norm closing each block's residual branch starts with gamma = 0, so every block begins as the
  identity; convolutions are Kaiming-normal initialised, batch-norm betas start at 0.

As in the benchmark, every stage has the same width (``width``, 64 there; the ImageNet XResNet doubles it per
stage, available as ``doubling=True``), so the last stage has ``width * expansion`` channels (256 for
xresnet1d50/101). The benchmark's head pools by concatenating adaptive max and average pooling (fastai's
``AdaptiveConcatPool1d``, max first); that pooling is kept as the embedding (``pooling="concat"``, so
``embed_dim = 2 * width * expansion``), ``pooling="avg"`` gives the plain average. The classification layers of
the head are left out: the benchmark supplies its own probe.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

#: Depth -> (expansion, blocks per stage), as in fastai and the benchmark.
XRESNET_LAYERS: dict[int, tuple[int, tuple[int, int, int, int]]] = {
    18: (1, (2, 2, 2, 2)),
    34: (1, (3, 4, 6, 3)),
    50: (4, (3, 4, 6, 3)),
    101: (4, (3, 4, 23, 3)),
    152: (4, (3, 8, 36, 3)),
}


class ConvBnAct(nn.Sequential):
    """Convolution (no bias, "same" padding), batch norm, then ReLU unless ``act=False``.

    ``zero_gamma`` starts the batch norm's scale at 0 (the last norm of a residual branch).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        stride: int = 1,
        act: bool = True,
        zero_gamma: bool = False,
    ):
        padding = (kernel_size - 1) // 2
        conv = nn.Conv1d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=False)
        nn.init.kaiming_normal_(conv.weight)
        bn = nn.BatchNorm1d(out_channels)
        nn.init.constant_(bn.weight, 0.0 if zero_gamma else 1.0)
        nn.init.zeros_(bn.bias)
        layers: list[nn.Module] = [conv, bn]
        if act:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class XResBlock1d(nn.Module):
    """A basic (``expansion=1``) or bottleneck (``expansion=4``) block with a ResNet-D shortcut.

    ``channels`` is the block's inner width; it outputs ``channels * expansion`` channels.
    """

    def __init__(self, expansion: int, in_channels: int, channels: int, *, stride: int, kernel_size: int):
        super().__init__()
        out_channels = channels * expansion
        self.expansion = expansion
        self.out_channels = out_channels
        if expansion == 1:
            branch = [
                ConvBnAct(in_channels, channels, kernel_size, stride=stride),
                ConvBnAct(channels, out_channels, kernel_size, act=False, zero_gamma=True),
            ]
        else:
            branch = [
                ConvBnAct(in_channels, channels, 1),
                ConvBnAct(channels, channels, kernel_size, stride=stride),
                ConvBnAct(channels, out_channels, 1, act=False, zero_gamma=True),
            ]
        self.convs = nn.Sequential(*branch)
        shortcut: list[nn.Module] = []
        if stride != 1:
            shortcut.append(nn.AvgPool1d(stride, ceil_mode=True))  # ResNet-D: pool first, then project
        if in_channels != out_channels:
            shortcut.append(ConvBnAct(in_channels, out_channels, 1, act=False))
        self.shortcut = nn.Sequential(*shortcut)  # empty: the identity
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.convs(x) + self.shortcut(x))


class XResNet1d(nn.Module):
    """An XResNet1d encoder; ``forward`` maps ``[batch, n_leads, samples]`` to ``[batch, embed_dim]``."""

    def __init__(
        self,
        *,
        n_leads: int,
        depth: int = 50,
        width: int = 64,
        kernel_size: int = 5,
        stem_kernel_size: int = 5,
        doubling: bool = False,
        pooling: str = "concat",
    ):
        super().__init__()
        if depth not in XRESNET_LAYERS:
            raise ValueError(f"depth must be one of {sorted(XRESNET_LAYERS)}, not {depth!r}")
        if width < 2:
            raise ValueError(f"width must be at least 2, not {width!r}")
        if kernel_size % 2 == 0 or stem_kernel_size % 2 == 0:
            raise ValueError(
                f"kernel sizes must be odd, got kernel_size={kernel_size}, stem_kernel_size={stem_kernel_size}"
            )
        if pooling not in ("avg", "concat"):
            raise ValueError(f"pooling must be 'avg' or 'concat', not {pooling!r}")
        expansion, blocks = XRESNET_LAYERS[depth]
        self.depth = depth
        self.expansion = expansion
        stem_widths = (n_leads, width // 2, width // 2, width)
        self.stem = nn.Sequential(
            *(
                ConvBnAct(stem_widths[i], stem_widths[i + 1], stem_kernel_size, stride=2 if i == 0 else 1)
                for i in range(3)
            ),
            nn.MaxPool1d(kernel_size=3, stride=2, padding=1),
        )
        stage_widths: Sequence[int] = [width * 2**i for i in range(4)] if doubling else [width] * 4
        stages: list[nn.Module] = []
        in_channels = width
        for stage, (channels, n_blocks) in enumerate(zip(stage_widths, blocks)):
            layer: list[nn.Module] = []
            for i in range(n_blocks):
                stride = 2 if stage > 0 and i == 0 else 1
                block = XResBlock1d(expansion, in_channels, channels, stride=stride, kernel_size=kernel_size)
                layer.append(block)
                in_channels = block.out_channels
            stages.append(nn.Sequential(*layer))
        self.stages = nn.Sequential(*stages)
        self.pooling = pooling
        self.out_channels = in_channels
        self.embed_dim = in_channels * (2 if pooling == "concat" else 1)

    def finetuning_blocks(self) -> list[nn.Module]:
        """Input to output (partial finetuning): the stem, then each residual block of each stage."""
        return [self.stem, *(block for stage in self.stages for block in stage)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stages(self.stem(x))
        if self.pooling == "concat":
            return torch.cat([h.amax(dim=-1), h.mean(dim=-1)], dim=1)  # fastai's AdaptiveConcatPool1d order
        return h.mean(dim=-1)


def xresnet1d(*, n_leads: int, depth: int = 50, **options: Any) -> XResNet1d:
    """Any depth of the family (18, 34, 50, 101, 152); see :class:`XResNet1d` for the options."""
    return XResNet1d(n_leads=n_leads, depth=depth, **options)


def xresnet1d18(*, n_leads: int, **options: Any) -> XResNet1d:
    return xresnet1d(n_leads=n_leads, depth=18, **options)


def xresnet1d34(*, n_leads: int, **options: Any) -> XResNet1d:
    return xresnet1d(n_leads=n_leads, depth=34, **options)


def xresnet1d50(*, n_leads: int, **options: Any) -> XResNet1d:
    return xresnet1d(n_leads=n_leads, depth=50, **options)


def xresnet1d101(*, n_leads: int, **options: Any) -> XResNet1d:
    return xresnet1d(n_leads=n_leads, depth=101, **options)
