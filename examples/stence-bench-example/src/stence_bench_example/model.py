"""The example encoder: dilated 1-D convolutions and average pooling."""

import torch
from torch import nn


class ExampleCNN(nn.Module):
    def __init__(self, n_leads: int, channels: int):
        super().__init__()
        layers = []
        in_channels = n_leads
        for dilation in (1, 2, 4, 8):
            layers += [nn.Conv1d(in_channels, channels, 5, padding=2 * dilation, dilation=dilation), nn.GELU()]
            in_channels = channels
        self.body = nn.Sequential(*layers)
        self.embed_dim = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).mean(dim=-1)


def build(*, n_leads: int, channels: int = 64) -> ExampleCNN:
    return ExampleCNN(n_leads, channels)
