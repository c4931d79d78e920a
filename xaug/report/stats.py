"""Pure statistics of labelled hands: areas, vertices, overlaps, wrist angle, anatomical checks.

Everything here works on annotations (polygons) and small arrays; no I/O, no plotting.

>>> import numpy as np
>>> from xaug.model import Annotation
>>> sq = Annotation("Radius", np.array([[0, 0], [10, 0], [10, 20], [0, 20]]))
>>> float(class_areas([sq])[27]), int(vertex_counts([sq])[27])
(200.0, 4)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from xaug.classes import ACROSS_ROWS, BONE_NAMES, CARPALS, CLASS_INDEX, CLASSES, NUM_CLASSES, RAYS
from xaug.raster import class_masks

# A wrist counts as rotated when the hand axis deviates this much from the forearm axis.
ROTATED_WRIST_DEG = 15.0
# A hand rotated as a whole: the forearm axis this far from the image's vertical.
TILTED_FOREARM_DEG = 10.0
# Robust z-score (median / 1.4826 MAD) beyond which an image or a class area is an outlier.
BRIGHTNESS_Z = 2.5
AREA_Z = 3.5
# Anatomical order checks tolerate this fraction of the hand scale (wrist -> metacarpals).
ORDER_TOLERANCE = 0.03

THUMB_SIDE = ("finger-1", "finger-2", "finger-3", "Trapezium", "Scaphoid", "Radius")
LITTLE_SIDE = ("finger-16", "finger-17", "finger-18", "finger-19", "Hamate", "Triquetrum", "Ulna")


def bone(label: str) -> str:
    """'finger-4' -> 'finger-4 (index distal phalanx)'; carpals and forearm bones as they are."""
    name = BONE_NAMES[CLASS_INDEX[label]]
    return f"{label} ({name})" if label.startswith("finger") else label


# ---------------------------------------------------------------- polygons

@dataclass(frozen=True)
class Moments:
    """Area (px^2, positive), centroid and central second moments of a polygon or a union."""

    area: float
    cx: float
    cy: float
    mu20: float
    mu11: float
    mu02: float

    @property
    def centroid(self) -> np.ndarray:
        return np.array([self.cx, self.cy])

    def axis(self) -> tuple[np.ndarray, float]:
        """Unit vector of the major axis and the elongation (major / minor std ratio, >= 1)."""
        cov = np.array([[self.mu20, self.mu11], [self.mu11, self.mu02]])
        vals, vecs = np.linalg.eigh(cov)
        ratio = float(np.sqrt(vals[1] / vals[0])) if vals[0] > 1e-12 else float("inf")
        return vecs[:, 1], ratio


def polygon_moments(points: np.ndarray) -> Moments | None:
    """Exact moments of a simple closed ring by Green's theorem; None when degenerate."""
    p = np.asarray(points, np.float64).reshape(-1, 2)
    if len(p) < 3:
        return None
    x, y = p[:, 0], p[:, 1]
    x1, y1 = np.roll(x, -1), np.roll(y, -1)
    cross = x * y1 - x1 * y
    a = cross.sum() / 2.0
    if abs(a) < 1e-9:
        return None
    cx = ((x + x1) * cross).sum() / (6.0 * a)
    cy = ((y + y1) * cross).sum() / (6.0 * a)
    ixx = (cross * (x * x + x * x1 + x1 * x1)).sum() / 12.0
    iyy = (cross * (y * y + y * y1 + y1 * y1)).sum() / 12.0
    ixy = (cross * (x * y1 + 2 * x * y + 2 * x1 * y1 + x1 * y)).sum() / 24.0
    return Moments(abs(a), cx, cy, ixx / a - cx * cx, ixy / a - cx * cy, iyy / a - cy * cy)


def combine(moments: Sequence[Moments]) -> Moments | None:
    """Moments of several disjoint polygons taken together (parallel-axis theorem)."""
    ms = [m for m in moments if m is not None]
    if not ms:
        return None
    area = sum(m.area for m in ms)
    cx = sum(m.area * m.cx for m in ms) / area
    cy = sum(m.area * m.cy for m in ms) / area
    mu20 = sum(m.area * (m.mu20 + (m.cx - cx) ** 2) for m in ms) / area
    mu02 = sum(m.area * (m.mu02 + (m.cy - cy) ** 2) for m in ms) / area
    mu11 = sum(m.area * (m.mu11 + (m.cx - cx) * (m.cy - cy)) for m in ms) / area
    return Moments(area, cx, cy, mu20, mu11, mu02)


def class_moments(annotations: Iterable) -> dict[str, Moments]:
    """Moments per label (several polygons of one label are taken together)."""
    parts: dict[str, list[Moments]] = {}
    for ann in annotations:
        m = polygon_moments(ann.points)
        if m is not None:
            parts.setdefault(ann.label, []).append(m)
    return {label: c for label, ms in parts.items() if (c := combine(ms)) is not None}


def class_areas(annotations: Iterable) -> np.ndarray:
    """Polygon area (px^2) per class, summed over the class's polygons; 0 where absent."""
    out = np.zeros(NUM_CLASSES)
    for ann in annotations:
        m = polygon_moments(ann.points)
        if m is not None:
            out[CLASS_INDEX[ann.label]] += m.area
    return out


def vertex_counts(annotations: Iterable) -> np.ndarray:
    """Number of polygon vertices per class (summed over its polygons)."""
    out = np.zeros(NUM_CLASSES, np.int64)
    for ann in annotations:
        out[CLASS_INDEX[ann.label]] += len(np.asarray(ann.points).reshape(-1, 2))
    return out


def polygon_counts(annotations: Iterable) -> np.ndarray:
    """Number of polygons per class: 0 = missing, > 1 = duplicated."""
    out = np.zeros(NUM_CLASSES, np.int64)
    for ann in annotations:
        out[CLASS_INDEX[ann.label]] += 1
    return out


def overlap_pixels(masks: np.ndarray) -> np.ndarray:
    """(29, 29) pixels shared by each pair of channels of a (29, H, W) 0/1 stack; diagonal = area."""
    flat = np.asarray(masks).reshape(masks.shape[0], -1).astype(bool)
    shared = np.flatnonzero(flat.sum(0, dtype=np.int32) >= 2)  # few pixels: keep the product small
    sub = flat[:, shared].astype(np.float32)
    out = np.rint(sub @ sub.T).astype(np.int64)
    out[np.diag_indices(len(out))] = flat.sum(1, dtype=np.int64)
    return out


def scaled_overlap(annotations: Sequence, shape: tuple[int, int], max_side: int = 512) -> tuple[np.ndarray, float]:
    """Overlap matrix rasterised at most `max_side` pixels wide (speed); returns (matrix, scale).

    Multiply the matrix by 1 / scale**2 for an estimate in full-resolution pixels.
    """
    h, w = shape[:2]
    scale = min(1.0, max_side / max(h, w))
    small = (max(1, round(h * scale)), max(1, round(w * scale)))
    scaled = [_Scaled(a.label, np.asarray(a.points, np.float64) * scale) for a in annotations]
    return overlap_pixels(class_masks(scaled, small)), scale


@dataclass(frozen=True)
class _Scaled:
    label: str
    points: np.ndarray


# ---------------------------------------------------------------- images

def brightness(gray: np.ndarray) -> float:
    """Mean intensity (0-255) of a grey image."""
    return float(np.asarray(gray, np.float64).mean())


def robust_z(values: Sequence[float]) -> np.ndarray:
    """(v - median) / (1.4826 * MAD), NaN kept; all 0 when the spread is 0."""
    v = np.asarray(values, np.float64)
    ok = np.isfinite(v)
    if ok.sum() < 3:
        return np.zeros_like(v)
    med = np.median(v[ok])
    mad = 1.4826 * np.median(np.abs(v[ok] - med))
    if mad < 1e-12:
        spread = v[ok].std()
        if spread < 1e-12:
            return np.where(ok, 0.0, np.nan)
        mad = spread
    return (v - med) / mad


# ---------------------------------------------------------------- geometry of the hand

@dataclass
class HandGeometry:
    """Axes estimated from the polygons; angles in degrees.

    wrist_angle: signed angle of the hand axis (distal carpal row -> 2nd-4th metacarpals) against
    the forearm axis (radius and ulna major axes); positive = towards the thumb (radial), negative
    = towards the little finger (ulnar). forearm_tilt: forearm axis against the image's up
    direction (a hand rotated as a whole). thumb_dir: unit vector across the hand pointing to the
    thumb side. None where the needed bones are missing.
    """

    wrist_angle: float | None
    forearm_tilt: float | None
    hand_axis: np.ndarray | None
    forearm_axis: np.ndarray | None
    thumb_dir: np.ndarray | None
    wrist_point: np.ndarray | None
    scale: float | None


def _unit(v: np.ndarray) -> np.ndarray | None:
    n = float(np.hypot(*v))
    return v / n if n > 1e-9 else None


def _mean_centroid(mom: dict[str, Moments], labels: Iterable[str]) -> np.ndarray | None:
    pts = [mom[lab].centroid for lab in labels if lab in mom]
    return np.mean(pts, axis=0) if pts else None


def _signed_deg(a: np.ndarray, b: np.ndarray) -> float:
    """Angle from a to b in image coordinates (y down), degrees in (-180, 180]."""
    return float(np.degrees(np.arctan2(a[0] * b[1] - a[1] * b[0], a @ b)))


def hand_geometry(annotations: Sequence) -> HandGeometry:
    """Hand and forearm axes, the wrist angle between them and the thumb direction."""
    mom = class_moments(annotations)
    wrist = _mean_centroid(mom, CARPALS)
    distal_row = _mean_centroid(mom, ("Trapezoid", "Capitate", "Hamate"))
    metacarpals = _mean_centroid(mom, ("finger-7", "finger-11", "finger-15"))
    hand_axis = _unit(metacarpals - distal_row) if metacarpals is not None and distal_row is not None else None
    scale = float(np.hypot(*(metacarpals - wrist))) if metacarpals is not None and wrist is not None else None

    forearm_axis = _forearm_axis(mom, wrist)
    up = np.array([0.0, -1.0])
    tilt = _signed_deg(up, forearm_axis) if forearm_axis is not None else None
    # Without the forearm, measure the hand against the image's vertical.
    reference = forearm_axis if forearm_axis is not None else up
    angle = _signed_deg(reference, hand_axis) if hand_axis is not None else None

    thumb_dir = None
    if hand_axis is not None:
        across = np.array([-hand_axis[1], hand_axis[0]])
        thumb = [mom[lab].centroid @ across for lab in THUMB_SIDE if lab in mom]
        little = [mom[lab].centroid @ across for lab in LITTLE_SIDE if lab in mom]
        if thumb and little:
            thumb_dir = across if np.mean(thumb) >= np.mean(little) else -across
    if angle is not None and thumb_dir is not None and hand_axis is not None:
        # Make "towards the thumb" positive whichever hand it is.
        turn = np.array([-reference[1], reference[0]])
        if turn @ thumb_dir < 0:
            angle = -angle
    return HandGeometry(angle, tilt, hand_axis, forearm_axis, thumb_dir, wrist, scale)


def _forearm_axis(mom: dict[str, Moments], wrist: np.ndarray | None) -> np.ndarray | None:
    """Proximal -> distal direction of the forearm from the radius and ulna shapes."""
    bones = [mom[lab] for lab in ("Radius", "Ulna") if lab in mom]
    if not bones:
        return None
    doubled = np.zeros(2)
    for m in bones:
        axis, ratio = m.axis()
        if np.isfinite(ratio) and ratio > 1.2:  # only elongated shapes say where the axis is
            theta = np.arctan2(axis[1], axis[0])
            doubled += (ratio - 1.0) * np.array([np.cos(2 * theta), np.sin(2 * theta)])
    if np.hypot(*doubled) > 1e-9:
        theta = np.arctan2(doubled[1], doubled[0]) / 2
        axis = np.array([np.cos(theta), np.sin(theta)])
    elif len(bones) == 2:  # stubby bones: the axis is across the radius-ulna line
        d = bones[0].centroid - bones[1].centroid
        axis = _unit(np.array([-d[1], d[0]]))
        if axis is None:
            return None
    else:
        return None
    centre = np.mean([m.centroid for m in bones], axis=0)
    toward = (wrist - centre) if wrist is not None else np.array([0.0, -1.0])
    return axis if axis @ toward >= 0 else -axis


# ---------------------------------------------------------------- findings

@dataclass
class Finding:
    """One suspicious fact about an image: kind in ('missing', 'duplicated', 'order', 'area')."""

    kind: str
    labels: tuple[str, ...]
    message: str

    def to_json(self) -> dict:
        return {"kind": self.kind, "labels": list(self.labels), "message": self.message}


def class_findings(annotations: Sequence) -> list[Finding]:
    """Missing classes (no polygon) and duplicated classes (more than one polygon)."""
    counts = polygon_counts(annotations)
    out = []
    missing = [CLASSES[i] for i in np.flatnonzero(counts == 0)]
    if missing:
        out.append(Finding("missing", tuple(missing), "missing: " + ", ".join(missing)))
    for i in np.flatnonzero(counts > 1):
        out.append(Finding("duplicated", (CLASSES[i],), f"{CLASSES[i]} has {counts[i]} polygons"))
    return out


def order_findings(annotations: Sequence, tolerance: float = ORDER_TOLERANCE) -> list[Finding]:
    """Anatomical order violations that suggest swapped labels.

    Across the hand (thumb -> little finger) each row of bones must keep its order: the distal,
    middle and proximal phalanges, the metacarpals, both carpal rows, and radius before ulna
    (the radius is on the thumb side). Along each ray every bone must be farther from the wrist
    than the next one towards the base (a fingertip closer to the wrist than its metacarpal is
    a swap). `tolerance` is a fraction of the wrist-to-metacarpal distance.
    """
    geo = hand_geometry(annotations)
    if geo.thumb_dir is None or geo.wrist_point is None or not geo.scale:
        return []
    mom = class_moments(annotations)
    tol = tolerance * geo.scale
    out: list[Finding] = []
    forearm_dir = geo.thumb_dir
    if geo.forearm_axis is not None:
        f = np.array([-geo.forearm_axis[1], geo.forearm_axis[0]])
        forearm_dir = f if f @ geo.thumb_dir >= 0 else -f
    for row, labels in ACROSS_ROWS:
        direction = forearm_dir if row == "forearm" else geo.thumb_dir
        present = [lab for lab in labels if lab in mom]
        for a, b in zip(present, present[1:]):
            if mom[a].centroid @ direction < mom[b].centroid @ direction - tol:
                out.append(Finding("order", (a, b), f"{bone(a)} is on the little-finger side of {bone(b)} "
                                   f"({row} out of thumb-to-little order): swapped labels?"))
    for ray in RAYS:
        present = [lab for lab in ray if lab in mom]
        dist = {lab: float(np.hypot(*(mom[lab].centroid - geo.wrist_point))) for lab in present}
        for a, b in zip(present, present[1:]):  # a is distal to b
            if dist[a] < dist[b] - tol:
                out.append(Finding("order", (a, b), f"{bone(a)} is closer to the wrist than {bone(b)}: "
                                   f"swapped labels?"))
    return out


def suspected_swaps(findings: Iterable[Finding]) -> list[tuple[str, str]]:
    """The label pairs named by order findings, each once."""
    seen: list[tuple[str, str]] = []
    for f in findings:
        if f.kind == "order":
            pair = tuple(sorted(f.labels, key=CLASS_INDEX.__getitem__))
            if pair not in seen:
                seen.append(pair)  # type: ignore[arg-type]
    return seen


def explain_swap(annotations: Sequence, findings: Sequence[Finding] | None = None) -> tuple[str, str] | None:
    """The pair of labels whose exchange removes every order finding (or the most), if any helps.

    Tries each pair among the labels the order findings name, plus their neighbours in the same
    ray or row, so a tip swapped with its metacarpal (two findings, four labels) is explained.
    """
    findings = list(order_findings(annotations) if findings is None else findings)
    base = sum(f.kind == "order" for f in findings)
    if not base:
        return None
    named = {lab for f in findings if f.kind == "order" for lab in f.labels}
    groups = [row for _, row in ACROSS_ROWS] + list(RAYS)
    candidates = set(named)
    for group in groups:
        if named & set(group):
            candidates |= set(group)
    best, best_left = None, base
    cands = sorted(candidates, key=CLASS_INDEX.__getitem__)
    for i, a in enumerate(cands):
        for b in cands[i + 1:]:
            swapped = [_relabel(ann, a, b) for ann in annotations]
            left = len(order_findings(swapped))
            if left < best_left or (left == best_left == 0 and best is None):
                best, best_left = (a, b), left
    return best if best_left == 0 else None


def _relabel(ann, a: str, b: str):
    if ann.label == a:
        return _Scaled(b, ann.points)
    if ann.label == b:
        return _Scaled(a, ann.points)
    return ann
