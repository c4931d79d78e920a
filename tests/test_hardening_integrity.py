"""Readers check what they read: a stored file whose bytes differ from its manifest's sha256, or a
manifest whose content differs from its id, is refused with one line naming the file and
`xaug verify NAME`; the import fast path and `--rehash`; `verify` always re-reads."""
from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from _hardening import add_copy, refused, snapshot, unchanged, xaug
from _layout import make_layout
from xaug.errors import BadInput
from xaug.store import Store, read_verified


def _reencode(path: Path) -> None:
    """Same pixels, other bytes (what an image editor's "save" does)."""
    img = cv2.imdecode(np.fromfile(str(path), np.uint8), cv2.IMREAD_UNCHANGED)
    ok, buf = cv2.imencode(".png", img, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    assert ok and buf.tobytes() != path.read_bytes()
    path.write_bytes(buf.tobytes())


def _train_item(store: Store):
    ds = store.open("raw")
    it = next(i for i in ds.items if i["split"] == "train" and i["fold"] != ds.val_fold)
    return ds, it


READERS = {
    "export": lambda tmp: ["export", "raw", tmp / "out"],
    "rotate": lambda tmp: ["rotate", "--jobs", "1", "--quiet"],
    "flip": lambda tmp: ["flip", "--jobs", "1", "--quiet"],
    "eda": lambda tmp: ["eda", "raw", "--out", tmp / "eda", "--jobs", "1"],
    "train": lambda tmp: ["train", "--dataset", "raw", "--run", tmp / "run", "--epochs", "1", "--size", "32",
                          "--batch", "2", "--workers", "0", "--device", "cpu", "--quiet"],
}


@pytest.mark.parametrize("reader", sorted(READERS))
def test_a_changed_image_is_refused_by_every_reader(store_copy, tmp_path, reader):
    store = Store(store_copy)
    ds, it = _train_item(store)
    _reencode(ds.file_path(it["image"], None))
    before = snapshot(store_copy)
    res = xaug(*READERS[reader](tmp_path), "--home", store_copy)
    line = refused(res, "")
    assert Path(it["image"]["path"]).name in line and line.endswith("run `xaug verify raw_v1`"), line
    assert "match" in line
    if reader in ("export", "train"):  # the store's own readers: the exact words
        assert line.startswith(f"error: {it['image']['path']}: stored file does not match its manifest")
    assert snapshot(store_copy) == before and not (tmp_path / "out").exists()
    assert store.verify("raw") == [f"changed: {it['image']['path']}"]


def test_the_python_api_checks_images_and_labels(store_copy):
    store = Store(store_copy)
    ds, it = _train_item(store)
    assert ds.read_image(it).shape[:2] == (256, 256)
    label = ds.file_path(it["label"], None)
    doc = json.loads(label.read_text())
    doc["annotations"][0]["points"][0][0] += 1  # an edited label: one coordinate
    label.write_text(json.dumps(doc))
    with pytest.raises(BadInput, match=r"stored file does not match its manifest .*xaug verify raw_v1") as e:
        ds.samples(split="train")
    assert e.value.where == it["label"]["path"]
    ds.samples(split="train", load=False)  # listing reads no file
    _reencode(ds.file_path(it["image"], None))
    with pytest.raises(BadInput, match="does not match its manifest"):
        ds.read_image(it)
    with pytest.raises(BadInput, match="stored file is missing"):
        read_verified(Path(store_copy) / "nope", "0" * 64, where="x.png", name="raw_v1")


def test_an_edited_label_is_refused_by_export_and_rotate(store_copy, tmp_path):
    store = Store(store_copy)
    ds, it = _train_item(store)
    label = ds.file_path(it["label"], None)
    label.write_bytes(label.read_bytes().replace(b'"finger-1"', b'"finger-2"', 1))
    before = snapshot(store_copy)
    refused(xaug("export", "raw", tmp_path / "out", "--home", store_copy),
            f"{it['label']['path']}: stored file does not match its manifest (changed after it was written); "
            "run `xaug verify raw_v1`")
    line = refused(xaug("rotate", "--jobs", "1", "--quiet", "--home", store_copy), "")
    assert Path(it["label"]["path"]).name in line and "xaug verify raw_v1" in line
    assert snapshot(store_copy) == before


def test_an_edited_manifest_is_refused_at_open_and_verify_says_so(store_copy, tmp_path):
    add_copy(store_copy)
    store = Store(store_copy)
    ds = store.open("raw")
    path = store.version_dir(ds.id) / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["items"][0]["person"] = "ID999"  # content edited, id (folder, refs.json) kept
    path.write_text(json.dumps(manifest, indent=1))
    before = snapshot(store_copy)
    first = f"{path}: manifest content does not match its id {ds.id[:12]} (edited after it was written)"
    for command in (["show", "raw"], ["export", "raw", tmp_path / "out"], ["rotate", "--quiet"],
                    ["show", "copy"]):  # copy references raw: reading through it opens raw
        res = xaug(*command, "--home", store_copy)
        if command == ["show", "copy"]:
            assert res.exit_code == 2 and first in res.stderr
        else:
            refused(res, first)
    res = xaug("verify", "raw", "--home", store_copy)
    assert res.exit_code == 1 and f"manifest: content does not match its id {ds.id[:12]}" in res.stdout
    res = xaug("datasets", "--json", "--home", store_copy)
    assert res.exit_code == 0 and [r["name"] for r in json.loads(res.stdout)] == ["copy_v1"]
    assert res.stderr.startswith("warning: raw_v1: ") and "copy_v1" not in res.stderr
    assert snapshot(store_copy) == before and not (tmp_path / "out").exists()


def _change_in_place_keeping_stat(path: Path) -> None:
    """Flip bytes in place (same size, same inode) and restore the mtime: the fast path's blind spot."""
    st = path.stat()
    data = bytearray(path.read_bytes())
    img = cv2.imdecode(np.frombuffer(bytes(data), np.uint8), cv2.IMREAD_UNCHANGED)
    img[0, 0] = 255 - img[0, 0]
    ok, buf = cv2.imencode(".png", img)
    new = buf.tobytes()
    if len(new) != len(data):  # keep the size: pad or trim the re-encoded file's trailing chunk area
        pytest.skip("re-encoding changed the size")
    with open(path, "r+b") as fh:
        fh.write(new)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (st.st_size, st.st_mtime_ns, st.st_ino)


def test_import_fast_path_and_rehash(tmp_path):
    root = make_layout(tmp_path / "src", persons=3, size=32)
    home = tmp_path / "home"
    assert xaug("import", root, "--home", home, "--quiet").exit_code == 0
    image = sorted((root / "train" / "DCM").glob("*/*.png"))[0]
    _change_in_place_keeping_stat(image)
    res = xaug("import", root, "--home", home, "--quiet")  # documented: the fast path trusts the stat
    assert res.exit_code == 0 and "unchanged, already" in res.stdout and "hashed 0 files" in res.stdout
    res = xaug("import", root, "--rehash", "--home", home, "--quiet")
    assert res.exit_code == 0 and "raw_v2" in res.stdout and "registered" in res.stdout
    assert "hashed 14 files, 0 unchanged" in res.stdout  # 7 images, 6 labels, the sheet
    assert Store(home).verify("raw_v2") == []


def test_verify_rereads_every_byte_whatever_the_stat_says(tmp_path):
    root = make_layout(tmp_path / "src", persons=3, size=32)
    home = tmp_path / "home"
    assert xaug("import", root, "--home", home, "--quiet").exit_code == 0
    store = Store(home)
    ds = store.open("raw")
    it = ds.items[-1]
    _change_in_place_keeping_stat(ds.file_path(it["image"], None))
    res = xaug("verify", "raw", "--home", home)
    assert res.exit_code == 1 and f"changed: {it['image']['path']}" in res.stdout
    refused(xaug("export", "raw", tmp_path / "out", "--home", home),
            f"{it['image']['path']}: stored file does not match its manifest")


def test_evaluate_predict_and_errors_check_the_images_they_read(store_copy, tmp_path):
    """A run trained on intact data; then a validation and a test image change under it."""
    run = tmp_path / "run"
    res = xaug("train", "--dataset", "raw", "--run", run, "--epochs", "1", "--size", "32", "--batch", "4",
               "--width", "4", "--depth", "2", "--workers", "0", "--device", "cpu", "--quiet", "--home", store_copy)
    assert res.exit_code == 0, res.output
    store = Store(store_copy)
    ds = store.open("raw")
    val = next(i for i in ds.items if i["split"] == "train" and i["fold"] == ds.val_fold)
    test = next(i for i in ds.items if i["split"] == "test")
    for it in (val, test):
        _reencode(ds.file_path(it["image"], None))
    before = snapshot(store_copy)
    words = "stored file does not match its manifest (changed after it was written); run `xaug verify raw_v1`"
    common = ["--run", run, "--device", "cpu", "--home", store_copy]
    refused(xaug("evaluate", *common, "--quiet"), f"{val['image']['path']}: {words}")
    refused(xaug("predict", *common, "--out", tmp_path / "sub.csv", "--quiet"), f"{test['image']['path']}: {words}")
    assert not list(tmp_path.glob("sub.csv*"))
    refused(xaug("errors", *common, "--out", tmp_path / "errors", "--workers", "0", "--quiet"),
            f"{val['image']['path']}: {words}")
    assert snapshot(store_copy) == before
