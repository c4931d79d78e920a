"""Error analysis of predictions against ground truth on 29-channel multi-label masks.

Per pixel p let G(p) be the set of ground-truth classes and P(p) the predicted classes;
Wrong(p) = P(p) - G(p) (predicted, not there) and Missed(p) = G(p) - P(p) (there, not predicted).

- RED, label confusion: G(p) is not empty and Wrong(p) is not empty: a bone pixel was given a
  class it does not belong to.
- YELLOW, under-prediction: Missed(p) is not empty and Wrong(p) is empty: a class was missed and
  nothing wrong was predicted instead.
- GREEN, over-prediction: G(p) is empty and Wrong(p) is not empty: bone predicted on background.

The three sets are disjoint and their union is every pixel where P(p) != G(p); a perfect
prediction colours nothing. Per class c, each channel error (c in Wrong(p) or c in Missed(p))
takes the colour of its pixel, so the shares of a class (and overall) add up to 1. An error
(c, p) is near the boundary when p lies within `boundary_px` pixels of the edge of class c's
ground truth (the image border is not an edge).

>>> import numpy as np
>>> gt = np.zeros((29, 8, 8), bool); gt[0, 2:6, 2:6] = True
>>> a = analyse_errors(gt, gt.copy())
>>> int(a.confusion.sum() + a.missed.sum() + a.over.sum())
0
"""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import cv2
import numpy as np

from xaug.classes import CLASSES, NUM_CLASSES
from xaug.errors import BadInput
from xaug.raster import DICE_EPS, class_masks

KINDS = ("confusion", "missed", "over")
# RGB colours of the three kinds on the overlays.
KIND_COLORS = {"confusion": (255, 0, 0), "missed": (255, 215, 0), "over": (0, 200, 0)}
BOUNDARY_PX = 3


@dataclass
class ErrorAnalysis:
    """Pixel maps (H, W) of the three kinds and per-class counts (29, 3) in KINDS order."""

    confusion: np.ndarray
    missed: np.ndarray
    over: np.ndarray
    counts: np.ndarray
    near_boundary: np.ndarray
    dice: np.ndarray
    gt_pixels: np.ndarray
    pred_pixels: np.ndarray

    @property
    def errors(self) -> int:
        return int(self.counts.sum())

    def shares(self) -> np.ndarray:
        """Overall shares of (confusion, missed, over) among channel errors; zeros if none."""
        return _shares(self.counts.sum(0))


def _shares(counts: np.ndarray) -> np.ndarray:
    c = np.asarray(counts, np.float64)
    total = c.sum(-1, keepdims=True)
    return np.divide(c, total, out=np.zeros_like(c), where=total > 0)


def boundary_band(mask: np.ndarray, px: int) -> np.ndarray:
    """Pixels within `px` of the mask's edge, inside or outside (the image border is no edge)."""
    m = np.asarray(mask, np.uint8)
    if px <= 0 or not m.any():
        return np.zeros(m.shape, bool)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * px + 1, 2 * px + 1))
    grown = cv2.dilate(m, kernel)
    shrunk = cv2.erode(m, kernel, borderType=cv2.BORDER_REPLICATE)
    return (grown > 0) & (shrunk == 0)


def _window(g: np.ndarray, p: np.ndarray, margin: int) -> tuple[slice, slice] | None:
    """Bounding box of g | p grown by `margin` and clipped to the image; None when both are empty."""
    rows = np.flatnonzero(g.any(1) | p.any(1))
    if not rows.size:
        return None
    r0, r1 = rows[0], rows[-1] + 1
    cols = np.flatnonzero(g[r0:r1].any(0) | p[r0:r1].any(0))
    h, w = g.shape
    return (slice(max(0, r0 - margin), min(h, r1 + margin)),
            slice(max(0, cols[0] - margin), min(w, cols[-1] + 1 + margin)))


def _band_in_window(mask: np.ndarray, win: tuple[slice, slice], px: int) -> np.ndarray:
    """boundary_band(mask)[win], computed on the window only.

    The window extends `px + 1` beyond the mask wherever it does not meet the image border, so the
    window's edges there lie outside the mask, and replicating them equals the zeros beyond.
    """
    return boundary_band(mask[win], px)


def analyse_errors(gt: np.ndarray, pred: np.ndarray, boundary_px: int = BOUNDARY_PX) -> ErrorAnalysis:
    """Classify every wrong (class, pixel) of `pred` against `gt`, both (29, H, W) binary."""
    if gt.shape != pred.shape or gt.ndim != 3:
        raise BadInput(f"ground truth {gt.shape} and prediction {pred.shape} must both be (C, H, W) "
                       "of the same size")
    c_count, h, w = gt.shape
    gt_any = np.zeros((h, w), bool)
    wrong_any = np.zeros((h, w), bool)
    missed_any = np.zeros((h, w), bool)
    # Each channel is worked on inside the bounding box of its ground truth and prediction (plus
    # the boundary margin): bones are small against the image, and nothing outside can change.
    windows = [_window(gt[c], pred[c], boundary_px + 1) for c in range(c_count)]
    for c, win in enumerate(windows):
        if win is None:
            continue
        g, p = gt[c][win].astype(bool), pred[c][win].astype(bool)
        gt_any[win] |= g
        wrong_any[win] |= p & ~g
        missed_any[win] |= g & ~p
    counts = np.zeros((c_count, 3), np.int64)
    near = np.zeros((c_count, 3), np.int64)
    dice = np.ones(c_count)
    gt_px = np.zeros(c_count, np.int64)
    pred_px = np.zeros(c_count, np.int64)
    for c, win in enumerate(windows):
        if win is None:
            continue
        g, p = gt[c][win].astype(bool), pred[c][win].astype(bool)
        gt_px[c], pred_px[c] = np.count_nonzero(g), np.count_nonzero(p)
        inter = np.count_nonzero(g & p)
        dice[c] = (2.0 * inter + DICE_EPS) / (gt_px[c] + pred_px[c] + DICE_EPS)
        fp, fn = p & ~g, g & ~p
        if not (fp.any() or fn.any()):
            continue
        ga, wa = gt_any[win], wrong_any[win]
        kinds = ((fp & ga) | (fn & wa), fn & ~wa, fp & ~ga)
        band = _band_in_window(gt[c], win, boundary_px)
        for k, m in enumerate(kinds):
            counts[c, k] = np.count_nonzero(m)
            near[c, k] = np.count_nonzero(m & band)
    return ErrorAnalysis(gt_any & wrong_any, missed_any & ~wrong_any, wrong_any & ~gt_any,
                         counts, near, dice, gt_px, pred_px)


def error_overlay(image: np.ndarray, analysis: ErrorAnalysis, max_side: int | None = None,
                  dim: float = 0.7) -> np.ndarray:
    """RGB picture: the image in grey (dimmed) with RED / YELLOW / GREEN error pixels.

    When downscaled, a pixel is coloured if any full-resolution pixel under it is, so thin
    boundary errors stay visible.
    """
    gray = image if image.ndim == 2 else cv2.cvtColor(image[..., :3], cv2.COLOR_BGR2GRAY)
    h, w = gray.shape
    size = (w, h)
    if max_side and max(h, w) > max_side:
        s = max_side / max(h, w)
        size = (max(1, round(w * s)), max(1, round(h * s)))
        gray = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
    rgb = np.repeat((gray.astype(np.float32) * dim)[..., None], 3, axis=2).astype(np.uint8)
    for kind in ("over", "missed", "confusion"):  # disjoint at full size; red wins where pooled
        m = getattr(analysis, kind)
        if size != (w, h):
            m = cv2.resize(m.astype(np.uint8) * 255, size, interpolation=cv2.INTER_AREA) > 0
        rgb[m] = KIND_COLORS[kind]
    return rgb


# ---------------------------------------------------------------- the report

@dataclass
class ImageErrors:
    relpath: str
    image_path: Path
    mean_dice: float
    dice: np.ndarray
    counts: np.ndarray
    near_boundary: np.ndarray
    pixels: dict[str, int]
    overlay: str

    def to_row(self) -> dict[str, Any]:
        total = int(self.counts.sum())
        shares = _shares(self.counts.sum(0))
        return {"image": self.relpath, "mean_dice": round(self.mean_dice, 5), "error_pixels": total,
                **{f"{k}_share": round(float(s), 4) for k, s in zip(KINDS, shares)},
                "near_boundary_share": round(float(self.near_boundary.sum() / total), 4) if total else 0.0,
                **{f"{k}_pixels": v for k, v in self.pixels.items()}, "overlay": self.overlay}


@dataclass
class ErrorReport:
    index: Path
    summary: dict[str, Any]
    images: list[ImageErrors]


def ground_truth(sample, shape: tuple[int, int]) -> np.ndarray:
    if sample.annotations is None:
        raise BadInput("image has no labels; the error report needs ground truth", where=sample.relpath)
    return class_masks(sample.annotations, shape)


def analyse_pairs(pairs: Iterable[tuple[Any, np.ndarray]], out: Path, boundary_px: int = BOUNDARY_PX,
                  overlay_side: int = 1024, total: int | None = None, progress: bool = True
                  ) -> Iterator[ImageErrors]:
    """Stream (Sample, pred (29, H, W) bool): analyse, write the overlay, keep only the numbers."""

    from xaug.report.images import file_stem, write_rgb
    from xaug.store import read_sample_image

    from xaug.progress import Progress

    for sample, pred in Progress.wrap(pairs, "errors", enabled=progress, total=total, unit="img"):
        image = read_sample_image(sample)  # checked against the manifest
        h, w = image.shape[:2]
        pred = np.asarray(pred).astype(bool)
        if pred.shape[1:] != (h, w):  # predictions are expected at the original size
            pred = np.stack([cv2.resize(p.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) > 0
                             for p in pred])
        a = analyse_errors(ground_truth(sample, (h, w)), pred, boundary_px)
        rel = f"overlays/{file_stem(sample.relpath)}.jpg"
        write_rgb(out / rel, error_overlay(image, a, overlay_side), quality=92)
        pixels = {k: int(getattr(a, k).sum()) for k in KINDS}
        yield ImageErrors(sample.relpath, Path(sample.image_path), float(a.dice.mean()), a.dice, a.counts,
                          a.near_boundary, pixels, rel)


def summarize(images: list[ImageErrors], boundary_px: int = BOUNDARY_PX) -> dict[str, Any]:
    """Per-class and overall shares, near-boundary shares and Dice over all images."""
    counts = np.sum([im.counts for im in images], axis=0) if images else np.zeros((NUM_CLASSES, 3), np.int64)
    near = np.sum([im.near_boundary for im in images], axis=0) if images else np.zeros((NUM_CLASSES, 3), np.int64)
    dice = np.mean([im.dice for im in images], axis=0) if images else np.ones(NUM_CLASSES)
    total = int(counts.sum())
    per_class = {}
    cls_shares = _shares(counts)
    for c, name in enumerate(CLASSES):
        n = int(counts[c].sum())
        per_class[name] = {"dice": round(float(dice[c]), 5), "error_pixels": n,
                           **{k: round(float(s), 4) for k, s in zip(KINDS, cls_shares[c])},
                           "near_boundary": round(float(near[c].sum() / n), 4) if n else 0.0}
    overall = _shares(counts.sum(0))
    return {"images": len(images), "mean_dice": round(float(dice.mean()), 5), "error_pixels": total,
            "shares": {k: round(float(s), 4) for k, s in zip(KINDS, overall)},
            "near_boundary_px": boundary_px,
            "near_boundary": round(float(near.sum() / total), 4) if total else 0.0,
            "near_boundary_by_kind": {k: round(float(near[:, i].sum() / counts[:, i].sum()), 4)
                                      if counts[:, i].sum() else 0.0 for i, k in enumerate(KINDS)},
            "per_class": per_class, "counts": counts.tolist()}


def write_error_report(pairs: Iterable[tuple[Any, np.ndarray]], out: Path, title: str, subtitle: str = "",
                       boundary_px: int = BOUNDARY_PX, overlay_side: int = 1024, total: int | None = None,
                       progress: bool = True) -> ErrorReport:
    """Write `out/index.html`, `errors.json`, `images.csv`, plots and one overlay per image."""
    from xaug.report import html as H
    from xaug.report import plots
    from xaug.store import atomic_write

    out = H.begin_report(out, ("errors.json", "images.csv"))
    images = list(analyse_pairs(pairs, out, boundary_px, overlay_side, total, progress))
    images.sort(key=lambda im: (im.mean_dice, im.relpath))
    summary = summarize(images, boundary_px)
    summary["title"] = title
    counts = np.asarray(summary["counts"])
    dice = np.array([summary["per_class"][c]["dice"] for c in CLASSES])
    plots.error_shares(counts, out / "img/shares.png", "Kinds of error per class (share of the class's error pixels)")
    plots.class_bars(dice, out / "img/dice.png", "Mean Dice per class", "Dice",
                     highlight=[int(i) for i in np.argsort(dice)[:3]])
    atomic_write(out / "errors.json", json.dumps(summary, indent=1).encode("utf-8"))
    rows = [im.to_row() for im in images]
    buf = io.StringIO(newline="")
    if rows:
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    atomic_write(out / "images.csv", buf.getvalue().encode("utf-8"))

    sh = summary["shares"]
    legend = " ".join(H.swatch(KIND_COLORS[k], name) for k, name in
                      (("confusion", "RED: label confusion"), ("missed", "YELLOW: missed ground truth"),
                       ("over", "GREEN: bone predicted where there is none")))
    class_rows = [(c, v["dice"], v["error_pixels"], f"{100 * v['confusion']:.1f}%", f"{100 * v['missed']:.1f}%",
                   f"{100 * v['over']:.1f}%", f"{100 * v['near_boundary']:.1f}%")
                  for c, v in summary["per_class"].items()]
    sections = [
        H.section("Summary", H.kpis([("images", len(images)), ("mean Dice", summary["mean_dice"]),
                                     ("confusion (red)", f"{100 * sh['confusion']:.1f}%"),
                                     ("missed (yellow)", f"{100 * sh['missed']:.1f}%"),
                                     ("over (green)", f"{100 * sh['over']:.1f}%"),
                                     (f"within {boundary_px} px of a boundary", f"{100 * summary['near_boundary']:.1f}%")]),
                  f'<p class="note">{legend}</p>',
                  H.note("Shares are of channel errors: each (class, pixel) that is predicted but not in the "
                         "ground truth, or in the ground truth but not predicted, counts once and takes its "
                         "pixel's colour. RED: the pixel is bone and got a class it does not belong to. YELLOW: "
                         "a class was missed and nothing wrong was predicted there. GREEN: bone predicted on "
                         f"background. Near a boundary: within {boundary_px} px of the edge of the class's own "
                         "ground truth."), anchor="summary"),
        H.section("Per class", H.plot("img/shares.png", "error shares per class"),
                  H.plot("img/dice.png", "Dice per class"),
                  H.table(["class", "Dice", "error px", "confusion", "missed", "over", "near boundary"], class_rows),
                  anchor="classes"),
        H.section("Images, worst first",
                  H.note("Mean Dice over the 29 classes per image; click an overlay for full size."),
                  H.grid(H.figure(im.overlay, f"{im.relpath} · Dice {im.mean_dice:.4f} · " + " / ".join(
                      f"{100 * s:.0f}%" for s in _shares(im.counts.sum(0))), 300, link=im.overlay) for im in images),
                  anchor="images"),
    ]
    index = H.write_page(out / "index.html", title, sections, subtitle)
    return ErrorReport(index, summary, images)
