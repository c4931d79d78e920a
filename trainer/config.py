"""The resolved training configuration: every knob in one place, written to the run folder."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from trainer.data import OnlineAug
from trainer.model import DEFAULT_ARCH, STEMS, check_arch
from xaug.errors import XaugError


# Upper bounds of the integer knobs: a larger value is a typo (an extra zero) that would allocate
# tens of gigabytes (a 100,000 px side) or run for ever, not a setting.
UPPER_BOUNDS = {"size": 8192, "batch": 4096, "epochs": 100_000, "width": 1024, "max_width": 4096,
                "depth": 13, "blocks": 32, "val_batch": 4096}
FLAGS = ("size", "batch", "epochs", "width", "depth", "blocks")  # the others are no `xaug train` flags
UPPER_HINTS = {
    "size": "the input side is at most the images' (2048 for the competition data)",
    "batch": "use a batch that fits the memory (8 to 64 at 512 px)",
    "epochs": "train for fewer epochs (a run continues with --resume)",
    "width": "use 16 to 64 channels at full resolution",
    "max_width": "cap the deepest channels at 256 to 1024",
    "depth": "2**depth must divide the input side",
    "blocks": "use 1 to 4 blocks per stage",
    "val_batch": "use a batch that fits the memory",
}


@dataclass
class TrainConfig:
    size: int = 512            # training input side (images resized, polygons scaled)
    batch: int = 8
    epochs: int = 30
    lr: float = 2e-3           # AdamW peak learning rate
    weight_decay: float = 1e-4
    warmup_epochs: float = 1.0  # linear warm-up, then `schedule` decay to lr * min_lr_ratio
    schedule: str = "cosine"   # cosine | poly
    min_lr_ratio: float = 0.01
    arch: str = DEFAULT_ARCH   # resunet | unet | smp:<Architecture>:<encoder> (trainer/model.py)
    width: int = 32            # unet: channels at full resolution; resunet: stem/first stage
    depth: int = 5             # downsamplings (input side must divide by 2**depth)
    max_width: int = 256       # channel cap of the deepest levels
    blocks: int = 2            # resunet: BasicBlocks per encoder stage
    stem: str = "full"         # resunet: full (stride-1 stem, full-resolution skip) | strided (the
                               # first design; stored configs without `stem` are that one)
    norm: str = "batch"        # batch | group | instance | none
    bce_weight: float = 1.0
    dice_weight: float = 1.0
    aug: OnlineAug = field(default_factory=OnlineAug)
    seed: int = 0
    workers: int | None = None  # DataLoader workers (None: cores - 1, at most 8)
    cache: bool = True         # keep resized training images in memory
    compile: bool = False      # torch.compile on CUDA
    cudnn_benchmark: bool = False  # cuDNN autotuning; no gain measured on an H100 (bf16,
                                   # channels_last: 209 img/s without, 180-205 with, at 512)
    val_every: int = 1         # validate every N epochs (and after the last)
    val_limit: int | None = None  # score at most N validation images (None: all)
    val_batch: int = 4
    # filled in by the trainer: what the run trains and validates on
    dataset: str = ""
    dataset_id: str = ""
    val_dataset: str = ""
    val_id: str = ""
    train_images: int = 0
    val_images: int = 0
    world_size: int = 1        # processes of a torchrun/--nproc run (global batch = world_size x batch)

    def __post_init__(self):
        if isinstance(self.aug, dict):
            self.aug = OnlineAug(**self.aug)
        try:
            check_arch(self.arch)
        except ValueError as e:
            raise XaugError(str(e), where="--arch") from None
        if self.schedule not in ("cosine", "poly"):
            raise XaugError(f"unknown schedule {self.schedule!r}; known: cosine, poly", where="schedule")
        if self.size % (2 ** self.depth):
            raise XaugError(f"size {self.size} must be a multiple of 2**depth = {2 ** self.depth}",
                            where="--size")
        if self.stem not in STEMS:
            raise XaugError(f"unknown resunet stem {self.stem!r}; known: {', '.join(STEMS)}", where="stem")
        if self.arch == "resunet" and self.depth < 2:
            raise XaugError("resunet needs depth >= 2 (a stem and one stage)", where="--depth")
        for name in ("size", "batch", "epochs", "width", "depth", "blocks", "world_size"):
            if getattr(self, name) < 1:
                raise XaugError(f"{name} must be >= 1", where=f"--{name}")
        for name, top in UPPER_BOUNDS.items():  # beyond these a run only exhausts memory or never ends
            if getattr(self, name) > top:
                raise XaugError(f"{name} {getattr(self, name):,} is above {top:,}; {UPPER_HINTS[name]}",
                                where=f"--{name}" if name in FLAGS else name)
        for name in ("lr", "weight_decay", "warmup_epochs", "min_lr_ratio", "bce_weight", "dice_weight"):
            value = getattr(self, name)  # NaN fails both comparisons
            if not (isinstance(value, (int, float)) and 0 <= value < 1e6):
                raise XaugError(f"{name} must be a finite number >= 0, got {value}", where=f"--{name.replace('_', '-')}")
        if not self.lr > 0:
            raise XaugError(f"lr must be > 0, got {self.lr}", where="--lr")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise XaugError(f"unknown training option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}",
                            where="config")
        # a stored config from before `arch` existed describes a U-Net, whatever today's default.
        # (One from before `stem` existed describes a ResUNet with the strided stem: the model is
        # rebuilt from the stored dict (trainer.model.model_from_config), which knows that.)
        return cls(**{"arch": "unet", **data})

    def replace(self, **changes) -> "TrainConfig":
        return TrainConfig.from_dict({**self.to_dict(), **changes})

    # what must match for --resume to continue the same run
    def identity(self) -> dict[str, Any]:
        d = self.to_dict()
        for k in ("workers", "val_every", "val_limit", "val_batch", "compile", "cudnn_benchmark"):
            d.pop(k)
        if self.arch != "resunet":
            d.pop("stem")  # only the ResUNet has one: other runs keep their identity (and ablate hash)
        return d
