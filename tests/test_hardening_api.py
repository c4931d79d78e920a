"""The public Python API refuses a user's mistake with one clear error naming the argument
(xaug.open, Dataset[...], Item.masks, SegmentationDataset, EpochSampler, interop export)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import xaug
from xaug.errors import BadInput


@pytest.fixture(scope="module")
def ds(tiny_home):
    return xaug.open("raw", home=tiny_home)


def test_open_takes_a_name_a_path_like_or_an_open_dataset(ds, tiny_home):
    with pytest.raises(BadInput, match=r"open\(\) takes a dataset name, name_vN or id prefix \(a str\), not NoneType"):
        xaug.open(None, home=tiny_home)
    with pytest.raises(BadInput, match="home must be the store folder \\(a str or Path\\), not int"):
        xaug.open("raw", home=3)
    again = xaug.open(ds)  # a Dataset where a name is expected: the same version, from its own store
    assert again.id == ds.id and again.home == ds.home


def test_dataset_getitem_keys(ds):
    items = ds.items()
    assert ds[-1] is items[-1] and ds[0:2] == items[0:2]
    assert ds[Path(items[0].path)] is items[0]
    with pytest.raises(IndexError, match=r"item index 99 out of range for raw_v1 \(16 items\)"):
        ds[99]
    for key in (1.5, None, ["a"]):
        with pytest.raises(TypeError, match="looked up by image stem, file name, layout path or int index"):
            ds[key]
    assert None not in ds and ["a"] not in ds
    with pytest.raises(BadInput, match="fold must be an integer from 0 to"):
        ds.items(fold=True)


@pytest.mark.parametrize("size", ["64", 1.5, (64,), (64, 64, 3), True, "abc"])
def test_mask_size_must_be_an_int_or_a_pair(ds, size):
    # "64" used to give (29, 6, 4) masks, (64, 64, 3) was taken as (64, 64)
    with pytest.raises(BadInput, match="mask size must be an int or a \\(height, width\\) pair of ints"):
        ds[0].masks(size=size)
    assert ds[0].masks(size=[32, 16]).shape == (29, 32, 16)


def test_segmentation_dataset_arguments(ds):
    torch = pytest.importorskip("torch")
    from xaug.torch import EpochSampler, SegmentationDataset

    with pytest.raises(BadInput, match=r"dataset must be an xaug.Dataset \(xaug.open\(name\)\) or a list of its Items, not str"):
        SegmentationDataset("raw", size=32)
    with pytest.raises(BadInput, match="size must be an int or a \\(height, width\\) pair of ints, not '64'"):
        SegmentationDataset(ds, size="64")
    with pytest.raises(BadInput, match="value_range must be a \\(low, high\\) pair of numbers"):
        SegmentationDataset(ds, size=32, value_range=(1,))
    with pytest.raises(BadInput, match="value_range must be two different finite numbers"):
        SegmentationDataset(ds, size=32, value_range=(1, 1))
    with pytest.raises(BadInput, match="seed must be a non-negative int, not -1"):
        SegmentationDataset(ds, size=32, seed=-1)
    with pytest.raises(BadInput, match=r"n is the number of items, e.g. EpochSampler\(len\(train\)\)"):
        EpochSampler(SegmentationDataset(ds, size=32))
    with pytest.raises(BadInput, match="n must be a non-negative int, not -1"):
        EpochSampler(-1)
    train = SegmentationDataset(ds, size=32)
    n = len(train)
    assert torch.equal(train[-1][0], train[n - 1][0]) and torch.equal(train[(0, -1)][0], train[(0, n - 1)][0])
    for key in (1.5, "0", None, (0,), (0, 1, 2), [0, 1], slice(0, 2)):  # 1.5 and "0" used to read item 1 / 0
        with pytest.raises(TypeError, match="a SegmentationDataset index is an int or an \\(epoch, index\\) pair"):
            train[key]
    with pytest.raises(IndexError, match=f"index {n} out of range for {n} items"):
        train[n]
    with pytest.raises(BadInput, match="epoch must be a non-negative int"):
        train.set_epoch(-1)
    assert train[np.int64(1)][0].shape == train[torch.tensor(1)][0].shape == (1, 32, 32)


@pytest.mark.parametrize("transform, message", [
    (lambda i, m: i, "the transform must return \\(image, masks\\), not ndarray"),
    (lambda i, m: {"image": i, "mask": m}, "the transform must return \\(image, masks\\), not dict"),
    (lambda i, m: (i, m.transpose(1, 2, 0)), r"got \(1, 32, 32\) and \(32, 32, 29\) after the transform"),
    (lambda i, m: (i[:16, :16], m), r"got \(1, 16, 16\) and \(29, 32, 32\) after the transform"),
])
def test_a_transform_with_the_wrong_output_is_named(ds, transform, message):
    pytest.importorskip("torch")
    from xaug.torch import SegmentationDataset

    with pytest.raises(BadInput, match=message) as exc:
        SegmentationDataset(ds, size=32, transform=transform)[0]
    assert exc.value.where.startswith("transform ")


def test_export_arguments(ds, tmp_path):
    from xaug.interop.export import export

    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "keep.txt").write_text("x")
    with pytest.raises(BadInput, match="force must be True or False, not 'no'"):
        export(ds, tmp_path / "old", format="masks", force="no")  # used to replace the folder
    assert (tmp_path / "old" / "keep.txt").read_text() == "x"
    with pytest.raises(BadInput, match=r"export\(\) takes an xaug.Dataset \(xaug.open\(name\)\), not str 'raw'"):
        export("raw", tmp_path / "a", format="coco")
    with pytest.raises(BadInput, match="dest must be the folder to export into \\(a str or Path\\), not NoneType"):
        export(ds, None, format="coco")
    with pytest.raises(BadInput, match="unknown export format 'COCO' \\(did you mean coco\\?\\)"):
        export(ds, tmp_path / "b", format="COCO")
    with pytest.raises(BadInput, match="unknown export format None"):
        export(ds, tmp_path / "b", format=None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old"]


def test_diff_versions_takes_datasets(ds):
    from xaug.interop.diff import diff_versions

    with pytest.raises(BadInput, match=r"diff_versions\(\) takes two xaug.Dataset \(xaug.open\(name\)\); a is str 'raw'"):
        diff_versions("raw", ds)
    assert diff_versions(ds, ds) is not None
