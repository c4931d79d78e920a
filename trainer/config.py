"""The resolved training configuration: every knob in one place, written to the run folder."""
from __future__ import annotations

import json
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any

from trainer.data import OnlineAug
from trainer.model import DEFAULT_ARCH, NORMS, STEMS, check_arch
from xaug.errors import XaugError
from xaug.seeds import seed_problem


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


STORED_NOTES = ("parameters", "environment")  # written beside the settings in config.json, not settings
# online augmentation settings a stored config may lack: they did not exist then, and what the
# trainer did before is this (off, a black border)
STORED_AUG_BEFORE = {"scale": 0.0, "translate": 0.0, "gamma": 0.0, "black_level": 0.0, "border": "constant"}


def _type_problem(f, value) -> str | None:
    """What is wrong with the type of a stored `value` of TrainConfig field `f`, or None."""
    default = f.default if f.default is not MISSING else None
    if f.name == "aug":
        ok, want = isinstance(value, dict), "an object of online augmentation settings"
    elif isinstance(default, bool):
        ok, want = isinstance(value, bool), "true or false"
    elif isinstance(default, int) or default is None:  # None: workers, val_limit
        ok = (isinstance(value, int) and not isinstance(value, bool)) or (default is None and value is None)
        want = "an integer" + (" or null" if default is None else "")
    elif isinstance(default, float):
        ok, want = isinstance(value, (int, float)) and not isinstance(value, bool), "a number"
    else:
        ok, want = isinstance(value, str), "a string"
    return None if ok else f"expected {want}, got {json.dumps(value)}"


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
        if self.norm not in NORMS:
            raise XaugError(f"unknown norm {self.norm!r}; known: {', '.join(NORMS)}", where="--norm")
        if self.stem not in STEMS:
            raise XaugError(f"unknown resunet stem {self.stem!r}; known: {', '.join(STEMS)}", where="stem")
        if self.arch == "resunet" and self.depth < 2:
            raise XaugError("resunet needs depth >= 2 (a stem and one stage)", where="--depth")
        for name in ("size", "batch", "epochs", "width", "depth", "blocks", "world_size", "max_width", "val_batch",
                     "val_every"):
            if getattr(self, name) < 1:
                raise XaugError(f"{name} must be >= 1", where=f"--{name}" if name in FLAGS else name)
        for name, low in (("val_limit", 1), ("workers", 0)):
            if getattr(self, name) is not None and getattr(self, name) < low:
                raise XaugError(f"{name} must be >= {low} (or null)", where=name)
        for name, top in UPPER_BOUNDS.items():  # beyond these a run only exhausts memory or never ends
            if getattr(self, name) > top:
                raise XaugError(f"{name} {getattr(self, name):,} is above {top:,}; {UPPER_HINTS[name]}",
                                where=f"--{name}" if name in FLAGS else name)
        if self.size % (2 ** self.depth):  # after the bounds: a depth of 40 is named as such
            raise XaugError(f"size {self.size} must be a multiple of 2**depth = {2 ** self.depth}",
                            where="--size")
        for name in ("lr", "weight_decay", "warmup_epochs", "min_lr_ratio", "bce_weight", "dice_weight"):
            value = getattr(self, name)  # NaN fails both comparisons
            if not (isinstance(value, (int, float)) and 0 <= value < 1e6):
                raise XaugError(f"{name} must be a finite number >= 0, got {value}", where=f"--{name.replace('_', '-')}")
        if problem := seed_problem(self.seed):
            raise XaugError(f"seed {problem}", where="--seed")
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
        # Its `aug` without an online option predates that option, which was off (zoom and shift
        # were off by default until the ResUNet became the default model).
        aug = data.get("aug")
        if isinstance(aug, dict):
            data = {**data, "aug": {**STORED_AUG_BEFORE, **aug}}
        return cls(**{"arch": "unet", **data})

    @classmethod
    def from_stored(cls, data: dict[str, Any], where: str, fix: str) -> "TrainConfig":
        """A config a run stored (its config.json, a checkpoint's), checked as `xaug train` checks
        its settings: a wrong type or value is one line naming `where`, the key and `fix` (what to
        do). Keys an older trainer did not write take their defaults (see from_dict; the model
        itself is rebuilt from the stored dict by trainer.model.model_from_config)."""
        data = {k: v for k, v in data.items() if k not in STORED_NOTES}
        for block, known in (("", {f.name for f in fields(cls)}), ("aug.", {f.name for f in fields(OnlineAug)})):
            given = data if not block else data.get("aug")
            unknown = sorted(set(given) - known) if isinstance(given, dict) else []
            if unknown:
                raise XaugError(f"unknown key(s) {', '.join(block + k for k in unknown)}; {fix}", where=where)
        for f in fields(cls):
            problem = _type_problem(f, data[f.name]) if f.name in data else None
            if problem:
                raise XaugError(f"{f.name}: {problem}; {fix}", where=where)
        try:
            return cls.from_dict(data)
        except XaugError as exc:
            key = (exc.where or "config").lstrip("-").replace("-", "_")
            line = exc.message if exc.message.startswith(key) else f"{key}: {exc.message}"
            raise XaugError(f"{line}; {fix}", where=where) from None
        except (TypeError, ValueError) as exc:  # `aug`: a value OnlineAug cannot compare or convert
            raise XaugError(f"aug: {exc}; {fix}", where=where) from None

    def replace(self, **changes) -> "TrainConfig":
        return TrainConfig.from_dict({**self.to_dict(), **changes})

    # what must match for --resume to continue the same run
    def identity(self) -> dict[str, Any]:
        d = self.to_dict()
        for k in ("workers", "val_every", "val_limit", "val_batch", "compile", "cudnn_benchmark"):
            d.pop(k)
        if self.arch != "resunet":
            d.pop("stem")  # only the ResUNet has one: other runs keep their identity (and ablate hash)
        if self.aug.scale <= 0 and self.aug.translate <= 0:
            d["aug"].pop("border")  # it only acts on zoom and shift: runs without them keep their identity
        return d
