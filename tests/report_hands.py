"""Schematic hands for the report tests: 29 ellipses in anatomical places, exact and tiny.

Not a realistic generator (that is xaug.synth); just enough anatomy for the order checks.
"""
from __future__ import annotations

import numpy as np

from xaug.classes import CLASSES
from xaug.model import Annotation
from xaug.raster import class_masks

# label -> (x0, y0, x1, y1) as fractions of the image side, thumb on the left.
BOXES = {
    "Radius": (0.36, 0.80, 0.48, 1.10), "Ulna": (0.52, 0.82, 0.62, 1.10),
    "Scaphoid": (0.36, 0.70, 0.44, 0.77), "Lunate": (0.45, 0.70, 0.52, 0.77),
    "Triquetrum": (0.53, 0.70, 0.60, 0.77), "Pisiform": (0.56, 0.72, 0.62, 0.76),
    "Trapezium": (0.33, 0.62, 0.40, 0.69), "Trapezoid": (0.40, 0.62, 0.45, 0.68),
    "Capitate": (0.45, 0.61, 0.52, 0.70), "Hamate": (0.52, 0.62, 0.60, 0.70),
    "finger-3": (0.28, 0.50, 0.34, 0.63), "finger-2": (0.24, 0.40, 0.30, 0.50),
    "finger-1": (0.21, 0.32, 0.27, 0.40),
}
for _k, (_x, _l) in enumerate(((0.42, 1.0), (0.48, 1.05), (0.54, 1.0), (0.60, 0.8))):
    _base = 1 + 4 * (_k + 1)
    for _j, (_y0, _y1) in enumerate(((0.14, 0.20), (0.21, 0.29), (0.30, 0.41), (0.42, 0.62))):
        _y0 = 0.62 - (0.62 - _y0) * _l
        _y1 = 0.62 - (0.62 - _y1) * _l
        BOXES[f"finger-{_base + _j - 1}"] = (_x - 0.025, _y0, _x + 0.025, _y1)
assert sorted(BOXES) == sorted(CLASSES)
WRIST = (0.49, 0.74)


def _ellipse(box, size, n=24):
    x0, y0, x1, y1 = (np.asarray(box) * size)
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([(x0 + x1) / 2 + (x1 - x0) / 2 * np.cos(t), (y0 + y1) / 2 + (y1 - y0) / 2 * np.sin(t)], 1)


def schematic_hand(size=256, side="R", wrist_deg=0.0, swap=None):
    """(annotations, grey image): the hand turned `wrist_deg` towards the thumb about the wrist,
    the forearm vertical; `swap=(a, b)` exchanges two labels; side 'L' mirrors."""
    c = np.asarray(WRIST) * size
    th = np.radians(-wrist_deg)  # thumb on the left: towards the thumb is counter-clockwise on screen
    rot = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
    anns = []
    for label in CLASSES:
        pts = _ellipse(BOXES[label], size)
        if label not in ("Radius", "Ulna"):
            pts = (pts - c) @ rot.T + c
        pts = np.clip(pts, 0, size - 1)
        if side == "L":
            pts[:, 0] = size - 1 - pts[:, 0]
        if swap and label in swap:
            label = swap[1] if label == swap[0] else swap[0]
        anns.append(Annotation(label, np.rint(pts).astype(np.int64), {"type": "poly_seg"}))
    masks = class_masks(anns, (size, size))
    img = (20 + 60 * masks.sum(0)).clip(0, 255).astype(np.uint8)
    return anns, img


def write_schematic_layout(root, persons=8, size=128, swaps=None, rotated=(), test_persons=2):
    """A competition-layout folder of schematic hands; `swaps` maps an image stem to a label pair,
    `rotated` lists person numbers whose hands are turned 35 degrees at the wrist."""
    from pathlib import Path

    import cv2

    from xaug.layout import PersonMeta, annotation_bytes, annotation_doc, write_meta

    root = Path(root)
    people = []
    for i in range(1, persons + test_persons + 1):
        pid = f"ID{i:03d}"
        split = "train" if i <= persons else "test"
        people.append(PersonMeta(pid, 20.0 + i, "MF"[i % 2], 55.0 + i, 160.0 + i, None))
        for side in "RL":
            stem = f"image{1661130000000 + i}_{side}"
            anns, img = schematic_hand(size, side, 35.0 if i in rotated else 0.0, (swaps or {}).get(stem))
            p = root / split / "DCM" / pid / f"{stem}.png"
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(cv2.imencode(".png", np.dstack([img] * 3))[1].tobytes())
            j = root / split / "outputs_json" / pid / f"{stem}.json"
            j.parent.mkdir(parents=True, exist_ok=True)
            j.write_bytes(annotation_bytes(annotation_doc(anns, filename=f"{stem}.png", person=pid,
                                                          height=size, width=size)))
    write_meta(root / "meta_data.xlsx", people)
    return root
