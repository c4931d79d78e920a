"""A schematic hand for tests: 29 ellipses in anatomical places, exact and tiny.

Not a realistic generator (that is xaug.synth); just enough anatomy for the geometry, op and
report tests. Thumb on the left (a right hand seen from the back), forearm from the bottom edge.
"""
from __future__ import annotations

import numpy as np

from xaug.classes import CLASSES
from xaug.model import Annotation
from xaug.raster import class_masks

# label -> (x0, y0, x1, y1) as fractions of the side.
BOXES: dict[str, tuple[float, float, float, float]] = {
    "Radius": (0.34, 0.80, 0.49, 1.20), "Ulna": (0.51, 0.82, 0.63, 1.20),
    "Scaphoid": (0.35, 0.69, 0.45, 0.77), "Lunate": (0.44, 0.69, 0.53, 0.77),
    "Triquetrum": (0.52, 0.69, 0.61, 0.77), "Pisiform": (0.56, 0.71, 0.63, 0.76),
    "Trapezium": (0.32, 0.61, 0.40, 0.69), "Trapezoid": (0.39, 0.61, 0.45, 0.68),
    "Capitate": (0.44, 0.60, 0.52, 0.70), "Hamate": (0.51, 0.61, 0.60, 0.70),
    "finger-3": (0.25, 0.48, 0.33, 0.63), "finger-2": (0.20, 0.37, 0.27, 0.48),
    "finger-1": (0.17, 0.29, 0.23, 0.37),
}
for _k, _x in enumerate((0.40, 0.47, 0.54, 0.61)):
    _first = 4 + 4 * _k
    for _j, (_y0, _y1) in enumerate(((0.12, 0.19), (0.19, 0.28), (0.28, 0.41), (0.41, 0.61))):
        BOXES[f"finger-{_first + _j}"] = (_x - 0.03, _y0 + 0.02 * abs(_k - 1), _x + 0.03, _y1)
assert sorted(BOXES) == sorted(CLASSES)
WRIST = (0.49, 0.75)  # the pivot of a turned hand: between the carpals and the forearm


def ellipse_points(box, size: int, n: int = 40) -> np.ndarray:
    """Float (n, 2) points of the ellipse inscribed in `box` (fractions of `size`)."""
    x0, y0, x1, y1 = np.asarray(box, float) * size
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([(x0 + x1) / 2 + (x1 - x0) / 2 * np.cos(t), (y0 + y1) / 2 + (y1 - y0) / 2 * np.sin(t)], 1)


def to_int_polygon(pts: np.ndarray, size: int) -> np.ndarray:
    """Rounded, clipped to the canvas, consecutive duplicates dropped (as in the real data)."""
    pts = np.clip(np.rint(pts), 0, size - 1).astype(np.int64)
    keep = np.r_[True, np.any(pts[1:] != pts[:-1], axis=1)]
    return pts[keep]


def ellipse(box, size: int, n: int = 40) -> np.ndarray:
    return to_int_polygon(ellipse_points(box, size, n), size)


def hand_annotations(size: int = 256, side: str = "R", wrist_deg: float = 0.0,
                     swap: tuple[str, str] | None = None) -> list[Annotation]:
    """The hand turned `wrist_deg` towards the thumb about the wrist while the forearm stays
    vertical; side 'L' mirrors; `swap=(a, b)` exchanges two labels (an injected label error)."""
    c = np.asarray(WRIST) * size
    th = np.radians(-wrist_deg)  # thumb on the left: towards the thumb is counter-clockwise on screen
    rot = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
    anns = []
    for i, label in enumerate(CLASSES):
        pts = ellipse_points(BOXES[label], size)
        if label not in ("Radius", "Ulna"):
            pts = (pts - c) @ rot.T + c
        if side == "L":
            pts[:, 0] = size - 1 - pts[:, 0]
        if swap and label in swap:
            label = swap[1] if label == swap[0] else swap[0]
        anns.append(Annotation(label, to_int_polygon(pts, size),
                               {"id": f"id-{i}", "type": "poly_seg", "attributes": {}}))
    return anns


def render(annotations: list[Annotation], size: int, channels: int = 3) -> np.ndarray:
    """Grey-looking X-ray: dark background with a vertical gradient, overlapping bones brighter."""
    masks = class_masks(annotations, (size, size)).astype(np.int32)
    grad = np.linspace(18, 34, size)[:, None].astype(np.int32)
    img = np.clip(grad + 55 * masks.sum(0), 0, 255).astype(np.uint8)
    img[: max(1, size // 64)] = 200  # the bright band along the top edge
    return np.repeat(img[:, :, None], 3, 2) if channels == 3 else img


def make_hand(size: int = 256, channels: int = 3) -> tuple[np.ndarray, list[Annotation]]:
    """(image, annotations) of an upright right hand."""
    anns = hand_annotations(size)
    return render(anns, size, channels), anns


def schematic_hand(size: int = 256, side: str = "R", wrist_deg: float = 0.0,
                   swap: tuple[str, str] | None = None) -> tuple[list[Annotation], np.ndarray]:
    """(annotations, grey image) of a possibly turned, mirrored or mislabelled hand."""
    anns = hand_annotations(size, side, wrist_deg, swap)
    return anns, render(anns, size, channels=1)
