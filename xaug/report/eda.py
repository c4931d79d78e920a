"""The EDA report of a dataset version: statistics, outliers and overlays as a static HTML folder.

Two streaming passes: the first reads each image once (grey, quarter size) and keeps only small
per-item records; the second draws thumbnails of the few items the page shows.

    from xaug.report.eda import write_eda
    result = write_eda(ds.samples(), Path("reports/raw/eda"), title="raw_v1", persons=ds.persons)
"""
from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from xaug.classes import CLASS_INDEX, CLASSES, COLORS, NUM_CLASSES
from xaug.layout import image_size
from xaug.model import Sample
from xaug.report import html as H
from xaug.report import realism, stats
from xaug.report.images import file_stem, overlay_image, read_gray_reduced, resize_to, write_rgb

GALLERY = 12          # ground-truth overlays in the gallery
PER_SECTION = 12      # thumbnails per outlier section
OVERLAP_SIDE = 512    # the overlap matrix is rasterised at this size (speed)


@dataclass
class ItemRecord:
    """What the report keeps of one image (small: no pixels)."""

    relpath: str
    person: str
    split: str
    side: str | None
    fold: int | None
    height: int
    width: int
    channels: int
    brightness: float
    labelled: bool
    areas: np.ndarray
    vertices: np.ndarray
    polygons: np.ndarray
    wrist_angle: float | None = None
    forearm_tilt: float | None = None
    findings: list[stats.Finding] = field(default_factory=list)
    swap: tuple[str, str] | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    realism: dict[str, float] = field(default_factory=dict)  # xaug.report.realism.image_stats

    @property
    def rotated(self) -> bool:
        return self.wrist_angle is not None and abs(self.wrist_angle) >= stats.ROTATED_WRIST_DEG

    def to_json(self) -> dict[str, Any]:
        return {"relpath": self.relpath, "person": self.person, "split": self.split, "side": self.side,
                "size": [self.height, self.width, self.channels], "brightness": round(self.brightness, 2),
                "labelled": self.labelled, "wrist_angle": _round(self.wrist_angle),
                "forearm_tilt": _round(self.forearm_tilt),
                "findings": [f.to_json() for f in self.findings],
                "suspected_swap": list(self.swap) if self.swap else None}


def _round(v: float | None, nd: int = 1) -> float | None:
    return None if v is None else round(float(v), nd)


def item_record(sample: Sample, overlap_side: int = OVERLAP_SIDE) -> tuple[ItemRecord, np.ndarray | None]:
    """Statistics of one sample and its overlap matrix (estimated full-resolution pixels)."""
    h, w, c = image_size(sample.image_path)
    grey = read_gray_reduced(sample)  # a store Sample: bytes checked against the manifest
    bright = stats.brightness(grey)
    anns = sample.annotations
    rec = ItemRecord(sample.relpath, sample.person, sample.split, sample.side, sample.fold, h, w, c,
                     bright, anns is not None, np.zeros(NUM_CLASSES), np.zeros(NUM_CLASSES, np.int64),
                     np.zeros(NUM_CLASSES, np.int64), meta=dict(sample.meta or {}))
    rec.realism = realism.image_stats(grey, anns, (h, w))
    if anns is None:
        return rec, None
    rec.areas = stats.class_areas(anns)
    rec.vertices = stats.vertex_counts(anns)
    rec.polygons = stats.polygon_counts(anns)
    geo = stats.hand_geometry(anns)
    rec.wrist_angle, rec.forearm_tilt = geo.wrist_angle, geo.forearm_tilt
    order = stats.order_findings(anns)
    rec.findings = stats.class_findings(anns) + order
    if order:
        rec.swap = stats.explain_swap(anns)
    matrix, scale = stats.scaled_overlap(anns, (h, w), overlap_side)
    return rec, matrix / (scale * scale)


@dataclass
class Collected:
    records: list[ItemRecord]
    overlap: np.ndarray          # summed over labelled images, full-resolution pixels (estimated)
    overlap_images: int


def collect(samples: Sequence[Sample], jobs: int = 2, progress: bool = True,
            overlap_side: int = OVERLAP_SIDE, backend: Any = None) -> Collected:
    """First pass: one record per sample, streaming, on the build backend (local: threads, as
    OpenCV releases the GIL; dask: the cluster's workers)."""
    from functools import partial

    from xaug.progress import Progress
    from xaug.store.backends import get_backend

    records: list[ItemRecord] = []
    overlap = np.zeros((NUM_CLASSES, NUM_CLASSES))
    n = 0
    results = get_backend(backend).map(partial(item_record, overlap_side=overlap_side), list(samples), jobs)
    for rec, matrix in Progress.wrap(results, "eda: reading", enabled=progress, total=len(samples), unit="img"):
        records.append(rec)
        if matrix is not None:
            overlap += matrix
            n += 1
    _flag_area_outliers(records)
    return Collected(records, overlap, n)


def _flag_area_outliers(records: list[ItemRecord]) -> None:
    """Per class, robust z-score of log area over the images that have the class."""
    lab = [r for r in records if r.labelled]
    if len(lab) < 5:
        return
    areas = np.stack([r.areas for r in lab])
    for c in range(NUM_CLASSES):
        present = areas[:, c] > 0
        if present.sum() < 5:
            continue
        z = np.full(len(lab), np.nan)
        z[present] = stats.robust_z(np.log(areas[present, c]))
        median = float(np.median(areas[present, c]))
        for i in np.flatnonzero(np.abs(np.nan_to_num(z)) > stats.AREA_Z):
            ratio = areas[i, c] / median
            lab[i].findings.append(stats.Finding(
                "area", (CLASSES[c],), f"{CLASSES[c]} area {areas[i, c]:,.0f} px² is {ratio:.2f}x the "
                f"median ({median:,.0f}), robust z {z[i]:+.1f}"))


# ---------------------------------------------------------------- the analysis

def brightness_outliers(records: Sequence[ItemRecord]) -> tuple[list[tuple[ItemRecord, str]], list[tuple[ItemRecord, str]]]:
    z = stats.robust_z([r.brightness for r in records])
    order = np.argsort(z)
    dark = [(records[i], f"mean {records[i].brightness:.1f}, z {z[i]:+.1f}") for i in order
            if z[i] <= -stats.BRIGHTNESS_Z]
    bright = [(records[i], f"mean {records[i].brightness:.1f}, z {z[i]:+.1f}") for i in order[::-1]
              if z[i] >= stats.BRIGHTNESS_Z]
    return bright, dark


def meta_summary(records: Sequence[ItemRecord]) -> dict[str, Any]:
    """Recorded item metadata (synthetic poses, edge cases): numbers and counts per split."""
    numeric: dict[str, list[float]] = defaultdict(list)
    counts: dict[str, dict[str, Counter]] = defaultdict(lambda: defaultdict(Counter))
    examples: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for r in records:
        for key, value in _flatten(r.meta):
            if isinstance(value, bool):
                if value:
                    counts[key][r.split]["true"] += 1
            elif isinstance(value, (int, float)) and math.isfinite(value):
                numeric[key].append(float(value))
            elif isinstance(value, str):
                counts[key][r.split][value] += 1
            elif isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
                for v in value:
                    counts[key][r.split][v] += 1
                    examples[key][v].append(r.relpath)
    return {"numeric": dict(numeric),
            "counts": {k: {s: dict(c) for s, c in v.items()} for k, v in counts.items()},
            "examples": {k: dict(v) for k, v in examples.items()}}


def _flatten(meta: Mapping[str, Any], prefix: str = "") -> Iterable[tuple[str, Any]]:
    for k, v in meta.items():
        if isinstance(v, Mapping):
            yield from _flatten(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v


def _recorded_wrist(meta: Mapping[str, Any]) -> float | None:
    """A numeric recorded wrist angle in the item metadata, if the generator wrote one."""
    for key, value in _flatten(meta):
        if "wrist" in key.lower() and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    return None


# ---------------------------------------------------------------- the report

@dataclass
class EdaResult:
    index: Path
    summary: dict[str, Any]


def write_eda(samples: Sequence[Sample], out: Path, title: str, persons: Mapping[str, Any] | None = None,
              subtitle: str = "", gallery: int = GALLERY, per_section: int = PER_SECTION, jobs: int = 2,
              progress: bool = True, overlap_side: int = OVERLAP_SIDE, backend: Any = None) -> EdaResult:
    """Write `out/index.html`, `out/summary.json`, `out/items.jsonl`, plots and thumbnails."""
    from xaug.report import plots

    from xaug.store import atomic_write

    out = H.begin_report(out, ("summary.json", "items.jsonl"))
    col = collect(samples, jobs=jobs, progress=progress, overlap_side=overlap_side, backend=backend)
    recs = col.records
    lab = [r for r in recs if r.labelled]
    by_rel = {s.relpath: s for s in samples}
    persons = dict(persons or {})
    thumbs: dict[str, set[int]] = defaultdict(set)   # relpath -> sizes to draw
    sections: list[str] = []
    summary: dict[str, Any] = {"title": title}

    # -- counts, sizes, channels
    n_ann = int(sum(r.polygons.sum() for r in lab))
    sizes = Counter(f"{r.height}x{r.width}" for r in recs)
    channels = Counter(r.channels for r in recs)
    split_counts = Counter(r.split for r in recs)
    summary["counts"] = {"persons": len({r.person for r in recs}), "images": len(recs),
                         "labelled_images": len(lab), "annotations": n_ann,
                         "by_split": dict(split_counts), "sizes": dict(sizes),
                         "channels": {str(k): v for k, v in channels.items()}}
    kp = [("persons", summary["counts"]["persons"]), ("images", len(recs))]
    kp += [(f"{s} images", n) for s, n in sorted(split_counts.items())]
    kp += [("labelled images", len(lab)), ("annotations", n_ann)]
    sections.append(H.section(
        "Counts, sizes and channels", H.kpis(kp),
        H.table(["image size (HxW)", "images"], sorted(sizes.items())),
        H.table(["channels", "images"], sorted(channels.items())), anchor="counts"))

    # -- areas and vertices
    if lab:
        areas = np.stack([r.areas for r in lab])
        present = areas > 0
        mean_area = np.divide(areas.sum(0), present.sum(0), out=np.zeros(NUM_CLASSES), where=present.sum(0) > 0)
        smallest = [int(i) for i in np.argsort(np.where(mean_area > 0, mean_area, np.inf))[:3]]
        verts = np.stack([r.vertices for r in lab]).astype(np.float64)
        mean_verts = np.divide(verts.sum(0), present.sum(0), out=np.zeros(NUM_CLASSES), where=present.sum(0) > 0)
        plots.class_bars(mean_area, out / "img/area_per_class.png", "Mean polygon area per class (images with the class)",
                         "area (px²)", highlight=smallest)
        plots.class_bars(mean_verts, out / "img/vertices_per_class.png", "Mean polygon vertices per class",
                         "vertices", highlight=())
        summary["mean_area"] = {c: round(float(a), 1) for c, a in zip(CLASSES, mean_area)}
        summary["smallest_classes"] = [CLASSES[i] for i in smallest]
        summary["mean_vertices"] = {c: round(float(v), 1) for c, v in zip(CLASSES, mean_verts)}
        sections.append(H.section(
            "Class areas and vertex counts",
            H.note("Smallest classes by mean area: " + ", ".join(
                f"{CLASSES[i]} ({mean_area[i]:,.0f} px²)" for i in smallest)
                + f". Largest: {CLASSES[int(np.argmax(mean_area))]} ({mean_area.max():,.0f} px²)."),
            H.plot("img/area_per_class.png", "mean area per class"),
            H.plot("img/vertices_per_class.png", "vertices per class"), anchor="areas"))

    # -- metadata sheet
    sections.append(_metadata_section(recs, lab, persons, out, summary))

    # -- overlap matrix
    if col.overlap_images:
        ov = col.overlap / col.overlap_images
        off = ov.copy()
        np.fill_diagonal(off, 0)
        plots.overlap_heatmap(off, out / "img/overlap.png",
                              "Pixels shared by each pair of classes (mean per labelled image)",
                              "shared pixels per image (log scale)")
        iu = np.triu_indices(NUM_CLASSES, 1)
        pairs = sorted(((float(off[i, j]), CLASSES[i], CLASSES[j]) for i, j in zip(*iu) if off[i, j] > 0),
                       reverse=True)
        summary["overlap_top"] = [{"a": a, "b": b, "pixels_per_image": round(v, 1)} for v, a, b in pairs[:15]]
        summary["overlap_side"] = overlap_side
        rows = [(a, b, round(v), f"{100 * v / min(ov[CLASSES.index(a)][CLASSES.index(a)], ov[CLASSES.index(b)][CLASSES.index(b)]):.1f}%")
                for v, a, b in pairs[:15]]
        sections.append(H.section(
            "Class overlaps",
            H.note(f"Pixels that belong to two classes at once, from the 29-channel multi-label masks. "
                   f"For speed the polygons are rasterised with the longer side at {overlap_side} px and "
                   f"the counts scaled back to full-resolution pixels (estimates)."),
            H.plot("img/overlap.png", "overlap matrix"),
            H.sub("Most overlapping pairs"),
            H.table(["class", "class", "shared px / image", "of the smaller class"], rows), anchor="overlap"))

    # -- wrist rotation
    sections.append(_wrist_section(lab, out, summary, thumbs, per_section))

    # -- brightness and outliers
    sections.append(_outlier_section(recs, lab, out, summary, thumbs, per_section))

    # -- tone and geometry beside real X-rays
    section = realism.eda_section(recs, summary)
    if section:
        sections.append(section)

    # -- synthetic metadata
    ms = meta_summary(recs)
    if ms["numeric"] or ms["counts"]:
        sections.append(_meta_section(ms, recs, out, summary, thumbs))

    # -- gallery
    gal = _spread([r for r in lab] or recs, gallery)
    for r in gal:
        thumbs[r.relpath] |= {360, 1024}
    summary["gallery"] = [r.relpath for r in gal]

    _draw_thumbs(thumbs, by_rel, out, jobs, progress)
    legend = " ".join(H.swatch(c, n) for c, n in zip(COLORS, CLASSES))
    sections.append(H.section(
        "Ground-truth gallery", H.note("Overlays in the customary colours; click for a larger image."),
        f'<p class="note">{legend}</p>',
        H.grid(H.figure(_thumb(r.relpath, 360), _caption(r), 300, link=_thumb(r.relpath, 1024)) for r in gal),
        anchor="gallery"))

    atomic_write(out / "summary.json", json.dumps(summary, indent=1, ensure_ascii=False).encode("utf-8"))
    atomic_write(out / "items.jsonl",
                 "".join(json.dumps(r.to_json(), ensure_ascii=False) + "\n" for r in recs).encode("utf-8"))
    index = H.write_page(out / "index.html", title, sections, subtitle)  # last: the report is whole
    return EdaResult(index, summary)


def _caption(r: ItemRecord, extra: str = "") -> str:
    bits = [r.relpath]
    if r.wrist_angle is not None:
        bits.append(f"wrist {r.wrist_angle:+.0f}°")
    if extra:
        bits.append(extra)
    return " · ".join(bits)


def _thumb(relpath: str, size: int) -> str:
    return f"thumbs/{file_stem(relpath)}_{size}.jpg"


def _spread(items: Sequence, n: int) -> list:
    if len(items) <= n:
        return list(items)
    idx = np.linspace(0, len(items) - 1, n).round().astype(int)
    return [items[i] for i in idx]


def _draw_thumbs(thumbs: Mapping[str, set[int]], by_rel: Mapping[str, Sample], out: Path, jobs: int,
                 progress: bool) -> None:
    """Second pass: overlays for the items the page shows, one decode per item."""

    def draw(rel: str) -> None:
        sample = by_rel[rel]
        sizes = sorted(thumbs[rel], reverse=True)
        big = overlay_image(sample, max_side=sizes[0])
        for size in sizes:
            write_rgb(out / _thumb(rel, size), resize_to(big, size)[0])

    with ThreadPoolExecutor(max(1, jobs)) as pool:
        from xaug.progress import Progress

        for _ in Progress.wrap(pool.map(draw, sorted(thumbs)), "eda: thumbnails", enabled=progress,
                               total=len(thumbs), unit="img"):
            pass


def _metadata_section(recs, lab, persons, out: Path, summary) -> str:
    from xaug.report import plots

    seen = sorted({r.person for r in recs})
    rows = [persons[p] for p in seen if p in persons]
    summary["metadata"] = {"persons_in_sheet": len(rows), "persons_without_row": len(seen) - len(rows)}
    if not rows:
        return H.section("Persons (meta_data.xlsx)", H.note("No metadata sheet rows for these persons."),
                         anchor="persons")
    sex = Counter(p.sex or "unknown" for p in rows)
    summary["metadata"]["sex"] = dict(sex)
    series = {"age": [p.age for p in rows], "height": [p.height for p in rows], "weight": [p.weight for p in rows]}
    for k, v in series.items():
        vals = [x for x in v if x is not None]
        summary["metadata"][k] = ({"mean": round(float(np.mean(vals)), 1), "min": float(min(vals)),
                                   "max": float(max(vals)), "missing": len(v) - len(vals)} if vals else None)
    plots.histograms(series, out / "img/persons.png", f"Persons in meta_data.xlsx (n={len(rows)})",
                     units={"age": "years", "height": "cm", "weight": "kg"}, categories={"sex": dict(sex)})
    parts = [H.kpis([(f"sex {k}", v) for k, v in sorted(sex.items())]
                    + [(f"mean {k}", summary["metadata"][k]["mean"]) for k in series if summary["metadata"][k]]),
             H.plot("img/persons.png", "age, height, weight, sex")]
    groups = {}
    for s, name in (("M", "male"), ("F", "female")):
        a = [r.areas for r in lab if persons.get(r.person) is not None and persons[r.person].sex == s]
        if a:
            st = np.stack(a)
            groups[f"{name} (n={len(a)} images)"] = np.divide(st.sum(0), (st > 0).sum(0),
                                                               out=np.zeros(NUM_CLASSES), where=(st > 0).sum(0) > 0)
    if groups:
        plots.grouped_class_bars(groups, out / "img/area_by_sex.png", "Mean class area by sex", "area (px²)")
        parts.append(H.plot("img/area_by_sex.png", "area by sex"))
        summary["metadata"]["area_by_sex"] = {k: [round(float(x), 1) for x in v] for k, v in groups.items()}
    return H.section("Persons (meta_data.xlsx)", *parts, anchor="persons")


def _wrist_section(lab, out: Path, summary, thumbs, per_section) -> str:
    from xaug.report import plots

    by_split: dict[str, list[float]] = defaultdict(list)
    for r in lab:
        if r.wrist_angle is not None:
            by_split[r.split].append(r.wrist_angle)
    if not by_split:
        return ""
    plots.angle_histogram(dict(by_split), out / "img/wrist.png", "Wrist angle estimated from the polygons",
                          stats.ROTATED_WRIST_DEG)
    rot = {s: {"images": len(v), "rotated": int(sum(abs(a) >= stats.ROTATED_WRIST_DEG for a in v))}
           for s, v in sorted(by_split.items())}
    for s, v in rot.items():
        v["share"] = round(v["rotated"] / v["images"], 3) if v["images"] else 0.0
        v["forearm_tilted"] = sum(1 for r in lab if r.split == s and r.forearm_tilt is not None
                                  and abs(r.forearm_tilt) >= stats.TILTED_FOREARM_DEG)
    summary["rotated_wrists"] = {"threshold_deg": stats.ROTATED_WRIST_DEG, "by_split": rot,
                                 "items": [r.relpath for r in lab if r.rotated]}
    parts = [H.note(f"The hand axis runs from the distal carpal row (Trapezoid, Capitate, Hamate) to the 2nd-4th "
                    f"metacarpals; the forearm axis is the major axis of the radius and ulna. Their angle "
                    f"(positive towards the thumb) counts as a rotated wrist from {stats.ROTATED_WRIST_DEG:.0f}°. "
                    f"A forearm more than {stats.TILTED_FOREARM_DEG:.0f}° off the image's vertical means the "
                    f"whole hand is turned."),
             H.table(["split", "images", "rotated wrists", "share", "forearm tilted"],
                     [(s, v["images"], v["rotated"], f"{100 * v['share']:.1f}%", v["forearm_tilted"])
                      for s, v in rot.items()]),
             H.plot("img/wrist.png", "wrist angle histogram")]
    recorded = [(r.wrist_angle, w) for r in lab if r.wrist_angle is not None
                and (w := _recorded_wrist(r.meta)) is not None]
    if len(recorded) >= 3:
        x, y = zip(*recorded)
        plots.scatter([abs(v) for v in y], [abs(v) for v in x], out / "img/wrist_vs_recorded.png",
                      "Estimated vs recorded wrist rotation", "recorded |angle| (item metadata, °)",
                      "estimated |angle| from geometry (°)")
        err = np.abs(np.abs(np.asarray(x)) - np.abs(np.asarray(y)))
        summary["rotated_wrists"]["vs_recorded_mae_deg"] = round(float(err.mean()), 2)
        parts += [H.note(f"Against the angle the generator recorded: mean absolute difference "
                         f"{err.mean():.1f}° over {len(recorded)} images."),
                  H.plot("img/wrist_vs_recorded.png", "estimated vs recorded")]
    top = sorted((r for r in lab if r.rotated), key=lambda r: -abs(r.wrist_angle))[:per_section]
    if top:
        for r in top:
            thumbs[r.relpath].add(220)
        parts += [H.sub(f"Most rotated wrists ({len(top)} of {len(summary['rotated_wrists']['items'])})"),
                  H.grid(H.figure(_thumb(r.relpath, 220), _caption(r), 200) for r in top)]
    return H.section("Rotated wrists (from geometry)", *parts, anchor="wrist")


def _outlier_section(recs, lab, out: Path, summary, thumbs, per_section) -> str:
    from xaug.report import plots

    plots.histograms({"mean intensity": [r.brightness for r in recs]}, out / "img/brightness.png",
                     "Image brightness", bins=30, units={"mean intensity": "0-255"})
    bright, dark = brightness_outliers(recs)
    groups: list[tuple[str, str, list[tuple[ItemRecord, str]]]] = [
        ("bright", "Unusually bright images", bright),
        ("dark", "Unusually dark images", dark),
        ("classes", "Missing or duplicated classes",
         [(r, "; ".join(f.message for f in r.findings if f.kind in ("missing", "duplicated")))
          for r in lab if any(f.kind in ("missing", "duplicated") for f in r.findings)]),
        ("area", "Class area outliers",
         [(r, "; ".join(f.message for f in r.findings if f.kind == "area"))
          for r in lab if any(f.kind == "area" for f in r.findings)]),
        ("swaps", "Suspected label swaps (anatomical order violated)",
         [(r, (f"swap {r.swap[0]} ↔ {r.swap[1]}? " if r.swap else "")
           + "; ".join(f.message for f in r.findings if f.kind == "order"))
          for r in lab if any(f.kind == "order" for f in r.findings)]),
    ]
    summary["outliers"] = {key: [{"relpath": r.relpath, "reason": why} for r, why in items]
                           for key, _, items in groups}
    check = swap_check(lab)
    if check is not None:
        summary["swap_check"] = check
    parts = [H.note(f"Brightness: mean grey level; outliers beyond a robust z-score of {stats.BRIGHTNESS_Z:g} "
                    f"(median / MAD). Class areas: robust z of log area per class beyond {stats.AREA_Z:g}. "
                    f"Label swaps: rows of bones out of thumb-to-little order (phalanges, metacarpals, carpal "
                    f"rows, radius before ulna) or a bone closer to the wrist than the next one towards its base."),
             H.plot("img/brightness.png", "brightness histogram"),
             H.kpis([(title, len(items)) for _, title, items in groups])]
    if check is not None:
        parts.append(H.note(
            f"Injected swaps (recorded by the generator as label_swap): {check['recorded']} images; "
            f"{check['flagged']} flagged ({100 * check['recall']:.0f}%), {check['explained']} with the exact pair "
            f"named; {check['false_alarms']} of {check['clean']} images without a recorded swap flagged."))
    for key, title, items in groups:
        parts.append(H.sub(f"{title}: {len(items)}"))
        if not items:
            parts.append(H.note("none"))
            continue
        for r, _ in items[:per_section]:
            thumbs[r.relpath].add(220)
        parts.append(H.grid(H.figure(_thumb(r.relpath, 220), _caption(r, why), 200) for r, why in items[:per_section]))
        if len(items) > per_section:
            parts.append(H.table(["image", "why"], [(r.relpath, why) for r, why in items[per_section:200]]))
    return H.section("Outliers", *parts, anchor="outliers")


def recorded_swap(meta: Mapping[str, Any]) -> tuple[str, str] | None:
    """The label pair a generator recorded as swapped in this item (synthetic data), if any."""
    details = (meta.get("edge_details") or {}).get("label_swap") if isinstance(meta, Mapping) else None
    labels = details.get("labels") if isinstance(details, Mapping) else None
    if not labels or len(labels) != 2:
        return None
    return tuple(sorted(labels, key=CLASS_INDEX.__getitem__))  # type: ignore[return-value]


def swap_check(records: Sequence[ItemRecord]) -> dict[str, Any] | None:
    """How the order checks fare on swaps the generator injected: recall, exact pairs, false alarms.
    None when no item records a swap."""
    truth = {r.relpath: recorded_swap(r.meta) for r in records}
    swapped = [r for r in records if truth[r.relpath]]
    if not swapped:
        return None
    flagged = [r for r in swapped if any(f.kind == "order" for f in r.findings)]
    explained = [r for r in swapped if r.swap and tuple(sorted(r.swap, key=CLASS_INDEX.__getitem__)) == truth[r.relpath]]
    clean = [r for r in records if not truth[r.relpath]]
    false_alarms = [r for r in clean if any(f.kind == "order" for f in r.findings)]
    flagged_rels = {r.relpath for r in flagged}
    missed = [{"relpath": r.relpath, "labels": list(truth[r.relpath])} for r in swapped
              if r.relpath not in flagged_rels]
    return {"recorded": len(swapped), "flagged": len(flagged), "explained": len(explained),
            "recall": len(flagged) / len(swapped), "clean": len(clean), "false_alarms": len(false_alarms),
            "missed": missed}


def _meta_section(ms, recs, out: Path, summary, thumbs, per_value: int = 4) -> str:
    from xaug.report import plots

    summary["item_meta"] = {"numeric": {k: {"mean": round(float(np.mean(v)), 3), "min": float(min(v)),
                                            "max": float(max(v)), "n": len(v)} for k, v in ms["numeric"].items()},
                            "counts": ms["counts"]}
    parts = [H.note("What the generator recorded for each item (Sample.meta): poses and edge cases.")]
    if ms["numeric"]:
        plots.histograms(ms["numeric"], out / "img/meta_numeric.png", "Recorded numeric parameters")
        parts.append(H.plot("img/meta_numeric.png", "recorded numeric parameters"))
    rows = []
    for key, per_split in sorted(ms["counts"].items()):
        values = sorted({v for c in per_split.values() for v in c})
        for v in values[:30]:
            rows.append([key, v] + [per_split.get(s, {}).get(v, 0) for s in ("train", "test")])
    if rows:
        parts.append(H.table(["field", "value", "train images", "test images"], rows))
        panels = {}
        for key, per_split in sorted(ms["counts"].items()):
            total = Counter()
            for c in per_split.values():
                total.update(c)
            if len(total) > 1:  # single-valued flags are in the table
                panels[key] = dict(total.most_common(15))
        if panels:
            plots.category_bars(dict(list(panels.items())[:9]), out / "img/meta_counts.png", "Recorded categories")
            parts.append(H.plot("img/meta_counts.png", "recorded categories"))
    by_rel = {r.relpath: r for r in recs}
    for key, values in sorted(ms["examples"].items()):
        if len(values) > 12:  # free text, not a handful of edge cases
            continue
        for value, rels in sorted(values.items()):
            for rel in rels[:per_value]:
                thumbs[rel].add(220)
            parts += [H.sub(f"{key}: {value} ({len(rels)} images)"),
                      H.grid(H.figure(_thumb(rel, 220), _caption(by_rel[rel]), 200) for rel in rels[:per_value])]
    return H.section("Recorded poses and edge cases (synthetic data)", *parts, anchor="meta")
