"""ResNet-50/101 backbone with FrozenBatchNorm2d and torchvision parameter names.

Source: ReferFormer ``models/backbone.py`` (torchvision ``resnet101`` with ``norm_layer=FrozenBatchNorm2d``,
``IntermediateLayerGetter`` returning layer1..layer4) as described in ACTIONVOS_SPEC.md sections 2 and 3.2.
State-dict keys are those of torchvision's ResNet (``conv1``, ``bn1``, ``layer{1..4}.{i}.conv{1,2,3}``,
``bn{1,2,3}``, ``downsample.{0,1}``); ``fc`` and ``avgpool`` are absent. No torchvision import.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["FrozenBatchNorm2d", "Bottleneck", "ResNetBody", "Backbone"]


class FrozenBatchNorm2d(nn.Module):
    """BatchNorm2d with fixed statistics and affine parameters (all buffers, never trained).

    ``y = x * w * rsqrt(running_var + 1e-5) + (b - running_mean * scale)`` (spec 3.2). The buffers
    ``weight``, ``bias``, ``running_mean``, ``running_var`` (each ``[C]`` float32) are saved in the state
    dict; ``num_batches_tracked`` is not.
    """

    def __init__(self, n: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.register_buffer("weight", torch.ones(n))
        self.register_buffer("bias", torch.zeros(n))
        self.register_buffer("running_mean", torch.zeros(n))
        self.register_buffer("running_var", torch.ones(n))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        state_dict.pop(prefix + "num_batches_tracked", None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``[N, C, H, W]`` → same shape."""
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        bias = self.bias - self.running_mean * scale
        return x * scale.reshape(1, -1, 1, 1) + bias.reshape(1, -1, 1, 1)


class Bottleneck(nn.Module):
    """torchvision ResNet v1.5 bottleneck (stride on the 3×3 conv), expansion 4."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = FrozenBatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = FrozenBatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = FrozenBatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNetBody(nn.Module):
    """ResNet trunk returning the outputs of layer1..layer4 (strides 4, 8, 16, 32; 256/512/1024/2048 channels).

    Args:
        layers: Bottleneck counts per stage, ``(3, 4, 23, 3)`` for ResNet-101, ``(3, 4, 6, 3)`` for ResNet-50.
        width: stem width (64 in torchvision's ResNets; stage widths are ``width * (1, 2, 4, 8)`` and the output
            channels four times that). Smaller values serve the CPU demo preset only.
    """

    def __init__(self, layers: tuple[int, int, int, int], width: int = 64):
        super().__init__()
        self.inplanes = width
        self.conv1 = nn.Conv2d(3, width, 7, stride=2, padding=3, bias=False)
        self.bn1 = FrozenBatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = self._make_layer(width, layers[0], 1)
        self.layer2 = self._make_layer(width * 2, layers[1], 2)
        self.layer3 = self._make_layer(width * 4, layers[2], 2)
        self.layer4 = self._make_layer(width * 8, layers[3], 2)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def _make_layer(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * Bottleneck.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * Bottleneck.expansion, 1, stride=stride, bias=False),
                FrozenBatchNorm2d(planes * Bottleneck.expansion),
            )
        mods = [Bottleneck(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * Bottleneck.expansion
        mods += [Bottleneck(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*mods)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``x``: ``[N, 3, H, W]`` normalised images → ``[res2, res3, res4, res5]``."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        outs = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            outs.append(x)
        return outs


class Backbone(nn.Module):
    """Holder that gives the trunk the reference key path ``backbone.0.body.*``.

    Frozen parameters in training (spec 2): conv1, bn1 and layer1 (names without layer2/3/4);
    :meth:`freeze_stem` sets ``requires_grad=False`` on them.
    """

    strides = (4, 8, 16, 32)

    def __init__(self, layers: tuple[int, int, int, int], width: int = 64):
        super().__init__()
        self.body = ResNetBody(layers, width)
        #: output channels of res2..res5: 256, 512, 1024, 2048 for width 64
        self.num_channels = tuple(width * Bottleneck.expansion * m for m in (1, 2, 4, 8))
        self.freeze_stem()

    def freeze_stem(self) -> None:
        for name, p in self.body.named_parameters():
            if "layer2" not in name and "layer3" not in name and "layer4" not in name:
                p.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.body(x)
