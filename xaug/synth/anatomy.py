"""The geometry of a hand radiograph: 29 bone outlines as float polygons, pure (no randomness).

Everything is built for a canonical right hand in millimetres (origin at the wrist pivot, the
head of the capitate; y grows towards the elbow; the thumb on the -x side), posed (finger
spread and flexion, wrist deviation about the pivot with the forearm kept vertical, a
whole-hand rotation), mirrored for a left hand, then scaled and placed on the image.
The random parts (who the person is, how the hand lies) are drawn elsewhere
(`xaug.synth.plan`) and handed in as `HandShape` and `Pose`.

>>> g = hand_geometry(HandShape(), Pose(), side="R", size=256)
>>> len(g.bones), bool(g.bones["Radius"][:, 1].max() >= 255)
(29, True)
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from xaug.classes import CLASSES, RAYS

# ----------------------------------------------------------------------------- anatomy tables
# Canonical adult right hand (middle fingertip 175 mm from the pivot). Long bones:
# label -> (length, base width, shaft width, head width) in mm.
LONG_BONES: dict[str, tuple[float, float, float, float]] = {
    "finger-1": (21.5, 10.5, 6.5, 7.5), "finger-2": (30.0, 12.5, 8.0, 10.5),
    "finger-3": (44.0, 13.0, 8.5, 12.0),
    "finger-4": (16.5, 9.0, 5.2, 6.4), "finger-5": (22.5, 10.5, 7.0, 8.5),
    "finger-6": (39.0, 12.5, 7.8, 10.0), "finger-7": (66.0, 13.0, 7.5, 11.5),
    "finger-8": (18.5, 9.0, 5.0, 6.3), "finger-9": (27.0, 11.0, 7.3, 9.0),
    "finger-10": (44.0, 13.0, 8.2, 10.5), "finger-11": (63.0, 13.5, 8.0, 12.0),
    "finger-12": (18.0, 8.8, 4.8, 6.0), "finger-13": (25.0, 10.5, 6.8, 8.5),
    "finger-14": (41.0, 12.5, 7.6, 10.0), "finger-15": (56.0, 11.0, 6.6, 11.0),
    "finger-16": (14.5, 7.2, 4.0, 5.0), "finger-17": (18.0, 9.0, 5.8, 7.2),
    "finger-18": (32.0, 11.0, 6.8, 8.8), "finger-19": (52.0, 11.5, 7.0, 10.5),
}
# Metacarpal bases (x, y) and the rest direction of each ray (degrees from straight up,
# positive towards the little finger).
RAY_BASES: tuple[tuple[float, float], ...] = ((-22.0, -15.5), (-10.0, -19.5), (0.5, -18.5),
                                              (10.0, -18.0), (17.5, -15.0))
RAY_ANGLES: tuple[float, ...] = (-33.0, -6.0, -1.0, 5.0, 12.0)
# Extra angle at the MCP joint for a unit of finger spread, and the joint gaps (mm).
SPREAD_GAIN: tuple[float, ...] = (-0.6, -1.0, -0.15, 0.7, 1.3)
JOINT_GAPS: tuple[float, ...] = (1.6, 1.3, 1.1)
# Carpals: label -> (cx, cy, half width, half height, angle deg, bend, egg, lobes, exponent)
#   bend bananas the shape (scaphoid, lunate), egg widens one end (capitate head),
#   lobes adds a triangular component (triquetrum, hamate), exponent > 2 squares the outline.
CARPALS: dict[str, tuple[float, ...]] = {
    "Trapezium": (-19.5, -10.5, 7.7, 7.4, 28.0, 0.10, 0.00, 0.10, 2.6),
    "Trapezoid": (-10.3, -15.0, 4.8, 5.5, 8.0, 0.00, 0.12, 0.06, 2.5),
    "Capitate": (-0.2, -8.7, 7.0, 11.8, -4.0, 0.00, 0.22, 0.03, 2.3),
    "Hamate": (11.3, -10.5, 7.4, 9.9, -14.0, 0.05, 0.15, 0.13, 2.2),
    "Scaphoid": (-13.8, 1.2, 13.2, 6.0, 52.0, 0.35, 0.08, 0.00, 2.0),
    "Lunate": (-1.0, 5.0, 8.1, 6.9, 4.0, -0.30, 0.10, 0.04, 2.2),
    "Triquetrum": (10.6, 2.0, 7.1, 6.0, -28.0, 0.05, 0.10, 0.12, 2.2),
    "Pisiform": (14.4, 0.6, 5.1, 5.7, 20.0, 0.00, 0.05, 0.00, 2.0),
}
PROXIMAL_ROW = ("Scaphoid", "Lunate", "Triquetrum", "Pisiform")
# Forearm outlines (closed control polygons, mm); they run far below any image.
RADIUS_CTRL = ((-27.5, 7.0), (-24.0, 9.5), (-16.0, 12.0), (-8.5, 13.5), (-1.0, 14.8), (4.5, 15.3),
               (6.8, 17.0), (6.0, 24.0), (3.8, 34.0), (1.5, 50.0), (0.5, 80.0), (0.0, 700.0),
               (-17.5, 700.0), (-18.0, 75.0), (-19.5, 48.0), (-24.5, 31.0), (-28.5, 18.0))
ULNA_CTRL = ((8.0, 21.0), (10.5, 18.8), (14.0, 18.3), (16.8, 16.5), (18.6, 11.8), (20.8, 14.0),
             (21.8, 22.0), (20.6, 40.0), (18.5, 70.0), (17.0, 700.0), (11.5, 700.0),
             (11.0, 80.0), (9.8, 50.0), (8.2, 30.0))
HAND_LENGTH_MM = 175.0          # pivot to middle fingertip of the canonical hand
PX_PER_MM_2048 = 7.2            # image scale of a canonical hand on a 2048 px image
FINGERTIP_TOP_2048 = 250.0      # fingertips this far below the top edge (DATA.md)
DENSE = 120                     # vertices of the float outlines before resampling


@dataclass(frozen=True)
class HandShape:
    """Who the hand belongs to: size and proportions (person level, mirrored L/R)."""

    scale: float = 1.0                       # hand length / canonical
    width: float = 1.0                       # bone width factor (sex, build)
    length: tuple[float, ...] = (1.0,) * 19  # per finger-bone length factor, CLASSES[0:19]
    girth: tuple[float, ...] = (1.0,) * 19   # per finger-bone width factor
    carpal_shift: tuple[tuple[float, float], ...] = ((0.0, 0.0),) * 8  # mm, CARPALS order
    carpal_size: tuple[float, ...] = (1.0,) * 8
    wobble: tuple[tuple[float, ...], ...] = ()  # per bone (29): 6 outline irregularity coeffs
    ray_angle: tuple[float, ...] = (0.0,) * 5   # rest-direction offsets (deg)
    tissue: float = 1.0                      # soft-tissue thickness factor
    # Anatomy of the realistic styles (the defaults are the legacy hand, byte for byte):
    finger_width: float = 1.0                # extra width of the 19 finger bones (real: 1.1-1.3)
    scaphoid: float = 1.0                    # scaphoid length factor (real: about 0.75)
    joint_gap: float = 1.0                   # joint-space factor
    ends: str = "simple"                     # "simple" (legacy) or "anatomic" bone ends


@dataclass(frozen=True)
class Pose:
    """How the hand lies on the detector for one image."""

    wrist_deg: float = 0.0          # hand turned about the wrist, forearm vertical (+ = ulnar)
    spread: float = 1.0             # finger spread factor (0 closed .. 2 wide)
    flex: tuple[float, ...] = (0.0,) * 5   # per ray 0 (straight) .. 1 (strongly bent)
    rotation_deg: float = 0.0       # whole hand and forearm rotated (+ = clockwise on screen)
    shift: tuple[float, float] = (0.0, 0.0)  # fraction of the image size
    zoom: float = 1.0
    hand_width: float | None = None  # bone extent across the image (fraction); None: legacy scale


@dataclass
class HandGeometry:
    """One posed hand in image pixels (float): bones plus what the renderer needs around them."""

    size: int
    bones: dict[str, np.ndarray]                    # label -> (N, 2) float, CLASSES order
    ray_paths: list[np.ndarray]                     # per ray: joint centres base -> tip (px)
    ray_radius: list[float]                         # soft-tissue half-width per ray (px)
    palm: np.ndarray                                # palm, thumb web and wrist outlines, stacked (px)
    forearm: np.ndarray                             # forearm soft tissue outline (px)
    px_per_mm: float
    palm_parts: tuple[int, int] = (-4, 0)           # where the web and the wrist rings start in `palm`
    axes: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    # label -> (centre, unit axis towards the fingertip) of each long bone (px)


# ----------------------------------------------------------------------------- outline kernels

def smooth_closed(ctrl: np.ndarray, n: int = DENSE, iterations: int = 3) -> np.ndarray:
    """Chaikin-smooth a closed control polygon and resample it to `n` points by arc length."""
    pts = np.asarray(ctrl, np.float64)
    for _ in range(iterations):
        nxt = np.roll(pts, -1, axis=0)
        pts = np.stack([0.75 * pts + 0.25 * nxt, 0.25 * pts + 0.75 * nxt], axis=1).reshape(-1, 2)
    return resample_closed(pts, n)


def resample_closed(poly: np.ndarray, n: int) -> np.ndarray:
    """`n` points equally spaced along the closed ring `poly`."""
    pts = np.asarray(poly, np.float64)
    closed = np.vstack([pts, pts[:1]])
    seg = np.hypot(*np.diff(closed, axis=0).T)
    cum = np.concatenate([[0.0], np.cumsum(seg)])
    t = np.linspace(0.0, cum[-1], n, endpoint=False)
    return np.stack([np.interp(t, cum, closed[:, 0]), np.interp(t, cum, closed[:, 1])], axis=1)


def perimeter(poly: np.ndarray) -> float:
    d = np.diff(np.vstack([poly, poly[:1]]), axis=0)
    return float(np.hypot(d[:, 0], d[:, 1]).sum())


def _wobble(theta: np.ndarray, coeffs: tuple[float, ...]) -> np.ndarray:
    """Smooth radial irregularity 1 + sum a_k cos(k theta + p_k), k = 2, 3, 4."""
    out = np.ones_like(theta)
    for k, (a, p) in enumerate(zip(coeffs[0::2], coeffs[1::2]), start=2):
        out += a * np.cos(k * theta + p)
    return out


def long_bone_local(length: float, w_base: float, w_shaft: float, w_head: float,
                    wobble: tuple[float, ...] = (), concave_base: bool = True,
                    n_side: int = 40, n_cap: int = 20) -> np.ndarray:
    """Outline of a tubular bone in local (u along the bone from base to head, v across) mm.

    A shaft with a flared base and a rounded head, as in hand-drawn annotations.
    """
    cb, ch = 0.07 * length, min(0.16 * length, 0.55 * w_head)
    ub, uh = cb, length - ch
    u = np.linspace(ub, uh, n_side)
    s = (u - ub) / max(uh - ub, 1e-6)

    def half(s_: np.ndarray) -> np.ndarray:
        base = (w_base - w_shaft) / 2 * np.exp(-(s_ / 0.22) ** 2)
        head = (w_head - w_shaft) / 2 * np.exp(-((1 - s_) / 0.20) ** 2)
        return w_shaft / 2 + base + head

    h = half(s)
    if wobble:
        h = h * (1 + 0.5 * wobble[0] * np.sin(np.pi * s * 2 + wobble[1])
                 + 0.5 * wobble[2] * np.sin(np.pi * s * 3 + wobble[3]))
    right = np.stack([u, h], axis=1)
    left = np.stack([u[::-1], -h[::-1]], axis=1)
    phi = np.linspace(0, np.pi, n_cap + 2)[1:-1]
    hh, hb = half(np.array([1.0]))[0], half(np.array([0.0]))[0]
    head_cap = np.stack([uh + ch * np.sin(phi) ** 0.8, hh * np.cos(phi)], axis=1)
    depth = 0.45 * cb if concave_base else 0.0
    base_u = ub - cb * np.sin(phi) ** 0.25 + depth * np.sin(phi) ** 2
    base_cap = np.stack([base_u, -hb * np.cos(phi)], axis=1)
    return np.vstack([right, head_cap, left, base_cap])


BONE_KINDS = ("metacarpal", "proximal", "middle", "distal")


def long_bone_anatomic(length: float, w_base: float, w_shaft: float, w_head: float, kind: str,
                       wobble: tuple[float, ...] = (), n_side: int = 44, n_cap: int = 22) -> np.ndarray:
    """Outline of a tubular hand bone with the ends that tell neighbours apart, local (u, v) mm.

    Metacarpals: a squarish base and a large round head. Proximal and middle phalanges: a broad
    flared base with a cupped articular surface and a two-condyle head (a shallow groove in the
    middle). Distal phalanges: a broad base, a narrow waist and a blunt, slightly flared tuft.
    """
    if kind not in BONE_KINDS:
        raise ValueError(f"kind must be one of {BONE_KINDS}, got {kind!r}")
    if kind == "metacarpal":
        cb, ch, fb, fh, tuft = 0.05 * length, min(0.13 * length, 0.5 * w_head), 0.12, 0.16, 0.0
    elif kind == "distal":
        cb, ch, fb, fh, tuft = 0.08 * length, min(0.10 * length, 0.3 * w_head), 0.30, 0.08, 1.0
    else:
        cb, ch, fb, fh, tuft = 0.07 * length, min(0.11 * length, 0.35 * w_head), 0.24, 0.17, 0.0
    ub, uh = cb, length - ch
    u = np.linspace(ub, uh, n_side)
    s = (u - ub) / max(uh - ub, 1e-6)

    def half(s_: np.ndarray) -> np.ndarray:
        base = (w_base - w_shaft) / 2 * np.exp(-(s_ / fb) ** 2)
        head = (w_head - w_shaft) / 2 * np.exp(-((1 - s_) / fh) ** 2)
        return w_shaft / 2 + base + head

    h = half(s)
    if wobble:
        h = h * (1 + 0.4 * wobble[0] * np.sin(np.pi * s * 2 + wobble[1])
                 + 0.4 * wobble[2] * np.sin(np.pi * s * 3 + wobble[3]))
    right = np.stack([u, h], axis=1)
    left = np.stack([u[::-1], -h[::-1]], axis=1)
    phi = np.linspace(0, np.pi, n_cap + 2)[1:-1]
    hh, hb = half(np.array([1.0]))[0], half(np.array([0.0]))[0]
    if tuft:  # distal tuft: flat, with rounded corners
        cap_u = uh + ch * np.sin(phi) ** 0.6
    elif kind == "metacarpal":  # a big round head
        cap_u = uh + ch * np.sin(phi) ** 0.7
    else:  # two condyles with a shallow groove between them
        cap_u = uh + ch * (np.sin(phi) ** 0.5 - 0.16 * np.exp(-((phi - np.pi / 2) / 0.4) ** 2))
    head_cap = np.stack([cap_u, hh * np.cos(phi)], axis=1)
    cup = 0.0 if kind == "metacarpal" else 0.5 * cb
    base_u = ub - cb * np.sin(phi) ** 0.2 + cup * np.sin(phi) ** 2
    base_cap = np.stack([base_u, -hb * np.cos(phi)], axis=1)
    return np.vstack([right, head_cap, left, base_cap])


def place(local: np.ndarray, origin: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """Map local (u, v) points onto the bone axis starting at `origin` along unit `direction`."""
    perp = np.array([-direction[1], direction[0]])
    return origin + local[:, :1] * direction + local[:, 1:2] * perp


def carpal_outline(cx: float, cy: float, rx: float, ry: float, angle: float, bend: float,
                   egg: float, lobes: float, exponent: float, wobble: tuple[float, ...] = (),
                   n: int = DENSE) -> np.ndarray:
    """An irregular rounded carpal: superellipse, bent, egg-shaped, lobed, smoothly wobbled."""
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    c, s = np.cos(t), np.sin(t)
    e = 2.0 / exponent
    x = np.sign(c) * np.abs(c) ** e
    y = np.sign(s) * np.abs(s) ** e
    r = 1 + lobes * np.cos(3 * t + 0.4)
    if wobble:
        r = r * _wobble(t, wobble)
    x, y = x * r, y * r
    x = x * (1 + egg * y)             # wider at the +y end
    y = y + bend * (x ** 2 - 0.5)     # banana
    x, y = x * rx, y * ry
    a = math.radians(angle)
    ca, sa = math.cos(a), math.sin(a)
    return np.stack([cx + ca * x - sa * y, cy + sa * x + ca * y], axis=1)


def rotate(points: np.ndarray, degrees: float, centre=(0.0, 0.0)) -> np.ndarray:
    """Rotate points by `degrees` (clockwise on screen, y down) about `centre`."""
    a = math.radians(degrees)
    ca, sa = math.cos(a), math.sin(a)
    p = np.asarray(points, np.float64) - centre
    return np.stack([ca * p[..., 0] - sa * p[..., 1], sa * p[..., 0] + ca * p[..., 1]], axis=-1) + centre


def _unit(deg: float) -> np.ndarray:
    """Unit vector `deg` degrees from straight up (towards +x for positive angles)."""
    a = math.radians(deg)
    return np.array([math.sin(a), -math.cos(a)])


# ----------------------------------------------------------------------------- the hand

def canonical_hand(shape: HandShape, pose: Pose) -> tuple[dict, list, list, np.ndarray, np.ndarray, dict]:
    """The posed right hand in millimetres before wrist deviation and placement.

    Returns (bones, ray_paths, ray_radius, palm, forearm, axes); bones in CLASSES order.
    """
    wob = shape.wobble or ((),) * len(CLASSES)
    bones: dict[str, np.ndarray] = {}
    axes: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    ray_paths, ray_radius = [], []
    for r, ray in enumerate(RAYS):
        labels = ray[::-1]  # base -> tip: metacarpal, proximal, (middle), distal
        origin = np.array(RAY_BASES[r], np.float64)
        origin = origin + np.array([0.0, 0.0])
        angle = RAY_ANGLES[r] + shape.ray_angle[r]
        flex = pose.flex[r]
        path = [origin.copy()]
        for j, label in enumerate(labels):
            i = CLASSES.index(label)
            length, wb, ws, wh = LONG_BONES[label]
            # a bent finger is foreshortened, more so towards the tip
            lf = shape.length[i] * (1.0 - flex * (0.0, 0.25, 0.45, 0.55)[j])
            gf = shape.girth[i] * shape.width * shape.finger_width
            if j == 1:
                angle += SPREAD_GAIN[r] * 7.0 * (pose.spread - 1.0) + SPREAD_GAIN[r] * 4.0
            elif j > 1:
                angle += 0.25 * (RAY_ANGLES[2] - angle) * 0.3
            d = _unit(angle)
            if shape.ends == "anatomic":
                kind = "metacarpal" if j == 0 else "distal" if j == len(labels) - 1 else BONE_KINDS[j]
                local = long_bone_anatomic(length * lf, wb * gf, ws * gf, wh * gf, kind, tuple(wob[i])[:4])
            else:
                local = long_bone_local(length * lf, wb * gf, ws * gf, wh * gf, tuple(wob[i])[:4],
                                        concave_base=j > 0)
            bones[label] = place(local, origin, d)
            axes[label] = (origin + d * length * lf / 2, d)
            if j < len(labels) - 1:
                gap = (JOINT_GAPS[min(j, 2)] * (1.0 - 1.1 * flex) if j else JOINT_GAPS[0]) * shape.joint_gap
                origin = origin + d * (length * lf + gap)
            else:
                origin = origin + d * length * lf
            path.append(origin.copy())
        tip = origin + _unit(angle) * 3.5
        path[-1] = tip
        ray_paths.append(np.array(path))
        ray_radius.append(LONG_BONES[labels[1]][2] * shape.width / 2 + 4.2 * shape.tissue)
    for k, (label, spec) in enumerate(CARPALS.items()):
        cx, cy, rx, ry, ang, bend, egg, lobes, expo = spec
        dx, dy = shape.carpal_shift[k]
        f = shape.carpal_size[k] * shape.width ** 0.5
        if label == "Scaphoid":
            rx = rx * shape.scaphoid
        bones[label] = carpal_outline(cx + dx, cy + dy, rx * f, ry * f, ang, bend, egg, lobes, expo,
                                      tuple(wob[CLASSES.index(label)])[:6])
    bones["Radius"] = smooth_closed(np.array(RADIUS_CTRL) * [shape.width, 1.0] - [0.0, 2.0], DENSE * 2)
    bones["Ulna"] = smooth_closed(np.array(ULNA_CTRL) * [shape.width, 1.0] - [0.0, 2.0], DENSE * 2)
    # Soft tissue: a palm around the metacarpals and carpals, a forearm band below the wrist.
    t = 4.0 * shape.tissue
    palm_pts = np.vstack([bones[lab] for lab in ("finger-7", "finger-11", "finger-15", "finger-19",
                                                 "Trapezium", "Trapezoid", "Pisiform", "Hamate")]
                         # finger webs: the palm reaches a third of the way up the proximal phalanges
                         + [(p[1] + 0.3 * (p[2] - p[1]))[None] for p in ray_paths[1:]])
    hull = cv2.convexHull(palm_pts.astype(np.float32)).reshape(-1, 2).astype(np.float64)
    centre = hull.mean(axis=0)
    vec = hull - centre
    palm = centre + vec * (1 + t / np.maximum(np.hypot(vec[:, 0], vec[:, 1]), 1e-6))[:, None]
    # thumb web: from the first metacarpal to the second, concave once blurred
    mc1, mc2 = ray_paths[0], ray_paths[1]
    web = np.array([mc1[0], mc1[0] + 0.6 * (mc1[1] - mc1[0]), mc2[0] + 0.45 * (mc2[1] - mc2[0]),
                    mc2[0]])
    palm = np.vstack([palm, web])  # drawn as one filled outline made of two rings
    forearm = smooth_closed(np.array([(-33, 0), (-25, -8), (20, -8), (29, 0), (31, 60), (34, 700),
                                      (-40, 700), (-37, 60)]) * [shape.tissue ** 0.3, 1.0], 64)
    axes["Radius"] = (np.array([-9.0, 40.0]), np.array([0.0, -1.0]))
    ordered = {label: bones[label] for label in CLASSES}
    return ordered, ray_paths, ray_radius, palm, forearm, axes


def hand_geometry(shape: HandShape, pose: Pose, side: str, size: int) -> HandGeometry:
    """The posed hand of one image in pixel coordinates (float), ready to annotate and render."""
    bones, paths, radii, palm, forearm, axes = canonical_hand(shape, pose)
    # the upright hand's extent across (mm): what `pose.hand_width` sizes, whatever the wrist does
    across = float(np.ptp(np.concatenate([bones[lab][:, 0] for lab in CLASSES[:26]]
                                         + [b[b[:, 1] < 40.0][:, 0] for b in (bones["Radius"], bones["Ulna"])])))
    # Wrist deviation: distal row and rays turn about the pivot, the proximal row turns partly,
    # the forearm stays vertical.
    w = pose.wrist_deg
    for label in bones:
        if label in ("Radius", "Ulna"):
            continue
        f = 0.55 if label in PROXIMAL_ROW else 1.0
        bones[label] = rotate(bones[label], w * f)
    paths = [rotate(p, w) for p in paths]
    palm = rotate(palm, w)
    # the wrist's soft tissue bridges the (turned) proximal carpal row and the (vertical) forearm
    wrist_pts = np.vstack([bones[lab] for lab in PROXIMAL_ROW]
                          + [b[b[:, 1] < 30.0] for b in (bones["Radius"], bones["Ulna"])])
    hull = cv2.convexHull(wrist_pts.astype(np.float32)).reshape(-1, 2).astype(np.float64)
    vec = hull - hull.mean(axis=0)
    wrist = hull + vec * (4.0 * shape.tissue / np.maximum(np.hypot(vec[:, 0], vec[:, 1]), 1e-6))[:, None]
    palm = np.vstack([palm, wrist])
    n_wrist = len(wrist)
    axes = {k: (c, d) if k == "Radius" else (rotate(c, w), rotate(d, w, (0.0, 0.0)))
            for k, (c, d) in axes.items()}
    mirror = -1.0 if side == "L" else 1.0

    def to_px(p: np.ndarray, scale: float, origin: np.ndarray) -> np.ndarray:
        q = np.asarray(p, np.float64) * [mirror, 1.0]
        return rotate(q, pose.rotation_deg) * scale + origin

    base_scale = shape.scale * PX_PER_MM_2048 * size / 2048.0 * pose.zoom
    # The pivot sits where an unrotated hand of this size puts its fingertips ~250 px from the top.
    pivot_y = (FINGERTIP_TOP_2048 * size / 2048.0 + HAND_LENGTH_MM * base_scale
               + pose.shift[1] * size)
    hand_pts = np.vstack([bones[lab] for lab in CLASSES[:26]] + paths)
    scale = base_scale
    rel = to_px(hand_pts, 1.0, np.zeros(2))
    lo, hi = rel.min(axis=0), rel.max(axis=0)
    margin = 0.03 * size
    if pose.hand_width is not None:
        # Scale so that the upright hand's bones span `hand_width` of the image (all 29 bones, as
        # measured on real images; a turned wrist keeps the size of the bones), as far as the
        # fingertips, the carpus and 30 mm of forearm below it still fit (the forearm axis must
        # stay measurable: the radius and ulna enter from the bottom).
        top_px = FINGERTIP_TOP_2048 * size / 2048.0 + pose.shift[1] * size
        scale = pose.hand_width * size / max(across, 1e-6)
        scale = min(scale, (size - top_px) / max(hi[1] - lo[1] + 30.0, 1e-6))
        pivot_y = top_px - lo[1] * scale
    # Shrink a hand that would not fit (wide spread, strongly rotated wrist).
    fit_w = (size - 2 * margin) / max((hi[0] - lo[0] + 8.0) * scale, 1e-6)
    fit_h = (pivot_y - margin) / max((-lo[1] + 4.0) * scale, 1e-6)
    scale *= min(1.0, fit_w, fit_h)
    cx = size / 2 - (lo[0] + hi[0]) / 2 * scale + pose.shift[0] * size
    left, right = cx + (lo[0] - 4) * scale, cx + (hi[0] + 4) * scale
    cx += max(0.0, margin - left) - max(0.0, right - (size - margin))
    origin = np.array([cx, pivot_y])
    out_bones = {k: to_px(v, scale, origin) for k, v in bones.items()}
    return HandGeometry(
        size=size, bones=out_bones, ray_paths=[to_px(p, scale, origin) for p in paths],
        ray_radius=[r * scale for r in radii], palm=to_px(palm, scale, origin), palm_parts=(-4 - n_wrist, -n_wrist),
        forearm=to_px(forearm, scale, origin), px_per_mm=scale,
        axes={k: (to_px(c, scale, origin), rotate(d * [mirror, 1.0], pose.rotation_deg))
              for k, (c, d) in axes.items()})


# ----------------------------------------------------------------------------- to annotation

def integer_outline(poly: np.ndarray, size: int, spacing: float = 2.5, max_points: int = 96,
                    clip: bool = False) -> np.ndarray:
    """The annotation ring of a float outline: resampled, clipped to the image, integer, valid.

    Vertices are about `spacing` px apart (at most `max_points`), so small bones on small images
    stay simple polygons after rounding; forearm bones are clipped to the canvas (they touch the
    bottom edge).
    """
    from shapely.geometry import Polygon, box

    pts = np.asarray(poly, np.float64)
    if clip:
        dense = resample_closed(pts, max(len(pts), int(perimeter(pts) / 0.5)))
        shp = Polygon(dense).buffer(0).intersection(box(0, 0, size - 1, size - 1))
        if shp.geom_type != "Polygon":  # a sliver cut off: keep the largest piece
            parts = [g for g in getattr(shp, "geoms", []) if g.geom_type == "Polygon"]
            shp = max(parts, key=lambda g: g.area) if parts else None
        if shp is None or shp.is_empty:  # entirely outside the canvas: a degenerate ring on it
            return np.unique(np.clip(np.rint(pts), 0, size - 1).astype(np.int64), axis=0)[:3]
        pts = np.asarray(shp.exterior.coords)[:-1]
    n = int(np.clip(round(perimeter(pts) / spacing), 10, max_points))
    pts = resample_closed(pts, n)
    for attempt in range(4):
        ring = _dedupe(np.rint(pts).astype(np.int64))
        if len(ring) >= 3 and Polygon(ring).is_valid and Polygon(ring).area > 0:
            return ring
        pts = resample_closed(pts, max(8, len(pts) * 2 // 3))
    hull = cv2.convexHull(np.rint(pts).astype(np.int32)).reshape(-1, 2)
    return hull.astype(np.int64)


def _dedupe(ring: np.ndarray) -> np.ndarray:
    """Drop repeated and collinear consecutive vertices of an integer ring."""
    keep = np.any(ring != np.roll(ring, 1, axis=0), axis=1)
    ring = ring[keep]
    if len(ring) < 3:
        return ring
    prev, nxt = np.roll(ring, 1, axis=0), np.roll(ring, -1, axis=0)
    cross = (ring[:, 0] - prev[:, 0]) * (nxt[:, 1] - prev[:, 1]) - (ring[:, 1] - prev[:, 1]) * (nxt[:, 0] - prev[:, 0])
    return ring[cross != 0]


def annotation_polygons(geometry: HandGeometry) -> dict[str, np.ndarray]:
    """label -> integer ring for each of the 29 bones (CLASSES order)."""
    return {label: integer_outline(poly, geometry.size, clip=label in ("Radius", "Ulna")
                                   or bool((poly < 0).any() or (poly > geometry.size - 1).any()))
            for label, poly in geometry.bones.items()}
