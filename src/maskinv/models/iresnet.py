"""iResNet backbones in the InsightFace ``arcface_torch`` layout (REFERENCE §3).

Module names, parameter/buffer order and shapes match the published layout exactly, so
InsightFace / ElasticFace / MaskInv ``*backbone.pth`` files load with ``strict=True``::

    conv1 (3x3, 64, s1) -> bn1 -> prelu
    layer1..layer4: IBasicBlock x depth[i], widths 64/128/256/512, block 0 has stride 2
        block: bn1 -> conv1 3x3 -> bn2 -> prelu -> conv2 3x3 (stride) -> bn3 (+ downsample)
        downsample (block 0 only): Sequential(conv1x1 stride 2, BatchNorm2d)
    bn2 (BN2d 512) -> flatten -> dropout -> fc (512*7*7 -> E, bias) -> features (BN1d, weight 1, frozen)

Extensions that keep the names: ``width_mult`` scales every width (tiny CPU models) and
``input_size`` other than 112 adapts ``fc``'s input to ``C * s * s`` with ``s`` the spatial
size after the four stride-2 stages (``ceil(n / 16)`` for a side ``n``).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from maskinv.errors import ConfigError

#: Blocks per stage of the published depths.
IRESNET_DEPTHS: dict[str, tuple[int, int, int, int]] = {
    "r18": (2, 2, 2, 2),
    "r34": (3, 4, 6, 3),
    "r50": (3, 4, 14, 3),
    "r100": (3, 13, 30, 3),
    "r200": (6, 26, 60, 6),
}
#: Stage widths at width_mult 1 (the stem has 64 channels too).
IRESNET_WIDTHS = (64, 128, 256, 512)
BN_EPS = 1e-5


def scale_width(channels: int, width_mult: float) -> int:
    """Channel count ``channels * width_mult`` rounded, at least 1 (identity at 1.0)."""
    return max(1, int(round(channels * width_mult)))


def spatial_after_stride2(size: int, times: int = 4) -> int:
    """Side length after ``times`` 3x3/stride-2/pad-1 convolutions: ceil(n/2) each time."""
    for _ in range(times):
        size = (size + 1) // 2
    return size


@torch.no_grad()
def reset_norm_or_prelu(m: nn.Module) -> bool:
    """arcface_torch's init of the parameter-light layers: BN (1, 0, fresh statistics), PReLU 0.25.
    True when ``m`` was one of them (shared by the iResNet and MobileFaceNet initialisations)."""
    if isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
        m.reset_running_stats()
        m.weight.fill_(1.0)
        m.bias.zero_()
    elif isinstance(m, nn.PReLU):
        m.weight.fill_(0.25)
    else:
        return False
    return True


def check_four_stages(values: Sequence[int], what: str) -> None:
    """Both backbones have four stride-2 stages: one entry per stage, else :class:`ConfigError`."""
    if len(values) != 4:
        raise ConfigError(f"{what}, got {list(values)}")


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False)


class IBasicBlock(nn.Module):
    """Improved residual block (pre-BN, PReLU between the two 3x3 convolutions)."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        # Attribute creation order defines the state-dict order: keep it as published.
        self.bn1 = nn.BatchNorm2d(inplanes, eps=BN_EPS)
        self.conv1 = _conv3x3(inplanes, planes)
        self.bn2 = nn.BatchNorm2d(planes, eps=BN_EPS)
        self.prelu = nn.PReLU(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn3 = nn.BatchNorm2d(planes, eps=BN_EPS)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn1(x)
        out = self.conv1(out)
        out = self.bn2(out)
        out = self.prelu(out)
        out = self.conv2(out)
        out = self.bn3(out)
        identity = self.downsample(x) if self.downsample is not None else x
        return out + identity


class IResNet(nn.Module):
    """iResNet backbone; ``forward`` returns the (un-normalised) ``features`` output (B, E)."""

    def __init__(
        self,
        layers: Sequence[int],
        *,
        embedding_size: int = 512,
        width_mult: float = 1.0,
        input_size: int = 112,
        dropout: float = 0.0,
    ):
        super().__init__()
        check_four_stages(layers, "iResNet needs 4 stage depths (layers)")
        widths = [scale_width(c, width_mult) for c in IRESNET_WIDTHS]
        stem = scale_width(64, width_mult)
        self.embedding_size = int(embedding_size)
        self.input_size = int(input_size)
        self.inplanes = stem
        self.conv1 = nn.Conv2d(3, stem, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem, eps=BN_EPS)
        self.prelu = nn.PReLU(stem)
        self.layer1 = self._make_layer(widths[0], layers[0], stride=2)
        self.layer2 = self._make_layer(widths[1], layers[1], stride=2)
        self.layer3 = self._make_layer(widths[2], layers[2], stride=2)
        self.layer4 = self._make_layer(widths[3], layers[3], stride=2)
        self.bn2 = nn.BatchNorm2d(widths[3], eps=BN_EPS)
        self.dropout = nn.Dropout(p=dropout)
        side = spatial_after_stride2(self.input_size)
        self.fc = nn.Linear(widths[3] * side * side, self.embedding_size)
        self.features = nn.BatchNorm1d(self.embedding_size, eps=BN_EPS)
        # Published layout: the embedding BN has a fixed unit scale (not trained).
        self.features.weight.requires_grad = False

    def _make_layer(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(planes, eps=BN_EPS),
            )
        mods = [IBasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        mods.extend(IBasicBlock(planes, planes) for _ in range(1, blocks))
        return nn.Sequential(*mods)

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """arcface_torch initialisation: conv N(0, 0.1); BN (1, 0); PReLU 0.25; fc as nn.Linear.

        All draws use ``generator`` (never the global RNG when one is given).
        """
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                m.weight.normal_(0.0, 0.1, generator=generator)
            elif reset_norm_or_prelu(m):
                pass
            elif isinstance(m, nn.Linear):
                # Same distribution as nn.Linear's default (kaiming_uniform a=sqrt(5)).
                bound = 1.0 / math.sqrt(m.in_features)
                m.weight.uniform_(-bound, bound, generator=generator)
                if m.bias is not None:
                    m.bias.uniform_(-bound, bound, generator=generator)
        self._init_running_var()

    @torch.no_grad()
    def _init_running_var(self) -> None:
        """Set every BatchNorm's ``running_var`` to the second moment its input has under this init.

        Fresh statistics (variance 1) do not match the N(0, 0.1) convolutions: each 3x3 convolution
        multiplies the second moment by ``fan_in * 0.01`` (5.8 at 64 channels), so an untrained model
        in eval mode grew by that factor per block (r50 outputs ~2e26, r100 NaN). Propagating the
        expected second moment (image pixels 1, conv ``fan_in * std**2``, PReLU ``(1 + a**2) / 2``,
        residual sums add) keeps eval-mode activations O(1). Data-free, no random draws; training
        replaces the statistics (momentum) and loaded checkpoints overwrite them.
        """
        if self.conv1.weight.is_meta:  # shape checks on the meta device: no values to match
            return

        def conv_gain(conv: nn.Conv2d) -> float:
            fan_in = conv.in_channels * conv.kernel_size[0] * conv.kernel_size[1] // conv.groups
            return fan_in * float(conv.weight.float().pow(2).mean())

        def prelu_gain(p: nn.PReLU) -> float:
            return (1.0 + float(p.weight.float().pow(2).mean())) / 2.0

        v = conv_gain(self.conv1)  # input pixels in [-1, 1]: second moment <= 1
        self.bn1.running_var.fill_(v)
        v = prelu_gain(self.prelu)
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            for block in layer:
                v_in = v
                block.bn1.running_var.fill_(v_in)
                v = conv_gain(block.conv1)
                block.bn2.running_var.fill_(v)
                v = prelu_gain(block.prelu) * conv_gain(block.conv2)
                block.bn3.running_var.fill_(v)
                if block.downsample is not None:
                    block.downsample[1].running_var.fill_(conv_gain(block.downsample[0]) * v_in)
                    v_in = 1.0
                v = 1.0 + v_in
        self.bn2.running_var.fill_(v)
        w = self.fc.weight.float()
        v = w.shape[1] * float(w.pow(2).mean()) + (float(self.fc.bias.float().pow(2).mean()) if self.fc.bias is not None else 0.0)
        self.features.running_var.fill_(v)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        x = self.bn1(x)
        x = self.prelu(x)
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.layer4(x)
        x = self.bn2(x)
        x = torch.flatten(x, 1)
        x = self.dropout(x)
        x = self.fc(x)
        return self.features(x)
