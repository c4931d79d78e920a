"""Torch datasets over store samples: images resized to the training size, 29-channel targets
rasterised from the polygons on the fly, albumentations online augmentation seeded per item.

Samples come from the store's public API (`store.open(ref).samples(...)`); this module never
reads a dataset folder by itself.
"""
from __future__ import annotations

import functools
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Sequence

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from xaug.errors import BadInput
from xaug.layout import read_image
from xaug.model import Sample
from xaug.raster import class_masks


@dataclass
class OnlineAug:
    """Probabilities of the online (per-batch) augmentations; 0 switches one off."""

    brightness_contrast: float = 0.5
    clahe: float = 0.2
    sharpen: float = 0.2
    emboss: float = 0.2
    hflip: float = 0.5  # a flipped right hand looks like a left hand: class meaning is kept

    def build(self):
        # albumentations looks for a newer version online at import; training must work offline
        os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
        import albumentations as A

        ops = []
        if self.brightness_contrast > 0:
            ops.append(A.RandomBrightnessContrast(0.2, 0.2, p=self.brightness_contrast))
        if self.clahe > 0:
            ops.append(A.CLAHE(clip_limit=(1, 4), p=self.clahe))
        if self.sharpen > 0:
            ops.append(A.Sharpen(p=self.sharpen))
        if self.emboss > 0:
            ops.append(A.Emboss(p=self.emboss))
        if self.hflip > 0:
            ops.append(A.HorizontalFlip(p=self.hflip))
        return A.Compose(ops) if ops else None


def loader_context():
    """Start DataLoader workers with forkserver, not fork: a worker forked from a process whose
    OpenCV thread pool is running can deadlock in cv2.setNumThreads (seen in `xaug demo`)."""
    import multiprocessing as mp

    return mp.get_context("forkserver") if "forkserver" in mp.get_all_start_methods() else None


def worker_init(_worker_id: int, main_pid: int | None = None) -> None:
    """One thread per DataLoader worker: the workers are the parallelism (no oversubscription).
    With `main_pid`, the worker also exits when that process is gone (`watch_main`)."""
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    if main_pid is not None:
        watch_main(main_pid)


def worker_init_for(main_pid: int):
    """`worker_init` bound to the training process: pass as `worker_init_fn`."""
    return functools.partial(worker_init, main_pid=main_pid)


def watch_main(pid: int, interval: float = 1.0) -> threading.Thread:
    """A daemon thread that ends this process when process `pid` no longer exists.

    Workers started by the forkserver are its children, not the training process's: PyTorch's
    own watchdog (the parent pid) keeps them alive after the training process is killed, and
    the forkserver lives as long as they do. This check closes that gap.
    """
    def run() -> None:
        while True:
            time.sleep(interval)
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                os._exit(0)
            except PermissionError:  # alive, owned by someone else (pid reuse): keep going
                pass

    thread = threading.Thread(target=run, name="xaug-main-watchdog", daemon=True)
    thread.start()
    return thread


def item_seed(*keys: int) -> int:
    """A 32-bit seed for one (seed, epoch, index): independent of worker count and order."""
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1)[0])


def load_gray(sample: Sample, size: int | None = None) -> tuple[np.ndarray, tuple[int, int]]:
    """The image as 8-bit gray, resized to size x size (INTER_AREA) when given; plus (H, W)."""
    img = read_image(sample.image_path)
    if img.ndim == 3:
        img = cv2.cvtColor(img[..., :3], cv2.COLOR_BGR2GRAY) if img.shape[2] >= 3 else img[..., 0]
    hw = img.shape[:2]
    if size is not None and hw != (size, size):
        img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(img), hw


def scaled_masks(sample: Sample, hw: tuple[int, int], size: int) -> np.ndarray:
    """(29, size, size) uint8 targets: the polygons scaled to the training size, then filled."""
    if sample.annotations is None:
        raise BadInput("training image has no label file; every training item needs labels",
                       where=sample.relpath)
    h, w = hw
    scale = np.array([size / w, size / h])
    anns = [a.with_points(np.asarray(a.points, np.float64) * scale) for a in sample.annotations]
    return class_masks(anns, (size, size))


def to_input(gray: np.ndarray) -> torch.Tensor:
    """uint8 (H, W) -> float (1, H, W) in [-1, 1]."""
    return torch.from_numpy(gray).float().div_(127.5).sub_(1.0).unsqueeze(0)


def _cache(samples: Sequence[Sample], size: int, jobs: int) -> tuple[np.ndarray, list[tuple[int, int]]]:
    with ThreadPoolExecutor(max(1, jobs)) as pool:  # cv2 decode/resize release the GIL
        loaded = list(pool.map(lambda s: load_gray(s, size), samples))
    return np.stack([g for g, _ in loaded]), [hw for _, hw in loaded]


class EpochSampler(Sampler):
    """Yields (epoch, index) keys: a fresh seeded permutation per epoch, from `start_epoch` on."""

    def __init__(self, n: int, seed: int, shuffle: bool = True):
        self.n, self.seed, self.shuffle, self.epoch = n, seed, shuffle, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        order = (np.random.default_rng(np.random.SeedSequence([self.seed, self.epoch, 7])).permutation(self.n)
                 if self.shuffle else np.arange(self.n))
        return iter([(self.epoch, int(i)) for i in order])

    def __len__(self) -> int:
        return self.n


class TrainSet(Dataset):
    """Item (epoch, i) -> (image float (1,S,S), target uint8 (29,S,S)); augmentation seeded by
    (seed, epoch, i), so 0 or 16 DataLoader workers give the same batches."""

    def __init__(self, samples: Sequence[Sample], size: int, aug: OnlineAug | None = None,
                 seed: int = 0, cache: bool = True, jobs: int = 1):
        self.samples = list(samples)
        self.size = size
        self.seed = seed
        self.transform = aug.build() if aug is not None else None
        self.images: torch.Tensor | None = None
        self.shapes: list[tuple[int, int]] | None = None
        if cache:
            images, self.shapes = _cache(self.samples, size, jobs)
            # in shared memory: forkserver/spawn workers receive a handle, not a pickled copy
            self.images = torch.from_numpy(images).share_memory_()

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key):
        epoch, i = key if isinstance(key, tuple) else (0, key)
        sample = self.samples[i]
        if self.images is not None:
            gray, hw = self.images[i].numpy(), self.shapes[i]
        else:
            gray, hw = load_gray(sample, self.size)
        masks = scaled_masks(sample, hw, self.size)
        if self.transform is not None:
            self.transform.set_random_seed(item_seed(self.seed, epoch, i))
            res = self.transform(image=gray, mask=masks.transpose(1, 2, 0))
            gray, masks = res["image"], res["mask"].transpose(2, 0, 1)
        return to_input(np.ascontiguousarray(gray)), torch.from_numpy(np.ascontiguousarray(masks))


@dataclass
class EvalItem:
    index: int
    image: torch.Tensor                 # (1, S, S) float
    shape: tuple[int, int]              # original (H, W)
    gt_packed: np.ndarray | None = None  # (29, H, ceil(W/8)) np.packbits of the original-size masks
    extra: dict = field(default_factory=dict)


class EvalSet(Dataset):
    """Item i -> EvalItem: the resized input, the original size, and (labels) the bit-packed
    original-resolution targets (8x less to move between processes than uint8 masks)."""

    def __init__(self, samples: Sequence[Sample], size: int, with_gt: bool = True):
        self.samples = list(samples)
        self.size = size
        self.with_gt = with_gt

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> EvalItem:
        sample = self.samples[i]
        gray, hw = load_gray(sample, self.size)
        packed = None
        if self.with_gt:
            if sample.annotations is None:
                raise BadInput("image has no label file, cannot score it", where=sample.relpath)
            packed = np.packbits(class_masks(sample.annotations, hw), axis=-1)
        return EvalItem(i, to_input(gray), hw, packed)


def collate_eval(items: list[EvalItem]) -> list[EvalItem]:
    return items
