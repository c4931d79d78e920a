"""`xaug export --format competition|coco|yolo-seg|masks`: layouts, pycocotools check, destinations, atomicity."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

import xaug
from xaug.classes import CLASSES
from xaug.cli import app
from xaug.errors import BadInput
from xaug.interop import export as export_mod
from xaug.interop.export import export
from xaug.interop.masks import load_masks

runner = CliRunner()


def cli(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def ds(tiny_home):
    return xaug.open("raw", home=tiny_home)


@pytest.fixture(scope="module")
def big(make_store):
    """One person at 1024 px: big enough that half-pixel rounding stays under 1% of a bone."""
    return xaug.open("raw", home=make_store(persons=1, test_persons=0, size=1024, seed=1))


def _dice(a, b):
    a, b = a.astype(bool), b.astype(bool)
    return 2 * (a & b).sum() / max(1, a.sum() + b.sum())


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pycocotools' own, under numpy 2
def test_coco_loads_in_pycocotools_and_matches_xaug_masks(big, tmp_path):
    from pycocotools.coco import COCO

    res = export(big, tmp_path / "coco", format="coco")
    assert res.counts == {"images": 2, "annotations": 58} and res.splits == {"train": 2}  # one person: no val fold
    worst = 1.0
    for split in res.splits:
        coco = COCO(str(tmp_path / "coco" / "annotations" / f"instances_{split}.json"))
        assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == list(CLASSES)
        assert coco.getCatIds() == list(range(1, 30))
        for img in coco.loadImgs(coco.getImgIds()):
            assert (tmp_path / "coco" / "images" / img["file_name"]).is_file()
            item = big[img["xaug"]["path"]]
            assert img["xaug"]["person"] == item.person and img["xaug"]["fold"] == item.fold
            assert img["xaug"]["meta"] == item.meta and img["file_name"] == f"{split}/{item.person}/{item.name}"
            masks = item.masks()
            anns = coco.loadAnns(coco.getAnnIds(imgIds=img["id"]))
            assert sorted(a["category_id"] for a in anns) == list(range(1, 30))  # one per (image, class)
            for ann in anns:
                m = coco.annToMask(ann)
                worst = min(worst, _dice(m, masks[ann["category_id"] - 1]))
                x, y, w, h = ann["bbox"]
                ys, xs = np.nonzero(m)
                assert x <= xs.min() and xs.max() < x + w + 1 and y <= ys.min() and ys.max() < y + h + 1
                assert abs(ann["area"] - m.sum()) <= 0.03 * m.sum() and ann["iscrowd"] == 0
    assert worst >= 0.99, worst


def test_coco_keeps_overlapping_and_multi_part_instances(ds, tmp_path):
    item = ds.items(split="train")[0]
    polys = item.annotations()
    export(ds, tmp_path / "coco", format="coco", split="train")
    doc = json.loads((tmp_path / "coco" / "annotations" / "instances_train.json").read_text())
    assert not (tmp_path / "coco" / "annotations" / "instances_val.json").exists()
    img = next(i for i in doc["images"] if i["xaug"]["path"] == item.path)
    anns = [a for a in doc["annotations"] if a["image_id"] == img["id"]]
    assert len(anns) == len({p.label for p in polys})
    for a in anns:
        label = CLASSES[a["category_id"] - 1]
        parts = [p for p in polys if p.label == label]
        assert a["xaug"]["points"] == [p.points.astype(int).ravel().tolist() for p in parts]
    # Pisiform lies over the Triquetrum: both instances keep the shared pixels
    masks = item.masks()
    assert (masks[CLASSES.index("Pisiform")] & masks[CLASSES.index("Triquetrum")]).any()


def test_yolo_seg_layout_and_lines(ds, tmp_path):
    export(ds, tmp_path / "yolo", format="yolo-seg")
    root = tmp_path / "yolo"
    data = yaml.safe_load((root / "data.yaml").read_text())
    assert data["nc"] == 29 and data["names"][0] == "finger-1" and data["names"][28] == "Ulna"
    assert {data["train"], data["val"], data["test"]} == {"images/train", "images/val", "images/test"}
    assert "path" not in data
    item = ds.items(split="val")[0]
    label = root / "labels" / "val" / item.person / f"{item.stem}.txt"
    assert (root / "images" / "val" / item.person / item.name).read_bytes() == item.image_bytes()
    lines = label.read_text().splitlines()
    polys = item.annotations()
    assert len(lines) == len(polys)  # one line per ring
    h, w = item.size
    for line, p in zip(lines, polys):
        fields = line.split()
        assert int(fields[0]) == p.class_index and len(fields) == 1 + 2 * len(p.points)
        xy = np.asarray(fields[1:], float).reshape(-1, 2)
        assert ((0 <= xy) & (xy <= 1)).all()
        assert np.abs(xy * [w, h] - p.points - 1e-3).max() < 1e-9  # a 0.001 px nudge up (int32 truncation)


def test_yolo_labels_rasterised_as_ultralytics_does_give_xaug_masks(ds, tmp_path):
    import cv2

    export(ds, tmp_path / "yolo", format="yolo-seg", split="train")
    for item in ds.items(split="train"):
        h, w = item.size
        got = np.zeros((29, h, w), np.uint8)
        for line in (tmp_path / "yolo" / "labels" / "train" / item.person / f"{item.stem}.txt").read_text().splitlines():
            c, *xy = line.split()
            seg = np.asarray(xy, np.float32).reshape(-1, 2) * np.asarray([w, h], np.float32)
            # ultralytics.data.utils.polygon2mask: int32 coordinates, cv2.fillPoly
            cv2.fillPoly(got[int(c)], [np.asarray(seg, np.int32).reshape(-1, 1, 2)], 1)
        assert np.array_equal(got.astype(bool), item.masks())


def test_masks_npz(ds, tmp_path):
    export(ds, tmp_path / "m", format="masks", split=["test"])
    item = ds.items(split="test")[0]
    path = tmp_path / "m" / "masks" / "test" / item.person / f"{item.stem}.npz"
    with np.load(path) as z:
        assert z["masks"].dtype == np.uint8 and z["masks"].shape == (29, 256, 32)
        assert list(z["classes"]) == list(CLASSES) and tuple(z["shape"]) == (29, 256, 256)
        assert (tmp_path / "m" / str(z["image"])).is_file()
    m = load_masks(path)
    assert m.dtype == bool and m.shape == (29, 256, 256) and np.array_equal(m, item.masks())
    assert not (tmp_path / "m" / "masks" / "train").exists()


def test_competition_split_export_imports_again(ds, tmp_path):
    from xaug.store import Store

    export(ds, tmp_path / "val", format="competition", split="val")
    paths = sorted(p.relative_to(tmp_path / "val").as_posix() for p in (tmp_path / "val").rglob("*.png"))
    assert paths == sorted(it.path for it in ds.items(split="val"))
    new, _, _ = Store(tmp_path / "home").import_folder(tmp_path / "val", name="val")
    assert {it["image"]["sha256"] for it in new.items} == {it.image_file.sha256 for it in ds.items(split="val")}
    assert set(new.persons) == {it.person for it in ds.items(split="val")}


def test_summary_file_records_lineage(ds, tmp_path):
    export(ds, tmp_path / "y", format="yolo-seg", split="train")
    summary = json.loads((tmp_path / "y" / "xaug-export.json").read_text())
    assert summary["dataset"] == "raw_v1" and summary["id"] == ds.id and summary["format"] == "yolo-seg"
    assert summary["lineage"] == [{"name": "raw_v1", "id": ds.id, "kind": "synth"}]
    assert summary["splits"] == {"train": len(ds.items(split="train"))}


def test_destinations_refused(ds, tiny_home, tmp_path):
    afile = tmp_path / "file"
    afile.write_text("x")
    with pytest.raises(BadInput, match="is a file; give a new folder to export into"):
        export(ds, afile, format="coco")
    with pytest.raises(BadInput, match="is inside the store"):
        export(ds, tiny_home / "out", format="coco")
    with pytest.raises(BadInput, match="is inside the store \\(or contains it\\)"):
        export(ds, tiny_home.parent, format="coco", force=True)
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("mine")
    with pytest.raises(BadInput, match="not empty; choose a new folder \\(or pass --force"):
        export(ds, full, format="masks")
    assert (full / "keep.txt").read_text() == "mine"
    with pytest.raises(BadInput, match="unknown export format 'cocoa' \\(did you mean coco\\?\\)"):
        export(ds, tmp_path / "n", format="cocoa")
    with pytest.raises(BadInput, match="--split must be one of train, val, test, not 'dev'"):
        export(ds, tmp_path / "n", format="coco", split="dev")
    export(ds, full, format="masks", force=True)
    assert not (full / "keep.txt").exists() and (full / "xaug-export.json").is_file()
    assert not list(tmp_path.glob(".*xaug-*"))


def test_a_failed_export_leaves_nothing(ds, tmp_path, monkeypatch):
    calls = {"n": 0}
    real = xaug.Item.image_bytes

    def dies(self):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(self)

    monkeypatch.setattr(xaug.Item, "image_bytes", dies)
    with pytest.raises(KeyboardInterrupt):
        export(ds, tmp_path / "out", format="coco")
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".*"))


def test_a_killed_export_is_cleaned_up_by_the_next(ds, tmp_path):
    stale = tmp_path / f".out{export_mod._STAGE_TAG}999999"  # a process that no longer exists
    (stale / "images").mkdir(parents=True)
    export(ds, tmp_path / "out", format="yolo-seg", split="val")
    assert not stale.exists() and (tmp_path / "out" / "data.yaml").is_file()


def test_a_forced_export_killed_between_its_renames_gets_the_earlier_one_back(ds, tmp_path):
    export(ds, tmp_path / "out", format="yolo-seg", split="val")
    before = sorted(p.relative_to(tmp_path / "out") for p in (tmp_path / "out").rglob("*"))
    # killed after moving the earlier export aside, before moving the new one in
    (tmp_path / "out").rename(tmp_path / f".out{export_mod._OLD_TAG}999999")
    with pytest.raises(BadInput, match="exists"):  # the earlier export is back: --force to replace
        export(ds, tmp_path / "out", format="coco", split="val")
    assert sorted(p.relative_to(tmp_path / "out") for p in (tmp_path / "out").rglob("*")) == before
    export(ds, tmp_path / "out", format="coco", split="val", force=True)
    assert (tmp_path / "out" / "annotations").is_dir() and not list(tmp_path.glob(".out*"))


def test_export_refuses_tampered_bytes(store_copy, tmp_path):
    d = xaug.open("raw", home=store_copy)
    it = d.items(split="train")[0]
    it.label_file.path.write_text("{}")
    with pytest.raises(BadInput, match="xaug verify raw_v1"):
        export(d, tmp_path / "out", format="coco")
    assert not (tmp_path / "out").exists()


def test_cli_export(store_copy, tmp_path):
    r = cli("export", "raw", tmp_path / "c", "--format", "coco", "--split", "train", "--json", "-q", "--home", store_copy)
    assert r.exit_code == 0, r.output
    summary = json.loads(r.output)
    assert summary["format"] == "coco" and summary["images"] == summary["splits"]["train"] and summary["annotations"] > 0
    r = cli("export", "raw", tmp_path / "c", "--format", "yolo-seg", "-q", "--home", store_copy)
    assert r.exit_code == 2 and "folder exists and is not empty" in r.output
    r = cli("export", "raw", tmp_path / "c", "--format", "yolo-seg", "--force", "-q", "--home", store_copy)
    assert r.exit_code == 0 and "exported raw_v1" in r.output and "as yolo-seg" in r.output
    r = cli("export", "raw", tmp_path / "d", "--format", "png", "--home", store_copy)
    assert r.exit_code == 2 and "must be one of competition, coco, yolo-seg, masks, not 'png'" in r.output
    r = cli("export", "raw", tmp_path / "e", "--json", "--home", store_copy)  # competition, the store's export
    assert r.exit_code == 0 and json.loads(r.output)["files"] > 0 and (tmp_path / "e" / "meta_data.xlsx").is_file()
    assert os.listdir(tmp_path / "e" / "train")
