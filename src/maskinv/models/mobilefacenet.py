"""MobileFaceNet in the InsightFace ``arcface_torch`` layout (``mbf``: blocks (1, 4, 6, 2), scale 2).

Published layout (names are what ``arcface_torch`` state dicts hold)::

    layers: ModuleList
      0 ConvBlock(3 -> 64s, 3x3, s2)                       ConvBlock = layers[Conv, BN2d, PReLU]
      1 ConvBlock(64s -> 64s, 3x3, groups 64) if blocks[0] == 1 else Residual(64s, blocks[0], 128)
      2 DepthWise(64s -> 64s, s2, hidden 128)              DepthWise = layers[ConvBlock 1x1, dw ConvBlock, LinearBlock 1x1]
      3 Residual(64s, blocks[1], hidden 128)               Residual  = layers[DepthWise(residual) x n]
      4 DepthWise(64s -> 128s, s2, hidden 256)
      5 Residual(128s, blocks[2], hidden 256)
      6 DepthWise(128s -> 128s, s2, hidden 512)
      7 Residual(128s, blocks[3], hidden 256)
    conv_sep: ConvBlock(128s -> 512, 1x1)
    features (GDC): layers[LinearBlock(512, dw 7x7), Flatten, Linear(512 -> E, no bias), BN1d(E)]

``width_mult`` scales every channel count (groups follow); ``input_size`` other than 112
changes the GDC depthwise kernel to the spatial side after the four stride-2 stages.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from .iresnet import check_four_stages, reset_norm_or_prelu, scale_width, spatial_after_stride2


class Flatten(nn.Module):
    """(B, C, 1, 1) -> (B, C)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.size(0), -1)


class ConvBlock(nn.Module):
    """Conv (no bias) -> BN2d -> PReLU, stored as ``layers.{0,1,2}``."""

    def __init__(self, cin: int, cout: int, kernel=(1, 1), stride=(1, 1), padding=(0, 0), groups: int = 1):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
            nn.PReLU(cout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class LinearBlock(nn.Module):
    """Conv (no bias) -> BN2d without activation, stored as ``layers.{0,1}``."""

    def __init__(self, cin: int, cout: int, kernel=(1, 1), stride=(1, 1), padding=(0, 0), groups: int = 1):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class DepthWise(nn.Module):
    """Inverted bottleneck: 1x1 expand to ``hidden`` -> depthwise 3x3 -> 1x1 linear projection."""

    def __init__(self, cin: int, cout: int, hidden: int, *, residual: bool = False, stride=(2, 2)):
        super().__init__()
        self.residual = residual
        self.layers = nn.Sequential(
            ConvBlock(cin, hidden),
            ConvBlock(hidden, hidden, kernel=(3, 3), stride=stride, padding=(1, 1), groups=hidden),
            LinearBlock(hidden, cout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layers(x)
        return x + out if self.residual else out


class Residual(nn.Module):
    """``num_block`` residual stride-1 DepthWise blocks."""

    def __init__(self, channels: int, num_block: int, hidden: int):
        super().__init__()
        self.layers = nn.Sequential(
            *[DepthWise(channels, channels, hidden, residual=True, stride=(1, 1)) for _ in range(num_block)]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class GDC(nn.Module):
    """Global depthwise convolution head: dw kxk -> flatten -> linear (no bias) -> BN1d."""

    def __init__(self, channels: int, embedding_size: int, kernel: int):
        super().__init__()
        self.layers = nn.Sequential(
            LinearBlock(channels, channels, kernel=(kernel, kernel), groups=channels),
            Flatten(),
            nn.Linear(channels, embedding_size, bias=False),
            nn.BatchNorm1d(embedding_size),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class MobileFaceNet(nn.Module):
    """MobileFaceNet backbone; ``forward`` returns the (un-normalised) embedding (B, E)."""

    def __init__(
        self,
        blocks: Sequence[int] = (1, 4, 6, 2),
        scale: int = 2,
        *,
        embedding_size: int = 512,
        width_mult: float = 1.0,
        input_size: int = 112,
        dropout: float = 0.0,
    ):
        super().__init__()
        check_four_stages(blocks, "MobileFaceNet needs 4 block counts")
        w = lambda c: scale_width(c, width_mult)  # noqa: E731
        c1, c2 = w(64 * scale), w(128 * scale)
        self.embedding_size = int(embedding_size)
        self.input_size = int(input_size)
        self.layers = nn.ModuleList()
        self.layers.append(ConvBlock(3, c1, kernel=(3, 3), stride=(2, 2), padding=(1, 1)))
        if blocks[0] == 1:
            # Grouped (not depthwise) 3x3: 64 groups at width 1; keep groups a divisor of c1.
            self.layers.append(
                ConvBlock(c1, c1, kernel=(3, 3), stride=(1, 1), padding=(1, 1), groups=math.gcd(c1, w(64)))
            )
        else:
            self.layers.append(Residual(c1, blocks[0], w(128)))
        self.layers.extend(
            [
                DepthWise(c1, c1, w(128)),
                Residual(c1, blocks[1], w(128)),
                DepthWise(c1, c2, w(256)),
                Residual(c2, blocks[2], w(256)),
                DepthWise(c2, c2, w(512)),
                Residual(c2, blocks[3], w(256)),
            ]
        )
        c_out = w(512)
        self.conv_sep = ConvBlock(c2, c_out)
        # arcface_torch's MobileFaceNet has no dropout; kept as a parameter-free module.
        self.dropout = nn.Dropout(p=dropout)
        self.features = GDC(c_out, self.embedding_size, spatial_after_stride2(self.input_size))

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """arcface_torch initialisation: conv/linear kaiming-normal (fan_out, relu); BN (1, 0); PReLU 0.25."""
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                w = m.weight
                fan_out = w.shape[0] * (w[0][0].numel() if w.dim() > 2 else 1)
                w.normal_(0.0, math.sqrt(2.0 / fan_out), generator=generator)
                if m.bias is not None:
                    m.bias.zero_()
            else:
                reset_norm_or_prelu(m)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        x = self.conv_sep(x)
        x = self.dropout(x)
        return self.features(x)
