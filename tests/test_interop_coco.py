"""COCO import (`xaug import DIR --format coco`): round trip, CVAT-style files with RLE, label maps, unknown categories."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

import xaug
from xaug.classes import CLASSES
from xaug.cli import app
from xaug.errors import BadInput
from xaug.interop.coco import (from_coco_polygon, mask_to_rings, rle_counts_from_string, rle_to_mask,
                               to_coco_polygons)
from xaug.interop.coco_import import import_coco
from xaug.interop.export import export
from xaug.store import Store

runner = CliRunner()
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pycocotools under numpy 2


def _items(ds):
    return [{k: v for k, v in it.items() if k != "stored_in"} for it in ds.version.items]


def test_round_trip_gives_the_same_items_and_polygons(tiny_home, tmp_path):
    ds = xaug.open("raw", home=tiny_home)
    export(ds, tmp_path / "coco", format="coco")
    home = tmp_path / "home"
    r = runner.invoke(app, ["import", str(tmp_path / "coco"), "--format", "coco", "--name", "back", "--home",
                            str(home), "-q"])
    assert r.exit_code == 0, r.output
    n = sum(len(it.annotations()) for it in ds)
    assert "back_v1" in r.output and f"{n} polygons ({n} exact, 0 converted" in r.output
    back = xaug.open("back", home=home)
    assert back.kind == "import-coco"
    assert _items(back) == _items(ds)                     # same paths, bytes, persons, folds, meta, provenance
    assert back.split_info == ds.split_info
    assert back.version.manifest["files"] == ds.version.manifest["files"]  # the same meta_data.xlsx
    for a, b in zip(ds, back):
        assert a.annotations() == b.annotations()         # exactly, extras (ids) included
    r = runner.invoke(app, ["import", str(tmp_path / "coco"), "--format", "coco", "--name", "back", "--home",
                            str(home), "-q"])
    assert r.exit_code == 0 and "unchanged, already" in r.output


def test_round_trip_of_a_derived_version_with_references(store_copy, tmp_path):
    r = runner.invoke(app, ["flip", "--include-source", "--jobs", "1", "--home", str(store_copy), "-q"])
    assert r.exit_code == 0, r.output
    flip = xaug.open("flip", home=store_copy)
    assert any(it.stored_in for it in flip)
    export(flip, tmp_path / "coco", format="coco")
    back, created, report = import_coco(Store(tmp_path / "home"), tmp_path / "coco", name="flip")
    assert created and report["exact_polygons"] == report["polygons"] > 0
    assert _items(xaug.open("flip", home=tmp_path / "home")) == _items(flip)


# ---------------------------------------------------------------- a CVAT-style file

SIZE = 96


def _disk(cx, cy, r):
    m = np.zeros((SIZE, SIZE), np.uint8)
    cv2.circle(m, (cx, cy), r, 1, -1)
    return m.astype(bool)


def _cvat_folder(root: Path, extra_category: str | None = "Sesamoid") -> Path:
    """images/ + annotations/instances_default.json as CVAT's "COCO 1.0" export writes them."""
    from pycocotools import mask as M

    (root / "images").mkdir(parents=True)
    img = np.full((SIZE, SIZE, 3), 40, np.uint8)
    cv2.imwrite(str(root / "images" / "hand_R.png"), img)
    cv2.imwrite(str(root / "images" / "hand2.png"), img)
    cats = [{"id": 1, "name": "Radius", "supercategory": ""}, {"id": 2, "name": "Pisiform bone", "supercategory": ""},
            {"id": 3, "name": "Lunate", "supercategory": ""}]
    if extra_category:
        cats.append({"id": 4, "name": extra_category, "supercategory": ""})
    lunate = _disk(60, 40, 14)
    fortran = np.asfortranarray(lunate.astype(np.uint8))
    compressed = M.encode(fortran)
    compressed["counts"] = compressed["counts"].decode("ascii")
    pisiform = _disk(30, 60, 10)
    flat = pisiform.T.ravel().astype(np.int8)  # column-major, as COCO counts run
    bounds = np.concatenate([[0], np.flatnonzero(np.diff(flat)) + 1, [flat.size]])
    counts = ([0] if flat[0] else []) + np.diff(bounds).tolist()
    anns = [
        {"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "attributes": {"occluded": False},
         "segmentation": [[10.0, 70.0, 40.0, 70.0, 40.0, 96.0, 10.0, 96.0]], "area": 780.0, "bbox": [10, 70, 30, 26]},
        {"id": 2, "image_id": 1, "category_id": 2, "iscrowd": 1, "attributes": {},
         "segmentation": {"counts": counts, "size": [SIZE, SIZE]}, "area": 0, "bbox": [0, 0, 0, 0]},
        {"id": 3, "image_id": 1, "category_id": 3, "iscrowd": 1, "attributes": {},
         "segmentation": compressed, "area": 0, "bbox": [0, 0, 0, 0]},
    ]
    if extra_category:
        anns.append({"id": 4, "image_id": 1, "category_id": 4, "iscrowd": 0, "attributes": {},
                     "segmentation": [[5.0, 5.0, 15.0, 5.0, 15.0, 15.0]], "area": 50.0, "bbox": [5, 5, 10, 10]})
    doc = {"licenses": [{"name": "", "id": 0, "url": ""}], "info": {"contributor": "", "version": ""},
           "categories": cats,
           "images": [{"id": 1, "width": SIZE, "height": SIZE, "file_name": "hand_R.png", "license": 0},
                      {"id": 2, "width": SIZE, "height": SIZE, "file_name": "hand2.png", "license": 0}],
           "annotations": anns}
    (root / "annotations").mkdir()
    path = root / "annotations" / "instances_default.json"
    path.write_text(json.dumps(doc))
    return path


def test_cvat_file_with_rle_label_map_and_unknown_categories(tmp_path):
    from pycocotools import mask as M

    coco = _cvat_folder(tmp_path / "cvat")
    home = tmp_path / "home"
    r = runner.invoke(app, ["import", str(tmp_path / "cvat"), "--format", "coco", "--coco-json", str(coco),
                            "--home", str(home), "-q"])
    assert r.exit_code == 2
    assert "error: unknown categories 'Pisiform bone' (1 annotation), 'Sesamoid' (1 annotation): map them onto " \
           "the 29 classes with --label-map FILE.yaml, or skip them with --lenient" in r.output
    assert not (home / "refs.json").exists()
    label_map = tmp_path / "map.yaml"
    label_map.write_text("Pisiform bone: Pisiform\n")
    r = runner.invoke(app, ["import", str(tmp_path / "cvat"), "--format", "coco", "--coco-json", str(coco),
                            "--label-map", str(label_map), "--lenient", "--name", "cvat", "--home", str(home), "-q"])
    assert r.exit_code == 0, r.output
    assert "skipped 1 annotation(s) of unknown categories: Sesamoid (1)" in r.output
    ds = xaug.open("cvat", home=home)
    assert ds.spec["skipped_categories"] == {"Sesamoid": 1} and ds.spec["label_map"] == {"Pisiform bone": "Pisiform"}
    labelled, unlabelled = ds["hand_R"], ds["hand2"]
    assert labelled.split in ("train", "val") and labelled.side == "R" and labelled.person == "ID001"
    assert not unlabelled.has_labels and unlabelled.split == "test"  # no annotations: an unlabelled test image
    assert labelled.meta["coco"]["from_rle"]["annotations"] == 2
    assert labelled.meta["coco"]["from_rle"]["tolerance_px"] == 0.5
    assert labelled.meta["coco"]["from_rle"]["min_dice"] >= 0.95
    masks = labelled.masks()
    doc = json.loads(coco.read_text())
    for ann in doc["annotations"][:3]:
        c = CLASSES.index({1: "Radius", 2: "Pisiform", 3: "Lunate"}[ann["category_id"]])
        seg = ann["segmentation"]
        ref = (M.decode(M.merge(M.frPyObjects(seg, SIZE, SIZE))) if isinstance(seg, list)
               else M.decode(M.frPyObjects(seg, SIZE, SIZE)) if isinstance(seg["counts"], list)
               else M.decode({"size": seg["size"], "counts": seg["counts"].encode()})).astype(bool)
        dice = 2 * (ref & masks[c]).sum() / (ref.sum() + masks[c].sum())
        assert dice >= 0.95, (ann["id"], dice)  # pixel-preserving conversion, 10-14 px radii
    assert {a.extra["id"] for a in labelled.annotations()} == {"1", "2", "3"}
    assert labelled.provenance == {"op": "import-coco", "file": "hand_R.png", "coco_file": "instances_default.json",
                                   "image_id": 1}


def test_import_errors_name_the_problem(tmp_path):
    coco = _cvat_folder(tmp_path / "cvat", extra_category=None)
    store = Store(tmp_path / "home")
    bad_map = tmp_path / "bad.yaml"
    bad_map.write_text("Pisiform bone: Pisiforme\n")
    with pytest.raises(BadInput, match=r"'Pisiform bone' maps to 'Pisiforme', not one of the 29 classes \(did you mean Pisiform\?\)"):
        import_coco(store, tmp_path / "cvat", [coco], label_map=bad_map)
    doc = json.loads(coco.read_text())
    doc["images"][0]["file_name"] = "missing.png"
    coco.write_text(json.dumps(doc))
    with pytest.raises(BadInput, match="image 'missing.png' not found under"):
        import_coco(store, tmp_path / "cvat", [coco], lenient=True)
    doc["images"][0]["file_name"] = "../outside.png"
    coco.write_text(json.dumps(doc))
    with pytest.raises(BadInput, match="unsafe path '../outside.png'"):
        import_coco(store, tmp_path / "cvat", [coco], lenient=True)
    coco.write_text("{not json")
    with pytest.raises(BadInput, match="not valid JSON"):
        import_coco(store, tmp_path / "cvat", [coco])
    coco.write_text(json.dumps({"images": []}))
    with pytest.raises(BadInput, match="not a COCO instances file"):
        import_coco(store, tmp_path / "cvat", [coco])
    with pytest.raises(BadInput, match="no COCO file: give --coco-json FILE"):
        import_coco(store, tmp_path / "cvat" / "images")
    assert store.names() == []


def test_bad_rle_is_refused(tmp_path):
    coco = _cvat_folder(tmp_path / "cvat", extra_category=None)
    doc = json.loads(coco.read_text())
    doc["annotations"][1]["segmentation"]["counts"] = [5, 5]
    coco.write_text(json.dumps(doc))
    label_map = tmp_path / "map.yaml"
    label_map.write_text("Pisiform bone: Pisiform\n")
    with pytest.raises(BadInput, match=r"bad RLE segmentation \(RLE runs cover 10 pixels, the image has 9216\)") as exc:
        import_coco(Store(tmp_path / "home"), tmp_path / "cvat", [coco], label_map=label_map)
    assert exc.value.where == "instances_default.json: image 'hand_R.png': annotation 2"


# ---------------------------------------------------------------- the pure conversions

def test_compressed_rle_decoder_matches_pycocotools():
    from pycocotools import mask as M

    rng = np.random.default_rng(0)
    for _ in range(20):
        h, w = rng.integers(1, 40, 2)
        m = rng.random((h, w)) < rng.random()
        enc = M.encode(np.asfortranarray(m.astype(np.uint8)))
        assert np.array_equal(rle_to_mask({"counts": enc["counts"].decode(), "size": [int(h), int(w)]}, h, w), m)
        counts = rle_counts_from_string(enc["counts"].decode())
        assert sum(counts) == h * w
        assert np.array_equal(rle_to_mask({"counts": counts, "size": [int(h), int(w)]}, h, w), m)


def test_polygon_convention_round_trip_and_mask_tracing():
    from xaug.raster import polygon_mask

    square = np.array([[10, 10], [30, 10], [30, 25], [10, 25]])
    (outline,) = to_coco_polygons(square)
    assert outline == [10.0, 10.0, 31.0, 10.0, 31.0, 26.0, 10.0, 26.0]  # the filled pixels' outline
    assert np.array_equal(from_coco_polygon(outline), square)
    tri = np.array([[5, 40], [50, 12], [44, 47]])
    back = from_coco_polygon(to_coco_polygons(tri)[0])
    assert np.abs(back - tri).max() <= 1
    disk = _disk(48, 48, 20)
    rings = mask_to_rings(disk, tolerance=0.5)
    assert len(rings) == 1
    traced = polygon_mask(rings[0], (SIZE, SIZE)).astype(bool)
    assert 2 * (traced & disk).sum() / (traced.sum() + disk.sum()) >= 0.98
    assert np.array_equal(polygon_mask(mask_to_rings(disk, tolerance=0)[0], (SIZE, SIZE)).astype(bool), disk)


def test_labelme_style_jpeg_and_person_folders(tmp_path):
    """labelme2coco-like input: JPEG images in per-person folders, float polygons, no xaug fields."""
    root = tmp_path / "lm"
    for person in ("ID007", "ID008"):
        (root / person).mkdir(parents=True)
        for side in "LR":
            cv2.imwrite(str(root / person / f"img_{person}_{side}.jpg"), np.full((64, 64, 3), 90, np.uint8))
    images, anns = [], []
    for i, p in enumerate(sorted(root.glob("*/*.jpg")), 1):
        images.append({"id": i, "file_name": p.relative_to(root).as_posix(), "height": 64, "width": 64})
        anns.append({"id": i, "image_id": i, "category_id": 0, "iscrowd": 0,
                     "segmentation": [[10.5, 10.5, 40.5, 12.0, 30.0, 50.25]] + ([[3, 3, 3.2, 3.1, 3.1, 3.3]] if i == 1 else []),
                     "area": 0, "bbox": [0, 0, 0, 0]})
    (root / "coco.json").write_text(json.dumps({"images": images, "annotations": anns,
                                                "categories": [{"id": 0, "name": "Capitate", "supercategory": None}]}))
    r = runner.invoke(app, ["import", str(root), "--format", "coco", "--coco-json", str(root / "coco.json"),
                            "--name", "lm", "--folds", "2", "--home", str(tmp_path / "home"), "-q"])
    assert r.exit_code == 0, r.output
    assert "dropped 1 polygon(s) of fewer than 3 distinct points" in r.output
    ds = xaug.open("lm", home=tmp_path / "home")
    assert sorted({it.person for it in ds}) == ["ID007", "ID008"] and {it.side for it in ds} == {"L", "R"}
    assert ds.split_info["k"] == 2 and len({it.fold for it in ds}) == 2  # both hands of a person in one fold
    assert all(it.meta["converted_to_png_from"] == "jpg" for it in ds)
    assert sorted(it.meta["coco"].get("dropped_polygons", 0) for it in ds) == [0, 0, 0, 1]
    assert all(it.meta["coco"]["converted_polygons"] == 1 for it in ds)
    item = ds.items()[0]
    assert item.image_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and item.path == f"train/DCM/{item.person}/{item.stem}.png"
    (poly,) = item.annotations()
    assert poly.label == "Capitate" and poly.points.dtype == np.float64 and len(poly.points) == 3


def test_cli_import_flags(tmp_path):
    coco = _cvat_folder(tmp_path / "cvat", extra_category=None)
    home = str(tmp_path / "home")
    r = runner.invoke(app, ["import", str(tmp_path / "cvat"), "--coco-json", str(coco), "--home", home])
    assert r.exit_code == 2 and "'--coco-json': only with --format coco" in r.output
    r = runner.invoke(app, ["import", str(tmp_path / "cvat"), "--format", "coco", "--rehash", "--home", home])
    assert r.exit_code == 2 and "'--rehash': only with --format competition" in r.output
    r = runner.invoke(app, ["import", str(tmp_path / "cvat"), "--format", "voc", "--home", home])
    assert r.exit_code == 2 and "must be competition or coco, not 'voc'" in r.output
    r = runner.invoke(app, ["import", str(tmp_path / "cvat"), "--format", "coco", "--rle-tolerance", "-1",
                            "--home", home])
    assert r.exit_code == 2 and "--rle-tolerance is a distance in pixels from 0 to 10, got -1.0" in r.output


MALFORMED = [
    ("segmentation", "abc", "segmentation is neither polygons nor RLE"),
    ("segmentation", [["a", "b", "c", "d", "e", "f"]], "a segmentation polygon must be a flat list of numbers"),
    ("segmentation", {"counts": None, "size": [32, 32]}, "bad RLE segmentation"),
    ("xaug", {"path": "train/DCM/ID1/a.png", "person": 5, "split": "weird"},
     r"xaug.split / xaug.person \('weird', 5\) disagree with xaug.path"),
    ("xaug", {"path": "train/DCM/ID1/a.png", "person": "ID1", "split": "train", "fold": "x"},
     "xaug.fold must be an integer or null, not 'x'"),
    ("category", {"id": 1, "name": "Radius"}, "category id 1 is given twice"),
]


@pytest.mark.parametrize("key,value,message", MALFORMED, ids=[m[2][:24] for m in MALFORMED])
def test_malformed_input_is_one_line_and_registers_nothing(tmp_path, key, value, message):
    (tmp_path / "images").mkdir()
    cv2.imwrite(str(tmp_path / "images" / "a.png"), np.zeros((32, 32), np.uint8))
    doc = {"images": [{"id": 1, "file_name": "a.png", "height": 32, "width": 32}],
           "categories": [{"id": 1, "name": "Ulna"}],
           "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "segmentation": [[2, 2, 20, 2, 20, 20]]}]}
    if key == "segmentation":
        doc["annotations"][0]["segmentation"] = value
    elif key == "xaug":
        doc["images"][0]["xaug"] = value
    else:
        doc["categories"].append(value)
    (tmp_path / "c.json").write_text(json.dumps(doc))
    store = Store(tmp_path / "home")
    with pytest.raises(BadInput, match=message):
        import_coco(store, tmp_path, [tmp_path / "c.json"])
    assert store.names() == []
