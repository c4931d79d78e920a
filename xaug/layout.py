"""The competition folder layout: images, annotation JSON and meta_data.xlsx, read and written.

    <root>/meta_data.xlsx
    <root>/train/DCM/ID001/image1661130828152_R.png
    <root>/train/outputs_json/ID001/image1661130828152_R.json
    <root>/test/DCM/ID040/image1661144206667.png
"""
from __future__ import annotations

import json
import math
import os
import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import cv2
import numpy as np

from xaug.classes import CLASS_INDEX
from xaug.errors import BadInput
from xaug.model import Annotation, Sample
from xaug.paths import IMAGE_DIR, LABEL_DIR, SPLITS, image_relpath, label_relpath_for, side_from_stem  # noqa: F401

META_SHEET = "meta_data.xlsx"
META_HEADERS = ("ID", "나이", "성별", "체중(몸무게)", "키(신장)", None)
# PNG zlib level used for every image xaug encodes: fast, lossless, deterministic.
PNG_COMPRESSION = 1


# ---------------------------------------------------------------- images

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Largest image xaug decodes (16384 x 16384): far above the 2048 x 2048 of the data, far below
# what a forged header could make OpenCV allocate.
MAX_PIXELS = 1 << 28


def read_image(path: Path | str) -> np.ndarray:
    """Decode an 8-bit PNG (1 or 3 channels) as stored; raise BadInput naming the file if corrupt."""
    try:
        buf = np.fromfile(str(path), dtype=np.uint8)
    except OSError as exc:
        raise BadInput(f"cannot read image ({exc.strerror})", where=str(path)) from None
    return decode_image(buf, str(path))


def decode_image(data: bytes | np.ndarray, where: str, flags: int | None = None) -> np.ndarray:
    """Decode PNG bytes (only PNG: a JPEG named .png is refused); `flags` as for cv2.imdecode."""
    buf = np.frombuffer(data, dtype=np.uint8) if isinstance(data, (bytes, bytearray, memoryview)) else data
    if buf.size < 8 or buf[:8].tobytes() != PNG_SIGNATURE:
        raise BadInput("not a readable PNG image; replace or remove the file", where=where)
    damage = png_damage(buf)
    if damage is not None:
        raise BadInput(f"not a readable PNG image ({damage}); replace or remove the file", where=where)
    if buf.size >= 24:  # the IHDR size, before OpenCV allocates for it
        w, h = int.from_bytes(buf[16:20].tobytes(), "big"), int.from_bytes(buf[20:24].tobytes(), "big")
        if w * h > MAX_PIXELS:
            raise BadInput(f"image claims {w}x{h} pixels, more than xaug reads ({MAX_PIXELS:,}); "
                           "replace or remove the file", where=where)
    try:
        img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED if flags is None else flags)
    except cv2.error:  # OpenCV refuses some corrupt files by raising instead of returning None
        img = None
    if img is None:
        raise BadInput("not a readable PNG image; replace or remove the file", where=where)
    if img.dtype != np.uint8:  # never rescaled silently: which 8 of 16 bits matter is the user's call
        raise BadInput(f"image is {img.dtype}, xaug reads 8-bit PNG only; convert it to 8 bits per channel "
                       "(e.g. scale its grey range to 0-255) and import again", where=where)
    return img


def png_damage(buf: np.ndarray | bytes) -> str | None:
    """Why a PNG's chunk structure is damaged (cut short, a critical chunk's checksum wrong, an empty
    image), or None. Checked before OpenCV, whose libpng prints its own lines on stderr for these
    (`libpng error: IDAT: CRC error`), next to xaug's one-line error; the CRCs of a 2048x2048 image
    take about 2 ms. Bytes after IEND are ignored, as libpng ignores them.

    >>> png_damage(encode_png(np.zeros((2, 2), np.uint8))[:-20])
    'the file is cut short: an interrupted copy or download?'
    """
    view = memoryview(buf).cast("B")
    size, pos = len(view), len(PNG_SIGNATURE)
    first = True
    while True:
        if pos + 12 > size:
            return "the file is cut short: an interrupted copy or download?"
        length = int.from_bytes(view[pos:pos + 4], "big")
        kind = bytes(view[pos + 4:pos + 8])
        end = pos + 12 + length
        if not kind.isalpha() or (first and kind != b"IHDR"):
            return f"damaged chunk at byte {pos}"
        if end > size:
            return "the file is cut short: an interrupted copy or download?"
        if not kind[0] & 0x20 and zlib.crc32(view[pos + 4:end - 4]) != int.from_bytes(view[end - 4:end], "big"):
            return f"its {kind.decode('ascii')} chunk is damaged: checksum mismatch"  # critical chunks only
        if first and (length != 13 or not int.from_bytes(view[pos + 8:pos + 12], "big")
                      or not int.from_bytes(view[pos + 12:pos + 16], "big")):
            return "its header is damaged or gives a width or height of 0"
        if kind == b"IEND":
            return None
        first = False
        pos = end


def encode_png(img: np.ndarray) -> bytes:
    """Lossless, deterministic PNG: zlib level 1 with the Up filter (about 2x faster to encode
    than OpenCV's default adaptive filtering on X-ray images, files ~2% larger)."""
    ok, buf = cv2.imencode(".png", img, [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION,
                                         cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_UP])
    if not ok:  # pragma: no cover - OpenCV only fails on impossible shapes
        raise BadInput("cannot encode image as PNG")
    return buf.tobytes()


def image_size(path: Path | str) -> tuple[int, int, int]:
    """(height, width, channels) from the PNG header, without decoding the pixels."""
    with open(path, "rb") as fh:
        head = fh.read(26)
    if len(head) < 26 or head[:8] != PNG_SIGNATURE:
        raise BadInput("not a PNG file", where=str(path))
    w = int.from_bytes(head[16:20], "big")
    h = int.from_bytes(head[20:24], "big")
    color_type = head[25]
    channels = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}.get(color_type, 3)
    return h, w, channels


# ---------------------------------------------------------------- annotations

# Polygon coordinates may lie a little outside their image (annotators click past the border, the
# forearm leaves it), but not further than this fraction of the image's width/height beyond an
# edge; without a known image size, no coordinate may exceed COORD_LIMIT in magnitude.
OUTSIDE_MARGIN = 0.25
COORD_LIMIT = 1_000_000


def parse_annotation_doc(data: bytes, where: str, lenient: bool = False, size: tuple[int, int] | None = None
                         ) -> tuple[list[Annotation], dict[str, Any], list[str], list[dict]]:
    """Parse one label JSON.

    Returns (annotations, doc_extra, problems, skipped). `problems` are one-line messages naming
    `where` and the annotation index; with `lenient`, bad annotations are skipped instead and
    described in `skipped`. Coordinates must be finite; with the image's `size` (height, width)
    they may lie at most OUTSIDE_MARGIN of the image beyond its edges.
    """
    try:
        doc = json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError) as exc:  # ValueError: JSON syntax, 4300+ digit numbers
        return [], {}, [f"{where}: not valid JSON ({str(exc)[:200]}); fix or remove the file"], []
    except RecursionError:
        return [], {}, [f"{where}: not valid JSON (nested too deeply); fix or remove the file"], []
    if not isinstance(doc, dict) or not isinstance(doc.get("annotations"), list):
        if isinstance(doc, dict) and isinstance(doc.get("shapes"), list) and "annotations" not in doc:
            return [], {}, [f"{where}: a LabelMe file ('shapes'); xaug reads the competition's label format "
                            "('annotations': [{'label': ..., 'points': [[x, y], ...]}]): convert it first"], []
        return [], {}, [f"{where}: missing the 'annotations' list"], []
    anns: list[Annotation] = []
    problems: list[str] = []
    skipped: list[dict] = []
    for i, raw in enumerate(doc["annotations"]):
        plain = _plain_points(raw, size)
        msg = None if plain is not None else _annotation_problem(raw, size)
        if msg is None:
            extra = {k: v for k, v in raw.items() if k not in ("label", "points")}
            if plain is None:
                plain = np.asarray(raw["points"], dtype=np.float64)
            pts = np.rint(plain).astype(np.int64)
            anns.append(Annotation(raw["label"], pts, extra))
        elif lenient:
            skipped.append({"file": where, "annotation": i, "reason": msg})
        else:
            problems.append(f"{where}: annotation {i}: {msg}")  # the form ANNOTATION_PROBLEM matches
    doc_extra = {k: v for k, v in doc.items() if k != "annotations"}
    return anns, doc_extra, problems, skipped


# A problem line of one annotation (which --lenient would skip), as parse_annotation_doc writes it.
ANNOTATION_PROBLEM = re.compile(r"^\S.*?: annotation \d+: ")

_JSON_NUMBER = (int, float)


def _plain_points(raw: Any, size: tuple[int, int] | None) -> np.ndarray | None:
    """The annotation's points as an (N, 2) float64 array when it is plainly good: a known label and
    at least 3 [x, y] pairs of JSON numbers, finite and within bounds, checked in bulk (an image's
    few thousand points in well under a millisecond). Anything else is None, and the caller asks
    `_annotation_problem`, which accepts a superset of this and says what is wrong."""
    if type(raw) is not dict or type(raw.get("label")) is not str or raw["label"] not in CLASS_INDEX:
        return None
    pts = raw.get("points")
    if type(pts) is not list or len(pts) < 3 or not all(
            type(p) is list and len(p) == 2 and type(p[0]) in _JSON_NUMBER and type(p[1]) in _JSON_NUMBER
            for p in pts):
        return None
    try:
        arr = np.asarray(pts, dtype=np.float64)
    except OverflowError:  # an integer beyond float range: the full check names it
        return None
    if size is not None:
        h, w = size
        lo = np.array([-OUTSIDE_MARGIN * w, -OUTSIDE_MARGIN * h])
        hi = np.array([(1 + OUTSIDE_MARGIN) * w, (1 + OUTSIDE_MARGIN) * h])
        if not ((arr >= lo) & (arr <= hi)).all():   # (NaN fails both)
            return None
    if not (np.abs(arr) <= COORD_LIMIT).all():
        return None
    return arr


def _label_key(label: str) -> str:
    """A label's spelling without case, surrounding spaces or the choice of '-', '_' or ' '."""
    return re.sub(r"[\s_-]+", "-", label.strip()).casefold()


# 'ulna', 'Ulna ', 'Finger_1', 'finger 1' -> the class they misspell (never accepted silently: the
# stored label file keeps what it says, and a derived one would carry the misspelling on)
_LABEL_SPELLINGS = {_label_key(c): c for c in CLASS_INDEX}


def _annotation_problem(raw: Any, size: tuple[int, int] | None = None) -> str | None:
    if not isinstance(raw, dict):
        return "not an object"
    label = raw.get("label")
    if not isinstance(label, str) or label not in CLASS_INDEX:  # a list or object label is unhashable
        hint = _LABEL_SPELLINGS.get(_label_key(label)) if isinstance(label, str) else None
        return f"unknown label {label!r}; " + (
            f"did you mean {hint!r}? (labels are matched exactly: fix the file)" if hint else
            "expected one of the 29 classes (finger-1..finger-19, Trapezium, ..., Ulna)")
    pts = raw.get("points")
    if not isinstance(pts, list) or not all(
            isinstance(p, (list, tuple)) and len(p) == 2
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in p) for p in pts):
        return f"label {label}: 'points' must be a list of [x, y] pairs"
    if len(pts) < 3:
        return f"label {label}: polygon has {len(pts)} points, need at least 3"
    for j, (x, y) in enumerate(pts):
        if isinstance(x, int) and abs(x) > COORD_LIMIT or isinstance(y, int) and abs(y) > COORD_LIMIT:
            return f"label {label}: point {j} lies far outside any image"
        if not (math.isfinite(x) and math.isfinite(y)):
            return f"label {label}: point {j} is not a finite number ({x}, {y})"
    if size is not None:
        h, w = size
        lo_x, hi_x = -OUTSIDE_MARGIN * w, (1 + OUTSIDE_MARGIN) * w
        lo_y, hi_y = -OUTSIDE_MARGIN * h, (1 + OUTSIDE_MARGIN) * h
    else:
        lo_x = lo_y = -COORD_LIMIT
        hi_x = hi_y = COORD_LIMIT
    for j, (x, y) in enumerate(pts):
        if not (lo_x <= x <= hi_x and lo_y <= y <= hi_y):
            where = f"the {w}x{h} image" if size is not None else "any image"
            return (f"label {label}: point {j} ({x}, {y}) lies far outside {where} (more than "
                    f"{OUTSIDE_MARGIN:.0%} of its size beyond an edge)" if size is not None else
                    f"label {label}: point {j} ({x}, {y}) lies far outside {where}")
    return None


def annotation_doc(annotations: Iterable[Annotation], doc_extra: dict[str, Any] | None = None, *,
                   filename: str | None = None, person: str | None = None,
                   height: int | None = None, width: int | None = None) -> dict[str, Any]:
    """The label JSON document for one image, keeping unknown top-level keys."""
    doc: dict[str, Any] = {"annotations": [a.to_json() for a in annotations]}
    extra = dict(doc_extra or {})
    extra.setdefault("attributes", {})
    extra.setdefault("file_id", Path(filename).stem if filename else "")
    if filename is not None:
        extra["filename"] = filename
    if person is not None:
        extra["parent_path"] = f"/{person}"
    if height is not None and width is not None:
        meta = dict(extra.get("metadata") or {})
        meta.update({"height": int(height), "width": int(width)})
        extra["metadata"] = meta
    doc.update(extra)
    return doc


# Top-level label keys that name the image they describe (annotation_doc writes them): a derived
# image gets its own.
_OWN_LABEL_KEYS = ("file_id", "filename", "parent_path")


def carried_label_keys(extra: dict) -> dict:
    """What a one-source item (a rotation, a flip) keeps of its source label's top-level keys: every
    key but those naming the source image, and of `metadata` all but its height and width (the
    derived image's are written). Unknown keys stay intact, as the competition layout asks; a
    mosaic, made of several labels, keeps none."""
    carried = {k: v for k, v in extra.items() if k not in _OWN_LABEL_KEYS and k != "metadata"}
    meta = extra.get("metadata")
    if isinstance(meta, dict) and set(meta) - {"height", "width"}:
        carried["metadata"] = {k: v for k, v in meta.items() if k not in ("height", "width")}
    return carried


def annotation_bytes(doc: dict[str, Any]) -> bytes:
    # no indent: json's C encoder (8x faster than the pure-Python one that indent forces)
    return json.dumps(doc, ensure_ascii=False).encode("utf-8")


def sample_label_bytes(sample: Sample, height: int, width: int) -> bytes:
    assert sample.annotations is not None
    return annotation_bytes(annotation_doc(sample.annotations, sample.doc_extra, filename=sample.name,
                                           person=sample.person, height=height, width=width))


def load_annotations(sample: Sample, label_path: Path) -> Sample:
    """Fill sample.annotations from a label JSON on disk (strict)."""
    anns, extra, problems, _ = parse_annotation_doc(label_path.read_bytes(), str(label_path))
    if problems:
        raise BadInput(problems[0], problems=problems[1:])
    sample.annotations, sample.doc_extra = anns, extra
    return sample


# ---------------------------------------------------------------- scanning a folder

@dataclass
class ScanResult:
    samples: list[Sample]
    label_files: dict[str, Path]   # image relpath -> absolute label path
    problems: list[str]
    skipped: list[dict]


def scan_layout(root: Path, lenient: bool = False, parse: bool = True) -> ScanResult:
    """Find every image of a competition-layout folder and pair it with its label JSON.

    Images are `<split>/DCM/<ID>/<name>.png` and labels `<split>/outputs_json/<ID>/<name>.json`;
    the extensions may be in any case (`.PNG`, `.JSON`). A PNG or JSON anywhere else under `DCM`
    or `outputs_json` (directly in it, or in a sub-folder of a person folder) is a problem, not
    silently left out; folders whose name starts with a dot (`.ipynb_checkpoints`) are skipped.
    """
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise BadInput("is a file, not a folder; give the folder that holds train/DCM and train/outputs_json "
                       "(unpack an archive first)", where=str(root))
    if not root.is_dir():
        raise BadInput("no such folder; give the root of a competition-layout dataset", where=str(root))
    samples: list[Sample] = []
    labels: dict[str, Path] = {}
    problems: list[str] = []
    skipped: list[dict] = []
    seen_labels: set[str] = set()
    if not _utf8(str(root)):
        raise BadInput("folder name is not valid UTF-8; rename it", where=safe_name(root))
    bad_names: set[str] = set()

    def named_well(path: Path) -> str | None:
        """The path relative to root, or None (and a problem) for a name no manifest may hold."""
        rel = path.relative_to(root).as_posix()
        if not _utf8(rel):  # refused before anything (hashing, JSON, SQLite) trips over it
            bad_names.add(f"{safe_name(path.relative_to(root))}: file name is not valid UTF-8; rename it")
            return None
        if not rel.isprintable():  # a newline or terminal escape in a name: not in a manifest
            bad_names.add(f"{safe_name(rel)}: file name has control characters; rename it")
            return None
        return rel

    label_found: dict[str, str] = {}  # label relpath with a lower-case ".json" -> relpath on disk
    for split in SPLITS:
        lab_root = root / split / LABEL_DIR
        if lab_root.is_dir():
            problems += _misplaced(root, lab_root, ".json", "label")
            for lab in sorted(lab_root.glob("*/*")):
                rel = named_well(lab)
                if rel is None or lab.suffix.lower() != ".json":
                    continue
                key = rel[:-len(lab.suffix)] + ".json"
                if key in label_found:  # x.json and x.JSON side by side
                    problems.append(f"{rel}: a second label file for the same image as {label_found[key]}; "
                                    "remove one of them")
                    continue
                label_found[key] = rel
    image_keys: dict[str, str] = {}  # image relpath with a lower-case ".png" -> relpath on disk
    for split in SPLITS:
        img_root = root / split / IMAGE_DIR
        if not img_root.is_dir():
            continue
        problems += _misplaced(root, img_root, ".png", "image")
        for img in sorted(img_root.glob("*/*")):
            rel = named_well(img)
            if rel is None or img.suffix.lower() != ".png":
                continue
            if not img.is_file():
                problems.append(f"{rel}: not a file; remove it or replace it with a PNG image")
                continue
            key = rel[:-len(img.suffix)] + ".png"
            if key in image_keys:  # x.png and x.PNG: one label name for both
                problems.append(f"{rel}: a second image with the name of {image_keys[key]} (only the case of the "
                                "extension differs); remove one of them")
                continue
            image_keys[key] = rel
            person = img.parent.name
            sample = Sample(relpath=rel, image_path=img.resolve(), person=person, split=split,
                            side=side_from_stem(img.stem))
            lab_rel = label_relpath_for(rel)
            on_disk = label_found.get(lab_rel)
            lab = root / on_disk if on_disk is not None else None
            if lab is not None and lab.is_file():
                seen_labels.add(on_disk)
                labels[rel] = lab.resolve()
                if parse:
                    anns, extra, probs, skip = parse_annotation_doc(lab.read_bytes(), on_disk, lenient)
                    sample.annotations, sample.doc_extra = anns, extra
                    problems += probs
                    skipped += skip
            elif split == "train":
                problems.append(f"{rel}: no label file {lab_rel}; add it or remove the image")
            samples.append(sample)
    for rel in sorted(set(label_found.values()) - seen_labels):
        problems.append(f"{rel}: label file without an image; add the PNG or remove the JSON")
    problems += sorted(bad_names)
    if not samples and not bad_names:
        inner = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")
                       and any((d / split / IMAGE_DIR).is_dir() for split in SPLITS))
        hint = f"; did you mean {safe_name(root / inner[0])}?" if inner else ""
        problems.append(f"{root}: no images under train/{IMAGE_DIR}/<ID>/ or test/{IMAGE_DIR}/<ID>/{hint}")
    return ScanResult(samples, labels, problems, skipped)


def _misplaced(root: Path, top: Path, suffix: str, what: str) -> list[str]:
    """One problem per folder under `top` (DCM or outputs_json) that holds files ending in `suffix`
    (any case) where the layout does not read them: directly in `top`, or below a person folder.
    Dot folders are skipped (tool state such as .ipynb_checkpoints), symbolic links not followed."""
    out = []
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        depth = len(Path(dirpath).relative_to(top).parts)
        if depth == 1:
            continue  # a person folder: read by scan_layout
        hits = sorted(f for f in filenames if f.lower().endswith(suffix))
        if not hits:
            continue
        rel = safe_name(Path(dirpath).relative_to(root).as_posix())
        split_dir = safe_name(top.relative_to(root).as_posix())
        if depth == 0:
            more = f" (and {len(hits) - 1} more)" if len(hits) > 1 else ""
            out.append(f"{rel}/{safe_name(hits[0])}{more}: {what} file not in a person folder; xaug reads "
                       f"{split_dir}/<ID>/<name>{suffix}: move {'them' if more else 'it'} into the person's folder")
        else:
            out.append(f"{rel}: a sub-folder of a person folder holds {len(hits)} {what} file(s) that xaug "
                       f"would not read; it reads {split_dir}/<ID>/<name>{suffix}: move them up or remove "
                       "the folder")
    return out


def _utf8(text: str) -> bool:
    """False for a name that was not valid UTF-8 on disk (Python keeps those bytes as surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def safe_name(path: Path | str) -> str:
    """A file name printable in one line whatever its bytes: invalid UTF-8 as \\xNN, controls escaped."""
    text = os.fsencode(str(path)).decode("utf-8", "backslashreplace")
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)


# ---------------------------------------------------------------- meta_data.xlsx

@dataclass
class PersonMeta:
    """One row of meta_data.xlsx, cleaned: person 'ID001', sex 'M'/'F'/None."""

    person: str
    age: float | None = None
    sex: str | None = None
    weight: float | None = None
    height: float | None = None
    note: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"person": self.person, "age": self.age, "sex": self.sex, "weight": self.weight,
                "height": self.height, "note": self.note}


_ESCAPE = re.compile(r"_x[0-9A-Fa-f]{4}_")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def clean_text(value: Any) -> str | None:
    """Undo the sheet's quirks: escaped control characters ('_x0008_여'), control chars, spaces."""
    if value is None:
        return None
    text = _CONTROL.sub("", _ESCAPE.sub("", str(value))).strip()
    return text or None


def parse_sex(value: Any) -> str | None:
    text = clean_text(value)
    if text is None:
        return None
    return {"남": "M", "여": "F", "M": "M", "F": "F", "male": "M", "female": "F"}.get(text, None)


def person_id(value: Any) -> str | None:
    """'001', 1, 1.0 or 'ID001' -> 'ID001'."""
    text = clean_text(value)
    if text is None:
        return None
    if text.upper().startswith("ID"):
        text = text[2:]
    try:
        return f"ID{int(float(text)):03d}"
    except (ValueError, OverflowError):  # 'abc', 'inf', 'nan'
        return None


def _num(value: Any) -> float | None:
    text = clean_text(value)
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def read_meta(path: Path | Any, where: str | None = None) -> dict[str, PersonMeta]:
    """Read meta_data.xlsx (a path or a binary file object) into {'ID001': PersonMeta}; columns
    found by their Korean headers."""
    import openpyxl

    where = where or str(path)
    try:
        wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
        ws = wb.worksheets[0]
        rows = ws.iter_rows(values_only=True)
        header = [clean_text(h) for h in next(rows, ())]
    except Exception as exc:  # openpyxl raises many types for broken files
        raise BadInput(f"cannot read the metadata sheet ({exc.__class__.__name__}); fix or remove it",
                       where=where) from None
    col = {name: header.index(name) for name in META_HEADERS[:5] if name in header}
    if "ID" not in col:
        wb.close()
        raise BadInput("no 'ID' column in the first row; the first row must name the columns (ID, 나이, 성별, "
                       "체중(몸무게), 키(신장)): fix the sheet, or remove it (it is optional)", where=where)
    note_col = 5 if len(header) > 5 and header[5] is None else None
    out: dict[str, PersonMeta] = {}
    try:
        for row in rows:
            row = list(row) + [None] * (len(header) - len(row))
            pid = person_id(row[col["ID"]])
            if pid is None:
                continue
            get = lambda key: row[col[key]] if key in col else None  # noqa: E731
            out[pid] = PersonMeta(pid, _num(get("나이")), parse_sex(get("성별")), _num(get("체중(몸무게)")),
                                  _num(get("키(신장)")),
                                  clean_text(row[note_col]) if note_col is not None else None)
    except Exception as exc:  # a sheet broken past its first row
        raise BadInput(f"cannot read the metadata sheet ({exc.__class__.__name__}); fix or remove it",
                       where=where) from None
    finally:
        wb.close()
    return out


def persons_by_folder(meta: dict[str, PersonMeta], folders: Iterable[str]) -> dict[str, PersonMeta]:
    """The sheet's rows keyed by the dataset's person folder names. `read_meta` keys rows as
    'ID001' whatever the sheet holds ('001', 1, 1.0); a folder named '001' or '1' gets the row of
    the same number (its `person` set to the folder name). Rows of no folder keep their key.

    >>> persons_by_folder({"ID001": PersonMeta("ID001", age=30.0)}, ["001"])["001"].age
    30.0
    """
    from dataclasses import replace

    out = dict(meta)
    names = set(folders)
    for folder in sorted(names):
        if folder in meta:
            continue
        pid = person_id(folder)
        if pid is not None and pid in meta:
            out[folder] = replace(meta[pid], person=folder)
            if pid not in names:
                out.pop(pid, None)
    return out


def write_meta(path: Path, persons: Iterable[PersonMeta], quirks: bool = True) -> None:
    """Write meta_data.xlsx in the real sheet's format (zero-padded IDs, Korean headers, quirks)."""
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Sheet1"
    ws.append(list(META_HEADERS) + [None] * 4)
    for i, p in enumerate(sorted(persons, key=lambda p: p.person)):
        sex = {"M": "남", "F": "여"}.get(p.sex or "", None)
        if sex is not None and quirks:
            # as read from the real sheet: mostly an escaped backspace, some leading spaces
            sex = {3: f" {sex}", 4: sex}.get(i % 5, f"_x0008_{sex}")
        ws.append([p.person[2:] if p.person.startswith("ID") else p.person, p.age, sex, p.weight,
                   p.height, p.note])
    for r in range(1, ws.max_row + 1):  # the real sheet carries empty, formatted trailing columns
        for c in range(7, 11):
            ws.cell(row=r, column=c).number_format = "General"
    wb.properties.creator = "xaug"
    wb.properties.created = wb.properties.modified = _FIXED_TIME
    tmp = Path(str(path) + ".tmp")
    tmp.write_bytes(_deterministic_zip(wb))
    tmp.replace(path)


_FIXED_TIME = __import__("datetime").datetime(2000, 1, 1)


def _deterministic_zip(wb) -> bytes:
    """The workbook's bytes with fixed zip timestamps, so equal sheets hash equal."""
    import io
    import zipfile

    raw = io.BytesIO()
    wb.save(raw)
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(raw.getvalue())) as src, \
            zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            fixed = zipfile.ZipInfo(info.filename, date_time=(2000, 1, 1, 0, 0, 0))
            fixed.compress_type = zipfile.ZIP_DEFLATED
            fixed.external_attr = info.external_attr
            data = src.read(info.filename)
            if info.filename == "docProps/core.xml":  # openpyxl stamps the save time here
                data = re.sub(rb"(<dcterms:modified[^>]*>)[^<]*", rb"\g<1>2000-01-01T00:00:00Z", data)
            dst.writestr(fixed, data)
    return out.getvalue()
