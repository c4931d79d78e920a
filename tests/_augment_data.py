"""Tiny schematic hands (29 bones, forearm from the bottom edge) in a store, for augment tests.

Generated, not committed: `make_hands_layout(root)` writes the competition layout and
`make_augment_home(home, layout)` imports it as `raw` with a 3-fold person split.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from xaug.classes import CARPALS, CLASSES, RAYS
from xaug.layout import PersonMeta, annotation_bytes, annotation_doc, encode_png, write_meta
from xaug.model import Annotation

SIZE = 128
TRAIN_PERSONS = 6
FOLDS = 3


def _ellipse(cx: float, cy: float, ax: float, ay: float) -> np.ndarray:
    return cv2.ellipse2Poly((int(cx), int(cy)), (max(2, int(ax)), max(2, int(ay))), 0, 0, 360, 20)[:-1]


def tiny_hand(size: int, side: str, rng: np.random.Generator) -> tuple[np.ndarray, list[Annotation]]:
    """A 3-channel image and 29 annotations: rays above, two carpal rows, radius/ulna at the bottom."""
    s, cx = size, size * 0.5 + rng.integers(-2, 3)
    sign = 1 if side == "R" else -1
    polys: dict[str, np.ndarray] = {}
    for name, off, half, top in (("Radius", -0.16, 0.055, 0.75), ("Ulna", 0.14, 0.045, 0.77)):
        x = cx + sign * off * s
        polys[name] = np.array([[x - half * s, s - 1], [x + half * s, s - 1], [x + half * s, top * s],
                                [x - half * s, top * s]])
    for i, name in enumerate(CARPALS):
        row, col = divmod(i, 4)
        polys[name] = _ellipse(cx + sign * (col - 1.5) * s * 0.075, s * (0.64 if row == 0 else 0.70),
                               s * 0.036, s * 0.028)
    for r, ray in enumerate(RAYS):
        x, y = cx + sign * (r - 2) * s * 0.09, s * 0.59
        for b, name in enumerate(reversed(ray)):
            half_len = s * (0.065 if b == 0 else 0.04)
            polys[name] = _ellipse(x, y - half_len, s * 0.02, half_len)
            y -= 2 * half_len + 2
    anns = [Annotation(c, np.rint(polys[c]).astype(np.int64), {"type": "poly_seg", "attributes": {}})
            for c in CLASSES]
    img = np.full((s, s), 18, np.uint8)
    img[: max(1, s // 40)] = 190
    for a in anns:
        layer = np.zeros_like(img)
        cv2.fillPoly(layer, [a.points.astype(np.int32).reshape(-1, 1, 2)], 80)
        img = cv2.add(img, layer)
    img = cv2.add(img, rng.integers(0, 10, img.shape, dtype=np.uint8))
    return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR), anns


def make_hands_layout(root: Path, persons: int = TRAIN_PERSONS, test_persons: int = 1,
                      size: int = SIZE, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    root = Path(root)
    metas = []
    for p in range(1, persons + test_persons + 1):
        pid = f"ID{p:03d}"
        split = "train" if p <= persons else "test"
        metas.append(PersonMeta(pid, float(20 + p), "MF"[p % 2], 60.0 + p, 165.0 + p, None))
        for side in "RL":
            img, anns = tiny_hand(size, side, rng)
            stem = f"image{1661130000 + p}_{side}"
            image = root / split / "DCM" / pid / f"{stem}.png"
            image.parent.mkdir(parents=True, exist_ok=True)
            image.write_bytes(encode_png(img))
            label = root / split / "outputs_json" / pid / f"{stem}.json"
            label.parent.mkdir(parents=True, exist_ok=True)
            label.write_bytes(annotation_bytes(annotation_doc(anns, filename=image.name, person=pid,
                                                              height=size, width=size)))
    write_meta(root / "meta_data.xlsx", metas)
    return root


def make_augment_home(home: Path, layout: Path) -> Path:
    from xaug.store import Store

    Store(home).import_folder(layout, name="raw", folds=FOLDS)
    return home
