"""COCO instances JSON: export a version, import CVAT / LabelMe-converted files (polygons and RLE).

Pixel conventions. xaug (and the competition) puts pixel centres at integer coordinates and fills
a ring with `cv2.fillPoly`, boundary pixels included. COCO puts pixel centres at +0.5 and
pycocotools fills the pixels whose centres lie inside. So that a COCO consumer gets the masks the
evaluator scores, a ring is exported as the outline of the pixels xaug fills: shifted by +0.5 and
grown by half a pixel (mitred corners). Its exact integer vertices ride along in the annotation's
`xaug.points`, so an import of the export gives back the same polygons, exactly. A COCO polygon
without them is brought back the other way (shrunk by half a pixel, shifted by -0.5, rounded).
RLE segmentations (uncompressed or compressed) are traced into rings of boundary-pixel centres,
simplified by at most `tolerance` pixels, and marked in the item's meta.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from xaug.classes import CARPALS, CLASS_INDEX, CLASSES, FOREARM
from xaug.errors import BadInput
from xaug.interop.export import ExportJob, item_dir, register_format

DEFAULT_TOLERANCE = 0.5   # px: how far a polygon traced from an RLE mask may stray from its outline
_DIGITS = 3               # decimals of exported outline coordinates


def supercategory(label: str) -> str:
    return "forearm" if label in FOREARM else "carpal" if label in CARPALS else "finger"


def categories() -> list[dict[str, Any]]:
    """The 29 classes as COCO categories, ids 1..29 in class order."""
    return [{"id": i + 1, "name": c, "supercategory": supercategory(c)} for i, c in enumerate(CLASSES)]


# ---------------------------------------------------------------- geometry (pure)

def to_coco_polygons(points: np.ndarray) -> list[list[float]]:
    """One xaug ring -> flat COCO polygon(s) outlining the pixels `cv2.fillPoly` fills.

    >>> to_coco_polygons(np.array([[1, 1], [3, 1], [3, 3], [1, 3]]))
    [[1.0, 1.0, 4.0, 1.0, 4.0, 4.0, 1.0, 4.0]]
    """
    from shapely.geometry import Polygon as ShapelyPolygon
    from shapely.validation import make_valid

    pts = np.asarray(points, np.float64).reshape(-1, 2)
    if len(pts) < 3:
        return []
    ring = ShapelyPolygon(pts + 0.5)
    if not ring.is_valid:
        ring = make_valid(ring)
    grown = ring.buffer(0.5, join_style="mitre", mitre_limit=2.0)
    out = []
    for geom in getattr(grown, "geoms", [grown]):
        if geom.geom_type != "Polygon" or geom.is_empty:
            continue
        coords = _follow(np.asarray(geom.exterior.coords)[:-1], pts + 0.5)
        if len(coords) >= 3:
            out.append([round(float(v), _DIGITS) + 0.0 for v in coords.ravel()])
    return out


def _follow(coords: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """`coords` (a ring shapely rebuilt) started at the vertex nearest `ref[0]` and oriented as
    `ref`, so that vertex k of the output belongs to vertex k of the input where both exist."""
    if _signed_area(coords) * _signed_area(ref) < 0:
        coords = coords[::-1]
    start = int(np.argmin(np.linalg.norm(coords - ref[0], axis=1)))
    return np.roll(coords, -start, axis=0)


def from_coco_polygon(flat: Sequence[float]) -> np.ndarray | None:
    """A flat COCO polygon -> an xaug ring (N, 2) int64: the inverse of `to_coco_polygons`
    (shrunk by half a pixel, shifted by -0.5, rounded). None when fewer than 3 points remain."""
    from shapely.geometry import Polygon as ShapelyPolygon

    pts = np.asarray(flat, np.float64).reshape(-1, 2)
    if len(pts) < 3 or not np.isfinite(pts).all():
        return None
    ring = ShapelyPolygon(pts)
    shrunk = ring.buffer(-0.5, join_style="mitre", mitre_limit=2.0) if ring.is_valid else None
    if shrunk is not None and shrunk.geom_type == "Polygon" and not shrunk.is_empty:
        pts = _follow(np.asarray(shrunk.exterior.coords)[:-1], pts)
    out = _dedupe(np.rint(pts - 0.5).astype(np.int64))
    return out if len(out) >= 3 else None


def _signed_area(pts: np.ndarray) -> float:
    x, y = pts[:, 0], pts[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def _dedupe(pts: np.ndarray) -> np.ndarray:
    """Drop consecutive repeated vertices (and a closing repeat of the first)."""
    if len(pts) == 0:
        return pts
    keep = np.ones(len(pts), bool)
    keep[1:] = np.any(pts[1:] != pts[:-1], axis=1)
    pts = pts[keep]
    if len(pts) > 1 and np.array_equal(pts[0], pts[-1]):
        pts = pts[:-1]
    return pts


def rle_counts_from_string(s: str) -> list[int]:
    """Decode pycocotools' compressed RLE string (LEB128-like, 6 bits a character, deltas)."""
    counts: list[int] = []
    p = 0
    data = s.encode("ascii") if isinstance(s, str) else bytes(s)
    while p < len(data):
        x = 0
        k = 0
        more = True
        while more:
            if p >= len(data):
                raise ValueError("truncated RLE string")
            c = data[p] - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def rle_to_mask(segmentation: dict[str, Any], height: int, width: int) -> np.ndarray:
    """A COCO RLE (counts as a list, or pycocotools' compressed string) -> bool (H, W) mask.

    Runs alternate 0s and 1s, starting with 0s, over the column-major (Fortran order) pixels.
    """
    size = segmentation.get("size")
    if size is not None and (len(size) != 2 or [int(size[0]), int(size[1])] != [height, width]):
        raise ValueError(f"RLE size {size} differs from the image's {height}x{width}")
    raw = segmentation.get("counts")
    counts = rle_counts_from_string(raw) if isinstance(raw, (str, bytes)) else [int(c) for c in raw]
    if any(c < 0 for c in counts) or sum(counts) != height * width:
        raise ValueError(f"RLE runs cover {sum(counts)} pixels, the image has {height * width}")
    values = np.zeros(len(counts), np.uint8)
    values[1::2] = 1
    flat = np.repeat(values, counts)
    return flat.reshape(width, height).T.astype(bool)


def mask_to_rings(mask: np.ndarray, tolerance: float = DEFAULT_TOLERANCE) -> list[np.ndarray]:
    """Outer rings (int (N, 2), x first) whose `cv2.fillPoly` gives back `mask`: boundary-pixel
    centres, simplified by at most `tolerance` px (Douglas-Peucker). Holes are not kept."""
    import cv2

    m = np.ascontiguousarray(mask.astype(np.uint8))
    contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    rings = []
    for c in contours:
        if tolerance > 0:
            c = cv2.approxPolyDP(c, tolerance, True)
        pts = _dedupe(c.reshape(-1, 2).astype(np.int64))
        if len(pts) >= 3:
            rings.append(pts)
    return rings


def _ring_area_union(polys: list[list[float]]) -> float:
    from shapely.geometry import Polygon as ShapelyPolygon
    from shapely.ops import unary_union

    shapes = [ShapelyPolygon(np.asarray(p).reshape(-1, 2)) for p in polys]
    shapes = [s if s.is_valid else s.buffer(0) for s in shapes]
    return float(unary_union(shapes).area) if shapes else 0.0


def _bbox(polys: list[list[float]]) -> list[float]:
    pts = np.concatenate([np.asarray(p).reshape(-1, 2) for p in polys])
    x0, y0 = pts.min(0)
    x1, y1 = pts.max(0)
    return [round(float(x0), _DIGITS), round(float(y0), _DIGITS), round(float(x1 - x0), _DIGITS),
            round(float(y1 - y0), _DIGITS)]


# ---------------------------------------------------------------- export

@register_format("coco")
def write_coco(job: ExportJob) -> dict:
    """`annotations/instances_<split>.json` + `images/<split>/<person>/<file>.png`."""
    ds = job.dataset
    n_images = n_anns = 0
    persons_meta = ds.persons
    for split, items in job.items.items():
        images, anns = [], []
        persons = set()
        for image_id, it in enumerate(items, 1):
            rel = f"{item_dir(split, it)}/{it.name}"
            job.write_bytes(f"images/{rel}", it.image_bytes())
            h, w = it.size
            entry: dict[str, Any] = {"id": image_id, "file_name": rel, "height": h, "width": w}
            xaug: dict[str, Any] = {"path": it.path, "person": it.person, "side": it.side,
                                    "split": it.layout_split, "fold": it.fold, "meta": it.meta,
                                    "provenance": it.provenance, "sha256": it.image_file.sha256,
                                    "label": None}
            if it.label_file is not None:
                polys, doc_extra = it._raw_annotations()
                by_class: dict[int, list[int]] = {}
                for k, p in enumerate(polys):
                    by_class.setdefault(CLASS_INDEX[p.label], []).append(k)
                order: list[list[int]] = [[0, 0]] * len(polys)
                for c in sorted(by_class):
                    segmentation: list[list[float]] = []
                    exact, extras = [], []
                    for part, k in enumerate(by_class[c]):
                        order[k] = [c + 1, part]
                        pts = np.rint(polys[k].points).astype(np.int64)
                        segmentation += to_coco_polygons(pts)
                        exact.append([int(v) for v in pts.ravel()])
                        extras.append(polys[k].extra)
                    if not segmentation:
                        continue
                    n_anns += 1
                    anns.append({"id": n_anns, "image_id": image_id, "category_id": c + 1,
                                 "segmentation": segmentation, "area": round(_ring_area_union(segmentation), _DIGITS),
                                 "bbox": _bbox(segmentation), "iscrowd": 0,
                                 "xaug": {"points": exact, "parts": extras}})
                xaug["label"] = {"doc": doc_extra, "order": order, "sha256": it.label_file.sha256}
            entry["xaug"] = xaug
            images.append(entry)
            persons.add(it.person)
            n_images += 1
            job.advance()
        doc = {
            "info": {"description": f"{ds.name} ({split}) exported by xaug", "version": ds.name,
                     "date_created": ds.created or "", "contributor": "xaug",
                     "xaug": {"dataset": ds.name, "id": ds.id, "split": split,
                              "lineage": [{"name": v.name, "id": v.id, "kind": v.kind} for v in ds.lineage],
                              "split_info": ds.split_info,
                              "persons": [persons_meta[p].to_json() for p in sorted(persons) if p in persons_meta]}},
            "licenses": [],
            "images": images,
            "annotations": anns,
            "categories": categories(),
        }
        job.write_text(f"annotations/instances_{split}.json", json.dumps(doc, ensure_ascii=False, separators=(",", ":")))
    return {"images": n_images, "annotations": n_anns}


# ---------------------------------------------------------------- import

def _load_label_map(path: Path | None) -> dict[str, str]:
    if path is None:
        return {}
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BadInput("no such label map file", where=str(path)) from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise BadInput(f"not a readable YAML mapping ({exc.__class__.__name__})", where=str(path)) from None
    if isinstance(data, dict) and isinstance(data.get("labels"), dict):
        data = data["labels"]
    if not isinstance(data, dict):
        raise BadInput("a label map is a mapping of COCO category names to xaug classes "
                       "(e.g. `Pisiform bone: Pisiform`)", where=str(path))
    out = {}
    for key, value in data.items():
        if value not in CLASS_INDEX:
            import difflib

            close = difflib.get_close_matches(str(value), CLASSES, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise BadInput(f"{key!r} maps to {value!r}, not one of the 29 classes{hint}", where=str(path))
        out[str(key)] = str(value)
    return out


def _read_json(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(Path(path).read_bytes().decode("utf-8-sig"))
    except FileNotFoundError:
        raise BadInput("no such COCO file; give --coco-json FILE", where=str(path)) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadInput(f"not valid JSON ({exc}); give a COCO instances file", where=str(path)) from None
    if not isinstance(doc, dict) or not all(isinstance(doc.get(k), list) for k in ("images", "annotations", "categories")):
        raise BadInput("not a COCO instances file (needs 'images', 'annotations' and 'categories' lists)",
                       where=str(path))
    return doc


def _find_image(root: Path, json_path: Path, file_name: str) -> Path | None:
    from xaug.store import check_relpath

    check_relpath(file_name, f"{json_path.name}: file_name")
    for base in (root / "images", root, json_path.parent.parent / "images", json_path.parent):
        p = base / file_name
        if p.is_file():
            return p
    return None


def import_coco(store, root: Path | str, coco_json: Sequence[Path | str] | None = None, *, name: str = "coco",
                label_map: Path | str | None = None, lenient: bool = False,
                tolerance: float = DEFAULT_TOLERANCE, folds: int = 5, split_seed: int = 0,
                progress: bool = False):
    """Register COCO instances file(s) and their images as a new version; nothing if any input is bad.

    Returns (dataset, created, report) where `report` counts images, polygons, RLE conversions and
    skipped categories. Images come from `root/images/<file_name>` or `root/<file_name>`.
    """
    from xaug.layout import PNG_SIGNATURE, annotation_bytes, annotation_doc, encode_png, side_from_stem, PersonMeta
    from xaug.model import Annotation
    from xaug.store import canonical_json, check_name, sha256_bytes

    check_name(name)
    root = Path(root)
    if not root.is_dir():
        raise BadInput("no such folder; give the folder that holds the COCO images", where=str(root))
    if not (0 <= float(tolerance) <= 10) or not np.isfinite(tolerance):
        raise BadInput(f"--rle-tolerance is a distance in pixels from 0 to 10, got {tolerance}")
    files = [Path(p) for p in coco_json] if coco_json else sorted((root / "annotations").glob("*.json"))
    if not files:
        raise BadInput("no COCO file: give --coco-json FILE (or put it under annotations/)", where=str(root))
    mapping = _load_label_map(Path(label_map) if label_map else None)

    problems: list[str] = []
    unknown: dict[str, int] = {}
    prepared: list[dict[str, Any]] = []
    split_info = None
    persons_meta: dict[str, PersonMeta] = {}
    report = {"images": 0, "polygons": 0, "rle_annotations": 0, "converted_polygons": 0,
              "exact_polygons": 0, "skipped_annotations": 0, "skipped_categories": {}}
    for jpath in files:
        doc = _read_json(jpath)
        info_x = (doc.get("info") or {}).get("xaug") if isinstance(doc.get("info"), dict) else None
        if isinstance(info_x, dict):
            if info_x.get("split_info") and split_info is None:
                split_info = info_x["split_info"]
            for row in info_x.get("persons") or []:
                try:
                    persons_meta[row["person"]] = PersonMeta(**row)
                except (TypeError, KeyError):
                    pass
        cats: dict[Any, str | None] = {}
        for cat in doc["categories"]:
            if not isinstance(cat, dict) or "id" not in cat or not isinstance(cat.get("name"), str):
                problems.append(f"{jpath.name}: category {cat!r} needs an id and a name")
                continue
            cname = mapping.get(cat["name"], cat["name"])
            cats[cat["id"]] = cname if cname in CLASS_INDEX else None
        cat_names = {c["id"]: c.get("name") for c in doc["categories"] if isinstance(c, dict)}
        by_image: dict[Any, list[dict]] = {}
        for ann in doc["annotations"]:
            if not isinstance(ann, dict) or "image_id" not in ann or "category_id" not in ann:
                problems.append(f"{jpath.name}: annotation {ann.get('id') if isinstance(ann, dict) else ann!r}: "
                                "needs image_id and category_id")
                continue
            if ann["category_id"] not in cats:
                problems.append(f"{jpath.name}: annotation {ann.get('id')}: category_id {ann['category_id']} "
                                "is not in 'categories'")
                continue
            if cats[ann["category_id"]] is None:
                cname = str(cat_names.get(ann["category_id"]))
                unknown[cname] = unknown.get(cname, 0) + 1
                continue
            by_image.setdefault(ann["image_id"], []).append(ann)
        for img in doc["images"]:
            if not isinstance(img, dict) or "id" not in img or not isinstance(img.get("file_name"), str):
                problems.append(f"{jpath.name}: image {img!r} needs an id and a file_name")
                continue
            try:
                path = _find_image(root, jpath, img["file_name"])
            except BadInput as exc:
                problems.append(" ".join(exc.lines()))
                continue
            if path is None:
                problems.append(f"{jpath.name}: image {img['file_name']!r} not found under {root}/images or {root}")
                continue
            prepared.append({"json": jpath, "image": img, "path": path, "anns": by_image.get(img["id"], []),
                             "cats": cats})
    if unknown and not lenient:
        names = ", ".join(f"{k!r} ({v} annotation{'s' if v > 1 else ''})" for k, v in sorted(unknown.items()))
        problems.insert(0, f"unknown categories {names}: map them onto the 29 classes with --label-map FILE.yaml, "
                           "or skip them with --lenient")
    if problems:
        raise BadInput(problems[0] if len(problems) == 1 else f"{len(problems)} problem(s) in the COCO input; "
                       "nothing was registered", problems=problems if len(problems) > 1 else [])
    report["skipped_categories"] = dict(sorted(unknown.items()))
    report["skipped_annotations"] = sum(unknown.values())

    # -- convert every image: decide its layout path, polygons, label bytes
    entries: list[dict[str, Any]] = []
    seen: dict[str, str] = {}
    for p in prepared:
        img, jpath = p["image"], p["json"]
        data = p["path"].read_bytes()
        meta_extra: dict[str, Any] = {}
        if data[:8] != PNG_SIGNATURE:
            import cv2

            arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED) if data else None
            if arr is None or arr.dtype != np.uint8:
                raise BadInput("not a readable 8-bit image; replace or remove the file", where=str(p["path"]))
            data = encode_png(arr)
            meta_extra["converted_to_png_from"] = p["path"].suffix.lower().lstrip(".") or "?"
        from xaug.layout import decode_image

        h, w = decode_image(data, str(p["path"])).shape[:2]
        if (img.get("height"), img.get("width")) not in ((h, w), (None, None)):
            raise BadInput(f"{jpath.name}: image {img['file_name']!r} is {w}x{h}, the COCO file says "
                           f"{img.get('width')}x{img.get('height')}", where=str(p["path"]))
        x = img.get("xaug") if isinstance(img.get("xaug"), dict) else None
        stem = Path(img["file_name"]).stem
        if x and isinstance(x.get("path"), str):
            rel = x["path"]
            person, side, split = x.get("person"), x.get("side"), x.get("split")
            fold, meta, prov = x.get("fold"), dict(x.get("meta") or {}), dict(x.get("provenance") or {})
        else:
            parent = Path(img["file_name"]).parent.name
            import re

            person = parent if re.fullmatch(r"ID\d+", parent or "") else f"ID{int(img['id']):03d}" \
                if isinstance(img["id"], int) else f"ID{stem}"
            side = side_from_stem(stem)
            split = "train" if p["anns"] else "test"
            rel = f"{split}/DCM/{person}/{stem}.png"
            fold, meta, prov = None, {}, {"op": "import-coco", "file": img["file_name"], "coco_file": jpath.name,
                                           "image_id": img["id"]}
        from xaug.store import check_relpath

        check_relpath(rel, f"{jpath.name}: image {img['file_name']!r}")
        if rel in seen:
            raise BadInput(f"two images map to {rel}: {seen[rel]!r} and {img['file_name']!r}; rename one",
                           where=jpath.name)
        seen[rel] = img["file_name"]
        anns, coco_note = _convert_annotations(p["anns"], p["cats"], h, w, tolerance, report,
                                               (x or {}).get("label"))
        meta.update(meta_extra)
        if coco_note:
            meta["coco"] = coco_note
        label = None
        if anns is not None and (p["anns"] or (x or {}).get("label") is not None or split == "train"):
            ann_objs, doc_extra = anns
            if doc_extra is None:
                doc_extra = annotation_doc([], None, filename=Path(rel).name, person=person, height=h, width=w)
                doc_extra.pop("annotations")
            label = annotation_bytes(annotation_doc(ann_objs, doc_extra))
        entries.append({"rel": rel, "image": data, "label": label, "person": person, "side": side,
                        "split": split, "fold": fold, "meta": meta, "provenance": prov})
        report["images"] += 1

    spec = {"op": "import-coco", "files": [f.name for f in files], "label_map": mapping, "lenient": lenient,
            "folds": int(folds), "split_seed": int(split_seed),
            "rle_tolerance_px": float(tolerance), "skipped_categories": report["skipped_categories"]}
    content = sha256_bytes(canonical_json([spec, sorted((e["rel"], sha256_bytes(e["image"]),
                                                          sha256_bytes(e["label"] or b""),
                                                          canonical_json([e["meta"], e["provenance"], e["fold"]]).decode())
                                                         for e in entries)]))
    plan_key = "coco-" + content[:40]
    with store.build(name, "import-coco", plan_key, source=None, spec=spec, seed=None) as b:
        b.folds, b.split_seed = int(folds), int(split_seed)  # the split made when the input carries none
        if persons_meta:
            b.set_persons({p: m for p, m in persons_meta.items()})
        if split_info is not None and all(e["fold"] is not None or e["split"] != "train" for e in entries):
            b.split = split_info
        from xaug.interop.export import Progress

        bar = Progress(len(entries), "import coco", progress)
        try:
            for e in entries:
                if not b.has_item(e["rel"]):
                    b.add_item(e["rel"], e["image"], e["label"], person=e["person"], split=e["split"],
                               side=e["side"], provenance=e["provenance"], meta=e["meta"], fold=e["fold"])
                bar.advance()
        finally:
            bar.close()
        ds = b.commit()
        created = b.created
    return ds, created, report


def _convert_annotations(anns: list[dict], cats: dict, h: int, w: int, tolerance: float, report: dict,
                         label_x: dict | None):
    """COCO annotations of one image -> ((Annotations in label-file order, doc_extra or None), meta note)."""
    from xaug.model import Annotation
    from xaug.raster import class_masks

    parts: dict[tuple[int, int], tuple[np.ndarray, dict]] = {}
    loose: list[Annotation] = []
    rle_parts = 0
    rle_dice: list[float] = []
    converted = dropped = 0
    exact_all = True
    for ann in sorted(anns, key=lambda a: (CLASS_INDEX[cats[a["category_id"]]], str(a.get("id")))):
        label = cats[ann["category_id"]]
        c = CLASS_INDEX[label]
        seg = ann.get("segmentation")
        x = ann.get("xaug") if isinstance(ann.get("xaug"), dict) else None
        base_extra = {"id": str(ann.get("id")), "type": "poly_seg", "attributes": ann.get("attributes") or {}}
        if isinstance(seg, list) and x and isinstance(x.get("points"), list):
            extras = x.get("parts") if isinstance(x.get("parts"), list) and len(x["parts"]) == len(x["points"]) \
                else [base_extra] * len(x["points"])
            for k, flat in enumerate(x["points"]):
                pts = np.asarray(flat, np.int64).reshape(-1, 2)
                parts[(c + 1, k)] = (pts, dict(extras[k]))
                loose.append(Annotation(label, pts, dict(extras[k])))
                report["exact_polygons"] += 1
            continue
        exact_all = False
        if isinstance(seg, list):
            for flat in seg:
                pts = from_coco_polygon(flat) if isinstance(flat, list) and len(flat) >= 6 else None
                if pts is None:  # fewer than 3 distinct points once brought onto the pixel grid
                    report["dropped_polygons"] = report.get("dropped_polygons", 0) + 1
                    dropped += 1
                    continue
                loose.append(Annotation(label, pts, dict(base_extra)))
                converted += 1
                report["converted_polygons"] += 1
        elif isinstance(seg, dict) and "counts" in seg:
            try:
                mask = rle_to_mask(seg, h, w)
            except (ValueError, TypeError) as exc:
                raise BadInput(f"annotation {ann.get('id')}: bad RLE segmentation ({exc})") from None
            rings = mask_to_rings(mask, tolerance)
            report["rle_annotations"] += 1
            for pts in rings:
                loose.append(Annotation(label, pts, dict(base_extra)))
            rle_parts += len(rings)
            back = class_masks([Annotation(label, r) for r in rings], (h, w))[c].astype(bool)
            denom = int(mask.sum()) + int(back.sum())
            rle_dice.append(1.0 if denom == 0 else 2.0 * int((mask & back).sum()) / denom)
        else:
            raise BadInput(f"annotation {ann.get('id')}: segmentation is neither polygons nor RLE")
    report["polygons"] += len(loose)
    note: dict[str, Any] = {}
    if rle_parts or rle_dice:
        note["from_rle"] = {"annotations": len(rle_dice), "polygons": rle_parts, "tolerance_px": float(tolerance),
                            "min_dice": round(min(rle_dice), 4)}
    if converted:
        note["converted_polygons"] = converted
    if dropped:
        note["dropped_polygons"] = dropped
    if exact_all and label_x and isinstance(label_x.get("order"), list):
        order = label_x["order"]
        try:
            ordered = [parts[(int(cid), int(k))] for cid, k in order]
        except (KeyError, TypeError, ValueError):
            ordered = None
        if ordered is not None and len(ordered) == len(parts):
            labels = {(int(cid), int(k)): CLASSES[int(cid) - 1] for cid, k in order}
            out = [Annotation(labels[(int(cid), int(k))], pts, extra)
                   for (cid, k), (pts, extra) in zip(order, ordered)]
            doc = label_x.get("doc") if isinstance(label_x.get("doc"), dict) else None
            return (out, doc), note
    return (loose, None), note
