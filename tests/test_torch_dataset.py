"""xaug.torch.SegmentationDataset: tensors, transforms, DataLoader workers, per-(seed, epoch, index) determinism."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

import xaug
from xaug.errors import BadInput
from xaug.torch import EpochSampler, SegmentationDataset, item_seed

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")


@pytest.fixture(scope="module")
def ds(tiny_home):
    return xaug.open("raw", home=tiny_home)


def _compose():
    import albumentations as A

    return A.Compose([A.HorizontalFlip(p=0.5), A.RandomBrightnessContrast(0.3, 0.3, p=0.8),
                      A.Affine(rotate=(-20, 20), p=0.7)])


def test_only_xaug_torch_imports_torch():
    code = "import sys, xaug, xaug.api, xaug.interop; xaug.open; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_tensors_match_the_item(ds):
    train = SegmentationDataset(ds, split="train", size=64)
    assert len(train) == len(ds.items(split="train"))
    image, masks = train[0]
    assert image.shape == (1, 64, 64) and image.dtype == torch.float32
    assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0
    item = ds.items(split="train")[0]
    assert masks.shape == (29, 64, 64) and masks.dtype == torch.float32
    assert torch.equal(masks, torch.from_numpy(item.masks(size=64).astype(np.float32)))
    assert set(torch.unique(masks).tolist()) <= {0.0, 1.0} and masks.sum() > 0
    rgb, _ = SegmentationDataset(ds, split="val", size=(32, 48), channels=3, value_range=(-1, 1))[0]
    assert rgb.shape == (3, 32, 48) and float(rgb.min()) >= -1.0 and float(rgb.min()) < 0
    full, full_masks = SegmentationDataset(ds, split="test", size=None)[0]
    assert full.shape == (1, 256, 256) and full_masks.shape == (29, 256, 256)


def test_cache_gives_the_same_tensors(ds):
    plain = SegmentationDataset(ds, split="train", size=64)
    cached = SegmentationDataset(ds, split="train", size=64, cache=True, jobs=2)
    for i in range(len(plain)):
        a, b = plain[i], cached[i]
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_albumentations_compose_in_a_dataloader_with_two_workers(ds):
    data = SegmentationDataset(ds, split="train", size=64, transform=_compose(), seed=3)
    serial = [data[i] for i in range(len(data))]
    loader = DataLoader(data, batch_size=3, shuffle=False, num_workers=2)
    images, masks = zip(*loader)
    assert torch.equal(torch.cat(images), torch.stack([s[0] for s in serial]))
    assert torch.equal(torch.cat(masks), torch.stack([s[1] for s in serial]))
    # the transform did something, and masks follow the image geometry (still binary)
    plain = SegmentationDataset(ds, split="train", size=64)
    assert any(not torch.equal(serial[i][1], plain[i][1]) for i in range(len(data)))
    assert set(torch.unique(torch.stack([s[1] for s in serial])).tolist()) <= {0.0, 1.0}


def test_deterministic_per_seed_epoch_index(ds):
    a = SegmentationDataset(ds, split="train", size=64, transform=_compose(), seed=1)
    b = SegmentationDataset(ds, split="train", size=64, transform=_compose(), seed=1)
    order = [3, 0, 2, 1, 3]  # any order, repeated keys: same key, same sample
    first = {i: a[(1, i)] for i in order}
    for i in reversed(order):
        assert torch.equal(b[(1, i)][0], first[i][0]) and torch.equal(b[(1, i)][1], first[i][1])
    a.set_epoch(1)
    assert torch.equal(a[2][0], first[2][0])
    other_epoch = [a[(2, i)][0] for i in range(4)]
    other_seed = SegmentationDataset(ds, split="train", size=64, transform=_compose(), seed=2)
    assert any(not torch.equal(other_epoch[i], first[i][0]) for i in range(4))
    assert any(not torch.equal(other_seed[(1, i)][0], first[i][0]) for i in range(4))
    assert item_seed(1, 2, 3) == item_seed(1, 2, 3) != item_seed(1, 3, 2)


def test_epoch_sampler_reaches_persistent_workers(ds):
    data = SegmentationDataset(ds, split="train", size=32, transform=_compose(), seed=0)
    sampler = EpochSampler(len(data), seed=0)
    loader = DataLoader(data, batch_size=2, sampler=sampler, num_workers=2, persistent_workers=True)
    seen = []
    for epoch in range(2):
        sampler.set_epoch(epoch)
        seen.append(torch.cat([x for x, _ in loader]))
    assert all(epoch == 1 for epoch, _ in sampler) and sorted(i for _, i in sampler) == list(range(len(data)))
    for epoch in range(2):
        sampler.set_epoch(epoch)
        expect = torch.stack([data[k][0] for k in sampler])
        assert torch.equal(seen[epoch], expect)
    assert not torch.equal(seen[0], seen[1])


def test_any_callable_transform(ds):
    def flip(image, masks):
        return image[:, ::-1], masks[:, :, ::-1]

    def noise(image, masks, rng):
        return np.clip(image.astype(int) + rng.integers(-5, 6, image.shape), 0, 255).astype(np.uint8), masks

    plain = SegmentationDataset(ds, split="train", size=64)
    flipped = SegmentationDataset(ds, split="train", size=64, transform=flip)
    assert torch.equal(flipped[0][1], plain[0][1].flip(-1)) and torch.equal(flipped[0][0], plain[0][0].flip(-1))
    noisy = SegmentationDataset(ds, split="train", size=64, transform=noise, seed=5)
    assert torch.equal(noisy[(0, 1)][0], noisy[(0, 1)][0]) and not torch.equal(noisy[(0, 1)][0], noisy[(1, 1)][0])


def test_bad_arguments(ds, tmp_path):
    with pytest.raises(BadInput, match="channels must be 1 \\(gray\\) or 3 \\(RGB\\), not 2"):
        SegmentationDataset(ds, channels=2)
    with pytest.raises(BadInput, match="split must be one of"):
        SegmentationDataset(ds, split="training")
    with pytest.raises(BadInput, match="transform must be an albumentations transform or a callable"):
        SegmentationDataset(ds, transform="flip")
    with pytest.raises(IndexError):
        SegmentationDataset(ds, size=32)[99]
    from _layout import make_layout
    from xaug.store import Store

    Store(tmp_path / "home").import_folder(make_layout(tmp_path / "layout", persons=2, size=48), name="real")
    real = xaug.open("real", home=tmp_path / "home")
    with pytest.raises(BadInput, match=r"1 item\(s\) have no label file \(first: test/DCM/ID040/") as exc:
        SegmentationDataset(real, split="test")
    assert exc.value.where == "real_v1 split=test"


def test_normalize_and_to_tensor_in_the_compose(ds):
    import albumentations as A
    from albumentations.pytorch import ToTensorV2

    t = A.Compose([A.HorizontalFlip(p=1), A.Normalize(mean=0.5, std=0.25), ToTensorV2()])
    plain = SegmentationDataset(ds, split="train", size=64)
    image, masks = SegmentationDataset(ds, split="train", size=64, transform=t)[0]
    assert image.shape == (1, 64, 64) and image.dtype == torch.float32 and float(image.min()) < 0
    assert torch.allclose(image, (plain[0][0].flip(-1) - 0.5) / 0.25, atol=1e-5)
    assert torch.equal(masks, plain[0][1].flip(-1))
    rgb, _ = SegmentationDataset(ds, split="train", size=64, channels=3, transform=t)[0]
    assert rgb.shape == (3, 64, 64)


def test_a_cache_callable_supplies_the_images(ds):
    plain = SegmentationDataset(ds, split="train", size=64)
    calls = []

    def from_disk(items, size, channels):  # e.g. an on-disk cache of resized images
        calls.append((len(items), size, channels))
        loaded = [plain._load(it) for it in items]
        return np.stack([img for img, _ in loaded]), [hw for _, hw in loaded]

    cached = SegmentationDataset(ds, split="train", size=64, cache=from_disk)
    assert calls == [(len(plain), (64, 64), 1)]
    assert all(torch.equal(cached[i][0], plain[i][0]) and torch.equal(cached[i][1], plain[i][1])
               for i in range(len(plain)))
    with pytest.raises(BadInput, match=r"the cache gave uint8 images of shape \(1, 64, 64\) and 1 sizes; expected uint8"):
        SegmentationDataset(ds, split="train", size=64, cache=lambda items, size, ch: (np.zeros((1, 64, 64), np.uint8), [(1, 1)]))
    with pytest.raises(BadInput, match="cache needs a fixed size"):
        SegmentationDataset(ds, split="train", size=None, cache=True)
