"""Realism statistics of a hand X-ray dataset: tone, hand geometry and bone proportions.

The statistics are the ones measured on real competition X-rays when the synthetic set was
compared with them (docs/synthetic.md), so a user with real data can put their own figures beside
a synthetic set's, and `xaug eda` shows both next to the reference values.

>>> import numpy as np
>>> from xaug.model import Annotation
>>> grey = np.full((64, 64), 10, np.uint8); grey[20:40, 20:40] = 140
>>> s = image_stats(grey, [Annotation("Capitate", np.array([[20, 20], [39, 20], [39, 39], [20, 39]]))], 64)
>>> round(s["bone_mean"]), round(s["bone_share"], 3)
(140, 0.098)
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

import cv2
import numpy as np

# name -> (what, unit/format, real X-rays, legacy synthetic). Reference figures: a handful of real
# images shown in public figures (direction and rough size, not exact targets) and the legacy
# synthetic look measured the same way.
STATS: dict[str, tuple[str, str, float | None, float | None]] = {
    "background": ("background (5th percentile grey)", "{:.0f}", 2.0, 39.0),
    "median": ("image median grey", "{:.0f}", 15.0, 54.0),
    "tissue_mean": ("soft tissue mean grey", "{:.0f}", 56.0, 125.0),
    "bone_mean": ("bone mean grey", "{:.0f}", 135.0, 196.0),
    "bone_top": ("bone extent: top of the fingertips (share of height)", "{:.2f}", 0.14, 0.14),
    "bone_bottom": ("bone extent: bottom (share of height)", "{:.2f}", 1.0, 1.0),
    "bone_width": ("bone extent: width (share of width)", "{:.2f}", 0.56, 0.45),
    "bone_share": ("all bone pixels (share of the image)", "{:.1%}", 0.12, 0.11),
    "radius_share": ("Radius area (share of the image)", "{:.2%}", 0.019, 0.020),
    "capitate_share": ("Capitate area (share of the image)", "{:.2%}", 0.0033, 0.0034),
    "finger3_share": ("finger-3 area (share of the image)", "{:.2%}", 0.0066, 0.0052),
    "scaphoid_ratio": ("Scaphoid length / finger-10 length", "{:.2f}", 0.46, 0.62),
    "finger10_aspect": ("finger-10 width / length", "{:.2f}", None, None),
}
TONE = ("background", "median", "tissue_mean", "bone_mean")
MAX_SIDE = 512  # masks are rasterised with the longer side at most this (speed)


def _length_width(points: np.ndarray) -> tuple[float, float]:
    """Length along the principal axis and mean width (area / length) of a ring."""
    pts = np.asarray(points, np.float64)
    if len(pts) < 3:
        return 0.0, 0.0
    c = pts - pts.mean(axis=0)
    axis = np.linalg.eigh(np.cov(c.T))[1][:, -1]
    length = float(np.ptp(c @ axis))
    area = 0.5 * abs(float(np.dot(pts[:, 0], np.roll(pts[:, 1], -1)) - np.dot(pts[:, 1], np.roll(pts[:, 0], -1))))
    return length, area / max(length, 1e-9)


def _otsu(values: np.ndarray) -> float:
    if values.size == 0:
        return 0.0
    t, _ = cv2.threshold(values.astype(np.uint8).reshape(-1, 1), 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    return float(t)


def image_stats(grey: np.ndarray, annotations: Sequence | None, full_side: int | tuple[int, int]) -> dict[str, float]:
    """The realism statistics of one image.

    `grey` may be a reduced copy of the image (any scale); `annotations` are in the coordinates
    of the full image, whose (height, width) or side is `full_side`. Without annotations only the
    tone statistics exist (soft tissue then is everything above the Otsu threshold).
    """
    g = np.asarray(grey)
    if g.ndim == 3:
        g = g[..., 0]
    full_h, full_w = (full_side, full_side) if isinstance(full_side, int) else full_side
    out: dict[str, float] = {"background": float(np.percentile(g, 5)), "median": float(np.median(g))}
    anns = [a for a in (annotations or []) if len(np.asarray(a.points)) >= 3]
    if not anns:
        vals = g.reshape(-1)
        t = _otsu(vals)
        out["tissue_mean"] = float(vals[vals > t].mean()) if (vals > t).any() else float("nan")
        return out
    h, w = g.shape
    sy, sx = h / full_h, w / full_w
    bone = np.zeros((h, w), np.uint8)
    areas: dict[str, float] = {}
    for a in anns:
        pts = np.asarray(a.points, np.float64)
        small = (pts + 0.5) * [sx, sy] - 0.5  # pixel centres of the reduced copy
        cv2.fillPoly(bone, [np.rint(small).astype(np.int32).reshape(-1, 1, 2)], 1)
        x, y = pts[:, 0], pts[:, 1]
        areas[a.label] = areas.get(a.label, 0.0) + 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))
    inside = bone.astype(bool)
    rest = g[~inside]
    t = _otsu(rest)
    tissue = rest[rest > t]
    out["tissue_mean"] = float(tissue.mean()) if tissue.size else float("nan")
    out["bone_mean"] = float(g[inside].mean()) if inside.any() else float("nan")
    allpts = np.vstack([np.asarray(a.points, np.float64) for a in anns])
    out["bone_top"] = float(allpts[:, 1].min() / (full_h - 1))
    out["bone_bottom"] = float(allpts[:, 1].max() / (full_h - 1))
    out["bone_width"] = float(np.ptp(allpts[:, 0]) / (full_w - 1))
    out["bone_share"] = float(inside.mean())
    image_area = float(full_h * full_w)
    for key, label in (("radius_share", "Radius"), ("capitate_share", "Capitate"), ("finger3_share", "finger-3")):
        if label in areas:
            out[key] = areas[label] / image_area
    by_label = {a.label: np.asarray(a.points) for a in anns}
    if "finger-10" in by_label:
        l10, w10 = _length_width(by_label["finger-10"])
        out["finger10_aspect"] = w10 / max(l10, 1e-9)
        if "Scaphoid" in by_label:
            out["scaphoid_ratio"] = _length_width(by_label["Scaphoid"])[0] / max(l10, 1e-9)
    return out


def sample_stats(sample) -> dict[str, float]:
    """`image_stats` of a store sample (reads the image once, grey, at a quarter of its size)."""
    from xaug.layout import image_size
    from xaug.report.images import read_gray_reduced

    h, w, _ = image_size(sample.image_path)
    return image_stats(read_gray_reduced(sample), sample.annotations, (h, w))


def summarise(rows: Iterable[Mapping[str, float]]) -> dict[str, dict[str, float]]:
    """Per statistic: median, 10th and 90th percentile over images, and how many had it."""
    cols: dict[str, list[float]] = {}
    for r in rows:
        for k, v in r.items():
            if v is not None and np.isfinite(v):
                cols.setdefault(k, []).append(float(v))
    return {k: {"median": float(np.median(v)), "p10": float(np.percentile(v, 10)),
                "p90": float(np.percentile(v, 90)), "images": len(v)}
            for k, v in cols.items() if v}


def table_rows(summary: Mapping[str, Mapping[str, float]], columns: Sequence[str] = ("real", "legacy")
               ) -> list[list[str]]:
    """Rows (statistic, this dataset's median [p10-p90], reference columns) for a report table."""
    rows = []
    for key, (what, fmt, real, legacy) in STATS.items():
        s = summary.get(key)
        mine = "n/a" if s is None else f"{fmt.format(s['median'])} [{fmt.format(s['p10'])}-{fmt.format(s['p90'])}]"
        ref = {"real": real, "legacy": legacy}
        rows.append([what, mine] + [("" if ref[c] is None else "~" + fmt.format(ref[c])) for c in columns])
    return rows


def markdown_table(summaries: Mapping[str, Mapping[str, Mapping[str, float]]]) -> str:
    """A markdown table: the real reference, then one column per summarised dataset (median)."""
    names = list(summaries)
    lines = ["| statistic | real X-rays | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    for key, (what, fmt, real, _legacy) in STATS.items():
        cells = []
        for n in names:
            s = summaries[n].get(key)
            cells.append("n/a" if s is None else f"{fmt.format(s['median'])} ({fmt.format(s['p10'])}-{fmt.format(s['p90'])})")
        lines.append(f"| {what} | {'' if real is None else '~' + fmt.format(real)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def eda_section(records: Sequence[Any], summary: dict[str, Any]) -> str:
    """The `xaug eda` section: this dataset's statistics beside the real and legacy references."""
    from xaug.report import html as H

    rows = [r.realism for r in records if getattr(r, "realism", None)]
    if not rows:
        return ""
    s = summarise(rows)
    summary["realism"] = {k: {kk: round(vv, 5) for kk, vv in v.items()} for k, v in s.items()}
    return H.section(
        "Realism statistics",
        H.note("Tone and hand geometry of this dataset (median over images, 10th-90th percentile in "
               "brackets) beside the figures measured on real competition X-rays and on the legacy "
               "synthetic look (docs/synthetic.md). Grey levels 0-255; soft tissue is the non-bone "
               "part above an Otsu threshold; shares are of the image."),
        H.table(["statistic", "this dataset", "real X-rays", "legacy synthetic"], table_rows(s)),
        anchor="realism")
