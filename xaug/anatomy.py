"""Hand anatomy shared by the ops and reports: the wrist frame (where a hand turns) and the
wrist warp that turns the hand about it while the forearm stays.

Pure: polygons and arrays in, arrays out; no randomness, no I/O.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import cv2
import numpy as np

from xaug.classes import CARPALS, FOREARM, PROXIMAL_ROW, RAYS
from xaug.geometry import apply_points, rotation_matrix
from xaug.imaging import _border_value, _warp_linear, background_texture, blend_band, grey_channel, top_band_rows
from xaug.model import Annotation

HAND_LABELS: frozenset[str] = frozenset([lab for ray in RAYS for lab in ray] + list(CARPALS))


@dataclass(frozen=True)
class WristFrame:
    """Where the hand turns: `pivot` (x, y), `axis` (unit vector forearm -> fingers) and the
    half width of the blending band; `estimated` is False when defaults had to be used."""

    pivot: tuple[float, float]
    axis: tuple[float, float]
    half_width: float
    estimated: bool = True

    def to_json(self) -> dict:
        return {"pivot": list(self.pivot), "axis": list(self.axis), "half_width": self.half_width,
                "estimated": self.estimated}


def _points_of(annotations: Iterable[Annotation], labels: Iterable[str]) -> np.ndarray:
    wanted = set(labels)
    pts = [np.asarray(a.points, float).reshape(-1, 2) for a in annotations if a.label in wanted]
    return np.concatenate(pts) if pts else np.zeros((0, 2))


def wrist_frame(annotations: Sequence[Annotation], shape: Sequence[int]) -> WristFrame:
    """Estimate the wrist from the polygons (no pixels are looked at).

    The axis runs from the forearm's centroid (Radius + Ulna) to the proximal carpal row's
    (Scaphoid, Lunate, Triquetrum, Pisiform; all carpals when those are missing). The pivot
    lies on that line, half way between the most distal forearm point and the most proximal
    carpal point (the radiocarpal joint space). The band's half width is half that gap, at
    least 1% of the image. Without forearm or carpal polygons it falls back to an upright hand
    turning about (W/2, 0.72 H) and says so (`estimated=False`).
    """
    h, w = int(shape[0]), int(shape[1])
    floor_hw = max(2.0, 0.01 * min(h, w))
    forearm = _points_of(annotations, FOREARM)
    carpal = _points_of(annotations, PROXIMAL_ROW)
    if len(carpal) == 0:
        carpal = _points_of(annotations, CARPALS)
    if len(forearm) == 0 or len(carpal) == 0:
        return WristFrame(((w - 1) / 2, 0.72 * (h - 1)), (0.0, -1.0), 2 * floor_hw, False)
    c_f, c_p = forearm.mean(0), carpal.mean(0)
    axis = c_p - c_f
    norm = np.linalg.norm(axis)
    axis = axis / norm if norm > 1e-6 else np.array([0.0, -1.0])
    s_f = float((forearm @ axis).max())  # most distal forearm point along the axis
    s_p = float((carpal @ axis).min())   # most proximal carpal point
    level = 0.5 * (s_f + s_p)
    pivot = c_p + axis * (level - float(c_p @ axis))
    half = max(floor_hw, 0.5 * abs(s_p - s_f))
    # rounded here so the recorded provenance reproduces the matrix exactly
    return WristFrame((round(float(pivot[0]), 3), round(float(pivot[1]), 3)),
                      (round(float(axis[0]), 6), round(float(axis[1]), 6)), round(half, 3), True)


def split_hand(annotations: Iterable[Annotation]) -> tuple[list[Annotation], list[Annotation]]:
    """(hand, forearm): Radius and Ulna stay; everything else (fingers, carpals, unknown) turns."""
    hand, forearm = [], []
    for a in annotations:
        (forearm if a.label in FOREARM else hand).append(a)
    return hand, forearm


def _rasterise(annotations: Iterable[Annotation], shape: tuple[int, int], offset=(0, 0),
               m: np.ndarray | None = None) -> np.ndarray:
    """One uint8 0/1 mask of the union of the rings (optionally moved by `m`, in float) in a
    (h, w) window whose top-left pixel is `offset`; sub-pixel exact (fillPoly shift=4)."""
    mask = np.zeros(shape, np.uint8)
    for a in annotations:
        pts = np.asarray(a.points, float).reshape(-1, 2)
        if m is not None:
            pts = apply_points(pts, m)
        pts = pts - np.asarray(offset, float)
        if len(pts) >= 3:
            cv2.fillPoly(mask, [np.rint(pts * 16).astype(np.int32).reshape(-1, 1, 2)], 1, shift=4)
    return mask


def erase_forearm_near_wrist(src: np.ndarray, annotations: Sequence[Annotation], frame: WristFrame,
                             angle: float, half_width: float) -> None:
    """In place on `src`: paint the Radius/Ulna pixels that a turn by `angle` would carry across
    the band with the surrounding soft-tissue level, so the turned hand shows no ghost of them.

    Works in the bounding box of those forearm points only.
    """
    hand, forearm = split_hand(annotations)
    pts = _points_of(forearm, FOREARM)
    if len(pts) == 0:
        return
    h, w = src.shape[:2]
    piv = np.asarray(frame.pivot, float)
    ax = np.asarray(frame.axis, float) / np.linalg.norm(frame.axis)
    perp = np.array([-ax[1], ax[0]])
    s = (pts - piv) @ ax
    lateral = np.abs((pts - piv) @ perp).max()
    a = np.deg2rad(min(abs(angle), 89.0))
    reach = (half_width + lateral * np.sin(a)) / max(np.cos(a), 1e-3) + 2 * half_width
    near = pts[s >= -reach]
    if len(near) == 0:
        return
    ring = max(3, int(round(0.006 * max(h, w))))
    pad = 2 * ring + 2
    x0, y0 = (np.floor(near.min(0)).astype(int) - pad).clip(0)
    x1, y1 = np.minimum(np.ceil(near.max(0)).astype(int) + pad + 1, (w, h))
    if x1 <= x0 or y1 <= y0:
        return
    win = (y1 - y0, x1 - x0)
    bone = _rasterise(forearm, win, (x0, y0))
    # only the part within reach of the band: rows/cols whose s >= -reach
    yy, xx = np.mgrid[y0:y1, x0:x1]
    within = ((xx - piv[0]) * ax[0] + (yy - piv[1]) * ax[1]) >= -reach
    bone &= within.astype(np.uint8)
    hand_mask = _rasterise(hand, win, (x0, y0))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * ring + 1, 2 * ring + 1))
    around = cv2.dilate(bone, kernel)
    tissue_px = (around > 0) & (bone == 0) & (hand_mask == 0)
    sub = src[y0:y1, x0:x1]
    if not tissue_px.any():
        return
    tissue = np.median(sub[tissue_px], axis=0)
    # a soft edge: the painted area is the bone grown by 1 px, blurred, never over hand bones
    paint = cv2.dilate(bone, np.ones((3, 3), np.uint8)).astype(np.float32)
    paint = cv2.GaussianBlur(paint, (0, 0), 1.0) * (1 - hand_mask)
    if sub.ndim == 3:
        paint = paint[:, :, None]
    sub[...] = np.rint(sub * (1 - paint) + np.asarray(tissue, np.float32) * paint).astype(src.dtype)


def wrist_warp(img: np.ndarray, annotations: Sequence[Annotation], angle: float, frame: WristFrame,
               half_width: float, fill: str | float | Sequence[float] | None = "background",
               seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The hand turned by `angle` degrees about the wrist while the forearm stays: (image, matrix).

    1. the hand-side source is a copy of `img` in which the Radius/Ulna pixels near the wrist
       are painted with soft tissue and the top detector band with the background (neither
       should turn with the hand);
    2. that copy is warped by the rotation about `frame.pivot`;
    3. the result is blended with `img` across the band (`blend_band`) and the top band rows
       are put back where no turned hand bone reaches them.
    """
    h, w = img.shape[:2]
    m = rotation_matrix(angle, frame.pivot)
    if angle == 0:
        return img.copy(), m
    border = _border_value(img, fill)
    base = grey_channel(img) if border[0] == border[1] == border[2] else None
    if base is not None:  # grey-looking BGR: the whole warp on one channel, expanded at the end
        out, m = wrist_warp(base, annotations, angle, frame, half_width, fill, seed)
        return cv2.cvtColor(out, cv2.COLOR_GRAY2BGR), m
    # the hand-side source: a private copy
    src = img.copy()
    erase_forearm_near_wrist(src, annotations, frame, angle, half_width)
    texture = background_texture(src, (h, w), seed) if fill == "texture" else None
    band = top_band_rows(img)
    if band:
        if texture is not None:
            src[:band] = texture[:band]
        else:
            channels = src.shape[2] if src.ndim == 3 else 1
            fill_px = np.rint(np.asarray(border[:channels])).astype(src.dtype)
            src[:band] = fill_px if src.ndim == 3 else fill_px[0]
    moved = _warp_linear(src, m, (h, w), border, texture)
    out = blend_band(img, moved, frame.pivot, frame.axis, half_width, out=moved)
    if band:
        hand, _ = split_hand(annotations)
        turned = [apply_points(a.points, m) for a in hand if len(a.points)]
        keep = np.ones(w, bool)  # columns where the band can come back
        for p in turned:
            hit = p[p[:, 1] < band + 2]
            if len(hit):
                lo = int(max(0, np.floor(hit[:, 0].min()) - 2))
                hi = int(min(w, np.ceil(hit[:, 0].max()) + 3))
                keep[lo:hi] = False
        if keep.all():
            out[:band] = img[:band]
        else:
            out[:band, keep] = img[:band, keep]
    return out, m


__all__ = ["WristFrame", "wrist_frame", "split_hand", "HAND_LABELS", "PROXIMAL_ROW",
           "erase_forearm_near_wrist", "wrist_warp"]
