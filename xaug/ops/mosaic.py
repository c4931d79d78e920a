"""Mosaic (RICAP, Takahashi et al. 2018): an R x C grid of full-resolution crops of different sources.

Cell boundaries are Beta(beta, beta) fractions of the canvas (sorted when a grid has more
than one inner boundary per axis), each cell is filled by a crop of a different random source
at a random offset, and each source's polygons are clipped to its crop and moved with it.

>>> import numpy as np
>>> from xaug.model import Annotation
>>> from xaug.ops import get_op
>>> imgs = {f"s{i}.png": np.full((32, 32), 40 * i, np.uint8) for i in range(4)}
>>> box = Annotation("Lunate", np.array([[4, 4], [27, 4], [27, 27], [4, 27]]))
>>> srcs = [SourceInfo(rel, f"ID00{i}", None, "train", 32, 32) for i, rel in enumerate(imgs)]
>>> rng_for = lambda i: np.random.default_rng(np.random.SeedSequence([0, i]))
>>> plan = get_op("mosaic").plan(MosaicSpec(n=1, min_area=0), srcs, rng_for)[0]
>>> out, anns, prov = get_op("mosaic").apply(plan, lambda rel: (imgs[rel], [box]))
>>> out.shape, len(prov["patches"]) <= 4
((32, 32), True)
"""
from __future__ import annotations

import re
from collections import Counter
from typing import Any, Literal

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator

from xaug.errors import XaugError
from xaug.geometry import compose, resize_matrix, transform_annotations, translation_matrix
from xaug.imaging import crop
from xaug.model import Annotation
from xaug.ops.base import ItemPlan, Loader, OpDef, RngFor, SourceInfo, check_sources, min_area_field, register_op

# Bounds of absurd requests (the disk-space estimate refuses smaller ones that do not fit).
MAX_MOSAICS = 1_000_000
MAX_SIDE = 8192
_GRID_RE = re.compile(r"^\s*(\d+)\s*[xX*×]\s*(\d+)\s*$")


class MosaicSpec(BaseModel):
    """`n` mosaics of `grid` = (rows, cols) cells with Beta(beta, beta) boundaries."""

    model_config = ConfigDict(extra="forbid", strict=True)  # `n: true` is not 1

    op: Literal["mosaic"] = "mosaic"
    grid: tuple[StrictInt, StrictInt] = Field((2, 2), strict=False,  # a YAML list is a tuple
                                              description="rows x cols, e.g. '2x2' or [2, 3]")
    n: int = Field(800, ge=1, le=MAX_MOSAICS, description="number of mosaics to make")
    beta: float = Field(0.3, gt=0, le=100, allow_inf_nan=False,
                        description="Beta(beta, beta) for the cell boundaries (RICAP uses 0.3), 0.01..100")
    resize: bool = Field(False, description="resize each whole source into its cell instead of cropping")
    size: tuple[StrictInt, StrictInt] | None = Field(None, strict=False,
                                                     description="output (height, width); default: the most common source size")
    min_area: float = min_area_field(16.0)

    @field_validator("beta")
    @classmethod
    def _beta_not_tiny(cls, v: float) -> float:
        if v < 0.01:  # Beta(b, b) for tiny b puts every boundary at an edge: empty cells only
            raise ValueError(f"beta {v} is below 0.01; use 0.01..100 (RICAP uses 0.3)")
        return v

    @field_validator("grid", mode="before")
    @classmethod
    def _grid(cls, v: Any) -> Any:
        if isinstance(v, str):
            m = _GRID_RE.match(v)
            if not m:
                raise ValueError(f"cannot read {v!r}; give ROWSxCOLS such as 2x2 or 1x3")
            return (int(m.group(1)), int(m.group(2)))
        return v

    @field_validator("grid")
    @classmethod
    def _grid_positive(cls, v: tuple[int, int]) -> tuple[int, int]:
        if v[0] < 1 or v[1] < 1 or v[0] * v[1] > 64:
            raise ValueError(f"grid {v[0]}x{v[1]}: rows and cols must be >= 1 and at most 64 cells")
        return v

    @field_validator("size")
    @classmethod
    def _size_positive(cls, v: tuple[int, int] | None) -> tuple[int, int] | None:
        if v is not None and not (1 <= v[0] <= MAX_SIDE and 1 <= v[1] <= MAX_SIDE):
            raise ValueError(f"size must be positive and at most {MAX_SIDE} pixels each (height, width), "
                             f"got {v[0]}x{v[1]}")
        return v


def cell_edges(length: int, cells: int, beta: float, rng: np.random.Generator) -> list[int]:
    """`cells + 1` integer edges 0 = e0 <= e1 <= ... = length, inner ones from Beta(beta, beta)."""
    inner = np.sort(rng.beta(beta, beta, size=cells - 1)) if cells > 1 else np.zeros(0)
    edges = np.floor(inner * length + 0.5).astype(np.int64)
    return [0, *(int(e) for e in edges), int(length)]


def _output_size(spec: MosaicSpec, sources: list[SourceInfo]) -> tuple[int, int]:
    if spec.size is not None:
        return int(spec.size[0]), int(spec.size[1])
    counts = Counter((s.height, s.width) for s in sources)
    # most common; ties go to the larger canvas so the choice doesn't depend on source order
    return max(counts, key=lambda hw: (counts[hw], hw))


@register_op("mosaic")
class Mosaic(OpDef):
    Spec = MosaicSpec

    def plan(self, spec: MosaicSpec, sources: list[SourceInfo], rng_for: RngFor) -> list[ItemPlan]:
        """Per output i, from rng_for(i): row edges, column edges, distinct sources, crop offsets."""
        rows, cols = spec.grid
        check_sources(sources, "mosaic")
        h, w = _output_size(spec, sources)
        cands = sources if spec.resize else [s for s in sources if s.height >= h and s.width >= w]
        if len(cands) < rows * cols:
            raise XaugError(f"a {rows}x{cols} mosaic of size [{h}, {w}] (height, width) needs {rows * cols} "
                            f"different sources at least that large, but only {len(cands)} qualify; "
                            "use a smaller grid, resize: true or a smaller size", where="mosaic")
        by_rel = {s.relpath: s for s in cands}
        plans = []
        for i in range(spec.n):
            rng = rng_for(i)
            ys = cell_edges(h, rows, spec.beta, rng)
            xs = cell_edges(w, cols, spec.beta, rng)
            picks = rng.choice(len(cands), size=rows * cols, replace=False)
            patches = []
            for r in range(rows):
                for c in range(cols):
                    dst = [xs[c], ys[r], xs[c + 1], ys[r + 1]]
                    cw, ch = dst[2] - dst[0], dst[3] - dst[1]
                    src = cands[int(picks[r * cols + c])]
                    if cw == 0 or ch == 0:
                        continue  # an empty cell (Beta draws near 0 or 1 are common)
                    if spec.resize:
                        src_rect = [0, 0, src.width, src.height]
                    else:
                        x0 = int(rng.integers(0, src.width - cw + 1))
                        y0 = int(rng.integers(0, src.height - ch + 1))
                        src_rect = [x0, y0, x0 + cw, y0 + ch]
                    patches.append({"source": src.relpath, "src_rect": src_rect, "dst_rect": dst})
            main = max(patches, key=lambda p: (p["dst_rect"][2] - p["dst_rect"][0])
                       * (p["dst_rect"][3] - p["dst_rect"][1]))
            lead = by_rel[main["source"]]
            params = {"grid": [rows, cols], "beta": spec.beta, "size": [h, w], "resize": spec.resize,
                      "min_area": spec.min_area, "patches": patches}
            plans.append(ItemPlan(stem=f"mosaic{i:05d}", person=lead.person, side=None, split=lead.split,
                                  sources=[p["source"] for p in patches], params=params, fold=lead.fold,
                                  op=self.name))
        return plans

    def apply(self, plan: ItemPlan, load: Loader):
        p = plan.params
        h, w = (int(v) for v in p["size"])
        min_area = float(p.get("min_area", 0.0))
        canvas: np.ndarray | None = None
        out_anns: list[Annotation] = []
        prov_patches = []
        for patch in p["patches"]:
            record = {"source": patch["source"], "src_rect": list(patch["src_rect"]),
                      "dst_rect": list(patch["dst_rect"])}
            img, anns = load(patch["source"])
            anns = anns or []  # an unlabelled source (test split) contributes pixels only
            if canvas is None:
                canvas = np.zeros((h, w) + img.shape[2:], img.dtype)
            img = _match_channels(img, canvas)
            x0, y0, x1, y1 = patch["dst_rect"]
            sx0, sy0, sx1, sy1 = patch["src_rect"]
            if p.get("resize"):
                piece = cv2.resize(crop(img, patch["src_rect"]), (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA)
                m = compose(translation_matrix(-sx0, -sy0),
                            resize_matrix((sy1 - sy0, sx1 - sx0), (y1 - y0, x1 - x0)),
                            translation_matrix(x0, y0))
                record["matrix"] = m.tolist()
            else:
                piece = crop(img, patch["src_rect"])
                m = translation_matrix(x0 - sx0, y0 - sy0)
            canvas[y0:y1, x0:x1] = piece.reshape(canvas[y0:y1, x0:x1].shape)
            out_anns.extend(transform_annotations(anns, m, (h, w), clip_rect=patch["dst_rect"],
                                                  min_area=min_area))
            prov_patches.append(record)
        assert canvas is not None  # plan() never makes a mosaic without patches
        prov = {"patches": prov_patches, "grid": list(p["grid"]), "beta": p["beta"],
                "size": [h, w], "resize": bool(p.get("resize", False))}
        return canvas, out_anns, prov


def _match_channels(img: np.ndarray, canvas: np.ndarray) -> np.ndarray:
    """Sources of one mosaic may mix gray and BGR files; follow the canvas (the first source)."""
    want = 1 if canvas.ndim == 2 else canvas.shape[2]
    have = 1 if img.ndim == 2 else img.shape[2]
    if want == have:
        return img
    if want == 3 and have == 1:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    if want == 1 and have == 3:
        return cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    if want == 3 and have == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    if want == 1 and have == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2GRAY)
    if want == 4:
        return cv2.cvtColor(img if have == 3 else cv2.cvtColor(img, cv2.COLOR_GRAY2BGR), cv2.COLOR_BGR2BGRA)
    raise XaugError(f"cannot combine a {have}-channel image into a {want}-channel mosaic")
