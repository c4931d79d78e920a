"""The public Python API (xaug.open, xaug.datasets, Dataset, Item): names, filters, reads, hash checks."""
from __future__ import annotations

import dataclasses
import pickle
import subprocess
import sys

import numpy as np
import pytest

import xaug
from xaug.classes import CLASSES
from xaug.errors import BadInput, UnknownDataset
from xaug.raster import class_masks


@pytest.fixture(scope="module")
def ds(tiny_home):
    return xaug.open("raw", home=tiny_home)


def test_import_xaug_is_light():
    code = "import sys, xaug; print(sorted(m for m in ('torch', 'cv2', 'numpy', 'shapely') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_open_resolves_names_like_the_cli(tiny_home, tiny_dataset, ds):
    assert ds.id == tiny_dataset.id and ds.name == "raw_v1" and ds.kind == "synth"
    assert xaug.open("raw_v1", home=tiny_home).id == ds.id
    assert xaug.open(ds.id[:8], home=tiny_home).id == ds.id
    with pytest.raises(UnknownDataset, match=r"unknown dataset 'rwa' \(did you mean raw\?\); known: raw_v1"):
        xaug.open("rwa", home=tiny_home)


def test_open_uses_xaug_home(tiny_home, monkeypatch):
    monkeypatch.setenv("XAUG_HOME", str(tiny_home))
    assert xaug.open("raw").name == "raw_v1"
    assert [d.name for d in xaug.datasets()] == ["raw_v1"]


def test_identity_recipe_lineage(ds, tiny_dataset):
    assert ds.spec == tiny_dataset.manifest["spec"]
    assert ds.seed == tiny_dataset.manifest["seed"]
    assert ds.lineage == (xaug.VersionInfo("raw_v1", ds.id, "synth"),)
    assert ds.source is None
    assert set(ds.persons) == {it["person"] for it in tiny_dataset.items}
    ds.spec["persons"] = -1  # a copy: the manifest is not changed through the API
    assert ds.spec == tiny_dataset.manifest["spec"]


def test_lineage_of_a_derived_version(store_copy):
    from typer.testing import CliRunner

    from xaug.cli import app

    res = CliRunner().invoke(app, ["flip", "--include-source", "--jobs", "1", "--home", str(store_copy), "-q"])
    assert res.exit_code == 0, res.output
    d = xaug.open("flip", home=store_copy)
    assert [v.name for v in d.lineage] == ["flip_v1", "raw_v1"]
    assert d.source.kind == "synth"
    derived = [it for it in d if it.provenance.get("op") == "flip"]
    referenced = [it for it in d if it.stored_in]
    assert derived and referenced and all(it.stored_in == d.source.id for it in referenced)
    assert referenced[0].image().shape == (256, 256)  # bytes read from the source version


def test_items_and_filters(ds, tiny_dataset):
    assert len(ds) == len(tiny_dataset.items) == len(list(ds))
    val_fold = tiny_dataset.val_fold
    train = ds.items(split="train")
    val = ds.items(split="val")
    test = ds.items(split="test")
    assert len(train) + len(val) + len(test) == len(ds)
    assert val and all(it.fold == val_fold and it.layout_split == "train" for it in val)
    assert all(it.fold != val_fold for it in train) and all(it.layout_split == "test" for it in test)
    # the same partition as the store's own role filter
    assert [it.path for it in val] == [s.relpath for s in tiny_dataset.samples(split="train", role="val", load=False)]
    assert [it.path for it in train] == [s.relpath for s in tiny_dataset.samples(split="train", role="train", load=False)]
    assert ds.counts() == {"train": len(train), "val": len(val), "test": len(test)}
    fold1 = ds.items(fold=1)
    assert fold1 and all(it.fold == 1 for it in fold1)
    with pytest.raises(BadInput, match="split must be one of train, val, test or None, not 'valid'"):
        ds.items(split="valid")
    with pytest.raises(BadInput, match="fold must be an integer from 0 to"):
        ds.items(fold=99)


def test_getitem_by_stem_name_path_index(ds):
    it = ds.items(split="train")[0]
    assert ds[it.stem] is it and ds[it.name] is it and ds[it.path] is it
    assert ds[0] is list(ds)[0]
    assert it.stem in ds and "nope" not in ds
    with pytest.raises(KeyError, match=r"no item 'image1' in raw_v1"):
        ds["image1"]


def test_item_is_typed_and_frozen(ds):
    it = ds.items(split="train")[0]
    assert it.person.startswith("ID") and it.side in ("L", "R") and isinstance(it.fold, int)
    assert it.meta.get("synthetic") is True and "pose" in it.meta
    assert it.size == (256, 256)
    with pytest.raises(dataclasses.FrozenInstanceError):
        it.person = "ID999"  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(it)) == it
    assert "split='train'" in repr(it)


def test_image_annotations_masks(ds, tiny_dataset):
    it = ds.items(split="train")[0]
    sample = tiny_dataset.sample(tiny_dataset.item(it.path))
    gray, rgb, stored = it.image(), it.image("rgb"), it.image("stored")
    assert gray.dtype == np.uint8 and gray.shape == (256, 256)
    assert rgb.shape == (256, 256, 3) and stored.shape == (256, 256, 3)
    anns = it.annotations()
    assert [a.label for a in anns] == [a.label for a in sample.annotations]
    assert all(a.points.dtype == np.float64 and a.points.shape[1] == 2 for a in anns)
    assert not anns[0].points.flags.writeable
    assert np.array_equal(anns[0].points, sample.annotations[0].points)
    assert anns[0].class_index == CLASSES.index(anns[0].label) and "id" in anns[0].extra
    masks = it.masks()
    assert masks.dtype == bool and masks.shape == (29, 256, 256)
    # the evaluator's rasteriser on the store's own Sample
    assert np.array_equal(masks, class_masks(sample.annotations, (256, 256)).astype(bool))
    small = it.masks(size=64)
    scaled = [a.with_points(np.asarray(a.points, np.float64) * (64 / 256)) for a in sample.annotations]
    assert small.shape == (29, 64, 64) and np.array_equal(small, class_masks(scaled, (64, 64)).astype(bool))
    assert it.masks(size=(32, 64)).shape == (29, 32, 64)
    s = it.to_sample()
    assert s.annotations == sample.annotations and s.relpath == it.path


def test_item_without_labels(tmp_path):
    from _layout import make_layout
    from xaug.store import Store

    Store(tmp_path / "home").import_folder(make_layout(tmp_path / "layout", persons=2, size=48), name="real")
    d = xaug.open("real", home=tmp_path / "home")
    (it,) = d.items(split="test")
    assert not it.has_labels and it.label_file is None
    assert it.annotations() == () and it.masks().shape == (29, 48, 48) and not it.masks().any()
    assert d.persons["ID002"].note == "has nail art"


def test_reads_check_the_manifest_hash(store_copy):
    d = xaug.open("raw", home=store_copy)
    it = d.items(split="train")[0]
    lab = it.label_file.path
    lab.write_bytes(lab.read_bytes().replace(b'"finger-1"', b'"finger-2"', 1))
    with pytest.raises(BadInput, match=r"stored file does not match its manifest .*run `xaug verify raw_v1`") as exc:
        it.annotations()
    assert exc.value.where == it.label_file.relpath
    with pytest.raises(BadInput, match="xaug verify raw_v1"):
        it.masks()
    img = it.image_file.path
    data = bytearray(img.read_bytes())
    data[-20] ^= 0xFF
    img.write_bytes(bytes(data))
    with pytest.raises(BadInput, match=r"stored file does not match its manifest") as exc:
        it.image()
    assert exc.value.where == it.path
    other = d.items(split="train")[1]
    other.image_file.path.unlink()
    with pytest.raises(BadInput, match=r"stored file is missing; run `xaug verify raw_v1`"):
        other.image()
    with pytest.raises(BadInput, match=r"stored file is missing; run `xaug verify raw_v1`"):
        other.masks()


def _fake_smp():
    """A stand-in for segmentation_models_pytorch (not a dependency): one conv layer."""
    import types

    import torch

    class Unet(torch.nn.Module):
        def __init__(self, encoder_name, encoder_weights=None, in_channels=3, classes=1):
            super().__init__()
            self.net = torch.nn.Conv2d(in_channels, classes, 3, padding=1)

        def forward(self, x):
            return self.net(x)

    return types.SimpleNamespace(Unet=Unet)


def test_docs_api_snippets_run(tmp_path, monkeypatch, capsys):
    """Every python block of docs/api.md, in order; the smp block with a stand-in model."""
    import re
    import tempfile
    from pathlib import Path

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setitem(sys.modules, "segmentation_models_pytorch", _fake_smp())
    doc = Path(__file__).resolve().parents[1] / "docs" / "api.md"
    blocks = re.findall(r"```python\n(.*?)```", doc.read_text(), re.S)
    assert len(blocks) >= 6 and any("segmentation_models_pytorch" in b for b in blocks)
    namespace: dict = {}
    for i, block in enumerate(blocks):
        exec(compile(block, f"{doc}:block{i}", "exec"), namespace)
    out = capsys.readouterr().out
    assert "xaug.Dataset('raw_v1'" in out and "step 20: loss" in out and "validation Dice after 20 steps" in out


def test_readme_python_snippet_runs(store_copy, monkeypatch, tmp_path):
    """README.md's python block, as written, on a store holding a mosaic_v1 (a derived version
    holds no validation persons, so the block reads a training item)."""
    import re
    from pathlib import Path

    from xaug.pipeline import parse_pipeline, run_pipeline
    from xaug.store import Store

    run_pipeline(Store(store_copy), parse_pipeline({"name": "mosaic", "steps": [{"op": "mosaic", "n": 2}]}),
                 jobs=1, progress=False)
    monkeypatch.setenv("XAUG_HOME", str(store_copy))
    monkeypatch.chdir(tmp_path)
    readme = Path(__file__).resolve().parents[1] / "README.md"
    (block,) = re.findall(r"```python\n(.*?)```", readme.read_text(), re.S)
    namespace: dict = {}
    exec(compile(block, str(readme), "exec"), namespace)
    assert namespace["ds"].name == "mosaic_v1" and namespace["masks"].shape == (29, 512, 512)
    assert namespace["item"].provenance["op"] == "mosaic"
