"""A small configurable U-Net with one logit per class (29 sigmoid outputs: the classes overlap).

>>> import torch
>>> net = UNet(in_channels=1, classes=29, width=8, depth=3)
>>> net(torch.zeros(1, 1, 64, 64)).shape
torch.Size([1, 29, 64, 64])
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

NORMS = ("batch", "group", "instance", "none")


def norm_layer(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        return nn.GroupNorm(min(8, channels), channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}; known: {', '.join(NORMS)}")


class DoubleConv(nn.Sequential):
    """(conv3x3 -> norm -> ReLU) x 2."""

    def __init__(self, cin: int, cout: int, norm: str):
        bias = norm == "none"
        super().__init__(
            nn.Conv2d(cin, cout, 3, padding=1, bias=bias), norm_layer(norm, cout), nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=bias), norm_layer(norm, cout), nn.ReLU(inplace=True),
        )


class Up(nn.Module):
    """Bilinear x2 upsampling, concatenation with the skip, DoubleConv."""

    def __init__(self, cin: int, cskip: int, cout: int, norm: str):
        super().__init__()
        self.conv = DoubleConv(cin + cskip, cout, norm)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.conv(torch.cat([x, skip], dim=1))


class UNet(nn.Module):
    """U-Net: `depth` poolings, `width` channels at full resolution, doubling per level (capped)."""

    def __init__(self, in_channels: int = 1, classes: int = 29, width: int = 32, depth: int = 5,
                 norm: str = "batch", max_width: int = 256):
        super().__init__()
        if depth < 1:
            raise ValueError("depth must be >= 1")
        widths = [min(width * 2 ** i, max_width) for i in range(depth + 1)]
        self.depth = depth
        self.stem = DoubleConv(in_channels, widths[0], norm)
        self.downs = nn.ModuleList(DoubleConv(widths[i], widths[i + 1], norm) for i in range(depth))
        self.ups = nn.ModuleList(Up(widths[i + 1], widths[i], widths[i], norm) for i in reversed(range(depth)))
        self.head = nn.Conv2d(widths[0], classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = [self.stem(x)]
        for down in self.downs:
            skips.append(down(F.max_pool2d(skips[-1], 2)))
        x = skips.pop()
        for up in self.ups:
            x = up(x, skips.pop())
        return self.head(x)


def build_model(width: int = 32, depth: int = 5, norm: str = "batch", classes: int = 29,
                in_channels: int = 1, max_width: int = 256) -> UNet:
    return UNet(in_channels=in_channels, classes=classes, width=width, depth=depth, norm=norm,
                max_width=max_width)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
