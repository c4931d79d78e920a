"""Polygons to masks, run-length encoding and the competition Dice; pure numpy/OpenCV.

>>> import numpy as np
>>> m = polygon_mask(np.array([[1, 1], [4, 1], [4, 4], [1, 4]]), (6, 6))
>>> int(m.sum()), rle_encode(m)[:5]
(16, '8 4 1')
"""
from __future__ import annotations

from typing import Iterable, Sequence

import cv2
import numpy as np

from xaug.classes import CLASS_INDEX, COLORS, NUM_CLASSES

DICE_EPS = 1e-4


def polygon_mask(points: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Binary uint8 mask (0/1) of one closed ring, pixel centres at integer coordinates."""
    mask = np.zeros(shape[:2], np.uint8)
    pts = np.asarray(points)
    if len(pts) >= 3:
        cv2.fillPoly(mask, [np.rint(pts).astype(np.int32).reshape(-1, 1, 2)], 1)
    return mask


def class_masks(annotations: Iterable, shape: tuple[int, int], channels_last: bool = False) -> np.ndarray:
    """The 29-channel multi-label mask (uint8 0/1): overlapping classes keep every pixel.

    Several annotations with the same label are OR-ed into one channel.
    """
    h, w = shape[:2]
    masks = np.zeros((NUM_CLASSES, h, w), np.uint8)
    by_class: dict[int, list[np.ndarray]] = {}
    for ann in annotations:
        pts = np.asarray(ann.points)
        if len(pts) >= 3:
            by_class.setdefault(CLASS_INDEX[ann.label], []).append(
                np.rint(pts).astype(np.int32).reshape(-1, 1, 2))
    for c, polys in by_class.items():
        for poly in polys:  # one fillPoly per ring: fillPoly on a list XORs overlapping parts
            cv2.fillPoly(masks[c], [poly], 1)
    return np.ascontiguousarray(masks.transpose(1, 2, 0)) if channels_last else masks


def rle_encode(mask: np.ndarray) -> str:
    """Competition RLE: row-major flattening, 1-based 'start length' pairs; empty mask -> ''."""
    flat = np.asarray(mask).reshape(-1).astype(bool)
    padded = np.concatenate([[False], flat, [False]])
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    starts, ends = edges[0::2], edges[1::2]
    runs = np.empty(starts.size * 2, np.int64)
    runs[0::2] = starts + 1
    runs[1::2] = ends - starts
    return " ".join(map(str, runs.tolist()))


def rle_decode(rle: str, shape: tuple[int, int]) -> np.ndarray:
    """Inverse of rle_encode: a uint8 0/1 mask of `shape`."""
    flat = np.zeros(int(np.prod(shape)), np.uint8)
    if rle and rle.strip():
        nums = np.asarray(rle.split(), dtype=np.int64)
        for start, length in zip(nums[0::2] - 1, nums[1::2]):
            flat[start:start + length] = 1
    return flat.reshape(shape)


def dice(pred: np.ndarray, gt: np.ndarray) -> float:
    """Competition Dice of two binary masks: (2|P∩G| + eps) / (|P| + |G| + eps); both empty -> 1."""
    p = np.asarray(pred).astype(bool)
    g = np.asarray(gt).astype(bool)
    inter = np.logical_and(p, g).sum(dtype=np.int64)
    return float((2.0 * inter + DICE_EPS) / (p.sum(dtype=np.int64) + g.sum(dtype=np.int64) + DICE_EPS))


def dice_per_class(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Dice for each channel of (C, H, W) binary stacks."""
    p = np.asarray(pred).astype(bool).reshape(pred.shape[0], -1)
    g = np.asarray(gt).astype(bool).reshape(gt.shape[0], -1)
    inter = np.logical_and(p, g).sum(1, dtype=np.int64)
    return (2.0 * inter + DICE_EPS) / (p.sum(1, dtype=np.int64) + g.sum(1, dtype=np.int64) + DICE_EPS)


def overlay(image: np.ndarray, masks: np.ndarray, alpha: float = 0.45,
            colors: Sequence[tuple[int, int, int]] = COLORS) -> np.ndarray:
    """RGB overlay of (C, H, W) class masks in the customary colours over a grey/RGB image."""
    base = image if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    rgb = cv2.cvtColor(base[..., :3], cv2.COLOR_BGR2RGB).astype(np.float32)
    color = np.zeros_like(rgb)
    count = np.zeros(rgb.shape[:2], np.float32)
    for c in range(masks.shape[0]):
        m = masks[c].astype(bool)
        if m.any():
            color[m] += np.asarray(colors[c], np.float32)
            count[m] += 1
    hit = count > 0
    color[hit] /= count[hit, None]
    rgb[hit] = (1 - alpha) * rgb[hit] + alpha * color[hit]
    return np.clip(rgb, 0, 255).astype(np.uint8)
