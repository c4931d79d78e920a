"""Drawing the random parameters of a synthetic dataset: persons, poses, edge cases, looks.

Everything here is planning: small, fast, no pixels. Each person and each image gets its own
generator from `SeedSequence([seed, stream, index])`, so any item can be rebuilt alone and the
plan does not depend on how many workers render it. Train/test wrist-rotation rates are exact
(a seeded choice of round(rate * n) images per split), the edge cases are per-image draws.
The appearance styles (realistic, randomised; legacy has none) add anatomy and look draws on
streams of their own, from the ranges of an `AppearanceSpec` (defaults: `APPEARANCE_RANGES`).

>>> items, persons = plan_dataset(persons=4, test_persons=2, seed=0)
>>> len(items), items[0].relpath.startswith("train/DCM/ID001/image")
(12, True)
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from xaug.classes import CLASSES, NEIGHBOUR_PAIRS
from xaug.errors import BadInput
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
# Stream ids of the seed sequences (5 is the renderer's, in generate.py). The realistic styles
# draw their anatomy and look on streams of their own, so the persons, poses and edge cases of a
# seed are the same in every style.
_PERSON, _ITEM, _SPLIT, _NAMES, _SWAPS, _ANATOMY, _LOOK = 1, 2, 3, 4, 6, 7, 8

# ----------------------------------------------------------------------------- appearance styles

APPEARANCES = ("realistic", "randomised", "legacy")
APPEARANCE_VERSION = 1  # bump when a realistic style renders the same spec differently

# name -> (hard limits, realistic range, randomised range, what it is). The realistic ranges sit
# around the figures measured on real hand X-rays (docs/synthetic.md); the randomised ones are
# wide enough that the real look falls well inside them. One place for every default.
APPEARANCE_RANGES: dict[str, tuple[tuple[float, float], tuple[float, float], tuple[float, float], str]] = {
    "black_range": ((0, 255), (0, 4), (0, 24), "background grey level (the darkest part)"),
    "gradient_range": ((0, 255), (6, 22), (0, 30), "background grey added from top to bottom"),
    "band_range": ((0, 255), (0, 30), (0, 90), "bright band along the top edge, grey levels"),
    "tissue_range": ((0, 255), (55, 78), (32, 110), "soft-tissue grey where it is thickest (palm)"),
    "bone_range": ((0, 255), (118, 148), (85, 205), "bone grey (interior, over soft tissue)"),
    "cortex_range": ((0, 1), (0.25, 0.45), (0.05, 0.6), "extra brightness of the cortex (share of bone)"),
    "cortex_mm_range": ((0.1, 3), (0.5, 0.9), (0.3, 1.3), "cortical thickness of finger bones, mm"),
    "trabecular_range": ((0, 1), (0.05, 0.11), (0.0, 0.2), "trabecular texture amplitude (share of bone)"),
    "overlap_range": ((0, 1), (0.45, 0.75), (0.25, 1.0), "what each further overlapping bone adds (share)"),
    "tissue_mm_range": ((1, 15), (4.5, 7.0), (3.5, 9.0), "soft tissue beyond the finger bones, mm"),
    "gamma_range": ((0.3, 3), (0.9, 1.1), (0.7, 1.45), "gamma of the tone curve"),
    "noise_range": ((0, 30), (1.0, 3.0), (0.3, 6.0), "detector noise sigma at mid grey, grey levels"),
    "blur_range": ((0, 8), (0.8, 1.8), (0.4, 3.0), "blur sigma at 2048 px"),
    "vignette_range": ((0, 0.9), (0.0, 0.2), (0.0, 0.4), "darkening towards the corners (share)"),
    "hand_width_range": ((0.2, 0.9), (0.45, 0.6), (0.40, 0.65), "bone extent across the image (share)"),
    "finger_width_range": ((0.5, 2), (1.12, 1.28), (1.05, 1.35), "finger bone width factor (person)"),
    "scaphoid_range": ((0.3, 1.5), (0.66, 0.74), (0.6, 0.84), "scaphoid length factor (person)"),
    "joint_gap_range": ((0.2, 3), (1.25, 1.6), (1.0, 1.9), "joint space factor (person)"),
    "spread_range": ((0, 2.5), (0.9, 1.8), (0.5, 2.1), "finger spread (1 = the legacy mean)"),
}
Range = tuple[float, float]


class AppearanceSpec(BaseModel):
    """The appearance of a realistic style: a (low, high) range per parameter, each image draws
    uniformly inside them. `legacy` has no spec (today's look, byte for byte)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    mode: str = "realistic"
    version: int = APPEARANCE_VERSION
    black_range: Range
    gradient_range: Range
    band_range: Range
    tissue_range: Range
    bone_range: Range
    cortex_range: Range
    cortex_mm_range: Range
    trabecular_range: Range
    overlap_range: Range
    tissue_mm_range: Range
    gamma_range: Range
    noise_range: Range
    blur_range: Range
    vignette_range: Range
    hand_width_range: Range
    finger_width_range: Range
    scaphoid_range: Range
    joint_gap_range: Range
    spread_range: Range

    @model_validator(mode="after")
    def _check(self) -> "AppearanceSpec":
        if self.mode not in APPEARANCES[:2]:
            raise ValueError(f"mode must be realistic or randomised, got {self.mode!r}")
        for name, (limits, *_rest) in APPEARANCE_RANGES.items():
            lo, hi = getattr(self, name)
            if not lo <= hi:
                raise ValueError(f"{name}: low {lo} is above high {hi}")
            if lo < limits[0] or hi > limits[1]:
                raise ValueError(f"{name}: ({lo}, {hi}) leaves the allowed {limits[0]}..{limits[1]}")
        return self

    def to_spec(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.model_dump().items()}


def appearance_spec(mode: str, overrides: dict[str, Any] | None = None) -> AppearanceSpec | None:
    """The validated appearance of a style (None for legacy); `overrides` replace preset ranges.

    >>> appearance_spec("realistic").tissue_range
    (55.0, 78.0)
    """
    if mode not in APPEARANCES:
        raise BadInput(f"--appearance must be one of {', '.join(APPEARANCES)}, got {mode!r}", where="synth")
    overrides = dict(overrides or {})
    if mode == "legacy":
        if overrides:
            raise BadInput(f"--look {sorted(overrides)[0]}: the legacy appearance has no parameters; "
                           "use --appearance realistic or randomised", where="synth")
        return None
    unknown = sorted(set(overrides) - set(APPEARANCE_RANGES))
    if unknown:
        import difflib

        close = difflib.get_close_matches(unknown[0], list(APPEARANCE_RANGES), n=1)
        raise BadInput(f"--look {unknown[0]}: unknown parameter" + (f" (did you mean {close[0]}?)" if close else "")
                       + f"; known: {', '.join(APPEARANCE_RANGES)}", where="synth")
    col = 1 if mode == "realistic" else 2
    values = {k: v[col] for k, v in APPEARANCE_RANGES.items()}
    values.update(overrides)
    try:
        return AppearanceSpec(mode=mode, **values)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(x) for x in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        raise BadInput(f"--look {loc + ': ' if loc else ''}{msg}", where="synth") from None


@dataclass(frozen=True)
class RealLook:
    """The drawn appearance of one image in a realistic style (render.render_realistic)."""

    black: float = 2.0
    gradient: float = 3.0
    band: float = 10.0
    band_px: float = 34.0
    tissue: float = 58.0
    bone: float = 132.0
    cortex: float = 0.25
    cortex_mm: float = 0.7
    trabecular: float = 0.12
    overlap: float = 0.6
    tissue_mm: float = 5.5
    gamma: float = 1.0
    noise: float = 2.0
    blur: float = 1.3
    vignette: float = 0.1


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
    look: Look | RealLook
    edges: dict[str, Any] = field(default_factory=dict)
    seed: tuple[int, ...] = ()

    @property
    def relpath(self) -> str:
        return image_relpath(self.split, self.person.meta.person, self.stem)

    @property
    def rotated(self) -> bool:
        return abs(self.pose.wrist_deg) > 1e-9

    def meta(self) -> dict[str, Any]:
        pose = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self.pose).items()
                if v is not None}  # hand_width is None in the legacy style: its meta is unchanged
        pose = {k: ([round(x, 3) for x in v] if isinstance(v, list) else round(v, 3))
                for k, v in pose.items()}
        out = {"synthetic": True, "wrist_rotated": self.rotated, "pose": pose,
               "edge_cases": sorted(self.edges), "edge_details": self.edges}
        if isinstance(self.look, RealLook):
            shape = self.person.shape
            out["appearance"] = {k: round(v, 3) for k, v in asdict(self.look).items()}
            out["anatomy"] = {"finger_width": round(shape.finger_width, 3),
                              "scaphoid": round(shape.scaphoid, 3), "joint_gap": round(shape.joint_gap, 3)}
        else:
            out["exposure"] = {"gain": round(self.look.gain, 3), "offset": round(self.look.offset, 3),
                               "gamma": round(self.look.gamma, 3)}
        return out


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
    return replace(
        shape, scale=shape.scale * float(rng.normal(1.0, 0.005)),
        length=tuple(float(x * rng.normal(1.0, 0.008)) for x in shape.length),
        girth=tuple(float(x * rng.normal(1.0, 0.01)) for x in shape.girth),
        carpal_shift=tuple((a + float(rng.normal(0, 0.15)), b + float(rng.normal(0, 0.15)))
                           for a, b in shape.carpal_shift))


def _uniform(rng: np.random.Generator, r: tuple[float, float]) -> float:
    return float(rng.uniform(r[0], r[1])) if r[1] > r[0] else float(r[0])


def realistic_shape(shape: HandShape, app: AppearanceSpec, seed: int, index: int) -> HandShape:
    """A person's hand in a realistic style: wider finger bones, shorter scaphoid, wider joint
    spaces, anatomic bone ends, wider length/width variation and thumb abduction (own stream)."""
    rng = _rng(seed, _ANATOMY, index)
    return replace(
        shape, finger_width=_uniform(rng, app.finger_width_range), scaphoid=_uniform(rng, app.scaphoid_range),
        joint_gap=_uniform(rng, app.joint_gap_range), ends="anatomic",
        length=tuple(float(x * rng.normal(1.0, 0.03)) for x in shape.length),
        girth=tuple(float(x * rng.normal(1.0, 0.05)) for x in shape.girth),
        ray_angle=(shape.ray_angle[0] + float(rng.normal(-8.0, 5.0)),) + tuple(shape.ray_angle[1:]))


def realistic_item(plan: "ItemPlan", app: AppearanceSpec, seed: int) -> "ItemPlan":
    """Placement, spread and look of one image in a realistic style (own stream, same edges)."""
    rng = _rng(seed, _LOOK, plan.index)
    u = lambda name: _uniform(rng, getattr(app, name))  # noqa: E731
    look = RealLook(black=u("black_range"), gradient=u("gradient_range"), band=u("band_range"),
                    band_px=float(rng.uniform(20, 70)), tissue=u("tissue_range"), bone=u("bone_range"),
                    cortex=u("cortex_range"), cortex_mm=u("cortex_mm_range"), trabecular=u("trabecular_range"),
                    overlap=u("overlap_range"), tissue_mm=u("tissue_mm_range"), gamma=u("gamma_range"),
                    noise=u("noise_range"), blur=u("blur_range"), vignette=u("vignette_range"))
    if "bright" in plan.edges or "dark" in plan.edges:  # unusual exposures, as in the real data
        f = float(rng.uniform(1.3, 1.6)) if "bright" in plan.edges else float(rng.uniform(0.45, 0.7))
        look = replace(look, tissue=min(look.tissue * f, 250.0), bone=min(look.bone * f, 250.0),
                       black=min(look.black * f + (8.0 if f > 1 else 0.0), 250.0))
    pose = replace(plan.pose, spread=u("spread_range"), hand_width=u("hand_width_range"),
                   shift=(float(rng.normal(0, 0.025)), float(np.clip(rng.normal(0.0, 0.025), -0.06, 0.06))))
    return replace(plan, pose=pose, look=look)


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
                 rotated_test: float = 0.6, label_swaps: int = 0,
                 appearance: AppearanceSpec | dict[str, Any] | None = None
                 ) -> tuple[list[ItemPlan], dict[str, PersonMeta]]:
    """The plans of every image (train persons first, then test) and the sheet rows.

    `appearance` None is the legacy style; a realistic style keeps the same persons, poses and
    edge cases and changes anatomy, placement and look (drawn on streams of their own).
    """
    everyone = [draw_person(seed, i + 1, "train" if i < persons else "test")
                for i in range(persons + test_persons)]
    if isinstance(appearance, dict):  # as recorded in a spec
        appearance = AppearanceSpec(**appearance)
    if appearance is not None:
        everyone = [replace(p, shape=realistic_shape(p.shape, appearance, seed, p.index)) for p in everyone]
    stems = _stems(seed, len(everyone))
    rotated = {"train": _rotated_set(seed, "train", 2 * persons, rotated_train),
               "test": _rotated_set(seed, "test", 2 * test_persons, rotated_test)}
    items: list[ItemPlan] = []
    counter = {"train": 0, "test": 0}
    for person, (stem_r, stem_l) in zip(everyone, stems):
        for side, stem in (("R", stem_r), ("L", stem_l)):
            k = counter[person.split]
            counter[person.split] += 1
            item = draw_item(seed, len(items), person, side, stem, k in rotated[person.split])
            items.append(item if appearance is None else realistic_item(item, appearance, seed))
    swaps = swapped_persons(seed, persons, label_swaps)
    if swaps:
        items = [replace(it, edges={**it.edges, "label_swap": {"labels": list(swaps[it.person.index])}})
                 if it.split == "train" and it.person.index in swaps else it for it in items]
    return items, {p.meta.person: p.meta for p in everyone}
