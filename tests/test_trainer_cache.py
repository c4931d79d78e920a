"""The trainer's on-disk image cache: keyed by (version id, file hashes, size), read back
identically, rebuilt when stale, used by a second `train_version` without decoding anything."""
from __future__ import annotations

import json

import numpy as np
import pytest

from _trainer_data import make_samples
from trainer import data as tdata
from trainer.data import DiskCache, TrainSet, load_gray, resized_images


def test_cache_round_trip_and_keys(tmp_path):
    samples = make_samples(tmp_path / "data", n=3, size=48)
    disk = DiskCache(tmp_path / "cache", "v1")
    hashes = ["a" * 64, "b" * 64, "c" * 64]
    images, shapes = resized_images(samples, 32, jobs=2, disk=disk, hashes=hashes)
    assert images.shape == (3, 32, 32) and shapes == [(48, 48)] * 3
    for s, img in zip(samples, images):  # parallel decoding gives what one decode gives
        assert np.array_equal(load_gray(s, 32)[0], img)
    npy, meta = disk.paths(hashes, 32)
    assert npy.parent == tmp_path / "cache" / "v1" / "32" and npy.exists()
    assert json.loads(meta.read_text())["files"] == hashes
    got = disk.load(hashes, 32)
    assert got is not None and np.array_equal(got[0], images) and got[1] == shapes and got[0].flags.writeable
    # another size, another file list, another version: other entries
    assert disk.load(hashes, 16) is None and disk.load(hashes[:2], 32) is None
    assert DiskCache(tmp_path / "cache", "v2").load(hashes, 32) is None
    # a damaged entry is not used (and rebuilt on the next call)
    np.save(npy, np.zeros((2, 32, 32), np.uint8))
    assert disk.load(hashes, 32) is None
    again, _ = resized_images(samples, 32, disk=disk, hashes=hashes)
    assert np.array_equal(again, images) and disk.load(hashes, 32) is not None


def test_train_set_reads_the_cache_without_decoding(tmp_path, monkeypatch):
    samples = make_samples(tmp_path / "data", n=2, size=48)
    disk = DiskCache(tmp_path / "cache", "v1")
    first = TrainSet(samples, 32, aug=None, disk=disk, hashes=["x", "y"])

    def no_decode(*a, **k):
        raise AssertionError("decoded although cached")

    monkeypatch.setattr(tdata, "_decode_all", no_decode)
    second = TrainSet(samples, 32, aug=None, disk=disk, hashes=["x", "y"])
    for i in range(2):
        assert all(a.equal(b) for a, b in zip(first[i], second[i]))


def test_second_training_starts_from_the_cache(store_copy, tmp_path, monkeypatch):
    from trainer.runs import train_version
    from xaug.store import Store

    store = Store(store_copy)
    opts = dict(device="cpu", progress=False, epochs=1, size=32, batch=4, width=4, depth=2, workers=0, val_limit=2)
    train_version(store, "raw", run=str(tmp_path / "a"), **opts)
    ds = store.open("raw")
    entries = sorted((store_copy / "cache" / "trainer" / ds.id).glob("32/*.npy"))
    assert len(entries) == 2  # training images and validation inputs

    def no_decode(*a, **k):
        raise AssertionError("decoded although cached")

    monkeypatch.setattr(tdata, "_decode_all", no_decode)
    monkeypatch.setattr("trainer.data.load_gray", no_decode)  # validation inputs too
    second = train_version(store, "raw", run=str(tmp_path / "b"), **opts)
    first_rows = (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()
    second_rows = (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()
    strip = lambda r: {k: v for k, v in json.loads(r).items() if k not in ("train_seconds", "images_per_s", "startup_seconds")}
    assert [strip(r) for r in first_rows] == [strip(r) for r in second_rows] and second.best_dice is not None
    with pytest.raises(AssertionError, match="decoded although cached"):  # the switch off decodes again
        train_version(store, "raw", run=str(tmp_path / "c"), disk_cache=False, **opts)


def test_no_file_hashes_no_disk_cache(tmp_path):
    """Samples of a plain folder carry no hash: a path does not say which bytes it holds, so
    nothing is cached on disk for them."""
    from trainer.config import TrainConfig
    from trainer.loop import train

    samples = make_samples(tmp_path / "data", n=3, size=48)
    cfg = TrainConfig(size=32, batch=2, epochs=1, width=4, depth=2, workers=0)
    train(cfg, samples[:2], samples[2:], tmp_path / "run", device="cpu", progress=False,
          cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache").exists()
    train(cfg, samples[:2], samples[2:], tmp_path / "run2", device="cpu", progress=False,
          cache_dir=tmp_path / "cache", train_hashes=["h1", "h2"], val_hashes=["h3"])
    assert len(list((tmp_path / "cache").glob("unversioned/32/*.npy"))) == 2


def test_public_api_items_train_like_store_samples(tiny_home, tmp_path):
    """TrainSet/EvalSet take items of the public API (`xaug.open`) as they take store Samples,
    and `item_cache` gives `xaug.torch.SegmentationDataset` the trainer's disk cache."""
    import xaug
    from trainer.data import EvalSet, as_sample, item_cache
    from trainer.runs import training_samples
    from xaug.store import Store
    from xaug.torch import SegmentationDataset

    api = xaug.open("raw", home=tiny_home)
    items = api.items(split="train")
    samples = training_samples(Store(tiny_home).open("raw"))
    assert [it.path for it in items] == [s.relpath for s in samples]
    converted = as_sample(items[0])
    assert converted.image_sha256 == items[0].image_file.sha256 and converted.annotations == samples[0].annotations
    a = TrainSet(items[:3], 64, aug=None)
    b = TrainSet(samples[:3], 64, aug=None)
    for i in range(3):
        assert all(x.equal(y) for x, y in zip(a[i], b[i]))
    ea, eb = EvalSet(items[:2], 64)[1], EvalSet(samples[:2], 64)[1]
    assert ea.image.equal(eb.image) and np.array_equal(ea.gt_packed, eb.gt_packed)
    disk = DiskCache(tmp_path / "cache", api.id)
    cached = SegmentationDataset(api, "train", size=64, cache=item_cache(disk))
    plain = SegmentationDataset(api, "train", size=64, cache=True)
    assert cached[0][0].equal(plain[0][0]) and any((tmp_path / "cache" / api.id / "64").glob("*.npy"))
    assert np.array_equal(disk.load([it.image_file.sha256 for it in items], 64)[0][0],
                          (plain[0][0][0].numpy() * 255).round().astype(np.uint8))
    with pytest.raises(Exception, match="square gray images"):
        SegmentationDataset(api, "train", size=64, channels=3, cache=item_cache(disk))


def test_to_input_equals_the_torch_formula_for_every_grey_level():
    import numpy as np
    import torch

    from trainer.data import to_input

    g = np.arange(256, dtype=np.uint8).reshape(16, 16)
    ref = torch.from_numpy(g).float().div_(127.5).sub_(1.0).unsqueeze(0)
    got = to_input(g)
    assert got.dtype == torch.float32 and got.shape == (1, 16, 16) and torch.equal(got, ref)
    assert torch.equal(to_input(g[:, ::2]), torch.from_numpy(np.ascontiguousarray(g[:, ::2])).float()
                       .div_(127.5).sub_(1.0).unsqueeze(0))  # a strided view too
