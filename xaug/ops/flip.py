"""Horizontal flip: a left hand becomes a right hand (the output's side is swapped).

>>> import numpy as np
>>> from xaug.model import Annotation
>>> from xaug.ops import get_op
>>> img = np.arange(12, dtype=np.uint8).reshape(3, 4)
>>> plan = ItemPlan("x_flip_L", "ID001", "L", "train", ["x_R.png"], {"min_area": 0.0})
>>> tri = Annotation("Lunate", np.array([[0, 0], [2, 0], [0, 2]]))
>>> out, anns, prov = get_op("flip").apply(plan, lambda rel: (img, [tri]))
>>> out[0].tolist(), anns[0].points.tolist()
([3, 2, 1, 0], [[3, 0], [1, 0], [3, 2]])
"""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from xaug.geometry import hflip_matrix, transform_annotations
from xaug.imaging import hflip_image
from xaug.ops.base import (ItemPlan, Loader, OpDef, RngFor, SourceInfo, check_sources, min_area_field, register_op,
                           split_side)

SWAP = {"R": "L", "L": "R", None: None}


class FlipSpec(BaseModel):
    """Mirror every source left-right once."""

    model_config = ConfigDict(extra="forbid", strict=True)  # `min_area: true` is not 1

    op: Literal["flip"] = "flip"
    min_area: float = min_area_field(0.0)


@register_op("flip")
class Flip(OpDef):
    Spec = FlipSpec

    def plan(self, spec: FlipSpec, sources: list[SourceInfo], rng_for: RngFor) -> list[ItemPlan]:
        """One output per source: stem `<base>_flip_<new side>`; no randomness."""
        check_sources(sources, "flip")
        plans = []
        for src in sources:
            base, _ = split_side(src.stem)
            side = SWAP.get(src.side, src.side)
            stem = f"{base}_flip_{side}" if side else f"{src.stem}_flip"
            plans.append(ItemPlan(stem=stem, person=src.person, side=side, split=src.split,
                                  sources=[src.relpath], params={"min_area": spec.min_area},
                                  fold=src.fold, op=self.name))
        return plans

    def apply(self, plan: ItemPlan, load: Loader):
        source = plan.sources[0]
        img, anns = load(source)
        anns = anns or []
        h, w = img.shape[:2]
        m = hflip_matrix(w)
        out_anns = transform_annotations(anns, m, (h, w), min_area=float(plan.params.get("min_area", 0.0)))
        prov = {"source": source, "matrix": [[float(v) for v in row] for row in m]}
        return hflip_image(img), out_anns, prov
