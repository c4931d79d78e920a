"""The competition Dice at the original resolution (DATA.md): logits upsampled bilinearly to the
image size, `sigmoid > 0.5` (that is, logit > 0), per (image, class)
`(2|P∩G| + 1e-4) / (|P| + |G| + 1e-4)`, mean over images per class, then over classes.

The numpy reference is `xaug.raster.dice_per_class`; `dice_per_class_torch` is the same formula
on tensors so scoring runs on the GPU when there is one.

>>> import numpy as np
>>> t = DiceTable(); t.add("a.png", np.array([1.0, 0.5])); t.add("b.png", np.array([0.0, 0.5]))
>>> t.per_class().tolist(), t.mean()
([0.5, 0.5], 0.5)
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from xaug.classes import CLASSES
from xaug.raster import DICE_EPS


def dice_per_class_torch(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """(C,) float64 Dice of (C, H, W) binary tensors, competition convention (both empty -> 1)."""
    p = pred.reshape(pred.shape[0], -1).bool()
    g = gt.reshape(gt.shape[0], -1).bool()
    inter = (p & g).sum(1, dtype=torch.int64).double()
    total = (p.sum(1, dtype=torch.int64) + g.sum(1, dtype=torch.int64)).double()
    return (2.0 * inter + DICE_EPS) / (total + DICE_EPS)


def upsample_threshold(logits: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """(C, h, w) logits -> (C, H, W) bool: bilinear upsampling as logits, then sigmoid > 0.5."""
    up = logits.float().unsqueeze(0)
    if tuple(up.shape[-2:]) != tuple(shape):
        up = F.interpolate(up, size=tuple(shape), mode="bilinear", align_corners=False)
    return up[0] > 0  # sigmoid(x) > 0.5  <=>  x > 0


def unpack_masks(packed: np.ndarray | torch.Tensor, width: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Inverse of `np.packbits(masks, axis=-1)` as a bool tensor on `device`, cut to `width`."""
    t = torch.as_tensor(np.asarray(packed)).to(device)
    shifts = torch.arange(7, -1, -1, device=t.device, dtype=torch.uint8)
    bits = (t.unsqueeze(-1) >> shifts) & 1
    return bits.reshape(*t.shape[:-1], -1)[..., :width].bool()


def competition_dice(logits: torch.Tensor, gt: torch.Tensor) -> np.ndarray:
    """Per-class Dice of one image: (C, h, w) logits against (C, H, W) binary targets."""
    pred = upsample_threshold(logits, tuple(gt.shape[-2:]))
    return dice_per_class_torch(pred, gt.to(pred.device)).cpu().numpy()


class DiceTable:
    """Per-image, per-class Dice rows; summaries follow the competition (images, then classes)."""

    def __init__(self, classes: tuple[str, ...] = CLASSES):
        self.classes = tuple(classes)
        self.images: list[str] = []
        self.rows: list[np.ndarray] = []

    def add(self, image: str, dice: np.ndarray) -> None:
        self.images.append(image)
        self.rows.append(np.asarray(dice, np.float64))

    def __len__(self) -> int:
        return len(self.rows)

    def per_class(self) -> np.ndarray:
        if not self.rows:
            return np.full(len(self.classes), np.nan)
        return np.mean(np.stack(self.rows), axis=0)

    def mean(self) -> float:
        return float(np.mean(self.per_class())) if self.rows else float("nan")

    def per_image_mean(self) -> np.ndarray:
        return np.array([r.mean() for r in self.rows])

    def summary(self) -> dict:
        return {"mean_dice": self.mean(), "images": len(self.rows),
                "per_class": {c: float(d) for c, d in zip(self.classes, self.per_class())}}

    def write_class_csv(self, path: Path) -> None:
        """`class,dice` rows in class order, then `mean`."""
        with open(path, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["class", "dice"])
            for c, d in zip(self.classes, self.per_class()):
                w.writerow([c, f"{d:.6f}"])
            w.writerow(["mean", f"{self.mean():.6f}"])

    def write_image_csv(self, path: Path) -> None:
        """One row per image: `image_name,mean,<class>...` (for error analysis)."""
        with open(path, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["image_name", "mean", *self.classes])
            for name, row in zip(self.images, self.rows):
                w.writerow([name, f"{row.mean():.6f}", *(f"{d:.6f}" for d in row)])

    def write_json(self, path: Path, **extra) -> None:
        Path(path).write_text(json.dumps({**extra, **self.summary()}, indent=2) + "\n")


def read_class_csv(path: Path) -> dict[str, float]:
    """The `class,dice` CSV back as {class: dice} (the `mean` row included)."""
    with open(path, newline="") as fh:
        return {row["class"]: float(row["dice"]) for row in csv.DictReader(fh)}
