"""Drawing the random parameters of a synthetic dataset: persons, poses, edge cases, looks.

Everything here is planning: small, fast, no pixels. Each person and each image gets its own
generator from `SeedSequence([seed, stream, index])`, so any item can be rebuilt alone and the
plan does not depend on how many workers render it. Train/test wrist-rotation rates are exact
(a seeded choice of round(rate * n) images per split), the edge cases are per-image draws.

>>> items, persons = plan_dataset(persons=4, test_persons=2, seed=0)
>>> len(items), items[0].relpath.startswith("train/DCM/ID001/image")
(12, True)
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from xaug.classes import CLASSES, NEIGHBOUR_PAIRS
from xaug.layout import PersonMeta, image_relpath
from xaug.synth.anatomy import HandShape, Pose

# Per-image rates of the edge cases (DATA.md "Edge cases"); nail art is a person's trait.
EDGE_RATES: dict[str, float] = {
    "ring": 0.06, "implant": 0.03, "bent_fingers": 0.08, "hand_rotated": 0.05,
    "bright": 0.04, "dark": 0.04,
}
NAIL_ART_RATE = 0.06        # persons
NO_SIDE_SUFFIX_RATE = 0.08  # persons whose file names lack _R/_L (as some real files do)
WRIST_RANGE = (20.0, 50.0)  # degrees; most between 30 and 45
ULNAR_SHARE = 0.65          # share of rotated wrists turned towards the little finger
# Stream ids of the seed sequences (5 is the renderer's, in generate.py).
_PERSON, _ITEM, _SPLIT, _NAMES, _SWAPS = 1, 2, 3, 4, 6


@dataclass(frozen=True)
class Person:
    """A synthetic person: the sheet row and the hand shared (mirrored) by both images."""

    meta: PersonMeta
    index: int
    split: str
    shape: HandShape
    nail_art: bool = False


@dataclass(frozen=True)
class Look:
    """Exposure and rendering parameters of one image (render.py turns them into pixels)."""

    background: float = 0.10      # background level at the top (0..1)
    gradient: float = 0.06        # extra background level at the bottom
    band: float = 0.45            # bright top band strength
    band_px: float = 34.0         # top band height at 2048 px
    tissue: float = 0.30          # soft-tissue level
    bone: float = 0.34            # bone interior level
    cortex: float = 0.26          # extra brightness of the cortical rim
    texture: float = 0.12         # trabecular texture amplitude
    blur: float = 1.4             # Gaussian blur sigma at 2048 px
    noise: float = 3.0            # noise sigma in grey levels
    gain: float = 1.0             # contrast
    offset: float = 0.0           # brightness
    gamma: float = 1.0


@dataclass(frozen=True)
class ItemPlan:
    """Everything needed to render one image, and what its manifest item records."""

    index: int
    person: Person
    side: str
    split: str
    stem: str
    pose: Pose
    look: Look
    edges: dict[str, Any] = field(default_factory=dict)
    seed: tuple[int, ...] = ()

    @property
    def relpath(self) -> str:
        return image_relpath(self.split, self.person.meta.person, self.stem)

    @property
    def rotated(self) -> bool:
        return abs(self.pose.wrist_deg) > 1e-9

    def meta(self) -> dict[str, Any]:
        pose = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self.pose).items()}
        pose = {k: ([round(x, 3) for x in v] if isinstance(v, list) else round(v, 3))
                for k, v in pose.items()}
        return {"synthetic": True, "wrist_rotated": self.rotated, "pose": pose,
                "edge_cases": sorted(self.edges), "edge_details": self.edges,
                "exposure": {"gain": round(self.look.gain, 3), "offset": round(self.look.offset, 3),
                             "gamma": round(self.look.gamma, 3)}}


def _rng(seed: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, *keys]))


def draw_person(seed: int, index: int, split: str) -> Person:
    """Sheet row and hand proportions of person `index` (1-based)."""
    rng = _rng(seed, _PERSON, index)
    sex = "M" if rng.random() < 0.5 else "F"
    height = float(np.clip(rng.normal(174.0 if sex == "M" else 161.0, 6.5), 145, 198))
    age = float(rng.integers(20, 66))
    bmi = float(np.clip(rng.normal(23.5 if sex == "M" else 21.5, 3.0), 16, 36))
    weight = round(bmi * (height / 100) ** 2, 0)
    # Hand length ~ 10.8% (men) / 10.7% (women) of height; the canonical hand is 185 mm tip-to-crease.
    hand_len = 10.0 * height * (0.108 if sex == "M" else 0.107) * rng.normal(1.0, 0.025)
    n = len(CLASSES)
    wob_long = rng.normal(0, 0.04, (n, 6))
    wob_long[19:, :] = rng.normal(0, 0.05, (10, 6))
    wob_long[:, 1::2] = rng.uniform(0, 2 * math.pi, (n, 3))
    shape = HandShape(
        scale=hand_len / 185.0,
        width=float((1.04 if sex == "M" else 0.95) * rng.normal(1.0, 0.03) * (bmi / 22.5) ** 0.15),
        length=tuple(float(x) for x in rng.normal(1.0, 0.03, 19)),
        girth=tuple(float(x) for x in rng.normal(1.0, 0.04, 19)),
        carpal_shift=tuple((float(a), float(b)) for a, b in rng.normal(0, 0.5, (8, 2))),
        carpal_size=tuple(float(x) for x in rng.normal(1.0, 0.04, 8)),
        wobble=tuple(tuple(float(x) for x in row) for row in wob_long),
        ray_angle=tuple(float(x) for x in rng.normal(0, 1.5, 5)),
        tissue=float(np.clip(rng.normal(1.0, 0.12) * (bmi / 22.5) ** 0.5, 0.7, 1.5)),
    )
    nail = bool(sex == "F" and rng.random() < 2 * NAIL_ART_RATE)
    notes = ["네일있음"] if nail else []
    if rng.random() < 0.03:
        notes.append("골절이력")  # "history of fracture": free-text notes like the real sheet
    meta = PersonMeta(person=f"ID{index:03d}", age=age, sex=sex, weight=weight, height=round(height, 1),
                      note=", ".join(notes) or None)
    return Person(meta=meta, index=index, split=split, shape=shape, nail_art=nail)


def side_shape(shape: HandShape, rng: np.random.Generator) -> HandShape:
    """The same person's other hand: tiny independent differences on top of the mirror image."""
    return HandShape(
        scale=shape.scale * float(rng.normal(1.0, 0.005)), width=shape.width,
        length=tuple(float(x * rng.normal(1.0, 0.008)) for x in shape.length),
        girth=tuple(float(x * rng.normal(1.0, 0.01)) for x in shape.girth),
        carpal_shift=tuple((a + float(rng.normal(0, 0.15)), b + float(rng.normal(0, 0.15)))
                           for a, b in shape.carpal_shift),
        carpal_size=shape.carpal_size, wobble=shape.wobble, ray_angle=shape.ray_angle,
        tissue=shape.tissue)


def draw_look(rng: np.random.Generator, edges: dict[str, Any]) -> Look:
    look = Look(
        background=float(rng.uniform(0.03, 0.09)), gradient=float(rng.uniform(0.0, 0.08)),
        band=float(rng.uniform(0.3, 0.7)), band_px=float(rng.uniform(20, 60)),
        tissue=float(rng.uniform(0.30, 0.40)), bone=float(rng.uniform(0.17, 0.24)),
        cortex=float(rng.uniform(0.24, 0.36)), texture=float(rng.uniform(0.14, 0.22)),
        blur=float(rng.uniform(1.0, 2.0)), noise=float(rng.uniform(1.5, 4.0)),
        gain=float(rng.normal(1.0, 0.08)), offset=float(rng.normal(0.0, 0.03)),
        gamma=float(np.exp(rng.normal(0.0, 0.10))))
    if "bright" in edges:
        look = Look(**{**asdict(look), "offset": float(rng.uniform(0.15, 0.28)),
                       "gamma": float(rng.uniform(0.55, 0.75))})
    if "dark" in edges:
        look = Look(**{**asdict(look), "offset": float(rng.uniform(-0.22, -0.12)),
                       "gain": float(rng.uniform(0.55, 0.8)), "gamma": float(rng.uniform(1.3, 1.8))})
    return look


def draw_item(seed: int, index: int, person: Person, side: str, stem: str, rotated: bool) -> ItemPlan:
    """Pose, edge cases and look of one image; `rotated` (wrist) is decided per split upstream."""
    rng = _rng(seed, _ITEM, index)
    edges: dict[str, Any] = {}
    for name, rate in EDGE_RATES.items():
        if rng.random() < rate:
            edges[name] = True
    if "bright" in edges and "dark" in edges:
        del edges["dark"]
    wrist = 0.0
    if rotated:
        mag = float(np.clip(rng.normal(37.0, 7.0), *WRIST_RANGE))
        wrist = mag if rng.random() < ULNAR_SHARE else -mag
    flex = np.zeros(5)
    if "bent_fingers" in edges:
        fingers = sorted(int(f) for f in rng.choice(5, size=int(rng.integers(1, 4)), replace=False))
        flex[fingers] = rng.uniform(0.4, 1.0, len(fingers))
        edges["bent_fingers"] = {"rays": fingers}
    else:
        flex += np.clip(rng.normal(0.0, 0.06, 5), 0, 0.2)
    rotation = float(rng.normal(0.0, 2.5))
    if "hand_rotated" in edges:
        rotation = float(rng.choice([-1, 1]) * rng.uniform(10, 25))
        edges["hand_rotated"] = {"degrees": round(rotation, 2)}
    pose = Pose(wrist_deg=wrist, spread=float(np.clip(rng.normal(1.0, 0.3), 0.5, 1.8)),
                flex=tuple(float(x) for x in flex), rotation_deg=rotation,
                shift=(float(rng.normal(0, 0.02)), float(rng.normal(0, 0.012))),
                zoom=float(rng.normal(1.0, 0.03)))
    if "ring" in edges:
        edges["ring"] = {"ray": int(rng.choice([1, 3, 3, 3, 4])), "at": round(float(rng.uniform(0.25, 0.6)), 3),
                         "width_mm": round(float(rng.uniform(2.0, 5.0)), 2)}
    if person.nail_art:
        edges["nail_art"] = {"rays": sorted(int(f) for f in rng.choice(5, size=int(rng.integers(2, 6)),
                                                                       replace=False))}
    if "implant" in edges:
        edges["implant"] = {"screws": int(rng.integers(3, 7)), "length_mm": round(float(rng.uniform(35, 55)), 1)}
    shape = side_shape(person.shape, rng) if side == "L" else person.shape
    look = draw_look(rng, edges)
    p = Person(person.meta, person.index, person.split, shape, person.nail_art)
    return ItemPlan(index=index, person=p, side=side, split=person.split, stem=stem, pose=pose,
                    look=look, edges=edges, seed=(seed, _ITEM, index))


def _stems(seed: int, n_persons: int) -> list[tuple[str, str]]:
    """Per person the (right, left) file stems: image<13-digit ms timestamp>[_R|_L]."""
    rng = _rng(seed, _NAMES)
    t = 1661130000000 + int(rng.integers(0, 10_000_000))
    out = []
    for _ in range(n_persons):
        t += int(rng.integers(60_000, 3_000_000))
        if rng.random() < NO_SIDE_SUFFIX_RATE:
            t2 = t + int(rng.integers(5_000, 60_000))
            out.append((f"image{t}", f"image{t2}"))
            t = t2
        else:
            out.append((f"image{t}_R", f"image{t}_L"))
    return out


def _rotated_set(seed: int, split: str, n: int, rate: float) -> set[int]:
    """Exactly round(rate * n) of the split's n images get a rotated wrist."""
    rng = _rng(seed, _SPLIT, 0 if split == "train" else 1)
    k = int(round(rate * n))
    return set(int(i) for i in rng.choice(n, size=k, replace=False)) if k else set()


def swapped_persons(seed: int, persons: int, n: int) -> dict[int, tuple[str, str]]:
    """`n` training persons (1-based index) whose annotator swapped one pair of neighbouring
    labels on both hands, as on a few IDs of the real data; drawn on a stream of their own, so the
    images and every other draw are the same with or without swaps."""
    if n <= 0:
        return {}
    rng = _rng(seed, _SWAPS)
    chosen = sorted(int(i) + 1 for i in rng.choice(persons, size=n, replace=False))
    return {i: NEIGHBOUR_PAIRS[int(rng.integers(len(NEIGHBOUR_PAIRS)))] for i in chosen}


def plan_dataset(persons: int, test_persons: int, seed: int, rotated_train: float = 0.12,
                 rotated_test: float = 0.6, label_swaps: int = 0
                 ) -> tuple[list[ItemPlan], dict[str, PersonMeta]]:
    """The plans of every image (train persons first, then test) and the sheet rows."""
    everyone = [draw_person(seed, i + 1, "train" if i < persons else "test")
                for i in range(persons + test_persons)]
    stems = _stems(seed, len(everyone))
    rotated = {"train": _rotated_set(seed, "train", 2 * persons, rotated_train),
               "test": _rotated_set(seed, "test", 2 * test_persons, rotated_test)}
    items: list[ItemPlan] = []
    counter = {"train": 0, "test": 0}
    for person, (stem_r, stem_l) in zip(everyone, stems):
        for side, stem in (("R", stem_r), ("L", stem_l)):
            k = counter[person.split]
            counter[person.split] += 1
            items.append(draw_item(seed, len(items), person, side, stem, k in rotated[person.split]))
    swaps = swapped_persons(seed, persons, label_swaps)
    if swaps:
        items = [replace(it, edges={**it.edges, "label_swap": {"labels": list(swaps[it.person.index])}})
                 if it.split == "train" and it.person.index in swaps else it for it in items]
    return items, {p.meta.person: p.meta for p in everyone}
