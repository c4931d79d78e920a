"""Rotation: the whole image about its centre, or the hand about the wrist (forearm stays).

>>> import numpy as np
>>> from xaug.model import Annotation
>>> from xaug.ops import get_op
>>> op = get_op("rotate")
>>> img = np.zeros((64, 64), np.uint8); img[20:40, 28:36] = 200
>>> bone = Annotation("Capitate", np.array([[28, 20], [35, 20], [35, 39], [28, 39]]))
>>> plan = ItemPlan("x_rot0", "ID001", None, "train", ["x.png"],
...                 {"angle": 90.0, "pivot": "image", "fill": "background", "min_area": 0.0})
>>> out, anns, prov = op.apply(plan, lambda rel: (img, [bone]))
>>> out.shape, sorted(anns[0].points.tolist())
((64, 64), [[20, 28], [20, 35], [39, 28], [39, 35]])
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Literal, Union

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StrictFloat, field_validator, model_validator

from xaug.classes import FOREARM
from xaug.anatomy import wrist_frame, wrist_warp
from xaug.geometry import rotation_matrix, transform_annotations
from xaug.imaging import warp_image
from xaug.ops.base import (ItemPlan, Loader, OpDef, RngFor, SourceInfo, check_sources, min_area_field, parse_range,
                           register_op, split_side)


class RotateSpec(BaseModel):
    """Rotate each source `per_image` times by angles drawn uniformly from `angle_range`
    (or uniformly from the explicit list `angles`)."""

    model_config = ConfigDict(extra="forbid", strict=True)  # `per_image: true` is not 1

    op: Literal["rotate"] = "rotate"
    angle_range: tuple[StrictFloat, StrictFloat] = Field((-30.0, 30.0), strict=False,  # a YAML list is a tuple
                                                         description="degrees, low:high; positive = counter-clockwise")
    angles: list[float] | None = Field(None, description="explicit angles to choose from (overrides angle_range)")
    random_sign: bool = Field(False, description="flip the drawn angle's sign with probability 1/2, "
                              "e.g. angle_range 30:45 -> +-30..45 (the test set's wrist poses)")
    per_image: int = Field(1, ge=1, le=100, description="rotated copies per source image")
    pivot: Literal["image", "wrist"] = Field("image", description="image: whole image about its centre; "
                                             "wrist: the hand about the wrist, forearm stays")
    fill: Union[Literal["texture", "background"], float] = Field(
        "texture", description="uncovered pixels: texture (the border's grey level and grain), background "
        "(that grey level, flat) or a pixel value 0..255")
    band_width: float | None = Field(None, gt=0, le=10_000, allow_inf_nan=False,
                                     description="wrist blending band half width in px (default: estimated)")
    min_area: float = min_area_field(16.0)

    @field_validator("angle_range", mode="before")
    @classmethod
    def _range(cls, v: Any) -> Any:
        return parse_range(v)

    @field_validator("fill", mode="before")
    @classmethod
    def _fill(cls, v: Any) -> Any:  # one message, not one per member of the union
        if isinstance(v, bool) or not (v in ("texture", "background") or isinstance(v, (int, float))):
            shown = str(v).lower() if isinstance(v, bool) else repr(v)  # as YAML spells it
            raise ValueError(f"fill must be 'texture', 'background' or a pixel value 0..255, got {shown}")
        return v

    @field_validator("angles", mode="before")
    @classmethod
    def _angles(cls, v: Any) -> Any:
        if isinstance(v, str):
            parts = re.split(r"\s*,\s*|\s+", v.strip()) if v.strip() else []
            if "" in parts:  # '1,,2' or '1,2,': a lost angle, not a separator to skip
                raise ValueError(f"{v!r} has an empty item between commas; give each angle once, e.g. '-30,-15,15,30'")
            try:
                return [float(p) for p in parts]
            except ValueError:
                raise ValueError(f"expected a comma-separated list of degrees such as '-30,-15,15,30', got {v!r}") from None
        return v

    @field_validator("angle_range")
    @classmethod
    def _range_bounds(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not all(-360 <= a <= 360 for a in v):  # NaN and infinities fail too
            raise ValueError("angle_range must lie within -360..360 degrees")
        return v

    @field_validator("angles")
    @classmethod
    def _angle_values(cls, v: list[float] | None) -> list[float] | None:
        if v is not None and len(v) == 0:  # here, not in _check: the problem names `angles` (--angles)
            raise ValueError("angles is empty; give at least one angle or leave it out")
        if v is not None and len(v) > 10_000:
            raise ValueError(f"angles lists {len(v)} values; give at most 10,000 (or a range)")
        if v is not None and not all(-360 <= a <= 360 for a in v):  # NaN and infinities fail too
            raise ValueError("every angle must be a number within -360..360 degrees")
        return v

    @model_validator(mode="after")
    def _check(self) -> "RotateSpec":
        lo, hi = self.angle_range
        if lo > hi:
            raise ValueError(f"angle_range low {lo} is above high {hi}")
        if isinstance(self.fill, float) and not 0 <= self.fill <= 255:
            raise ValueError("fill must be 'texture', 'background' or a pixel value 0..255")
        return self


def draw_angle(spec: RotateSpec, rng: np.random.Generator) -> float:
    """One angle: uniform over `angles` if given, else uniform over `angle_range`; then, with
    `random_sign`, negated with probability 1/2 (a second draw from the same generator)."""
    if spec.angles is not None:
        angle = float(spec.angles[int(rng.integers(len(spec.angles)))])
    else:
        lo, hi = spec.angle_range
        angle = float(rng.uniform(lo, hi)) if hi > lo else float(lo)
    if spec.random_sign and rng.random() < 0.5:
        angle = -angle
    return angle + 0.0  # no -0.0 in the provenance


@dataclass(frozen=True)
class RotateParams:
    """One item's parameters, typed; `plan` fills every field from the spec (the only place with
    defaults), `apply` receives them as they are."""

    angle: float
    pivot: str
    fill: Union[str, float]
    min_area: float
    fill_seed: int = 0               # drawn only with fill="texture"
    band_width: float | None = None  # wrist pivot: None = estimated from the polygons

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> "RotateParams":
        known = {f: params[f] for f in cls.__dataclass_fields__ if f in params}
        return cls(**known)


Pivot = Callable[[np.ndarray, list, RotateParams], tuple[np.ndarray, list, np.ndarray, dict[str, Any]]]
PIVOTS: dict[str, Pivot] = {}


def pivot_kernel(name: str) -> Callable[[Pivot], Pivot]:
    """Register how the image and its polygons turn for `pivot: <name>`."""
    def deco(fn: Pivot) -> Pivot:
        PIVOTS[name] = fn
        return fn
    return deco


@pivot_kernel("image")
def rotate_about_centre(img: np.ndarray, anns: list, p: RotateParams):
    h, w = img.shape[:2]
    m = rotation_matrix(p.angle, ((w - 1) / 2, (h - 1) / 2))
    out = warp_image(img, m, fill=p.fill, seed=p.fill_seed)
    return out, transform_annotations(anns, m, (h, w), min_area=p.min_area), m, {}


@pivot_kernel("wrist")
def rotate_about_wrist(img: np.ndarray, anns: list, p: RotateParams):
    h, w = img.shape[:2]
    frame = wrist_frame(anns, (h, w))
    half = float(p.band_width or frame.half_width)
    out, m = wrist_warp(img, anns, p.angle, frame, half, p.fill, p.fill_seed)
    out_anns = transform_annotations(anns, m, (h, w), min_area=p.min_area, fixed=FOREARM)
    return out, out_anns, m, {"wrist": {**frame.to_json(), "half_width": round(half, 3)}}


@register_op("rotate")
class Rotate(OpDef):
    Spec = RotateSpec

    def plan(self, spec: RotateSpec, sources: list[SourceInfo], rng_for: RngFor) -> list[ItemPlan]:
        """Output i = source i // per_image, copy i % per_image; its angle from rng_for(i)."""
        check_sources(sources, "rotate")
        k_per = spec.per_image
        plans = []
        for j, src in enumerate(sources):
            base, suffix = split_side(src.stem)
            for k in range(k_per):
                rng = rng_for(j * k_per + k)
                angle = draw_angle(spec, rng)
                params = {"angle": angle, "pivot": spec.pivot, "fill": spec.fill,
                          "min_area": spec.min_area}
                if spec.fill == "texture":  # drawn after the angle: angles do not depend on the fill
                    params["fill_seed"] = int(rng.integers(2**31))
                if spec.band_width is not None:
                    params["band_width"] = spec.band_width
                plans.append(ItemPlan(stem=f"{base}_rot{k}{suffix}", person=src.person, side=src.side,
                                      split=src.split, sources=[src.relpath], params=params,
                                      fold=src.fold, op=self.name))
        return plans

    def apply(self, plan: ItemPlan, load: Loader):
        source = plan.sources[0]
        img, anns = load(source)
        p = RotateParams.from_params(plan.params)
        kernel = PIVOTS.get(p.pivot)
        if kernel is None:  # the spec validates this; a hand-made plan may not
            raise ValueError(f"unknown pivot {p.pivot!r}; one of: {', '.join(sorted(PIVOTS))}")
        out, out_anns, m, extra = kernel(img, anns or [], p)  # an unlabelled source: pixels only
        prov: dict[str, Any] = {"source": source, "angle": p.angle, "pivot": p.pivot, "fill": p.fill}
        if p.fill == "texture":
            prov["fill_seed"] = p.fill_seed  # the texture of the uncovered pixels is reproducible
        prov.update(extra)
        prov["matrix"] = [[float(v) for v in row] for row in m]
        return out, out_anns, prov


def default_pivot_items(entries: Iterable[Any]) -> list[str]:
    """The images of a version whose hand turned about the default wrist, (W/2, 0.72 H) of an
    upright hand, because their labels had no Radius/Ulna or no carpal polygons to find their own
    (their provenance says `wrist.estimated: false`)."""
    return [e.image.path for e in entries if e.provenance.get("pivot") == "wrist"
            and (e.provenance.get("wrist") or {}).get("estimated") is False]
