"""Torch datasets over store samples: images resized to the training size, 29-channel targets
rasterised from the polygons on the fly, albumentations online augmentation seeded per item.

Samples come from the store's public API (`store.open(ref).samples(...)`); this module never
reads a dataset folder by itself.
"""
from __future__ import annotations

import functools
import json
import math
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from xaug.errors import BadInput
from xaug.layout import read_image  # noqa: F401 - kept for callers importing it from here
from xaug.store import read_sample_image
from xaug.model import Sample
from xaug.raster import class_masks


def _finite(value) -> bool:
    """A real number (not a bool, not NaN or infinite): what a probability or range end must be."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass
class OnlineAug:
    """Probabilities of the online (per-batch) augmentations; 0 switches one off.

    The geometric and exposure ones (`scale`, `translate`, `gamma`, `black_level`) are xaug's own
    kernels below (`affine_scale_translate`, `gamma_black_level`), drawn by `GeometryParams`
    from the item's seed. Zoom and shift are on by default (probability 0.5 each), with what
    they bring in at the borders replicated from the edge (`border`): the forearm of a hand
    radiograph always reaches the image's edge, and a black band under it (`"constant"`) cost the
    ResUNet 0.06-0.09 Dice on the radius and ulna. Zoom and shift raised the demo benchmark's
    test Dice (three seeds) from 0.657 to 0.692 with the default model, the ResUNet (black border:
    0.684), and from 0.671 to 0.684 with the U-Net (black border: 0.661; docs/benchmarks.md).
    Gamma and black level stay off: one seed each, within the seed-to-seed spread. Configs stored
    before these fields existed had them off and a black border (TrainConfig.from_dict).
    """

    brightness_contrast: float = 0.5
    clahe: float = 0.2
    sharpen: float = 0.2
    emboss: float = 0.2
    hflip: float = 0.5  # a flipped right hand looks like a left hand: class meaning is kept
    scale: float = 0.5                     # zoom in/out about the centre
    scale_range: tuple[float, float] = (0.85, 1.15)
    translate: float = 0.5                 # shift by up to a fraction of the side
    translate_range: float = 0.1
    gamma: float = 0.0                     # exposure curve: out = in ** gamma (on [0, 1])
    gamma_range: tuple[float, float] = (0.7, 1.5)
    black_level: float = 0.0               # raise the black point (a washed-out film)
    black_level_range: tuple[float, float] = (0.0, 40.0)
    border: str = "replicate"              # what zoom-out and shift bring in: the edge repeated, or black

    def __post_init__(self):
        # JSON and checkpoints give lists back; compare as tuples so --resume sees equal configs
        # a spec or an edited config.json can hold any JSON value here: a wrong type is one line too
        for name in ("scale_range", "gamma_range", "black_level_range"):
            value = getattr(self, name)
            if not (isinstance(value, (list, tuple)) and len(value) == 2 and all(map(_finite, value))):
                raise BadInput(f"{name} must be a pair [low, high] of finite numbers, got {value!r}",
                               where=f"aug.{name}")
            lo, hi = (float(v) for v in value)
            if lo > hi:
                raise BadInput(f"{name} low {lo} > high {hi}", where=name)
            setattr(self, name, (lo, hi))
        for name in ("brightness_contrast", "clahe", "sharpen", "emboss", "hflip", "scale", "translate",
                     "gamma", "black_level"):
            value = getattr(self, name)  # NaN fails the comparisons
            if not (_finite(value) and 0.0 <= value <= 1.0):
                raise BadInput(f"{name} is a probability, between 0 and 1", where=f"--{name.replace('_', '-')}")
        if not (_finite(self.translate_range) and 0.0 <= self.translate_range < 1.0):
            raise BadInput(f"translate_range is a fraction of the side, from 0 to below 1, got {self.translate_range!r}",
                           where="aug.translate_range")
        if self.scale_range[0] <= 0 or self.gamma_range[0] <= 0:
            raise BadInput("scale_range and gamma_range must be > 0", where="aug")
        if not (0 <= self.black_level_range[0] and self.black_level_range[1] < 255):
            raise BadInput("black_level_range must lie in [0, 255)", where="aug")
        if not isinstance(self.border, str) or self.border not in BORDERS:  # a list is unhashable
            raise BadInput(f"unknown border {self.border!r}; known: {', '.join(BORDERS)}", where="aug.border")

    def geometry(self) -> "GeometryParams | None":
        if max(self.scale, self.translate, self.gamma, self.black_level) <= 0:
            return None
        return GeometryParams(self)

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


BORDERS = {"constant": cv2.BORDER_CONSTANT, "replicate": cv2.BORDER_REPLICATE}


def affine_scale_translate(gray: np.ndarray, masks: np.ndarray, scale: float, shift: tuple[float, float],
                           border: str = "constant") -> tuple[np.ndarray, np.ndarray]:
    """Zoom by `scale` about the centre, then shift by `shift` = (dx, dy) pixels. Pure; the image
    is warped bilinearly, the (C, H, W) masks with nearest neighbours, and what comes in from
    outside is `border`: "constant" black (no label), or "replicate", the edge pixels and labels
    repeated (a forearm that leaves the image keeps reaching its edge).

    >>> g = np.arange(16, dtype=np.uint8).reshape(4, 4); m = np.zeros((1, 4, 4), np.uint8)
    >>> out, mo = affine_scale_translate(g, m, 1.0, (0.0, 0.0))
    >>> bool((out == g).all()), mo.shape
    (True, (1, 4, 4))
    """
    h, w = gray.shape[:2]
    cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
    mat = np.array([[scale, 0.0, (1 - scale) * cx + shift[0]], [0.0, scale, (1 - scale) * cy + shift[1]]])
    mode = BORDERS[border]
    img = cv2.warpAffine(gray, mat, (w, h), flags=cv2.INTER_LINEAR, borderMode=mode, borderValue=0)
    out = np.empty_like(masks)
    for c in range(masks.shape[0]):
        out[c] = cv2.warpAffine(masks[c], mat, (w, h), flags=cv2.INTER_NEAREST, borderMode=mode, borderValue=0)
    return img, out


def gamma_black_level(gray: np.ndarray, gamma: float = 1.0, black: float = 0.0) -> np.ndarray:
    """uint8 exposure change: values below `black` go to 0, the rest stretch to [0, 255], then
    `** gamma` on [0, 1]. Pure; (1.0, 0.0) is the identity.

    >>> gamma_black_level(np.array([0, 128, 255], np.uint8)).tolist()
    [0, 128, 255]
    """
    lut = np.arange(256, dtype=np.float64)
    lut = np.clip((lut - black) / max(1e-6, 255.0 - black), 0.0, 1.0) ** gamma
    return np.rint(lut * 255.0).astype(np.uint8)[gray]


class GeometryParams:
    """Draws (scale, shift, gamma, black) for one item from its generator; applies the kernels."""

    def __init__(self, aug: OnlineAug):
        self.aug = aug

    def draw(self, rng: np.random.Generator, side: int) -> dict:
        a = self.aug
        p = {"scale": 1.0, "shift": (0.0, 0.0), "gamma": 1.0, "black": 0.0}
        if a.scale > 0 and rng.random() < a.scale:
            p["scale"] = float(np.exp(rng.uniform(*np.log(a.scale_range))))
        if a.translate > 0 and rng.random() < a.translate:
            t = a.translate_range * side
            p["shift"] = (float(rng.uniform(-t, t)), float(rng.uniform(-t, t)))
        if a.gamma > 0 and rng.random() < a.gamma:
            p["gamma"] = float(np.exp(rng.uniform(*np.log(a.gamma_range))))
        if a.black_level > 0 and rng.random() < a.black_level:
            p["black"] = float(rng.uniform(*a.black_level_range))
        return p

    def __call__(self, gray: np.ndarray, masks: np.ndarray, rng: np.random.Generator):
        p = self.draw(rng, gray.shape[0])
        if p["scale"] != 1.0 or p["shift"] != (0.0, 0.0):
            gray, masks = affine_scale_translate(gray, masks, p["scale"], p["shift"], self.aug.border)
        if p["gamma"] != 1.0 or p["black"] != 0.0:
            gray = gamma_black_level(gray, p["gamma"], p["black"])
        return gray, masks


# What the forkserver imports once, before it forks any DataLoader worker: the workers then start
# with torch and the datasets' modules already loaded instead of each importing them (on a 16-core
# GPU machine a fresh `import torch` took 5.4 s, and 8 workers doing it at once made the first
# epoch 25-35 s longer than the next).
FORKSERVER_PRELOAD = ["__main__", "torch", "numpy", "cv2", "trainer.data", "trainer.metrics"]


def loader_context():
    """Start DataLoader workers with forkserver, not fork: a worker forked from a process whose
    OpenCV thread pool is running can deadlock in cv2.setNumThreads (seen in `xaug demo`). The
    server preloads `FORKSERVER_PRELOAD` (a module that fails to import is skipped by it)."""
    import multiprocessing as mp

    if "forkserver" not in mp.get_all_start_methods():
        return None
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(FORKSERVER_PRELOAD)
    return ctx


def start_loader_server() -> None:
    """Start the forkserver now (it imports its preload while this process goes on), so that the
    DataLoader's workers can be forked at once when the first epoch begins."""
    if loader_context() is None:
        return
    from multiprocessing import forkserver

    forkserver.ensure_running()


@contextmanager
def signals_deferred(signums: Sequence[int] = (signal.SIGINT, signal.SIGTERM)):
    """Hold Ctrl-C / SIGTERM until the block ends, then deliver the first one that came to the
    handlers that were there. For short steps that must not be cut in half: a DataLoader's worker
    start-up sends each worker its pickled state, and a command interrupted in the middle of that
    left a worker printing `UnpicklingError: pickle data was truncated` after the command's own
    one-line message. Outside the main thread (where handlers cannot be set) it defers nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    got: list[int] = []
    old = {s: signal.signal(s, lambda n, _frame: got.append(n)) for s in signums}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
        if got:
            signal.raise_signal(got[0])


def start_workers(loader):
    """`iter(loader)`, with its worker processes started whole (`signals_deferred`)."""
    with signals_deferred():
        return iter(loader)


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


def as_sample(sample) -> Sample:
    """A store `Sample` as it is; an item of the public API (`xaug.open(...).items()`) as the
    Sample it describes, labels loaded and the image hash kept, so its bytes are checked when read."""
    if isinstance(sample, Sample):
        return sample
    to_sample = getattr(sample, "to_sample", None)
    if to_sample is None:
        raise TypeError(f"expected a Sample or an xaug.api.Item, got {type(sample).__name__}")
    out = to_sample()
    out.image_sha256, out.dataset = sample.image_file.sha256, sample.dataset
    return out


def item_cache(disk: "DiskCache", jobs: int | None = None):
    """The trainer's on-disk image cache as `cache=` of `xaug.torch.SegmentationDataset`: items of
    the public API are resized once per (version id, file sha256, size) and read back after.

        from xaug.torch import SegmentationDataset
        ds = xaug.open("raw")
        train = SegmentationDataset(ds, "train", size=512, cache=item_cache(DiskCache(root, ds.id)))
    """
    def cache(items, size_hw, channels):
        if channels != 1 or size_hw[0] != size_hw[1]:
            raise BadInput("the trainer's image cache holds square gray images (channels=1, an int size)")
        return resized_images([as_sample(it) for it in items], int(size_hw[0]), jobs, disk,
                              [it.image_file.sha256 for it in items])
    return cache


def load_gray(sample: Sample, size: int | None = None) -> tuple[np.ndarray, tuple[int, int]]:
    """The image as 8-bit gray, resized to size x size (INTER_AREA) when given; plus (H, W)."""
    img = read_sample_image(sample)  # a store Sample's bytes are checked against the manifest
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
    """uint8 (H, W) -> float (1, H, W) in [-1, 1]: x / 127.5 - 1 in float32.

    In numpy, so that loader threads never enter torch's OpenMP pool; the same float32 division
    and subtraction as `tensor.float().div_(127.5).sub_(1.0)`, bit for bit (each of the 256 values
    is checked in tests/test_trainer_cache.py)."""
    out = np.asarray(gray).astype(np.float32)
    out /= np.float32(127.5)
    out -= np.float32(1.0)
    return torch.from_numpy(out).unsqueeze(0)


def decode_jobs() -> int:
    """Threads for decoding and resizing: every core (cv2 releases the GIL while it works)."""
    return max(1, os.cpu_count() or 1)


def _decode_all(samples: Sequence[Sample], size: int, jobs: int) -> tuple[np.ndarray, list[tuple[int, int]]]:
    if not samples:
        return np.zeros((0, size, size), np.uint8), []
    with ThreadPoolExecutor(max(1, jobs)) as pool:
        loaded = list(pool.map(lambda s: load_gray(s, size), samples))
    return np.stack([g for g, _ in loaded]), [hw for _, hw in loaded]


# the earlier name, kept for callers
_cache = _decode_all


@dataclass(frozen=True)
class DiskCache:
    """Where resized images are kept between runs: `root/<version id>/<size>/<key>.npy` + `.json`,
    the key a hash of the images' file hashes in order. Same files and size: same arrays."""

    root: Path
    version_id: str

    def paths(self, hashes: Sequence[str], size: int) -> tuple[Path, Path]:
        from xaug.store import canonical_json, sha256_bytes

        key = sha256_bytes(canonical_json({"format": 1, "size": size, "files": list(hashes)}))[:32]
        folder = Path(self.root) / self.version_id / str(size)
        return folder / f"{key}.npy", folder / f"{key}.json"

    def load(self, hashes: Sequence[str], size: int) -> tuple[np.ndarray, list[tuple[int, int]]] | None:
        npy, meta = self.paths(hashes, size)
        try:
            info = json.loads(meta.read_text())
            arr = np.load(npy, mmap_mode="r")  # the header first: a wrong shape is not read whole
        except (OSError, ValueError):
            return None
        if info.get("files") != list(hashes) or arr.shape != (len(hashes), size, size) or arr.dtype != np.uint8:
            return None  # a stale or foreign file: rebuild it
        return np.array(arr), [tuple(hw) for hw in info["shapes"]]  # a writable copy in memory

    def save(self, hashes: Sequence[str], size: int, images: np.ndarray, shapes: list[tuple[int, int]]) -> None:
        npy, meta = self.paths(hashes, size)
        npy.parent.mkdir(parents=True, exist_ok=True)
        tmp = npy.with_name(f".{npy.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as fh:
            np.save(fh, images)
        os.replace(tmp, npy)  # the array first: a meta file always has its array
        tmp = meta.with_name(f".{meta.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"files": list(hashes), "shapes": [list(hw) for hw in shapes], "size": size}))
        os.replace(tmp, meta)


def resized_images(samples: Sequence[Sample], size: int, jobs: int | None = None,
                   disk: DiskCache | None = None, hashes: Sequence[str] | None = None
                   ) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """(N, size, size) uint8 gray images and their original (H, W): from the disk cache when
    it holds these files at this size, else decoded in parallel (and written to the cache)."""
    jobs = decode_jobs() if jobs is None else jobs
    if disk is not None and hashes is not None:
        hit = disk.load(hashes, size)
        if hit is not None:
            return hit
    images, shapes = _decode_all(samples, size, jobs)
    if disk is not None and hashes is not None:
        try:
            disk.save(hashes, size, images, shapes)
        except OSError:  # a read-only store still trains, only without the cache
            pass
    return images, shapes


def shard_keys(order: Sequence[int], batch: int, rank: int, world: int) -> list[int]:
    """The indices rank `rank` of `world` trains on, in order, from one epoch's global `order`:
    global batch k (world x batch items; the tail dropped) is cut into `world` slices of `batch`
    and this rank takes slice `rank`. All ranks get the same number of steps, and one step's
    slices together are the batch one process with world x batch would see. With fewer than
    world x batch items: one step of `n // world` items per rank (equal shares keep the mean of
    the ranks' gradients the gradient of the whole batch; at most world - 1 items sit out).

    >>> shard_keys(list(range(10)), 2, 1, 2)
    [2, 3, 6, 7]
    """
    order = list(order)
    step = batch * world
    if len(order) >= step:
        steps = len(order) // step
        return [i for k in range(steps) for i in order[k * step + rank * batch: k * step + (rank + 1) * batch]]
    per = len(order) // world
    return order[rank * per:(rank + 1) * per]


class EpochSampler(Sampler):
    """Yields (epoch, index) keys: a fresh seeded permutation per epoch.

    With `world` > 1 (DistributedDataParallel) it yields only rank `rank`'s shard of the same
    permutation (`shard_keys`); give it the per-process `batch` and load without drop_last.
    """

    def __init__(self, n: int, seed: int, shuffle: bool = True, *, rank: int = 0, world: int = 1,
                 batch: int | None = None):
        if world > 1 and batch is None:
            raise ValueError("a sharded EpochSampler needs the per-process batch")
        if world > 1 and n < world:
            raise BadInput(f"{n} training images cannot feed {world} processes", where="--nproc")
        self.n, self.seed, self.shuffle, self.epoch = n, seed, shuffle, 0
        self.rank, self.world, self.batch = rank, world, batch

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def order(self) -> list[int]:
        """This epoch's global order (the same on every rank)."""
        order = (np.random.default_rng(np.random.SeedSequence([self.seed, self.epoch, 7])).permutation(self.n)
                 if self.shuffle else np.arange(self.n))
        return [int(i) for i in order]

    def __iter__(self):
        order = self.order()
        if self.world > 1:
            order = shard_keys(order, self.batch, self.rank, self.world)
        return iter([(self.epoch, i) for i in order])

    def __len__(self) -> int:
        if self.world > 1:
            return len(shard_keys(range(self.n), self.batch, self.rank, self.world))
        return self.n


class TrainSet(Dataset):
    """Item (epoch, i) -> (image float (1,S,S), target uint8 (29,S,S)); augmentation seeded by
    (seed, epoch, i), so 0 or 16 DataLoader workers give the same batches."""

    def __init__(self, samples: Sequence[Sample], size: int, aug: OnlineAug | None = None,
                 seed: int = 0, cache: bool = True, jobs: int | None = None, *,
                 disk: DiskCache | None = None, hashes: Sequence[str] | None = None):
        self.samples = [as_sample(s) for s in samples]  # store Samples or public-API items
        self.size = size
        self.seed = seed
        self.transform = aug.build() if aug is not None else None
        self.geometry = aug.geometry() if aug is not None else None
        self.images: torch.Tensor | None = None
        self.shapes: list[tuple[int, int]] | None = None
        if cache:
            images, self.shapes = resized_images(self.samples, size, jobs, disk, hashes)
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
        if self.geometry is not None:  # its own stream: adding it leaves albumentations' draws as they were
            rng = np.random.default_rng(np.random.SeedSequence([self.seed, epoch, i, 11]))
            gray, masks = self.geometry(gray, masks, rng)
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
    # (29, H, ceil(W/8)) uint8, np.packbits of the original-size masks; a tensor, so that a
    # DataLoader worker hands it over in shared memory (a 2048 px image's is 15 MB: pickled
    # through the worker's pipe it made evaluation 3.5 images/s on a 16-core GPU machine)
    gt_packed: torch.Tensor | None = None
    extra: dict = field(default_factory=dict)


class EvalSet(Dataset):
    """Item i -> EvalItem: the resized input, the original size, and (labels) the bit-packed
    original-resolution targets (8x less to move between processes than uint8 masks)."""

    def __init__(self, samples: Sequence[Sample], size: int, with_gt: bool = True,
                 images: np.ndarray | None = None, shapes: Sequence[tuple[int, int]] | None = None):
        self.samples = [as_sample(s) for s in samples]
        self.size = size
        self.with_gt = with_gt
        if (images is None) != (shapes is None) or (images is not None and len(images) != len(self.samples)):
            raise ValueError("EvalSet: images and shapes go together, one per sample")
        # resized inputs made before (the trainer's cache): no full-size decode per validation
        self.images = torch.from_numpy(np.ascontiguousarray(images)).share_memory_() if images is not None else None
        self.shapes = [tuple(hw) for hw in shapes] if shapes is not None else None

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> EvalItem:
        sample = self.samples[i]
        if self.images is not None:
            gray, hw = self.images[i].numpy(), self.shapes[i]
        else:
            gray, hw = load_gray(sample, self.size)
        packed = None
        if self.with_gt:
            if sample.annotations is None:
                raise BadInput("image has no label file, cannot score it", where=sample.relpath)
            packed = torch.from_numpy(np.packbits(class_masks(sample.annotations, hw), axis=-1))
        return EvalItem(i, to_input(gray), hw, packed)


def collate_eval(items: list[EvalItem]) -> list[EvalItem]:
    return items
