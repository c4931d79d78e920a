"""Pure geometry kernels: affine matrices, polygon transform/clip/split/round, image warps.

No randomness and no I/O here; the ops in `xaug.ops` draw parameters and call these.

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

from dataclasses import dataclass
from typing import Collection, Iterable, Sequence

import cv2
import numpy as np
import shapely
from shapely.geometry import Polygon, box
from shapely.geometry.base import BaseGeometry
from shapely.geometry.polygon import orient

from xaug.classes import CARPALS, FOREARM, RAYS
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
    """Clip to `clip` (a box), snap to the integer grid and drop parts with area < min_area."""
    out: list[Polygon] = []
    for poly in polys:
        inside = poly if clip.contains(poly) else poly.intersection(clip)
        for part in polygonal_parts(inside):
            for snapped in snap_to_grid(part):
                if snapped.area > 0 and snapped.area >= min_area:
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
    if not poly.is_valid or poly.area <= 0 or poly.area < min_area:
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


# ---------------------------------------------------------------- images


def background_value(img: np.ndarray) -> tuple[float, ...]:
    """A background-like fill per channel: the median of the left and right border columns.

    The top rows are skipped (the X-rays have a bright band along the top edge).
    """
    med = np.median(_border_strips(img).reshape(-1, *img.shape[2:]), axis=0)
    return tuple(float(v) for v in np.atleast_1d(med))


def _border_strips(img: np.ndarray) -> np.ndarray:
    """The two left and two right border columns below the top eighth, as (k, n[, C]), k <= 4."""
    top = img.shape[0] // 8
    return np.moveaxis(np.concatenate([img[top:, :2], img[top:, -2:]], axis=1), 1, 0)


def background_grain(img: np.ndarray) -> float:
    """Robust standard deviation of the grain in the border columns (grey levels of channel 0):
    1.4826 MAD of each column minus its 31-px running mean (the slow gradient removed)."""
    cols = _border_strips(img).astype(np.float32)
    if cols.ndim == 3:
        cols = cols[:, :, 0]
    if cols.shape[1] < 8:
        return 0.0
    smooth = cv2.blur(cols, (31, 1), borderType=cv2.BORDER_REFLECT)  # along each column
    res = (cols - smooth).ravel()
    return float(1.4826 * np.median(np.abs(res - np.median(res))))


TEXTURE_TILE = 256


def background_texture(img: np.ndarray, out_hw: Sequence[int], seed: int = 0) -> np.ndarray:
    """A background-like texture of (height, width) = `out_hw` with `img`'s channels and dtype: the
    border median (`background_value`) plus grain of the border's strength (`background_grain`),
    drawn at half resolution and upsampled (grain a few pixels wide, as in the radiographs), in
    tiles of 256 px. Deterministic in `seed`."""
    h, w = int(out_hw[0]), int(out_hw[1])
    rng = np.random.default_rng(seed)
    half = rng.standard_normal((TEXTURE_TILE // 2, TEXTURE_TILE // 2), dtype=np.float32)
    unit = cv2.resize(half, (TEXTURE_TILE, TEXTURE_TILE), interpolation=cv2.INTER_LINEAR)
    unit = (unit - unit.mean()) / max(float(unit.std()), 1e-6)
    med, sigma = background_value(img), background_grain(img)
    hi = np.iinfo(img.dtype).max if img.dtype.kind in "ui" else None
    tiles = []
    for v in med if img.ndim == 3 else med[:1]:
        t = v + sigma * unit
        tiles.append(np.rint(np.clip(t, 0, hi)).astype(img.dtype) if hi is not None else t.astype(img.dtype))
    tile = tiles[0] if img.ndim == 2 else np.stack(tiles, axis=-1)
    reps = (-(-h // TEXTURE_TILE), -(-w // TEXTURE_TILE)) + ((1,) if img.ndim == 3 else ())
    return np.tile(tile, reps)[:h, :w]


def uncovered_mask(m: np.ndarray, src_hw: Sequence[int], out_hw: Sequence[int]) -> np.ndarray:
    """uint8 (h, w): 1 where the output pixel's centre maps outside the source image (by the
    forward matrix `m`), 0 where the source covers it. Sub-pixel exact (fillConvexPoly shift=4)."""
    sh, sw = int(src_hw[0]), int(src_hw[1])
    corners = np.array([[-0.5, -0.5], [sw - 0.5, -0.5], [sw - 0.5, sh - 0.5], [-0.5, sh - 0.5]])
    quad = np.rint(apply_points(corners, m) * 16).astype(np.int32)
    mask = np.ones((int(out_hw[0]), int(out_hw[1])), np.uint8)
    cv2.fillConvexPoly(mask, quad.reshape(-1, 1, 2), 0, lineType=cv2.LINE_8, shift=4)
    return mask


def _border_value(img: np.ndarray, fill) -> tuple[float, ...]:
    if fill is None or fill in ("background", "texture"):
        vals = background_value(img)
    else:
        vals = tuple(float(v) for v in np.atleast_1d(fill))
    vals = tuple(vals) + (vals[-1],) * (4 - len(vals))  # cv2 wants a 4-tuple Scalar
    return vals[:4]


def warp_image(img: np.ndarray, m: np.ndarray, out_size: Sequence[int] | None = None,
               fill: str | float | Sequence[float] | None = "background", seed: int = 0) -> np.ndarray:
    """`img` moved by the forward matrix `m` into a new (height, width) = `out_size` image.

    Bilinear (cv2.INTER_LINEAR); uncovered pixels get `fill`: "background" (a flat value
    estimated from the image's border), "texture" (that value plus grain like the border's,
    `background_texture(img, ..., seed)`), or a number / per-channel tuple. The input is never modified; dtype
    and channel count are kept; the identity gives an identical copy.

    >>> img = np.arange(12, dtype=np.uint8).reshape(3, 4)
    >>> bool((warp_image(img, identity_matrix()) == img).all())
    True
    """
    h, w = (img.shape[:2] if out_size is None else (int(out_size[0]), int(out_size[1])))
    m = np.asarray(m, float).reshape(2, 3)
    if is_identity(m) and (h, w) == img.shape[:2]:
        return img.copy()
    texture = background_texture(img, (h, w), seed) if fill == "texture" else None
    return _warp_linear(img, m, (h, w), _border_value(img, fill), texture)


def _is_grey_bgr(img: np.ndarray) -> bool:
    """A 3-channel image whose channels are identical (how the X-ray PNGs are stored)."""
    if img.ndim != 3 or img.shape[2] != 3:
        return False
    b, g, r = (cv2.extractChannel(img, i) for i in range(3))
    return cv2.countNonZero(cv2.bitwise_xor(b, g)) == 0 and cv2.countNonZero(cv2.bitwise_xor(b, r)) == 0


def _warp_linear(img: np.ndarray, m: np.ndarray, out_hw: tuple[int, int], border: tuple,
                 texture: np.ndarray | None = None) -> np.ndarray:
    """cv2.warpAffine, bilinear, constant border; with `texture` (an image of the output's shape
    and channels), the uncovered pixels are then copied from it. Grey-looking BGR images are
    warped as one channel and expanded again: bit-identical to warping all three, in about 60%
    of the time."""
    h, w = out_hw
    if _is_grey_bgr(img) and border[0] == border[1] == border[2]:
        one = cv2.warpAffine(cv2.extractChannel(img, 0), m, (w, h), flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_CONSTANT, borderValue=border)
        if texture is not None:
            tex = texture if texture.ndim == 2 else cv2.extractChannel(texture, 0)
            cv2.copyTo(tex, uncovered_mask(m, img.shape[:2], (h, w)), one)
        return cv2.cvtColor(one, cv2.COLOR_GRAY2BGR)
    out = cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                         borderValue=border)
    out = out.reshape((h, w) + img.shape[2:])
    if texture is not None:
        mask = uncovered_mask(m, img.shape[:2], (h, w)).astype(bool)
        out[mask] = texture.reshape(out.shape)[mask]
    return out


def hflip_image(img: np.ndarray) -> np.ndarray:
    """Mirror left-right (a new array)."""
    return cv2.flip(img, 1).reshape(img.shape)


def crop(img: np.ndarray, rect: Sequence[int]) -> np.ndarray:
    """The half-open pixel rectangle [x0, y0, x1, y1] of `img` (a view)."""
    x0, y0, x1, y1 = (int(v) for v in rect)
    return img[y0:y1, x0:x1]


def blend_band(base: np.ndarray, moved: np.ndarray, point: Sequence[float], normal: Sequence[float],
               half_width: float, out: np.ndarray | None = None) -> np.ndarray:
    """Composite two same-size images across a straight feathered band.

    With ``s = (p - point) . normal`` (normal normalised) the result is `moved` where
    ``s >= half_width``, `base` where ``s <= -half_width`` and a linear blend in between.
    Only the band's rows (or columns) are blended in float; the rest are plain copies.
    `out` may be `moved` itself (then `moved` is overwritten); otherwise a new array.
    """
    if base.shape != moved.shape:
        raise ValueError(f"shape mismatch {base.shape} vs {moved.shape}")
    n = np.asarray(normal, float)
    n = n / np.linalg.norm(n)
    hw = max(float(half_width), 0.5)
    if out is None:
        out = moved.copy()
    elif out is not moved:
        out[...] = moved
    # work in a frame where the band line is closer to horizontal than vertical: |ny| >= |nx|
    swap = abs(n[0]) > abs(n[1])
    if swap:
        B, O = base.swapaxes(0, 1), out.swapaxes(0, 1)
        px, py, nx, ny = float(point[1]), float(point[0]), n[1], n[0]
    else:
        B, O = base, out
        px, py, nx, ny = float(point[0]), float(point[1]), n[0], n[1]
    H, W = O.shape[:2]
    # rows touched by the band: s = (x-px)*nx + (y-py)*ny in (-hw, hw) for some x in [0, W-1]
    xs = np.array([0.0, W - 1.0])
    yc = py - (xs - px) * nx / ny
    reach = hw / abs(ny)
    r0 = int(np.clip(np.floor(yc.min() - reach), 0, H))
    r1 = int(np.clip(np.ceil(yc.max() + reach) + 1, 0, H))
    if ny > 0:  # s grows with y: base side is above the band
        O[:r0] = B[:r0]
    else:
        O[r1:] = B[r1:]
    if r1 > r0:
        ys = np.arange(r0, r1, dtype=np.float32)[:, None]
        xg = np.arange(W, dtype=np.float32)[None, :]
        s = (xg - px) * np.float32(nx) + (ys - py) * np.float32(ny)
        wgt = np.clip(s / np.float32(2 * hw) + np.float32(0.5), 0, 1)
        if B.ndim == 3:
            wgt = wgt[:, :, None]
        b = B[r0:r1].astype(np.float32)
        mv = O[r0:r1].astype(np.float32)
        O[r0:r1] = np.rint(b + wgt * (mv - b)).astype(O.dtype)
    return out


def top_band_rows(img: np.ndarray, min_delta: float = 40.0, tail_delta: float = 6.0,
                  max_fraction: float = 0.1) -> int:
    """How many rows at the top form the detector's bright band (0 when there is none).

    Judged on the median of each row's 4 leftmost and 4 rightmost pixels: row 0 must be at
    least `min_delta` above the background value; the band (with its soft tail) goes on while
    rows stay more than `tail_delta` above it.
    """
    h = img.shape[0]
    lim = max(1, int(h * max_fraction))
    edge = np.concatenate([img[:lim, :4].reshape(lim, -1), img[:lim, -4:].reshape(lim, -1)], axis=1)
    level = np.median(edge, axis=1) - float(np.mean(background_value(img)))
    if level[0] < min_delta:
        return 0
    above = level > tail_delta
    return lim if above.all() else int(np.argmin(above))


# ---------------------------------------------------------------- the wrist


HAND_LABELS: frozenset[str] = frozenset([lab for ray in RAYS for lab in ray] + list(CARPALS))
PROXIMAL_ROW: tuple[str, ...] = ("Scaphoid", "Lunate", "Triquetrum", "Pisiform")


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
    grey = _is_grey_bgr(img) and border[0] == border[1] == border[2]
    # the hand-side source: a private copy (one channel is enough for grey-looking BGR)
    src = cv2.extractChannel(img, 0) if grey else img.copy()
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
    if grey:
        moved = cv2.cvtColor(moved, cv2.COLOR_GRAY2BGR)
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


__all__ = [
    "identity_matrix", "rotation_matrix", "translation_matrix", "hflip_matrix", "resize_matrix",
    "compose", "invert", "is_identity", "apply_points", "round_half_up",
    "canvas_box", "rect_box", "polygonal_parts", "valid_parts", "snap_to_grid", "ring_points",
    "clip_polygons", "transform_annotation", "transform_annotations", "annotation_area",
    "background_value", "background_grain", "background_texture", "uncovered_mask", "warp_image",
    "hflip_image", "crop", "blend_band",
    "WristFrame", "wrist_frame", "split_hand", "HAND_LABELS", "PROXIMAL_ROW", "top_band_rows",
    "erase_forearm_near_wrist", "wrist_warp",
]
