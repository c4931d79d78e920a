"""Import COCO instances files (CVAT "COCO 1.0", labelme2coco, xaug's own export) as a new version.

Three steps: read every file and check it (categories, annotations, images found), turn each image
into an item (layout path, person, side, split, polygons, label file), then stage the items in a
store Builder, which publishes the version atomically. Nothing is registered if any input is bad.
The conventions (pixel grid, RLE tracing, tolerance) are in `xaug.interop.coco`.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from xaug.classes import CLASS_INDEX, CLASSES
from xaug.errors import BadInput
from xaug.interop.coco import DEFAULT_TOLERANCE, from_coco_polygon, mask_to_rings, rle_to_mask
from xaug.seeds import seed_problem

PERSON_DIR_RE = re.compile(r"ID\d+")


@dataclass
class CocoImage:
    """One image entry of a COCO file, with its file found and its (known-class) annotations."""

    coco_file: str
    entry: dict[str, Any]
    path: Path
    annotations: list[dict[str, Any]]
    classes: dict[Any, str | None]  # category id -> xaug class (None: unknown)

    @property
    def where(self) -> str:
        return f"{self.coco_file}: image {self.entry['file_name']!r}"


@dataclass
class CocoInput:
    images: list[CocoImage] = field(default_factory=list)
    unknown: dict[str, int] = field(default_factory=dict)   # unknown category name -> annotations
    problems: list[str] = field(default_factory=list)
    split_info: dict[str, Any] | None = None                # carried by an xaug export
    persons: dict[str, Any] = field(default_factory=dict)   # person -> PersonMeta (xaug export)


def load_label_map(path: Path | None) -> dict[str, str]:
    """A YAML mapping `COCO category name: xaug class` (optionally under a `labels:` key)."""
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
        if not isinstance(value, str) or value not in CLASS_INDEX:  # a list value is unhashable
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


def read_inputs(root: Path, files: Sequence[Path], mapping: dict[str, str]) -> CocoInput:
    """Every file's categories, annotations and images, with one problem line per bad entry."""
    from xaug.layout import PersonMeta

    got = CocoInput()
    for jpath in files:
        doc = _read_json(jpath)
        info_x = doc["info"].get("xaug") if isinstance(doc.get("info"), dict) else None
        if isinstance(info_x, dict):
            if _valid_split(info_x.get("split_info")) and got.split_info is None:
                got.split_info = info_x["split_info"]
            for row in info_x.get("persons") or []:
                try:
                    got.persons[row["person"]] = PersonMeta(**row)
                except (TypeError, KeyError):
                    pass  # a row edited by hand: the sheet loses that person, nothing else does
        classes: dict[Any, str | None] = {}
        names: dict[Any, str] = {}
        for cat in doc["categories"]:
            if not isinstance(cat, dict) or not _is_id(cat.get("id")) or not isinstance(cat.get("name"), str):
                got.problems.append(f"{jpath.name}: category {cat!r} needs an id and a name")
                continue
            if cat["id"] in classes:
                got.problems.append(f"{jpath.name}: category id {cat['id']!r} is given twice")
                continue
            target = mapping.get(cat["name"], cat["name"])
            classes[cat["id"]] = target if target in CLASS_INDEX else None
            names[cat["id"]] = cat["name"]
        by_image: dict[Any, list[dict]] = {}
        for ann in doc["annotations"]:
            if not isinstance(ann, dict) or not _is_id(ann.get("image_id")) or not _is_id(ann.get("category_id")):
                ref = ann.get("id") if isinstance(ann, dict) else ann
                got.problems.append(f"{jpath.name}: annotation {ref!r}: needs image_id and category_id "
                                    "(numbers or strings)")
            elif ann["category_id"] not in classes:
                got.problems.append(f"{jpath.name}: annotation {ann.get('id')}: category_id {ann['category_id']} "
                                    "is not in 'categories'")
            elif classes[ann["category_id"]] is None:
                name = names[ann["category_id"]]
                got.unknown[name] = got.unknown.get(name, 0) + 1
            else:
                by_image.setdefault(ann["image_id"], []).append(ann)
        for img in doc["images"]:
            if not isinstance(img, dict) or not _is_id(img.get("id")) or not isinstance(img.get("file_name"), str):
                got.problems.append(f"{jpath.name}: image {img!r} needs an id and a file_name")
                continue
            try:
                path = _find_image(root, jpath, img["file_name"])
            except BadInput as exc:
                got.problems.append(" ".join(exc.lines()))
                continue
            if path is None:
                got.problems.append(f"{jpath.name}: image {img['file_name']!r} not found under {root}/images or {root}")
                continue
            got.images.append(CocoImage(jpath.name, img, path, by_image.get(img["id"], []), classes))
    return got


def _is_id(value: Any) -> bool:
    """A COCO id xaug can key on: a number or a string (a list or object id is unhashable)."""
    return isinstance(value, (int, float, str)) and not isinstance(value, bool)


def _valid_split(split: Any) -> bool:
    """A k-fold split as xaug records it: k, val_fold and {person: fold}."""
    if not isinstance(split, dict) or not isinstance(split.get("folds"), dict):
        return False
    k = split.get("k")
    folds_ok = all(isinstance(p, str) and isinstance(f, int) and not isinstance(f, bool) for p, f in split["folds"].items())
    val = split.get("val_fold")
    return folds_ok and isinstance(k, int) and k >= 1 and (val is None or isinstance(val, int))


_LAYOUT_RE = re.compile(r"^(train|test)/DCM/([^/]+)/[^/]+\.png$")


def _check_identity(e: dict[str, Any], where: str) -> None:
    """The fields an xaug export carried must still describe a layout item."""
    m = _LAYOUT_RE.match(e["rel"])
    bad = None
    if m is None:
        bad = f"xaug.path {e['rel']!r} is not <train|test>/DCM/<ID>/<name>.png"
    elif e["split"] != m.group(1) or e["person"] != m.group(2):
        bad = f"xaug.split / xaug.person ({e['split']!r}, {e['person']!r}) disagree with xaug.path {e['rel']!r}"
    elif e["side"] not in ("L", "R", None):
        bad = f"xaug.side must be 'L', 'R' or null, not {e['side']!r}"
    elif e["fold"] is not None and (not isinstance(e["fold"], int) or isinstance(e["fold"], bool)):
        bad = f"xaug.fold must be an integer or null, not {e['fold']!r}"
    elif not isinstance(e["meta"], dict) or not isinstance(e["provenance"], dict):
        bad = "xaug.meta and xaug.provenance must be objects"
    if bad:
        raise BadInput(f"{bad}; fix the COCO file or drop its 'xaug' object", where=where)


def _png_bytes(img: CocoImage) -> tuple[bytes, dict[str, Any]]:
    """The image as PNG bytes (other formats decoded and re-encoded losslessly), and a meta note."""
    from xaug.layout import PNG_SIGNATURE, encode_png

    data = img.path.read_bytes()
    if data[:8] == PNG_SIGNATURE:
        return data, {}
    import cv2

    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED) if data else None
    if arr is None or arr.dtype != np.uint8:
        raise BadInput("not a readable 8-bit image; replace or remove the file", where=str(img.path))
    return encode_png(arr), {"converted_to_png_from": img.path.suffix.lower().lstrip(".") or "?"}


def _identity(img: CocoImage) -> dict[str, Any]:
    """Layout path, person, side, split, fold, meta and provenance of one image."""
    from xaug.layout import side_from_stem

    x = img.entry.get("xaug")
    if isinstance(x, dict) and isinstance(x.get("path"), str):  # an xaug export: everything comes back
        e = {"rel": x["path"], "person": x.get("person"), "side": x.get("side"), "split": x.get("split"),
             "fold": x.get("fold"), "meta": x.get("meta") or {}, "provenance": x.get("provenance") or {},
             "label_x": x.get("label")}
        _check_identity(e, img.where)
        e["meta"], e["provenance"] = dict(e["meta"]), dict(e["provenance"])
        return e
    file_name = Path(img.entry["file_name"])
    stem, parent = file_name.stem, file_name.parent.name
    if PERSON_DIR_RE.fullmatch(parent or ""):
        person = parent
    elif isinstance(img.entry["id"], int):
        person = f"ID{img.entry['id']:03d}"
    else:
        person = f"ID{stem}"
    split = "train" if img.annotations else "test"  # an image nobody labelled: an unlabelled test image
    return {"rel": f"{split}/DCM/{person}/{stem}.png", "person": person, "side": side_from_stem(stem),
            "split": split, "fold": None, "meta": {},
            "provenance": {"op": "import-coco", "file": img.entry["file_name"], "coco_file": img.coco_file,
                           "image_id": img.entry["id"]},
            "label_x": None}


def to_entry(img: CocoImage, tolerance: float, report: dict[str, Any]) -> dict[str, Any]:
    """One COCO image -> the item to stage: PNG bytes, label bytes (or None) and its fields."""
    from xaug.layout import annotation_bytes, annotation_doc, decode_image
    from xaug.store import check_relpath

    data, meta_note = _png_bytes(img)
    h, w = decode_image(data, str(img.path)).shape[:2]
    if (img.entry.get("height"), img.entry.get("width")) not in ((h, w), (None, None)):
        raise BadInput(f"is {w}x{h} pixels, the COCO file says {img.entry.get('width')}x{img.entry.get('height')}",
                       where=img.where)
    e = _identity(img)
    check_relpath(e["rel"], img.where)
    (anns, doc_extra), coco_note = convert_annotations(img, h, w, tolerance, report, e.pop("label_x"))
    e["meta"].update(meta_note)
    if coco_note:
        e["meta"]["coco"] = coco_note
    e["image"], e["label"] = data, None
    if img.annotations or doc_extra is not None or e["split"] == "train":
        if doc_extra is None:
            doc_extra = annotation_doc([], None, filename=Path(e["rel"]).name, person=e["person"], height=h, width=w)
            doc_extra.pop("annotations")
        e["label"] = annotation_bytes(annotation_doc(anns, doc_extra))
    return e


def _exact_rings(x: dict[str, Any]) -> list[np.ndarray] | None:
    """The exact integer rings an xaug export carries (`xaug.points`), if well formed."""
    rings = []
    for flat in x.get("points") if isinstance(x.get("points"), list) else [None]:
        if not (isinstance(flat, list) and len(flat) >= 6 and len(flat) % 2 == 0
                and all(isinstance(v, int) and not isinstance(v, bool) for v in flat)):
            return None
        rings.append(np.asarray(flat, np.int64).reshape(-1, 2))
    return rings


def convert_annotations(img: CocoImage, h: int, w: int, tolerance: float, report: dict[str, Any],
                        label_x: dict | None):
    """An image's COCO annotations -> ((Annotations in label-file order, label doc keys or None), meta note).

    Exact rings (an xaug export) are used as they are, in the label file's own order when every
    one of them is there; other polygons are brought onto xaug's pixel grid; RLE masks are traced.
    """
    from xaug.model import Annotation
    from xaug.raster import class_masks

    exact: dict[tuple[int, int], Annotation] = {}
    out: list[Annotation] = []
    rle_dice: list[float] = []
    rle_rings = converted = dropped = 0
    for ann in sorted(img.annotations, key=lambda a: (CLASS_INDEX[img.classes[a["category_id"]]], str(a.get("id")))):
        label = img.classes[ann["category_id"]]
        c = CLASS_INDEX[label]
        seg = ann.get("segmentation")
        where = f"{img.where}: annotation {ann.get('id')}"
        base = {"id": str(ann.get("id")), "type": "poly_seg", "attributes": ann.get("attributes") or {}}
        x = ann.get("xaug") if isinstance(ann.get("xaug"), dict) else None
        rings = _exact_rings(x) if x is not None and isinstance(seg, list) else None
        if rings is not None:
            parts = x.get("parts") if isinstance(x.get("parts"), list) and len(x["parts"]) == len(rings) else None
            for k, pts in enumerate(rings):
                extra = dict(parts[k]) if parts and isinstance(parts[k], dict) else dict(base)
                exact[(c + 1, k)] = Annotation(label, pts, extra)
                out.append(exact[(c + 1, k)])
            report["exact_polygons"] += len(rings)
        elif isinstance(seg, list):
            for flat in seg:
                _check_coco_polygon(flat, h, w, where)
                try:
                    pts = from_coco_polygon(flat) if isinstance(flat, list) and len(flat) >= 6 else None
                except (TypeError, ValueError):
                    raise BadInput("a segmentation polygon must be a flat list of numbers", where=where) from None
                if pts is None:  # fewer than 3 distinct points once brought onto the pixel grid
                    dropped += 1
                    continue
                out.append(Annotation(label, pts, dict(base)))
                converted += 1
        elif isinstance(seg, dict) and "counts" in seg:
            try:
                mask = rle_to_mask(seg, h, w)
            except (ValueError, TypeError) as exc:
                raise BadInput(f"bad RLE segmentation ({exc})", where=where) from None
            traced = mask_to_rings(mask, tolerance)
            out += [Annotation(label, pts, dict(base)) for pts in traced]
            rle_rings += len(traced)
            back = class_masks([Annotation(label, r) for r in traced], (h, w))[c].astype(bool)
            total = int(mask.sum()) + int(back.sum())
            rle_dice.append(1.0 if total == 0 else 2.0 * int((mask & back).sum()) / total)
        else:
            raise BadInput("segmentation is neither polygons nor RLE", where=where)
    report["polygons"] += len(out)
    report["converted_polygons"] += converted
    report["rle_annotations"] += len(rle_dice)
    if dropped:
        report["dropped_polygons"] = report.get("dropped_polygons", 0) + dropped
    note: dict[str, Any] = {}
    if rle_dice:
        note["from_rle"] = {"annotations": len(rle_dice), "polygons": rle_rings, "tolerance_px": float(tolerance),
                            "min_dice": round(min(rle_dice), 4)}
    if converted:
        note["converted_polygons"] = converted
    if dropped:
        note["dropped_polygons"] = dropped
    ordered = _label_order(exact, label_x) if len(exact) == len(out) else None
    if ordered is not None:
        doc = label_x.get("doc")
        return (ordered, doc if isinstance(doc, dict) else None), note
    return (out, None), note


def _check_coco_polygon(flat: Any, h: int, w: int, where: str) -> None:
    """Refuse what the layout import refuses (xaug.layout): a coordinate that is no finite number (it
    would be dropped as a degenerate polygon, silently) or lies more than OUTSIDE_MARGIN of the image
    beyond an edge (it would be imported as it is)."""
    from xaug.layout import OUTSIDE_MARGIN

    if not isinstance(flat, list) or not all(type(v) in (int, float) for v in flat) or len(flat) % 2:
        raise BadInput("a segmentation polygon must be a flat list of numbers", where=where)
    for j, (x, y) in enumerate(zip(flat[0::2], flat[1::2])):
        if not all(type(v) is int or math.isfinite(v) for v in (x, y)):  # (an int of 400 digits is finite)
            raise BadInput(f"segmentation point {j} is not a finite number ({x}, {y}); fix the COCO file",
                           where=where)
        if not (-OUTSIDE_MARGIN * w <= x <= (1 + OUTSIDE_MARGIN) * w
                and -OUTSIDE_MARGIN * h <= y <= (1 + OUTSIDE_MARGIN) * h):
            raise BadInput(f"segmentation point {j} ({x}, {y}) lies far outside the {w}x{h} image (more than "
                           f"{OUTSIDE_MARGIN:.0%} of its size beyond an edge); fix the COCO file", where=where)


def _label_order(exact: dict[tuple[int, int], Any], label_x: dict | None) -> list | None:
    """The exact rings in the label file's order (`xaug.label.order`), when it names each one once."""
    order = label_x.get("order") if isinstance(label_x, dict) else None
    if not isinstance(order, list):
        return None
    try:
        keys = [(int(cid), int(k)) for cid, k in order]
    except (TypeError, ValueError):
        return None
    if sorted(keys) != sorted(exact):
        return None
    return [exact[key] for key in keys]


def import_coco(store, root: Path | str, coco_json: Sequence[Path | str] | None = None, *, name: str = "coco",
                label_map: Path | str | None = None, lenient: bool = False,
                tolerance: float = DEFAULT_TOLERANCE, folds: int = 5, split_seed: int = 0,
                progress: bool = False):
    """Register COCO instances file(s) and their images as a new version; nothing if any input is bad.

    Returns (dataset, created, report): `report` counts images, polygons (exact, converted), RLE
    annotations traced, and the annotations of unknown categories skipped with `lenient`.
    Images come from `root/images/<file_name>` or `root/<file_name>`.
    """
    from xaug.interop.export import Progress
    from xaug.store import canonical_json, check_name, sha256_bytes

    check_name(name)
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise BadInput("is a file, not a folder; give the folder that holds the COCO images (a COCO .json "
                       "file goes to --coco-json)", where=str(root))
    if not root.is_dir():
        raise BadInput("no such folder; give the folder that holds the COCO images", where=str(root))
    if not np.isfinite(tolerance) or not 0 <= float(tolerance) <= 10:
        raise BadInput(f"--rle-tolerance is a distance in pixels from 0 to 10, got {tolerance}")
    if seed_problem(split_seed):
        raise BadInput(f"--split-seed {seed_problem(split_seed)}", where="import")
    files = [Path(p) for p in coco_json] if coco_json else sorted((root / "annotations").glob("*.json"))
    if not files:
        raise BadInput("no COCO file: give --coco-json FILE (or put it under annotations/)", where=str(root))
    mapping = load_label_map(Path(label_map) if label_map else None)

    got = read_inputs(root, files, mapping)
    problems = list(got.problems)
    if got.unknown and not lenient:
        names = ", ".join(f"{k!r} ({v} annotation{'s' if v > 1 else ''})" for k, v in sorted(got.unknown.items()))
        problems.insert(0, f"unknown categories {names}: map them onto the 29 classes with --label-map FILE.yaml, "
                           "or skip them with --lenient")
    if len(problems) == 1:
        raise BadInput(problems[0])
    if problems:
        raise BadInput(f"{len(problems)} problems in the COCO input; nothing was registered", problems=problems)

    report: dict[str, Any] = {"images": 0, "polygons": 0, "exact_polygons": 0, "converted_polygons": 0,
                              "rle_annotations": 0, "skipped_annotations": sum(got.unknown.values()),
                              "skipped_categories": dict(sorted(got.unknown.items()))}
    entries: list[dict[str, Any]] = []
    seen: dict[str, str] = {}
    for img in got.images:
        e = to_entry(img, tolerance, report)
        if e["rel"] in seen:
            raise BadInput(f"two images become {e['rel']}: {seen[e['rel']]!r} and {img.entry['file_name']!r}; "
                           "rename one", where=img.coco_file)
        seen[e["rel"]] = img.entry["file_name"]
        entries.append(e)
    report["images"] = len(entries)

    spec = {"op": "import-coco", "files": [f.name for f in files], "label_map": mapping, "lenient": lenient,
            "folds": int(folds), "split_seed": int(split_seed), "rle_tolerance_px": float(tolerance),
            "skipped_categories": report["skipped_categories"]}
    # the same input and options find the same plan (and so the same version): no work twice
    content = sorted((e["rel"], sha256_bytes(e["image"]), sha256_bytes(e["label"] or b""),
                      sha256_bytes(canonical_json([e["meta"], e["provenance"], e["fold"], e["person"], e["side"],
                                                   e["split"]]))) for e in entries)
    plan_key = "coco-" + sha256_bytes(canonical_json([spec, content, got.split_info]))[:40]
    with store.build(name, "import-coco", plan_key, source=None, spec=spec, seed=None) as b:
        b.folds, b.split_seed = int(folds), int(split_seed)  # the split made when the input carries none
        if got.persons:
            b.set_persons(got.persons)
        if got.split_info is not None and all(e["fold"] is not None or e["split"] != "train" for e in entries):
            b.split = got.split_info  # an xaug export: the folds it had
        with Progress(len(entries), "import coco", progress) as bar:
            for e in entries:
                if not b.has_item(e["rel"]):
                    b.add_item(e["rel"], e["image"], e["label"], person=e["person"], split=e["split"],
                               side=e["side"], provenance=e["provenance"], meta=e["meta"], fold=e["fold"])
                bar.advance()
        ds = b.commit()
    return ds, b.created, report
