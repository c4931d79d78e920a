"""Tiny labelled samples for trainer tests, made without the store: a bright square-ish bone per
class on a dark background, so a small U-Net can learn something in a few steps."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from xaug.classes import CLASSES
from xaug.model import Annotation, Sample


def make_samples(root: Path, n: int = 4, size: int = 64, classes: int = 6, split: str = "train") -> list[Sample]:
    root.mkdir(parents=True, exist_ok=True)
    samples = []
    for i in range(n):
        rng = np.random.default_rng(np.random.SeedSequence([123, i]))
        img = np.full((size, size), 20, np.uint8)
        anns = []
        for c in range(classes):
            cx, cy = rng.integers(size // 8, size - size // 8, 2)
            r = int(rng.integers(size // 16 + 1, size // 6))
            pts = np.array([[cx - r, cy - r], [cx + r, cy - r], [cx + r, cy + r], [cx - r, cy + r]])
            pts = np.clip(pts, 0, size - 1)
            cv2.fillPoly(img, [pts.astype(np.int32).reshape(-1, 1, 2)], int(80 + 25 * c))
            anns.append(Annotation(CLASSES[c], pts.astype(np.int64), {}))
        person = f"ID{i // 2:03d}"
        rel = f"{split}/DCM/{person}/image{i}_{'RL'[i % 2]}.png"
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_GRAY2BGR))
        samples.append(Sample(rel, path, person, split, "RL"[i % 2], anns))
    return samples
