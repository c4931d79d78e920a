"""Pure geometry kernels: affine matrices and polygon transform/clip/split/round.

No randomness, no pixels and no I/O here; image warps are in `xaug.imaging`, the wrist frame in
`xaug.anatomy`; the ops in `xaug.ops` draw parameters and call these.

Conventions
-----------
* Pixel centres sit at integer coordinates, x first; a W x H image spans x in [0, W-1].
* A matrix is a (2, 3) float array in OpenCV's forward convention: a point p maps to
  ``M[:, :2] @ p + M[:, 2]`` and ``cv2.warpAffine(img, M, ...)`` moves pixels the same way,
  so one matrix drives both the image and its polygons.
* Output polygons are rounded to the integer grid with GEOS precision reduction
  (``shapely.set_precision(geom, 1.0)``): every coordinate goes to ``floor(v + 0.5)``
  (halves round up), and the topology is repaired so the result stays valid. Rings are
  clipped to the closed box [0, W-1] x [0, H-1] (or to a pixel rectangle) *before* rounding,
  so rounded points never leave it.

>>> import numpy as np
>>> from xaug.model import Annotation
>>> sq = Annotation("Lunate", np.array([[10, 10], [30, 10], [30, 30], [10, 30]]))
>>> m = rotation_matrix(90, (20, 20))
>>> [a.points.tolist() for a in transform_annotations([sq], m, (64, 64))]
[[[10, 30], [10, 10], [30, 10], [30, 30]]]
"""
from __future__ import annotations

from typing import Collection, Iterable, Sequence

import numpy as np
import shapely
from shapely.geometry import Polygon, box
from shapely.geometry.base import BaseGeometry
from shapely.geometry.polygon import orient

from xaug.model import Annotation

# ---------------------------------------------------------------- matrices


def identity_matrix() -> np.ndarray:
    """The 2x3 identity."""
    return np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


def rotation_matrix(angle: float, center: Sequence[float]) -> np.ndarray:
    """Rotation by `angle` degrees about `center` (x, y); positive turns counter-clockwise on screen.

    Identical to ``cv2.getRotationMatrix2D(center, angle, 1.0)``.
    """
    a = np.deg2rad(angle)
    c, s = np.cos(a), np.sin(a)
    cx, cy = float(center[0]), float(center[1])
    return np.array([[c, s, (1 - c) * cx - s * cy], [-s, c, s * cx + (1 - c) * cy]])


def translation_matrix(dx: float, dy: float) -> np.ndarray:
    return np.array([[1.0, 0.0, float(dx)], [0.0, 1.0, float(dy)]])


def hflip_matrix(width: int) -> np.ndarray:
    """Horizontal mirror of a `width`-pixel image: x -> width - 1 - x (what ``cv2.flip(img, 1)`` does)."""
    return np.array([[-1.0, 0.0, float(width - 1)], [0.0, 1.0, 0.0]])


def resize_matrix(src_size: tuple[int, int], dst_size: tuple[int, int]) -> np.ndarray:
    """Scale (height, width) `src_size` to `dst_size` with cv2.resize's pixel-centre alignment."""
    sy, sx = dst_size[0] / src_size[0], dst_size[1] / src_size[1]
    return np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5]])


def _h(m: np.ndarray) -> np.ndarray:
    return np.vstack([np.asarray(m, float).reshape(2, 3), [0.0, 0.0, 1.0]])


def compose(*matrices: np.ndarray) -> np.ndarray:
    """One matrix doing `matrices[0]` first, then `matrices[1]`, ..."""
    out = np.eye(3)
    for m in matrices:
        out = _h(m) @ out
    return out[:2]


def invert(m: np.ndarray) -> np.ndarray:
    """The inverse affine map."""
    return np.linalg.inv(_h(m))[:2]


def is_identity(m: np.ndarray, tol: float = 1e-12) -> bool:
    return bool(np.allclose(np.asarray(m, float), identity_matrix(), rtol=0, atol=tol))


def apply_points(points: np.ndarray, m: np.ndarray) -> np.ndarray:
    """(N, 2) points mapped by `m`, as float64."""
    p = np.asarray(points, float).reshape(-1, 2)
    m = np.asarray(m, float)
    return p @ m[:, :2].T + m[:, 2]


def round_half_up(values: np.ndarray) -> np.ndarray:
    """The project's rounding rule (GEOS's): floor(v + 0.5), as int64."""
    return np.floor(np.asarray(values, float) + 0.5).astype(np.int64)


# ---------------------------------------------------------------- polygons


def canvas_box(shape: Sequence[int]) -> Polygon:
    """The closed box of pixel centres of an (H, W) canvas: [0, W-1] x [0, H-1]."""
    h, w = int(shape[0]), int(shape[1])
    return box(0, 0, w - 1, h - 1)


def rect_box(rect: Sequence[int]) -> Polygon:
    """The closed box of pixel centres of a half-open pixel rectangle [x0, y0, x1, y1]."""
    x0, y0, x1, y1 = (int(v) for v in rect)
    return box(x0, y0, x1 - 1, y1 - 1)


def polygonal_parts(geom: BaseGeometry | None) -> list[Polygon]:
    """The non-empty polygons of any geometry, each reduced to its exterior ring (holes filled)."""
    if geom is None or geom.is_empty:
        return []
    if isinstance(geom, Polygon):
        return [Polygon(geom.exterior)] if geom.area > 0 else []
    parts: list[Polygon] = []
    for g in getattr(geom, "geoms", ()):  # MultiPolygon, GeometryCollection
        parts.extend(polygonal_parts(g))
    return parts


def valid_parts(points: np.ndarray) -> list[Polygon]:
    """The valid polygonal parts of one ring (a self-intersecting ring becomes several)."""
    pts = np.asarray(points, float).reshape(-1, 2)
    if len(pts) < 3:
        return []
    poly = Polygon(pts)
    if poly.is_valid:
        return polygonal_parts(poly)
    return polygonal_parts(shapely.make_valid(poly))


def snap_to_grid(poly: Polygon) -> list[Polygon]:
    """Round a polygon's vertices to integers (floor(v + 0.5)), repairing topology; exteriors only.

    Usually rounding the exterior keeps it a valid ring (checked); otherwise GEOS precision
    reduction, which follows the same rounding rule, repairs the topology.
    """
    ring = round_half_up(np.asarray(poly.exterior.coords)[:-1])
    ring = ring[np.any(ring != np.roll(ring, 1, axis=0), axis=1)]  # drop repeats, cyclically
    if len(ring) >= 3:
        quick = Polygon(ring)
        if quick.is_valid and quick.area > 0:
            return [quick]
    snapped = shapely.set_precision(poly, 1.0)
    out = []
    for part in polygonal_parts(snapped):
        # the exterior of a valid polygon is simple, but re-check: filling a hole can't break it
        out.extend([part] if part.is_valid else polygonal_parts(shapely.make_valid(part)))
    return out


def ring_points(poly: Polygon) -> np.ndarray:
    """The exterior ring as an (N, 2) int64 array without the repeated closing point."""
    coords = np.asarray(poly.exterior.coords)[:-1]
    return round_half_up(coords)


def clip_polygons(polys: Iterable[Polygon], clip: Polygon, min_area: float = 0.0) -> list[Polygon]:
    """Clip to `clip` (a box), snap to the integer grid and drop the parts that clipping cut off
    with area < min_area. A polygon wholly inside `clip` is kept whatever its area: it is a whole
    bone still in the image (a small bone in a small image), not a sliver at a border."""
    out: list[Polygon] = []
    for poly in polys:
        whole = clip.contains(poly)
        inside = poly if whole else poly.intersection(clip)
        floor = 0.0 if whole else min_area
        for part in polygonal_parts(inside):
            for snapped in snap_to_grid(part):
                if snapped.area > 0 and snapped.area >= floor:
                    out.append(snapped)
    return out


def _signed_area(p: np.ndarray) -> float:
    x, y = p[:, 0], p[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def _part_order(poly: Polygon) -> tuple:
    minx, miny, _, _ = poly.bounds
    return (-poly.area, miny, minx)


def _fast_path(points: np.ndarray, clip: Polygon, min_area: float) -> np.ndarray | None:
    """The transformed ring as is, when it is integral, inside `clip` and already valid."""
    rounded = np.rint(points)
    if len(points) == 0 or np.abs(points - rounded).max() > 1e-9:
        return None
    x0, y0, x1, y1 = clip.bounds
    if (rounded[:, 0].min() < x0 or rounded[:, 0].max() > x1
            or rounded[:, 1].min() < y0 or rounded[:, 1].max() > y1):
        return None
    if len(rounded) < 3:
        return None
    poly = Polygon(rounded)
    if not poly.is_valid or poly.area <= 0:  # whole and inside: min_area is for cut-off parts
        return None
    return rounded.astype(np.int64)


def transform_annotation(ann: Annotation, m: np.ndarray, clip: Polygon,
                         min_area: float = 0.0) -> list[Annotation]:
    """One annotation mapped by `m`, clipped to `clip`, made valid and integral.

    A ring that splits (clipping, or a self-intersecting input) gives several annotations with
    the same label; when the input has an ``id`` the parts get ``"<id>-1"``, ``"<id>-2"``, ...
    ordered by decreasing area. Every other key in `extra` is kept.
    """
    pts = apply_points(ann.points, m)
    fast = _fast_path(pts, clip, min_area)
    if fast is not None:
        return [ann.with_points(fast)]
    parts = clip_polygons(valid_parts(pts), clip, min_area)
    # keep the winding of the (transformed) input ring; shapely may have reversed it
    sign = 1.0 if _signed_area(pts) >= 0 else -1.0
    parts = [orient(p, sign) for p in parts]
    if len(parts) == 1:
        return [ann.with_points(ring_points(parts[0]))]
    parts.sort(key=_part_order)
    out = []
    for k, part in enumerate(parts, 1):
        extra = dict(ann.extra)
        if "id" in extra:
            extra["id"] = f"{extra['id']}-{k}"
        out.append(Annotation(ann.label, ring_points(part), extra))
    return out


def transform_annotations(annotations: Iterable[Annotation], m: np.ndarray, shape: Sequence[int],
                          clip_rect: Sequence[int] | None = None, min_area: float = 0.0,
                          fixed: Collection[str] = ()) -> list[Annotation]:
    """Every annotation mapped by `m` on its own (class overlaps survive), clipped to the (H, W)
    canvas and to the half-open pixel rectangle `clip_rect` [x0, y0, x1, y1] when given.

    Labels in `fixed` are not moved (only validated and clipped); the order is kept.

    >>> from xaug.model import Annotation
    >>> tri = Annotation("Capitate", np.array([[0, 0], [9, 0], [0, 9]]), {"id": "c1"})
    >>> out = transform_annotations([tri], translation_matrix(-3, 0), (16, 16))
    >>> out[0].points.tolist(), out[0].extra
    ([[0, 0], [6, 0], [0, 6]], {'id': 'c1'})
    """
    clip = canvas_box(shape)
    if clip_rect is not None:
        clip = clip.intersection(rect_box(clip_rect))
        if clip.is_empty or clip.area <= 0:
            return []
    out: list[Annotation] = []
    cx0, cy0, cx1, cy1 = clip.bounds
    ident = identity_matrix()
    for ann in annotations:
        ma = ident if ann.label in fixed else m
        pts = apply_points(ann.points, ma)
        if len(pts) < 3:
            continue
        # cheap reject before any shapely work: the bounding box misses the clip box
        if (pts[:, 0].max() < cx0 or pts[:, 0].min() > cx1
                or pts[:, 1].max() < cy0 or pts[:, 1].min() > cy1):
            continue
        out.extend(transform_annotation(ann, ma, clip, min_area))
    return out


def annotation_area(annotations: Iterable[Annotation]) -> float:
    """Sum of the polygon areas (shoelace) of the annotations."""
    total = 0.0
    for ann in annotations:
        p = np.asarray(ann.points, float).reshape(-1, 2)
        if len(p) >= 3:
            x, y = p[:, 0], p[:, 1]
            total += 0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))
    return total


__all__ = [
    "identity_matrix", "rotation_matrix", "translation_matrix", "hflip_matrix", "resize_matrix",
    "compose", "invert", "is_identity", "apply_points", "round_half_up",
    "canvas_box", "rect_box", "polygonal_parts", "valid_parts", "snap_to_grid", "ring_points",
    "clip_polygons", "transform_annotation", "transform_annotations", "annotation_area",
]
