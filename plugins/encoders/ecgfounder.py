"""ECGFounder's encoder: Net1D (Hong et al.), a 1-D RegNet-style CNN with squeeze-and-excitation, as released.

Written from the architecture of the public code (github.com/PKUDigitalHealth/ECGFounder, ``net1d.py``, MIT
licence) and the paper (Li et al., NEJM AI 2025), so that the released checkpoint (``12_lead_ECGFounder.pth``,
``1_lead_ECGFounder.pth``: a ``state_dict`` entry holding Net1D's tensors) loads under its own names:

- ``first_conv``: a "same"-padded convolution (kernel 16, stride 2, bias) and a Swish (``x * sigmoid(x)``);
- ``stage_list[s].block_list[b]``: seven stages of 2-2-2-3-3-4-4 blocks, widths 64-160-160-400-400-1024-1024; each
  block is Swish -> 1x1 conv -> Swish -> grouped kernel-16 conv (16 channels per group; stride 2 in a stage's first
  block) -> Swish -> 1x1 conv, squeeze-and-excitation (mean over time, two linear layers halving and restoring the
  width, Swish between, a sigmoid gate), plus a shortcut (max-pooled by the stride with "same" padding, zero
  channels added on both sides when the width grows). The very first block skips its leading Swish;
- the embedding is the mean over time of the last stage (1024 features; the release's ``dense`` head maps it to
  150 classes and is not part of the encoder).

The released configuration disables batch norm and dropout (``use_bn=False, use_do=False``), but its checkpoint
still holds the batch norms' tensors; they are kept here as buffers of the same names (never applied, never
trained), so the file loads as it is. "Same" padding follows the release: ``p = max(0, (ceil(n/s) - 1) s + k - n)``
zeros, ``p // 2`` on the left; the shortcut's max pool pads ``stride - 1`` zeros, ``(stride - 1) // 2`` on the
left (one on the right at stride 2).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

#: The released sizes (``ft_12lead_ECGFounder`` in the public code).
RELEASED = {"base_filters": 64, "filter_list": (64, 160, 160, 400, 400, 1024, 1024),
            "m_blocks_list": (2, 2, 2, 3, 3, 4, 4), "kernel_size": 16, "stride": 2, "groups_width": 16, "ratio": 1.0}


def swish(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(x)


class SamePadConv(nn.Module):
    """A convolution with TensorFlow-style "same" padding (output length ``ceil(n / stride)``)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int, groups: int = 1):
        super().__init__()
        self.kernel_size, self.stride = kernel_size, stride
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, stride=stride, groups=groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[-1]
        out = math.ceil(n / self.stride)
        pad = max(0, (out - 1) * self.stride + self.kernel_size - n)
        return self.conv(F.pad(x, (pad // 2, pad - pad // 2)))


class UnusedBatchNorm(nn.Module):
    """The tensors of a batch norm the released model does not apply (``use_bn=False``): buffers of the released
    names and shapes, so its checkpoint loads, never trained and never used."""

    def __init__(self, channels: int):
        super().__init__()
        self.register_buffer("weight", torch.ones(channels))
        self.register_buffer("bias", torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))


class Net1DBlock(nn.Module):
    """One block: three pre-activated convolutions, squeeze-and-excitation, and the shortcut."""

    def __init__(self, in_channels: int, out_channels: int, *, ratio: float, kernel_size: int, stride: int,
                 groups: int, first: bool):
        super().__init__()
        middle = int(out_channels * ratio)
        self.in_channels, self.out_channels, self.stride, self.first = in_channels, out_channels, stride, first
        self.bn1 = UnusedBatchNorm(in_channels)
        self.conv1 = SamePadConv(in_channels, middle, 1, 1)
        self.bn2 = UnusedBatchNorm(middle)
        self.conv2 = SamePadConv(middle, middle, kernel_size, stride, groups=groups)
        self.bn3 = UnusedBatchNorm(middle)
        self.conv3 = SamePadConv(middle, out_channels, 1, 1)
        self.se_fc1 = nn.Linear(out_channels, out_channels // 2)
        self.se_fc2 = nn.Linear(out_channels // 2, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x if self.first else swish(x)
        out = self.conv3(swish(self.conv2(swish(self.conv1(out)))))
        gate = torch.sigmoid(self.se_fc2(swish(self.se_fc1(out.mean(dim=-1)))))
        out = out * gate[:, :, None]
        shortcut = x
        if self.stride > 1:  # max pool by the stride after stride - 1 zeros (the release's "same" pool)
            left = (self.stride - 1) // 2
            shortcut = F.max_pool1d(F.pad(shortcut, (left, self.stride - 1 - left)), self.stride)
        if self.out_channels != self.in_channels:
            grow = self.out_channels - self.in_channels
            shortcut = F.pad(shortcut, (0, 0, grow // 2, grow - grow // 2))
        return out + shortcut


class Net1DStage(nn.Module):
    def __init__(self, blocks: Sequence[Net1DBlock]):
        super().__init__()
        self.block_list = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.block_list:
            x = block(x)
        return x


class ECGFounder(nn.Module):
    """Net1D without its classification head: ``[batch, leads, samples] -> [batch, filter_list[-1]]``."""

    def __init__(self, *, n_leads: int, base_filters: int = 64, filter_list: Sequence[int] = RELEASED["filter_list"],
                 m_blocks_list: Sequence[int] = RELEASED["m_blocks_list"], kernel_size: int = 16, stride: int = 2,
                 groups_width: int = 16, ratio: float = 1.0):
        super().__init__()
        if len(filter_list) != len(m_blocks_list):
            raise ValueError(f"filter_list {tuple(filter_list)} and m_blocks_list {tuple(m_blocks_list)} differ in length")
        bad = [w for w in filter_list if w % groups_width or int(w * ratio) % (w // groups_width)]
        if bad:
            raise ValueError(f"stage widths {bad} are not whole multiples of groups_width {groups_width}")
        self.first_conv = SamePadConv(n_leads, base_filters, kernel_size, 2)
        self.first_bn = UnusedBatchNorm(base_filters)
        stages = []
        in_channels = base_filters
        for s, (width, n_blocks) in enumerate(zip(filter_list, m_blocks_list)):
            blocks = []
            for b in range(n_blocks):
                blocks.append(Net1DBlock(in_channels if b == 0 else width, width, ratio=ratio, kernel_size=kernel_size,
                                         stride=stride if b == 0 else 1, groups=width // groups_width,
                                         first=s == 0 and b == 0))
            stages.append(Net1DStage(blocks))
            in_channels = width
        self.stage_list = nn.ModuleList(stages)
        self.embed_dim = in_channels

    def finetuning_blocks(self) -> list[nn.Module]:
        """Input to output (partial finetuning): the first convolution, then each block of each stage."""
        return [self.first_conv, *(block for stage in self.stage_list for block in stage.block_list)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = swish(self.first_conv(x))
        for stage in self.stage_list:
            h = stage(h)
        return h.mean(dim=-1)


def ecgfounder(*, n_leads: int, **options: Any) -> ECGFounder:
    return ECGFounder(n_leads=n_leads, **options)
