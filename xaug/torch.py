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

from xaug.api import Dataset, Item, parse_size
from xaug.errors import BadInput

__all__ = ["SegmentationDataset", "EpochSampler", "item_seed"]


def item_seed(seed: int, epoch: int, index: int) -> int:
    """A 32-bit seed for one (seed, epoch, index): independent of worker count and order."""
    return int(np.random.SeedSequence([int(seed), int(epoch), int(index)]).generate_state(1)[0])


def _count(value: Any, what: str) -> int:
    """A non-negative int (seed, epoch, n), else BadInput naming `what`."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 0:
        raise BadInput(f"{what} must be a non-negative int, not {value!r}")
    return int(value)


def _index(value: Any) -> int:
    """An int-like index (int, numpy or 0-d torch integer); TypeError for anything else."""
    import operator

    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"a SegmentationDataset index is an int or an (epoch, index) pair, not {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"a SegmentationDataset index is an int or an (epoch, index) pair, "
                        f"not {type(value).__name__} {value!r}") from None


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
            if isinstance(dataset, (str, bytes, os.PathLike)) or not hasattr(dataset, "__iter__"):
                raise BadInput(f"dataset must be an xaug.Dataset (xaug.open(name)) or a list of its Items, "
                               f"not {type(dataset).__name__} {str(dataset)[:60]!r}")
            items = list(dataset)
            bad = [it for it in items if not isinstance(it, Item)]
            if bad:
                raise BadInput(f"dataset must be an xaug.Dataset or a list of its Items; "
                               f"got a {type(bad[0]).__name__} among the items")
            where = "items"
        unlabelled = [it.path for it in items if not it.has_labels]
        if unlabelled:
            raise BadInput(f"{len(unlabelled)} item(s) have no label file (first: {unlabelled[0]}); "
                           "a segmentation dataset needs labels, choose a labelled split", where=where)
        self.items: list[Item] = list(items)
        self.size = parse_size(size)
        self.channels = channels
        try:
            lo, hi = (float(v) for v in value_range)
        except (TypeError, ValueError):
            raise BadInput(f"value_range must be a (low, high) pair of numbers, not {value_range!r}") from None
        if not (np.isfinite(lo) and np.isfinite(hi)) or lo == hi:
            raise BadInput(f"value_range must be two different finite numbers, not {value_range!r}")
        self.value_range = (lo, hi)
        self.transform = transform
        self.seed = _count(seed, "seed")
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
        self.epoch = _count(epoch, "epoch")

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
        if isinstance(key, tuple):
            if len(key) != 2:
                raise TypeError(f"a SegmentationDataset index is an int or an (epoch, index) pair, not {key!r}")
            epoch, index = _index(key[0]), _index(key[1])
            if epoch < 0:
                raise IndexError(f"epoch {epoch} in key {key!r} must be non-negative")
        else:
            epoch, index = self.epoch, _index(key)
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
            else:
                out = (self.transform(img, masks, rng=np.random.default_rng(s)) if self._rng_arg
                       else self.transform(img, masks))
                if not isinstance(out, (tuple, list)) or len(out) != 2:
                    raise BadInput(f"the transform must return (image, masks), not {type(out).__name__}"
                                   + (f" of {len(out)}" if isinstance(out, (tuple, list)) else ""),
                                   where=_name(self.transform))
                img, masks = out
        return img, masks

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        img, masks = self.sample_arrays(key)
        image, target = self._image_tensor(img), self._mask_tensor(masks)
        if (image.ndim != 3 or image.shape[0] != self.channels or target.ndim != 3 or target.shape[0] != 29
                or image.shape[1:] != target.shape[1:]):
            # a transform that dropped a dimension or moved the channels: say so here, not in the model
            raise BadInput(f"a sample must be image ({self.channels}, H, W) and masks (29, H, W); got "
                           f"{tuple(image.shape)} and {tuple(target.shape)} after the transform "
                           "(masks go in and must come back as (29, H, W), or (H, W, 29) for albumentations)",
                           where=_name(self.transform) if self.transform is not None else None)
        return image, target

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


def _name(transform: Any) -> str:
    return f"transform {getattr(transform, '__qualname__', type(transform).__name__)}"


class EpochSampler(Sampler):
    """Yields (epoch, index) keys: a fresh seeded permutation each epoch (`set_epoch`).

    With it, the epoch reaches every DataLoader worker, persistent or not:
    `DataLoader(ds, batch_size=8, sampler=EpochSampler(len(ds), seed=0), num_workers=2)`.
    """

    def __init__(self, n: int, seed: int = 0, shuffle: bool = True):
        if hasattr(n, "__len__") and not isinstance(n, (int, np.integer)):
            raise BadInput(f"n is the number of items, e.g. EpochSampler(len(train)), not a {type(n).__name__}")
        self.n, self.seed, self.shuffle, self.epoch = _count(n, "n"), _count(seed, "seed"), shuffle, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = _count(epoch, "epoch")

    def __iter__(self) -> Iterator[tuple[int, int]]:
        order = (np.random.default_rng(np.random.SeedSequence([self.seed, self.epoch, 7])).permutation(self.n)
                 if self.shuffle else np.arange(self.n))
        return iter([(self.epoch, int(i)) for i in order])

    def __len__(self) -> int:
        return self.n
