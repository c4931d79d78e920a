"""Pixels of a synthetic hand radiograph from its geometry; pure apart from the rng handed in.

Additive attenuation model: image = background + soft tissue + sum of bones (+ metal), so
overlapping bones come out brighter, then blur, noise and a per-image tone curve. Smooth fields
(soft tissue, bone texture, noise) are drawn at low resolution and upsampled; bones are filled
at full resolution from the integer annotation rings, so the ground truth is what was drawn.

>>> import numpy as np
>>> from xaug.synth.anatomy import HandShape, Pose, hand_geometry, annotation_polygons
>>> from xaug.synth.plan import Look
>>> g = hand_geometry(HandShape(), Pose(), "R", 128)
>>> img = render(annotation_polygons(g), g, Look(), {}, np.random.default_rng(0))
>>> img.shape, img.dtype
((128, 128, 3), dtype('uint8'))
"""
from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np

from xaug.classes import CARPALS, FOREARM, RAYS
from xaug.synth.anatomy import LONG_BONES, HandGeometry

METAL = 0.85  # attenuation of a metal object (rings, plates, screws, gems), above any bone


def _background(size: int, look) -> np.ndarray:
    """(size, 1) column: dark with a faint vertical gradient and a bright band along the top."""
    y = np.arange(size, dtype=np.float32)[:, None]
    band_px = look.band_px * size / 2048.0
    band = look.band / (1.0 + np.exp(np.minimum((y - band_px) / max(band_px * 0.15, 0.5), 60.0)))
    return look.background + look.gradient * (y / size) + band


def _tissue(geom: HandGeometry, look, low: int) -> np.ndarray:
    """Soft-tissue thickness field (0..1) at low resolution: thicker in the palm than fingers."""
    f = low / geom.size
    m = np.zeros((low, low), np.uint8)
    cv2.fillPoly(m, [np.rint(geom.forearm * f).astype(np.int32)], 1)
    palm = np.rint(geom.palm * f).astype(np.int32)
    web, wrist = geom.palm_parts
    for part in (palm[:web], palm[web:wrist or None], palm[wrist:] if wrist else palm[:0]):
        if len(part) >= 3:
            cv2.fillPoly(m, [part], 1)
    for path, r in zip(geom.ray_paths, geom.ray_radius):
        pts = np.rint(path * f).astype(np.int32)
        t = max(1, int(round(2 * r * f)))
        cv2.polylines(m, [pts], False, 1, thickness=t)
        cv2.circle(m, tuple(int(v) for v in pts[-1]), max(1, t // 2), 1, -1)
    d = cv2.distanceTransform(m, cv2.DIST_L2, 3)
    tau = 2.5 * geom.px_per_mm * f
    thick = 1.0 - np.exp(-d / max(tau, 1e-3))
    return cv2.GaussianBlur(thick, (0, 0), max(0.5, 0.25 * geom.px_per_mm * f))


def _bone_profile(dist: np.ndarray, cortex_px: float, medulla: float) -> np.ndarray:
    """Brightness across a bone from the distance to its outline: bright cortex, softer inside."""
    # the projected cortex is thickest just inside the outline, then falls off into the medulla
    rim = np.minimum(dist / (0.5 * cortex_px), 1.0) * np.exp(-np.maximum(dist - cortex_px, 0.0) / (0.8 * cortex_px))
    inner = 1.0 - medulla * np.clip((dist - 1.5 * cortex_px) / (3.0 * cortex_px), 0.0, 1.0)
    return rim, inner


def _bone_window(ring, size: int):
    """(x0, y0, x1, y1, mask, dist) of one bone: its filled ring in a tight window and the
    distance to its outline (the image border is not an outline: forearm bones); None if empty."""
    ring = np.asarray(ring, np.int32)
    x0, y0 = np.maximum(ring.min(axis=0) - 2, 0)
    x1, y1 = np.minimum(ring.max(axis=0) + 3, size)
    if x1 <= x0 or y1 <= y0:
        return None
    mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cv2.fillPoly(mask, [(ring - [x0, y0]).reshape(-1, 1, 2)], 1)
    pad = cv2.copyMakeBorder(mask, 1, 1, 1, 1, cv2.BORDER_REPLICATE)
    dist = cv2.distanceTransform(pad, cv2.DIST_L2, cv2.DIST_MASK_5)[1:-1, 1:-1]
    return x0, y0, x1, y1, mask, dist


def _draw_bones(canvas: np.ndarray, polys: dict[str, np.ndarray], geom: HandGeometry, look) -> None:
    size = geom.size
    ppm = geom.px_per_mm
    for label, ring in polys.items():
        window = _bone_window(ring, size)
        if window is None:
            continue
        x0, y0, x1, y1, mask, dist = window
        if label in FOREARM:
            cortex, medulla, level = 1.6 * ppm, 0.5, 1.0
        elif label in CARPALS:
            cortex, medulla, level = 0.55 * ppm, 0.15, 1.0
        else:
            width = LONG_BONES[label][2]
            cortex, medulla, level = 0.13 * width * ppm, 0.5, 1.0
        cortex = max(cortex, 0.6)
        rim, inner = _bone_profile(dist, cortex, medulla)
        val = (look.bone * level) * inner + look.cortex * rim
        if label in geom.axes and label not in FOREARM:
            # thin cortex at the articular ends: joints are low-contrast, as in radiographs
            c, d = geom.axes[label]
            half = np.abs((ring - c) @ d).max()
            u = (np.arange(x0, x1, dtype=np.float32)[None, :] - c[0]) * d[0] \
                + (np.arange(y0, y1, dtype=np.float32)[:, None] - c[1]) * d[1]
            val *= 1.0 - 0.25 * np.clip((np.abs(u) - 0.6 * half) / (0.35 * half), 0.0, 1.0)
        val *= mask
        canvas[y0:y1, x0:x1] += val


def _rotated_rect(centre, axis, half_len: float, half_wid: float) -> np.ndarray:
    c = np.asarray(centre, np.float64)
    d = np.asarray(axis, np.float64)
    d = d / max(np.hypot(*d), 1e-9)
    p = np.array([-d[1], d[0]])
    return np.array([c + d * half_len + p * half_wid, c + d * half_len - p * half_wid,
                     c - d * half_len - p * half_wid, c - d * half_len + p * half_wid])


def _fill(canvas: np.ndarray, poly: np.ndarray, value: float) -> None:
    """Add `value` inside a polygon (anti-aliased via a 4x-subpixel fill)."""
    layer = np.zeros(canvas.shape, np.uint8)
    cv2.fillPoly(layer, [np.rint(poly * 16).astype(np.int32).reshape(-1, 1, 2)], 255,
                 lineType=cv2.LINE_AA, shift=4)
    x, y, w, h = cv2.boundingRect(np.rint(poly).astype(np.int32).reshape(-1, 1, 2))
    x0, y0 = max(x - 2, 0), max(y - 2, 0)
    x1, y1 = min(x + w + 2, canvas.shape[1]), min(y + h + 2, canvas.shape[0])
    canvas[y0:y1, x0:x1] += layer[y0:y1, x0:x1].astype(np.float32) * (value / 255.0)


def _ellipse(centre, axis, half_len: float, half_wid: float, n: int = 24) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    d = np.asarray(axis, np.float64)
    p = np.array([-d[1], d[0]])
    return np.asarray(centre) + np.outer(np.cos(t) * half_len, d) + np.outer(np.sin(t) * half_wid, p)


def _draw_edges(canvas: np.ndarray, geom: HandGeometry, edges: dict[str, Any],
                rng: np.random.Generator) -> None:
    ppm = geom.px_per_mm
    ring = edges.get("ring")
    if isinstance(ring, dict):
        label = RAYS[ring["ray"]][-2]  # the proximal phalanx
        centre, axis = geom.axes[label]
        length = np.hypot(*np.ptp(geom.bones[label], axis=0))
        c = centre + axis * (ring["at"] - 0.5) * 0.8 * length
        half_w = geom.ray_radius[ring["ray"]] * 0.95
        half_l = ring["width_mm"] * ppm / 2
        _fill(canvas, _rotated_rect(c, axis, half_l, half_w), METAL * 0.7)
        for s in (-1, 1):  # a ring seen edge-on at the sides of the finger is denser
            side = c + np.array([-axis[1], axis[0]]) * s * half_w * 0.85
            _fill(canvas, _rotated_rect(side, axis, half_l, half_w * 0.15), METAL * 0.5)
    nails = edges.get("nail_art")
    if isinstance(nails, dict):
        for r in nails["rays"]:
            label = RAYS[r][0]
            centre, axis = geom.axes[label]
            half = LONG_BONES[label][0] * ppm / 2
            tip = centre + axis * half * 0.45
            w = geom.ray_radius[r] * 0.8
            _fill(canvas, _ellipse(tip, axis, half * 0.6, w), 0.12)
            for _ in range(int(rng.integers(1, 4))):
                off = axis * rng.uniform(-0.4, 0.4) * half + np.array([-axis[1], axis[0]]) * rng.uniform(-0.5, 0.5) * w
                rad = rng.uniform(0.5, 1.1) * ppm
                _fill(canvas, _ellipse(tip + off, axis, rad, rad, 12), METAL * 0.6)
    implant = edges.get("implant")
    if isinstance(implant, dict):
        centre, axis = geom.axes["Radius"]
        top = geom.bones["Radius"][:, 1].min()
        length = implant["length_mm"] * ppm
        start = np.array([centre[0], top]) - axis * 8 * ppm  # axis points distally (up)
        mid = start - axis * length / 2
        _fill(canvas, _rotated_rect(mid, axis, length / 2, 4.5 * ppm), METAL * 0.55)
        head = start - axis * 3 * ppm
        _fill(canvas, _rotated_rect(head, axis, 3.5 * ppm, 11 * ppm), METAL * 0.55)
        perp = np.array([-axis[1], axis[0]])
        for k in range(implant["screws"]):
            if k < 3:
                c = head + perp * (k - 1) * 7 * ppm
            else:
                c = start - axis * (10 + (k - 3) * 9) * ppm
            _fill(canvas, _rotated_rect(c, perp, 1.4 * ppm, 1.4 * ppm), METAL * 0.5)


LUT_SIZE, LUT_MAX = 4096, 2.0


def tone_lut(look) -> np.ndarray:
    """uint8 grey level for each of LUT_SIZE linear levels in [0, LUT_MAX]."""
    x = np.linspace(0.0, LUT_MAX, LUT_SIZE)
    y = (1.0 - np.exp(-1.6 * x)) / (1.0 - math.exp(-1.6 * 1.5))
    y = look.gain * (y - 0.5) + 0.5 + look.offset
    y = np.clip(y, 0.0, 1.0) ** look.gamma
    return np.rint(255.0 * y).astype(np.uint8)


def render(polys: dict[str, np.ndarray], geom: HandGeometry, look, edges: dict[str, Any],
           rng: np.random.Generator) -> np.ndarray:
    """The 3-channel 8-bit image (grey in all channels) of one posed hand."""
    size = geom.size
    low = min(size, max(160, size // 4))  # smooth fields at low resolution, never blocky
    img = np.empty((size, size), np.float32)
    img[:] = _background(size, look)
    tissue = cv2.resize(_tissue(geom, look, low), (size, size), interpolation=cv2.INTER_LINEAR)
    img += look.tissue * tissue
    bones = np.zeros((size, size), np.float32)
    _draw_bones(bones, polys, geom, look)
    tex = rng.standard_normal((low, low), dtype=np.float32)
    tex = cv2.resize(cv2.GaussianBlur(tex, (0, 0), 0.8), (size, size), interpolation=cv2.INTER_LINEAR)
    bones *= 1.0 + look.texture * 2.0 * min(1.0, size / 1024.0) * tex  # trabeculae fade when small
    _draw_edges(bones, geom, edges, rng)
    img += bones
    sigma = look.blur * size / 2048.0
    if sigma >= 0.3:
        img = cv2.GaussianBlur(img, (0, 0), sigma)
    half = max(16, size // 2)
    noise = rng.standard_normal((half, half), dtype=np.float32)
    noise = cv2.resize(noise, (size, size), interpolation=cv2.INTER_LINEAR)
    img += noise * (look.noise * 1.4 / 255.0)
    # tone curve (film-like shoulder so overlaps stay brighter without clipping, then contrast,
    # brightness, gamma) as one 4096-entry lookup table
    idx = img * ((LUT_SIZE - 1) / LUT_MAX)
    np.clip(idx, 0, LUT_SIZE - 1, out=idx)
    grey = tone_lut(look)[idx.astype(np.uint16)]
    return cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)


# ----------------------------------------------------------------------------- realistic styles
# The realistic and randomised styles (plan.RealLook): a soft-tissue silhouette (fingers, palm
# with webs, thenar and hypothenar eminences, wrist, forearm) whose projected thickness fades to
# nothing at the skin, on a near-black background; thin bright cortex and trabecular texture;
# overlapping bones add less than a full bone each; vignetting, quantum-like noise, blur, and a
# tone curve with a soft shoulder. Levels are in grey values (0-255) before the gamma, so the
# parameters read like the statistics they aim at.

TONE_MAX = 400.0  # the lookup table covers linear grey levels 0..TONE_MAX (metal, overlaps)
KNEE = 215.0      # above this, a soft shoulder instead of clipping


def realistic_tone_lut(gamma: float) -> np.ndarray:
    """uint8 grey for each of LUT_SIZE linear grey levels in [0, TONE_MAX]: identity up to the
    knee, a soft shoulder above it, then gamma."""
    x = np.linspace(0.0, TONE_MAX, LUT_SIZE)
    room = 255.0 - KNEE
    y = np.where(x < KNEE, x, KNEE + room * (1.0 - np.exp(-(x - KNEE) / room)))
    y = 255.0 * (np.clip(y, 0.0, 255.0) / 255.0) ** gamma
    return np.rint(y).astype(np.uint8)


def _bone_frame(ring: np.ndarray, axis: tuple[np.ndarray, np.ndarray] | None) -> tuple[float, float]:
    """(length, mean width) of a bone outline in px, along its axis if it has one."""
    pts = np.asarray(ring, np.float64)
    if axis is None:
        c = pts.mean(axis=0)
        ev = np.linalg.eigh(np.cov((pts - c).T))[1][:, -1]
    else:
        c, ev = axis
    u = (pts - c) @ ev
    length = float(np.ptp(u))
    x, y = pts[:, 0], pts[:, 1]
    area = 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))
    return length, area / max(length, 1e-6)


def silhouette_mask(geom: HandGeometry, polys: dict[str, np.ndarray], tissue_mm: float, low: int) -> np.ndarray:
    """The skin outline of the hand and forearm at `low` px (uint8 0/1), rounded."""
    f = low / geom.size
    ppm = geom.px_per_mm * f
    t = tissue_mm * ppm
    m = np.zeros((low, low), np.uint8)

    def hull(points: list[np.ndarray], grow: float) -> None:
        pts = np.vstack(points) * f
        h = cv2.convexHull(pts.astype(np.float32)).reshape(-1, 2).astype(np.float64)
        c = h.mean(axis=0)
        v = h - c
        h = c + v * (1 + grow / np.maximum(np.hypot(v[:, 0], v[:, 1]), 1e-6))[:, None]
        cv2.fillPoly(m, [np.rint(h).astype(np.int32)], 1)

    b = geom.bones
    paths = geom.ray_paths
    # fingers: each segment a capsule as wide as its bone plus the soft tissue
    for r, ray in enumerate(RAYS):
        for j, label in enumerate(ray[::-1]):
            if j == 0:
                continue  # metacarpals are inside the palm (thumb: the thenar)
            a, z = paths[r][j] * f, paths[r][j + 1] * f
            _, width = _bone_frame(polys[label], geom.axes.get(label))
            rad = 0.5 * width * f * 1.05 + t * (1.0 - 0.12 * j)
            cv2.line(m, tuple(int(v) for v in np.rint(a)), tuple(int(v) for v in np.rint(z)), 1,
                     thickness=max(1, int(round(2 * rad))))
            if j == len(ray) - 1:
                cv2.circle(m, tuple(int(v) for v in np.rint(z)), max(1, int(round(0.9 * rad))), 1, -1)
    # palm up to the finger webs (a third of the proximal phalanges)
    webs = [(p[1] + 0.33 * (p[2] - p[1]))[None] for p in paths[1:]]
    hull([b[k] for k in ("finger-7", "finger-11", "finger-15", "finger-19", "Trapezoid", "Capitate", "Hamate")]
         + webs, t + 1.0 * ppm)
    # thenar eminence and the thumb web: thumb metacarpal, half its proximal phalanx, index base
    hull([b["finger-3"], b["Trapezium"], b["Scaphoid"], (paths[0][1] + 0.4 * (paths[0][2] - paths[0][1]))[None],
          (paths[1][0] + 0.55 * (paths[1][1] - paths[1][0]))[None]], t + 2.5 * ppm)
    # hypothenar eminence
    hull([b["finger-19"], b["Hamate"], b["Pisiform"], b["Triquetrum"]], t + 3.5 * ppm)
    # wrist and forearm: carpus and the forearm bones (clipped at the bottom edge)
    hull([b[k] for k in ("Scaphoid", "Lunate", "Triquetrum", "Pisiform")] + [polys["Radius"], polys["Ulna"]],
         t + 3.0 * ppm)
    # round the corners (webs, wrist) the way skin does
    soft = cv2.GaussianBlur(m.astype(np.float32), (0, 0), max(0.6, 2.5 * ppm))
    return (soft > 0.45).astype(np.uint8)


def tissue_thickness(mask: np.ndarray, px_per_mm: float) -> np.ndarray:
    """Projected soft-tissue thickness (0..1) from the skin outline: a rounded cross-section
    (zero at the skin, fading in), thicker where the body is wider (palm, forearm)."""
    d = cv2.distanceTransform(mask, cv2.DIST_L2, 3)
    r = max(7.0 * px_per_mm, 1.0)
    x = np.minimum(d / r, 1.0)
    cyl = np.sqrt(x * (2.0 - x))
    return (0.62 * cyl ** 1.4 + 0.38 * np.minimum(d / (3.5 * r), 1.0)).astype(np.float32)


def _draw_bones_realistic(canvas: np.ndarray, count: np.ndarray, polys: dict[str, np.ndarray],
                          geom: HandGeometry, look) -> None:
    """Per bone: thin bright cortex, a darker medulla along the shaft of long bones."""
    size = geom.size
    ppm = geom.px_per_mm
    for label, ring in polys.items():
        window = _bone_window(ring, size)
        if window is None:
            continue
        x0, y0, x1, y1, mask, dist = window
        if label in FOREARM:
            cortex, medulla = 2.2 * look.cortex_mm * ppm, 0.45
        elif label in CARPALS:
            cortex, medulla = 0.6 * look.cortex_mm * ppm, 0.12
        else:
            _, width = _bone_frame(ring, geom.axes.get(label))
            cortex, medulla = look.cortex_mm * ppm * min(1.4, max(0.6, width / (8.0 * ppm))), 0.55
        cortex = max(cortex, 0.6)
        rim, inner = _bone_profile(dist, cortex, medulla)
        if label in geom.axes and label not in FOREARM:
            # the medulla is a shaft feature: the ends are cancellous (trabecular), not hollow
            c, d = geom.axes[label]
            half = np.abs((ring - c) @ d).max()
            u = (np.arange(x0, x1, dtype=np.float32)[None, :] - c[0]) * d[0] \
                + (np.arange(y0, y1, dtype=np.float32)[:, None] - c[1]) * d[1]
            ends = np.clip((np.abs(u) - 0.45 * half) / (0.3 * half), 0.0, 1.0)
            inner = inner + (1.0 - inner) * ends
        val = (inner + look.cortex * rim) * mask
        canvas[y0:y1, x0:x1] += val
        count[y0:y1, x0:x1] += mask


def render_realistic(polys: dict[str, np.ndarray], geom: HandGeometry, look, edges: dict[str, Any],
                     rng: np.random.Generator) -> np.ndarray:
    """The 3-channel 8-bit image of one posed hand in a realistic style (`look`: plan.RealLook)."""
    size = geom.size
    low = min(size, max(160, size // 4))
    half = max(16, size // 2)
    # soft tissue: the silhouette's thickness, with slow variations of density
    mask = silhouette_mask(geom, polys, look.tissue_mm, low)
    thick = tissue_thickness(mask, geom.px_per_mm * low / geom.size)
    slow = cv2.resize(rng.standard_normal((6, 6), dtype=np.float32), (low, low), interpolation=cv2.INTER_CUBIC)
    thick *= 1.0 + 0.06 * slow
    thick = cv2.GaussianBlur(thick, (0, 0), 0.8)
    tissue = cv2.resize(thick, (size, size), interpolation=cv2.INTER_LINEAR)
    # bones: average layer brightness times the effective number of layers (overlap density)
    bones = np.zeros((size, size), np.float32)
    count = np.zeros((size, size), np.uint8)
    _draw_bones_realistic(bones, count, polys, geom, look)
    # trabecular texture: band-pass grain about a millimetre across, fading on small images
    tex = rng.standard_normal((half, half), dtype=np.float32)
    s1 = max(0.5, 0.45 * geom.px_per_mm * half / size)
    tex = cv2.GaussianBlur(tex, (0, 0), s1) - cv2.GaussianBlur(tex, (0, 0), 3 * s1)
    tex *= 1.0 / max(float(tex.std()), 1e-6)
    tex = cv2.resize(tex, (size, size), interpolation=cv2.INTER_LINEAR)
    amp = look.trabecular * min(1.0, size / 1024.0)
    # (full-size arrays are updated in place throughout: this is most of the render's time)
    layers = np.maximum(np.arange(256, dtype=np.float32), 1.0)
    bones *= ((1.0 + look.overlap * (layers - 1.0)) / layers)[count]
    tex *= amp
    tex += 1.0
    bones *= tex
    # compose in grey levels: background, tissue, bone over tissue, metal
    y = np.arange(size, dtype=np.float32)[:, None]
    band_px = look.band_px * size / 2048.0
    background = look.black + look.gradient * (y / size) \
        + look.band / (1.0 + np.exp(np.minimum((y - band_px) / max(band_px * 0.15, 0.5), 60.0)))
    img = tissue
    img *= look.tissue
    bones *= look.bone - 0.8 * look.tissue
    img += bones
    if {"ring", "nail_art", "implant"} & set(edges):
        metal = np.zeros((size, size), np.float32)
        _draw_edges(metal, geom, edges, rng)
        metal *= 320.0
        img += metal
    img += background
    if look.vignette > 0:
        c = (np.arange(size, dtype=np.float32) - (size - 1) / 2) / (size / 2)
        c *= c
        fall = c[None, :] + c[:, None]
        fall *= -(look.vignette * 0.5)
        fall += 1.0
        img *= fall
    sigma = look.blur * size / 2048.0
    if sigma >= 0.3:
        img = cv2.GaussianBlur(img, (0, 0), sigma)
    # quantum-like noise: stronger where more signal passed, drawn at half size (grain)
    noise = cv2.resize(rng.standard_normal((half, half), dtype=np.float32), (size, size),
                       interpolation=cv2.INTER_LINEAR)
    noise *= look.noise * 1.4
    level = np.maximum(img, 4.0)
    level *= 1.0 / 128.0
    np.sqrt(level, out=level)
    noise *= level
    img += noise
    idx = img
    idx *= (LUT_SIZE - 1) / TONE_MAX
    np.clip(idx, 0, LUT_SIZE - 1, out=idx)
    grey = realistic_tone_lut(look.gamma)[idx.astype(np.uint16)]
    return cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)
