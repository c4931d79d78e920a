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
import io
import json
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from xaug.classes import CLASSES
from xaug.raster import DICE_EPS
from xaug.store import atomic_write


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
        """`class,dice` rows in class order, then `mean` (atomically, as every file below)."""
        rows = [["class", "dice"], *([c, f"{d:.6f}"] for c, d in zip(self.classes, self.per_class())),
                ["mean", f"{self.mean():.6f}"]]
        _write_csv(path, rows)

    def write_image_csv(self, path: Path) -> None:
        """One row per image: `image_name,mean,<class>...` (for error analysis)."""
        _write_csv(path, [["image_name", "mean", *self.classes],
                          *([name, f"{row.mean():.6f}", *(f"{d:.6f}" for d in row)]
                            for name, row in zip(self.images, self.rows))])

    def write_json(self, path: Path, **extra) -> None:
        atomic_write(Path(path), (json.dumps({**extra, **self.summary()}, indent=2) + "\n").encode())


def _write_csv(path: Path, rows) -> None:
    """A killed command leaves the previous file or the new one, never a truncated CSV."""
    buf = io.StringIO(newline="")
    csv.writer(buf).writerows(rows)
    atomic_write(Path(path), buf.getvalue().encode())


def read_class_csv(path: Path) -> dict[str, float]:
    """The `class,dice` CSV back as {class: dice} (the `mean` row included)."""
    with open(path, newline="") as fh:
        return {row["class"]: float(row["dice"]) for row in csv.DictReader(fh)}


# ---------------------------------------------------------------- chunked scoring on the device

def class_chunk(shape: tuple[int, int], device: torch.device | str, budget_bytes: int | None = None) -> int:
    """How many classes to upsample at once at `shape`: the float32 logits, the bool prediction
    and the unpacked target of one chunk fit in `budget_bytes` (256 MiB on CPU, where smaller
    buffers stay out of the page-fault path; 2 GiB on CUDA)."""
    if budget_bytes is None:
        budget_bytes = (2 << 30) if torch.device(device).type == "cuda" else (256 << 20)
    per_class = int(shape[0]) * int(shape[1]) * (4 + 1 + 1 + 1)
    return max(1, min(64, budget_bytes // max(1, per_class)))


def upsample_chunks(logits: torch.Tensor, shape: tuple[int, int], chunk: int | None = None):
    """Yield (first class, bool (k, H, W) prediction) chunks of one image's (C, h, w) logits:
    the same bilinear-then-`> 0` as `upsample_threshold`, `chunk` classes at a time."""
    c = logits.shape[0]
    chunk = chunk or class_chunk(shape, logits.device)
    for c0 in range(0, c, chunk):
        yield c0, upsample_threshold(logits[c0:c0 + chunk], shape)


def dice_counts(logits: torch.Tensor, gt_packed: np.ndarray | torch.Tensor, shape: tuple[int, int],
                chunk: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per class (|P∩G|, |P|, |G|) int64 on the logits' device, for (C, h, w) logits against the
    bit-packed (C, H, ceil(W/8)) targets, `chunk` classes at a time, so a 2048 px image never
    needs all 29 full-size planes at once.

    On a GPU the prediction is upsampled, thresholded, compared with the unpacked target and
    counted there. On the CPU the prediction is packed to bits like the target and counted with
    popcounts: no unpacked target and no int64 copy of the masks (torch's `bool.sum` makes one,
    which at 2048 px cost more, in page faults, than the upsampling itself)."""
    if logits.device.type == "cpu":
        return _dice_counts_packed(logits, gt_packed, shape, chunk)
    dev = logits.device
    packed = torch.as_tensor(np.asarray(gt_packed)) if not isinstance(gt_packed, torch.Tensor) else gt_packed
    c = logits.shape[0]
    inter = torch.zeros(c, dtype=torch.int64, device=dev)
    psum = torch.zeros_like(inter)
    gsum = torch.zeros_like(inter)
    for c0, pred in upsample_chunks(logits, shape, chunk):
        k = pred.shape[0]
        gt = unpack_masks(packed[c0:c0 + k], shape[1], dev)
        p, g = pred.reshape(k, -1), gt.reshape(k, -1)
        inter[c0:c0 + k] = (p & g).sum(1, dtype=torch.int64)
        psum[c0:c0 + k] = p.sum(1, dtype=torch.int64)
        gsum[c0:c0 + k] = g.sum(1, dtype=torch.int64)
    return inter, psum, gsum


if hasattr(np, "bitwise_count"):  # numpy >= 2
    def _popcount_rows(a: np.ndarray) -> np.ndarray:
        return np.bitwise_count(a).reshape(a.shape[0], -1).sum(1, dtype=np.int64)
else:  # pragma: no cover - numpy 1.x
    _POPCOUNT = np.array([bin(i).count("1") for i in range(256)], np.uint8)

    def _popcount_rows(a: np.ndarray) -> np.ndarray:
        return _POPCOUNT[a].reshape(a.shape[0], -1).sum(1, dtype=np.int64)


def _dice_counts_packed(logits: torch.Tensor, gt_packed: np.ndarray | torch.Tensor, shape: tuple[int, int],
                        chunk: int | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`dice_counts` on the CPU: the same bilinear upsampling (into reused buffers), `> 0`, packed
    to bits along the width (as the targets are: zero padding bits on both sides) and popcounts."""
    gt = gt_packed.numpy() if isinstance(gt_packed, torch.Tensor) else np.asarray(gt_packed)
    c = logits.shape[0]
    h, w = int(shape[0]), int(shape[1])
    chunk = chunk or class_chunk((h, w), "cpu")
    inter = np.zeros(c, np.int64)
    psum = np.zeros(c, np.int64)
    src = logits.detach().float()
    same = tuple(src.shape[-2:]) == (h, w)
    up = None if same else torch.empty((1, min(chunk, c), h, w), dtype=torch.float32)
    pred = torch.empty((min(chunk, c), h, w), dtype=torch.bool)
    for c0 in range(0, c, chunk):
        k = min(chunk, c - c0)
        if same:
            vals = src[c0:c0 + k]
        else:
            torch._C._nn.upsample_bilinear2d(src[c0:c0 + k].unsqueeze(0), (h, w), False, None, None,
                                             out=up[:, :k])
            vals = up[0, :k]
        torch.gt(vals, 0, out=pred[:k])
        bits = np.packbits(pred[:k].numpy(), axis=-1)
        psum[c0:c0 + k] = _popcount_rows(bits)
        inter[c0:c0 + k] = _popcount_rows(bits & gt[c0:c0 + k])
    gsum = _popcount_rows(gt[:c]) if c else np.zeros(0, np.int64)
    return torch.from_numpy(inter), torch.from_numpy(psum), torch.from_numpy(gsum)


def dice_from_counts(inter: torch.Tensor, psum: torch.Tensor, gsum: torch.Tensor) -> torch.Tensor:
    """The competition Dice from counts (the formula of `dice_per_class_torch`)."""
    return (2.0 * inter.double() + DICE_EPS) / ((psum + gsum).double() + DICE_EPS)


def rle_torch(mask: torch.Tensor) -> str:
    """`xaug.raster.rle_encode` of a bool tensor, the run edges found on its device: only the
    edges travel to the host, never the full-size mask.

    >>> rle_torch(torch.tensor([[0, 1, 1], [0, 0, 1]], dtype=torch.bool))
    '2 2 6 1'
    """
    flat = mask.reshape(-1)
    padded = torch.zeros(flat.numel() + 2, dtype=torch.bool, device=flat.device)
    padded[1:-1] = flat
    edges = torch.nonzero(padded[1:] != padded[:-1]).flatten().cpu().numpy()
    if edges.size == 0:
        return ""
    starts, ends = edges[0::2], edges[1::2]
    runs = np.empty(starts.size * 2, np.int64)
    runs[0::2] = starts + 1
    runs[1::2] = ends - starts
    return " ".join(map(str, runs.tolist()))


class StreamingImageCSV:
    """`write_image_csv`'s file, written row by row as images are scored (a crash keeps the rows
    so far in `<name>.partial`; the full file appears, atomically, at `close`)."""

    def __init__(self, path: Path, classes: tuple[str, ...] = CLASSES):
        self.path = Path(path)
        self.tmp = self.path.with_name(self.path.name + ".partial")
        self.fh = open(self.tmp, "w", newline="")
        self.writer = csv.writer(self.fh)
        self.writer.writerow(["image_name", "mean", *classes])

    def add(self, image: str, dice: np.ndarray) -> None:
        self.writer.writerow([image, f"{float(np.mean(dice)):.6f}", *(f"{d:.6f}" for d in dice)])

    def close(self) -> None:
        self.fh.close()
        import os

        os.replace(self.tmp, self.path)
