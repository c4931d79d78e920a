"""PyTorch datasets over a dataset version: the only module of `xaug` that imports torch.

    import xaug
    from torch.utils.data import DataLoader
    from xaug.torch import SegmentationDataset

    train = SegmentationDataset(xaug.open("raw"), split="train", size=512, seed=0)
    loader = DataLoader(train, batch_size=8, shuffle=True, num_workers=2)
    for image, masks in loader:          # (B, 1, 512, 512) float, (B, 29, 512, 512) float
        ...

An item's transform is seeded from (seed, epoch, index), so a seeded albumentations `Compose`
gives the same sample whatever the number of DataLoader workers or the order they run in.
"""
from __future__ import annotations

import inspect
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset as _TorchDataset
from torch.utils.data import Sampler

from xaug.api import Dataset, Item
from xaug.errors import BadInput

__all__ = ["SegmentationDataset", "EpochSampler", "item_seed"]


def item_seed(seed: int, epoch: int, index: int) -> int:
    """A 32-bit seed for one (seed, epoch, index): independent of worker count and order."""
    return int(np.random.SeedSequence([int(seed), int(epoch), int(index)]).generate_state(1)[0])


def _is_albumentations(transform: Any) -> bool:
    return any(c.__module__.split(".")[0] == "albumentations" for c in type(transform).__mro__)


class SegmentationDataset(_TorchDataset):
    """`(image, masks)` pairs of one split of a version, as float tensors.

    image: (1, S, S) for `channels=1` (gray) or (3, S, S) for `channels=3` (RGB), the uint8
           pixels mapped linearly onto `value_range` ((0, 1) by default; the bundled trainer
           uses (-1, 1)).
    masks: (29, S, S) in class order (0/1), rasterised from the polygons scaled to S x S with
           the evaluator's rasteriser: overlapping bones keep every pixel.

    size:      S (an int or (height, width)); None keeps each image's own size. Images are
               resized with INTER_AREA.
    transform: an albumentations transform (called as `transform(image=..., mask=...)` with the
               masks channels-last, and re-seeded with `set_random_seed` per item), or any
               callable `f(image, masks) -> (image, masks)` on uint8 numpy arrays (H, W[, 3]) and
               (29, H, W); a callable with an `rng` parameter gets a `numpy.random.Generator`
               seeded per item.
    seed:      the transform's seed; an item's draw depends only on (seed, epoch, index).
    cache:     decode and resize every image once up front (threads), kept in shared memory so
               DataLoader workers do not copy it; the bytes are checked when they are read. A
               callable `cache(items, (h, w), channels) -> (uint8 array (N, h, w[, 3]), [(H, W)
               original sizes])` supplies the resized images instead (an on-disk cache, say).

    An index is an int (epoch from `set_epoch`) or an `(epoch, index)` pair, as `EpochSampler`
    yields: the pair also works with `persistent_workers=True`.
    """

    def __init__(self, dataset: Dataset | Sequence[Item], split: str | None = "train",
                 size: int | tuple[int, int] | None = 512,
                 transform: Callable | None = None, *, channels: int = 1,
                 value_range: tuple[float, float] = (0.0, 1.0), seed: int = 0,
                 cache: bool | Callable[..., tuple[Any, list[tuple[int, int]]]] = False,
                 jobs: int | None = None):
        if channels not in (1, 3):
            raise BadInput(f"channels must be 1 (gray) or 3 (RGB), not {channels!r}")
        if isinstance(dataset, Dataset):
            items = dataset.items(split=split)
            where = f"{dataset.name} split={split}"
        else:
            items = list(dataset)
            where = "items"
        unlabelled = [it.path for it in items if not it.has_labels]
        if unlabelled:
            raise BadInput(f"{len(unlabelled)} item(s) have no label file (first: {unlabelled[0]}); "
                           "a segmentation dataset needs labels, choose a labelled split", where=where)
        self.items: list[Item] = list(items)
        if size is None:
            self.size = None
        else:
            hw = (int(size), int(size)) if isinstance(size, (int, np.integer)) else (int(size[0]), int(size[1]))
            if min(hw) < 1:
                raise BadInput(f"size must be positive, got {size!r}")
            self.size = hw
        self.channels = channels
        lo, hi = float(value_range[0]), float(value_range[1])
        self.value_range = (lo, hi)
        self.transform = transform
        self.seed = int(seed)
        self.epoch = 0
        self._albu = transform is not None and _is_albumentations(transform)
        self._rng_arg = False
        if transform is not None and not self._albu:
            if not callable(transform):
                raise BadInput(f"transform must be an albumentations transform or a callable, not {type(transform).__name__}")
            try:
                self._rng_arg = "rng" in inspect.signature(transform).parameters
            except (TypeError, ValueError):
                self._rng_arg = False
        self._cache: torch.Tensor | None = None
        self._shapes: list[tuple[int, int]] | None = None
        if (callable(cache) or cache) and self.size is None:
            raise BadInput("cache needs a fixed size (images are kept resized)")
        if callable(cache):
            images, shapes = cache(self.items, self.size, self.channels)
            images = np.asarray(images)
            want = (len(self.items), *self.size) + ((3,) if channels == 3 else ())
            if images.dtype != np.uint8 or images.shape != want or len(shapes) != len(self.items):
                raise BadInput(f"the cache gave {images.dtype} images of shape {images.shape} and "
                               f"{len(shapes)} sizes; expected uint8 {want} and {len(self.items)} sizes")
            self._shapes = [(int(h), int(w)) for h, w in shapes]
        elif cache:
            with ThreadPoolExecutor(max(1, jobs or min(8, os.cpu_count() or 1))) as pool:
                loaded = list(pool.map(self._load, self.items))  # cv2 decode/resize release the GIL
            self._shapes = [hw for _, hw in loaded]
            images = np.stack([img for img, _ in loaded])
        if self._shapes is not None:
            # in shared memory: forkserver/spawn workers receive a handle, not a pickled copy
            self._cache = torch.from_numpy(np.ascontiguousarray(images)).share_memory_()

    # -- epochs
    def set_epoch(self, epoch: int) -> None:
        """The epoch used for int indices (set before iterating; with persistent workers use
        `EpochSampler`, whose (epoch, index) keys reach the workers)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.items)

    # -- reading
    def _load(self, item: Item) -> tuple[np.ndarray, tuple[int, int]]:
        import cv2

        img = item.image("gray" if self.channels == 1 else "rgb")
        hw = img.shape[:2]
        if self.size is not None and hw != self.size:
            img = cv2.resize(img, (self.size[1], self.size[0]), interpolation=cv2.INTER_AREA)
        return np.ascontiguousarray(img), hw

    def sample_arrays(self, key: int | tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """The item as uint8 numpy arrays after the transform: image (H, W[, 3]), masks (29, H, W)."""
        epoch, index = (int(key[0]), int(key[1])) if isinstance(key, tuple) else (self.epoch, int(key))
        if not -len(self.items) <= index < len(self.items):
            raise IndexError(f"index {index} out of range for {len(self.items)} items")
        index %= len(self.items)
        item = self.items[index]
        if self._cache is not None:
            img, hw = self._cache[index].numpy(), self._shapes[index]
        else:
            img, hw = self._load(item)
        out_hw = self.size or hw
        masks = item.masks(size=out_hw).view(np.uint8)
        if self.transform is not None:
            s = item_seed(self.seed, epoch, index)
            if self._albu:
                self.transform.set_random_seed(s)
                res = self.transform(image=img, mask=np.ascontiguousarray(masks.transpose(1, 2, 0)))
                img, masks = res["image"], np.asarray(res["mask"]).transpose(2, 0, 1)
            elif self._rng_arg:
                img, masks = self.transform(img, masks, rng=np.random.default_rng(s))
            else:
                img, masks = self.transform(img, masks)
        return img, masks

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        img, masks = self.sample_arrays(key)
        return self._image_tensor(img), self._mask_tensor(masks)

    def _image_tensor(self, img: Any) -> torch.Tensor:
        t = torch.as_tensor(np.ascontiguousarray(img) if isinstance(img, np.ndarray) else img)
        if t.ndim == 2:
            t = t.unsqueeze(0)
        elif t.ndim == 3 and t.shape[-1] in (1, 3) and t.shape[0] not in (1, 3):
            t = t.permute(2, 0, 1)  # channels last -> first
        if t.dtype == torch.uint8:
            lo, hi = self.value_range
            t = t.float().mul_((hi - lo) / 255.0).add_(lo)
        return t.float().contiguous()

    @staticmethod
    def _mask_tensor(masks: Any) -> torch.Tensor:
        t = torch.as_tensor(np.ascontiguousarray(masks) if isinstance(masks, np.ndarray) else masks)
        return t.float().contiguous()


class EpochSampler(Sampler):
    """Yields (epoch, index) keys: a fresh seeded permutation each epoch (`set_epoch`).

    With it, the epoch reaches every DataLoader worker, persistent or not:
    `DataLoader(ds, batch_size=8, sampler=EpochSampler(len(ds), seed=0), num_workers=2)`.
    """

    def __init__(self, n: int, seed: int = 0, shuffle: bool = True):
        self.n, self.seed, self.shuffle, self.epoch = int(n), int(seed), shuffle, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        order = (np.random.default_rng(np.random.SeedSequence([self.seed, self.epoch, 7])).permutation(self.n)
                 if self.shuffle else np.arange(self.n))
        return iter([(self.epoch, int(i)) for i in order])

    def __len__(self) -> int:
        return self.n
