"""Segmentation models with one logit per class (29 sigmoid outputs: the classes overlap).

Two architectures in plain torch, chosen with `arch`, and an adapter to
segmentation_models_pytorch (`smp:<Architecture>:<encoder>`, only where smp is installed):

* `unet` (the default): the classic U-Net, `width` channels at full resolution.
* `resunet`: a ResNet-style encoder (strided stem, BasicBlocks, 1/2 .. 1/2**depth) and a U-Net
  decoder whose full-resolution stage runs few channels: a third of the U-Net's work per image,
  but a lower Dice at equal steps where measured (docs/benchmarks.md), so not the default.

>>> import torch
>>> net = UNet(in_channels=1, classes=29, width=8, depth=3)
>>> net(torch.zeros(1, 1, 64, 64)).shape
torch.Size([1, 29, 64, 64])
>>> ResUNet(width=8, depth=3)(torch.zeros(1, 1, 64, 64)).shape
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


class BasicBlock(nn.Module):
    """ResNet's BasicBlock: conv3x3(stride) -> norm -> ReLU -> conv3x3 -> norm, plus the
    (projected when the shape changes) input, then ReLU."""

    def __init__(self, cin: int, cout: int, norm: str, stride: int = 1):
        super().__init__()
        bias = norm == "none"
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=bias)
        self.bn1 = norm_layer(norm, cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=bias)
        self.bn2 = norm_layer(norm, cout)
        self.skip = (nn.Identity() if stride == 1 and cin == cout else
                     nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=bias), norm_layer(norm, cout)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)), inplace=True)
        return F.relu(self.bn2(self.conv2(y)) + self.skip(x), inplace=True)


def res_stage(cin: int, cout: int, blocks: int, norm: str, stride: int) -> nn.Sequential:
    return nn.Sequential(BasicBlock(cin, cout, norm, stride),
                         *(BasicBlock(cout, cout, norm) for _ in range(blocks - 1)))


class ResUNet(nn.Module):
    """U-Net with a ResNet encoder, in plain torch (no torchvision/timm).

    Encoder: a 3x3 stride-2 stem (`width` channels at 1/2), then `depth - 1` stages of
    BasicBlocks (`blocks` per stage), each halving the resolution: 2x, 4x ... `width` channels
    (capped at `max_width`) at 1/4, 1/8 ... 1/2**depth, the U-Net's channels per resolution.
    Decoder: per level, bilinear x2, concatenation with the encoder's skip, two conv3x3 with the
    encoder's channels of that level, and at full resolution `width // 2` (at least 8) with the
    input image itself as the skip (cheap, keeps edges sharp). The full-resolution work is one
    small stage instead of the U-Net's four `width`-channel convolutions.
    """

    def __init__(self, in_channels: int = 1, classes: int = 29, width: int = 32, depth: int = 5,
                 norm: str = "batch", max_width: int = 256, blocks: int | tuple[int, ...] = 2):
        super().__init__()
        if depth < 2:
            raise ValueError("resunet depth must be >= 2 (a stem and one stage)")
        nblocks = (blocks,) * (depth - 1) if isinstance(blocks, int) else tuple(blocks)
        if len(nblocks) != depth - 1:
            raise ValueError(f"blocks needs {depth - 1} entries (one per stage), got {len(nblocks)}")
        # per resolution the U-Net's channel counts (width at 1/2, doubling, capped): the
        # stride-2 stem and residual blocks make them cheap, not fewer
        enc = [min(width * 2 ** i, max_width) for i in range(depth)]
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, enc[0], 3, stride=2, padding=1, bias=norm == "none"),
            norm_layer(norm, enc[0]), nn.ReLU(inplace=True))
        self.stages = nn.ModuleList(res_stage(enc[i], enc[i + 1], nblocks[i], norm, 2) for i in range(depth - 1))
        # decoder levels 1/2**(depth-1) .. 1/2 with the encoder's channels there (smp's decoder
        # (256, 128, 64, 32, 16) for width 32), then full resolution at width // 2 (at least 8)
        # with the image itself as the skip
        cin = enc[-1]
        skips = enc[:-1][::-1] + [in_channels]
        outs = enc[:-1][::-1] + [max(8, width // 2)]
        self.ups = nn.ModuleList()
        for cskip, cout in zip(skips, outs):
            self.ups.append(Up(cin, cskip, cout, norm))
            cin = cout
        self.head = nn.Conv2d(cin, classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [self.stem(x)]
        for stage in self.stages:
            feats.append(stage(feats[-1]))
        y = feats.pop()
        skips = feats[::-1] + [x]
        for up, skip in zip(self.ups, skips):
            y = up(y, skip)
        return self.head(y)


ARCHS = ("resunet", "unet")
# chosen by measurement (docs/benchmarks.md): at the demo scale the ResUNet steps faster but
# reached 0.449 test Dice where the U-Net reached 0.658 at the same steps, so the U-Net stays
DEFAULT_ARCH = "unet"


def parse_smp(arch: str) -> tuple[str, str]:
    """`smp:<Architecture>:<encoder>` -> (Architecture, encoder); a one-line error otherwise."""
    parts = arch.split(":")
    if len(parts) != 3 or parts[0] != "smp" or not parts[1] or not parts[2]:
        raise ValueError(f"bad arch {arch!r}: use smp:<Architecture>:<encoder>, e.g. smp:Unet:resnet34")
    return parts[1], parts[2]


SMP_INSTALL = ("segmentation_models_pytorch is not installed; --arch smp:... needs it: install it "
               "without letting pip replace torch (see docs/training.md, 'smp models'): "
               "pip install --no-deps segmentation-models-pytorch timm huggingface_hub safetensors "
               "and a torchvision built for your torch")


def smp_model(arch: str, classes: int = 29, in_channels: int = 1) -> nn.Module:
    """A segmentation_models_pytorch model, random init (never a pretrained download)."""
    name, encoder = parse_smp(arch)
    try:
        import segmentation_models_pytorch as smp
    except ImportError as e:
        raise ImportError(SMP_INSTALL) from e
    known = [n for n in dir(smp) if n[:1].isupper() and callable(getattr(smp, n))]
    cls = getattr(smp, name, None)
    if cls is None or not callable(cls):
        raise ValueError(f"segmentation_models_pytorch has no architecture {name!r}; known: {', '.join(sorted(known))}")
    try:
        return cls(encoder_name=encoder, encoder_weights=None, in_channels=in_channels, classes=classes)
    except (KeyError, ValueError) as e:
        raise ValueError(f"segmentation_models_pytorch cannot build {name} with encoder {encoder!r}: {e}") from e


def check_arch(arch: str) -> str:
    """The arch name if known (or a well-formed smp:...); ValueError naming the known ones."""
    if arch.startswith("smp:"):
        parse_smp(arch)
        return arch
    if arch not in ARCHS:
        import difflib

        close = difflib.get_close_matches(arch, ARCHS, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise ValueError(f"unknown arch {arch!r}{hint}; known: {', '.join(ARCHS)}, smp:<Architecture>:<encoder>")
    return arch


def build_model(width: int = 32, depth: int = 5, norm: str = "batch", classes: int = 29,
                in_channels: int = 1, max_width: int = 256, arch: str = "unet", blocks: int = 2) -> nn.Module:
    """The model of a training config. `arch` defaults to "unet" here for callers that predate
    it (old checkpoints); `TrainConfig.arch` holds the default for new runs."""
    check_arch(arch)
    if arch.startswith("smp:"):
        return smp_model(arch, classes=classes, in_channels=in_channels)
    if arch == "resunet":
        return ResUNet(in_channels=in_channels, classes=classes, width=width, depth=depth, norm=norm,
                       max_width=max_width, blocks=blocks)
    return UNet(in_channels=in_channels, classes=classes, width=width, depth=depth, norm=norm,
                max_width=max_width)


def model_from_config(cfg) -> nn.Module:
    """The model of a TrainConfig or of its stored dict (configs before `arch` were U-Nets)."""
    get = cfg.get if isinstance(cfg, dict) else (lambda k, d=None: getattr(cfg, k, d))
    return build_model(width=get("width"), depth=get("depth"), norm=get("norm"),
                       max_width=get("max_width", 256) or 256, arch=get("arch", "unet") or "unet",
                       blocks=get("blocks", 2) or 2)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
