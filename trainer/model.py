"""Segmentation models with one logit per class (29 sigmoid outputs: the classes overlap).

Two architectures in plain torch, chosen with `arch`, and an adapter to
segmentation_models_pytorch (`smp:<Architecture>:<encoder>`, only where smp is installed):

* `resunet` (the default): a ResNet-style encoder (a full-resolution stem conv, then BasicBlock
  stages at 1/2 .. 1/2**depth) and a U-Net decoder whose full-resolution stage runs few channels:
  39 % of the U-Net's work per image and 65 % of smp's Unet-resnet34's; measured against both in
  docs/benchmarks.md (which sets the default below).
* `unet`: the classic U-Net, `width` channels at full resolution (the default before the ResUNet).

>>> import torch
>>> net = UNet(in_channels=1, classes=29, width=8, depth=3)
>>> net(torch.zeros(1, 1, 64, 64)).shape
torch.Size([1, 29, 64, 64])
>>> ResUNet(width=8, depth=3)(torch.zeros(1, 1, 64, 64)).shape
torch.Size([1, 29, 64, 64])
"""
from __future__ import annotations

import math

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


STEMS = ("full", "strided")
# the fraction of pixels one class covers, about: a bone is 0.2-2 % of a hand radiograph (0.56 %
# per class on average in the demo's synthetic set); the head starts there (below)
PRIOR = 0.005


class ResUNet(nn.Module):
    """U-Net with a ResNet encoder, in plain torch (no torchvision/timm).

    `stem="full"` (the design for new runs): a stride-1 3x3 conv with `c0 = max(16, width // 2)`
    channels at full resolution, then `depth` stages of BasicBlocks (`blocks` per stage), each
    halving the resolution: `width` channels at 1/2, 2x at 1/4 ... (capped at `max_width`).
    Decoder: per level, bilinear x2, concatenation with the encoder's features of that level and
    two conv3x3 with that level's channels, down to full resolution, where the skip is the stem's
    `c0` features. The full-resolution work is one conv in and one decoder stage out at `c0`
    channels (the U-Net runs four `width`-channel convolutions there): small bones a few pixels
    wide keep features of their own, which the strided stem lost (docs/benchmarks.md).

    `stem="strided"`: the first design (runs made before `stem` existed): a 3x3 stride-2 stem
    (`width` channels at 1/2), `depth - 1` stages, the input image as the full-resolution skip
    and `max(8, width // 2)` channels there.

    Initialisation (both): the last norm of every residual block starts at zero, so each block
    starts as the identity, and the head's bias at the logit of `PRIOR`, so every class starts
    near its pixel share instead of 0.5 everywhere. Measured on the demo's data (200 steps): the
    zero-init lowered the training loss from 0.88 to 0.82, the prior bias from 0.82 to 0.43.
    """

    def __init__(self, in_channels: int = 1, classes: int = 29, width: int = 32, depth: int = 5,
                 norm: str = "batch", max_width: int = 256, blocks: int | tuple[int, ...] = 2,
                 stem: str = "full"):
        super().__init__()
        if stem not in STEMS:
            raise ValueError(f"unknown resunet stem {stem!r}; known: {', '.join(STEMS)}")
        if depth < 2:
            raise ValueError("resunet depth must be >= 2 (a stem and one stage)")
        stages = depth if stem == "full" else depth - 1
        nblocks = (blocks,) * stages if isinstance(blocks, int) else tuple(blocks)
        if len(nblocks) != stages:
            raise ValueError(f"blocks needs {stages} entries (one per stage), got {len(nblocks)}")
        self.stem_kind = stem
        bias = norm == "none"
        if stem == "full":
            # channels at full resolution, 1/2, 1/4 ... 1/2**depth
            enc = [max(16, width // 2)] + [min(width * 2 ** i, max_width) for i in range(depth)]
            self.stem = nn.Sequential(nn.Conv2d(in_channels, enc[0], 3, padding=1, bias=bias),
                                      norm_layer(norm, enc[0]), nn.ReLU(inplace=True))
            skips = enc[:-1][::-1]
            outs = enc[:-1][::-1]
        else:
            # channels at 1/2 .. 1/2**depth; the image is the full-resolution skip
            enc = [min(width * 2 ** i, max_width) for i in range(depth)]
            self.stem = nn.Sequential(nn.Conv2d(in_channels, enc[0], 3, stride=2, padding=1, bias=bias),
                                      norm_layer(norm, enc[0]), nn.ReLU(inplace=True))
            skips = enc[:-1][::-1] + [in_channels]
            outs = enc[:-1][::-1] + [max(8, width // 2)]
        self.stages = nn.ModuleList(res_stage(enc[i], enc[i + 1], nblocks[i], norm, 2) for i in range(stages))
        cin = enc[-1]
        self.ups = nn.ModuleList()
        for cskip, cout in zip(skips, outs):
            self.ups.append(Up(cin, cskip, cout, norm))
            cin = cout
        self.head = nn.Conv2d(cin, classes, 1)
        for m in self.modules():
            if isinstance(m, BasicBlock) and getattr(m.bn2, "weight", None) is not None:
                nn.init.zeros_(m.bn2.weight)
        nn.init.constant_(self.head.bias, math.log(PRIOR / (1 - PRIOR)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [self.stem(x)]
        for stage in self.stages:
            feats.append(stage(feats[-1]))
        y = feats.pop()
        skips = feats[::-1] + ([x] if self.stem_kind == "strided" else [])
        for up, skip in zip(self.ups, skips):
            y = up(y, skip)
        return self.head(y)


ARCHS = ("resunet", "unet")
# chosen by measurement (docs/benchmarks.md, "Online augmentation at equal steps"): the ResUNet
# steps faster than smp's Unet-resnet34 on CPU (0.74x at 256 px, 0.85x at 512) and does a third
# of the U-Net's work; with the trainer's default online zoom and shift (trainer.data.OnlineAug)
# it reached 0.692 test Dice at the demo scale (600 steps, three seeds) where the previous
# default, the U-Net without them, reached 0.671 (+0.021, 95 % interval over images +0.007 to
# +0.035) and the U-Net with them 0.684 (+0.008, interval -0.006 to +0.021)
DEFAULT_ARCH = "resunet"


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
                in_channels: int = 1, max_width: int = 256, arch: str = "unet", blocks: int = 2,
                stem: str = "full") -> nn.Module:
    """The model of a training config. `arch` defaults to "unet" here for callers that predate
    it (old checkpoints); `TrainConfig.arch` holds the default for new runs."""
    check_arch(arch)
    if arch.startswith("smp:"):
        return smp_model(arch, classes=classes, in_channels=in_channels)
    if arch == "resunet":
        return ResUNet(in_channels=in_channels, classes=classes, width=width, depth=depth, norm=norm,
                       max_width=max_width, blocks=blocks, stem=stem)
    return UNet(in_channels=in_channels, classes=classes, width=width, depth=depth, norm=norm,
                max_width=max_width)


def model_from_config(cfg) -> nn.Module:
    """The model of a TrainConfig or of its stored dict (configs before `arch` were U-Nets, and
    ResUNets before `stem` had the strided stem)."""
    get = cfg.get if isinstance(cfg, dict) else (lambda k, d=None: getattr(cfg, k, d))
    return build_model(width=get("width"), depth=get("depth"), norm=get("norm"),
                       max_width=get("max_width", 256) or 256, arch=get("arch", "unet") or "unet",
                       blocks=get("blocks", 2) or 2, stem=get("stem", "strided") or "strided")


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
