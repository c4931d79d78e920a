"""Loading a run's model and predicting at the original resolution.

`predict_dataset(run_dir, samples)` yields `(Sample, bool (29, H, W))` per image: logits at the
training size are upsampled bilinearly to the image's own size and thresholded at sigmoid 0.5.

    for sample, masks in predict_dataset("runs/baseline", ds.samples(split="test")):
        ...
"""
from __future__ import annotations

import contextlib
import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader

from trainer.config import TrainConfig
from trainer.data import EvalItem, EvalSet, collate_eval, loader_context, worker_init_for
from trainer.metrics import (dice_counts, dice_from_counts, rle_torch, upsample_chunks, upsample_threshold,
                             unpack_masks)
from trainer.model import model_from_config
from xaug.errors import XaugError
from xaug.model import Sample

TTA = (None, "hflip")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise XaugError("CUDA is not available on this machine; use --device cpu or auto", where="--device")
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise XaugError(f"unknown device {device!r}; use auto, cpu or cuda", where="--device")
    return torch.device(device)


def autocast(device: torch.device):
    """bf16 autocast on CUDA; plain float32 on CPU."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def default_workers() -> int:
    return min(8, max(0, (os.cpu_count() or 1) - 1))


def checkpoint_path(run_dir: Path) -> Path:
    run_dir = Path(run_dir)
    for name in ("best.pt", "last.pt"):
        if (run_dir / name).exists():
            return run_dir / name
    raise XaugError("no checkpoint (best.pt or last.pt) in the run folder; train it first with "
                    "`xaug train`", where=str(run_dir))


def load_model(run_dir: Path, device: str | torch.device = "auto", which: str | None = None):
    """(model in eval mode on `device`, the run's config dict) from best.pt (else last.pt)."""
    dev = resolve_device(device)
    path = Path(run_dir) / which if which else checkpoint_path(Path(run_dir))
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    cfg = ckpt["config"]
    # the settings the model is rebuilt from, checked as `xaug train` checks them, before building it
    TrainConfig.from_stored(cfg, str(path), "the checkpoint's settings were edited or are damaged: train the run "
                            "again or start a new run with `xaug train --run NEW_NAME`")
    try:
        model = model_from_config(cfg)
    except ImportError as e:  # an smp run on a machine without smp
        raise XaugError(str(e), where=str(path)) from None
    model.load_state_dict(ckpt["model"])
    model.to(dev).eval()
    if dev.type == "cuda":
        model.to(memory_format=torch.channels_last)
    return model, cfg


def check_tta(tta: str | None) -> None:
    """Callers check --tta before writing anything: forward_logits meets it at the first batch."""
    if tta not in TTA:
        raise XaugError(f"unknown TTA {tta!r}; known: hflip", where="--tta")


def forward_logits(model: torch.nn.Module, x: torch.Tensor, tta: str | None = None) -> torch.Tensor:
    """Logits (B, 29, h, w) in float32; `tta="hflip"` averages with the flipped image's logits."""
    check_tta(tta)
    dev = next(model.parameters()).device
    if dev.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), autocast(dev):
        logits = model(x).float()
        if tta == "hflip":
            logits = 0.5 * (logits + model(torch.flip(x, dims=[-1])).float().flip(dims=[-1]))
    return logits


def iter_logits(model: torch.nn.Module, samples: Sequence[Sample], size: int, *, with_gt: bool,
                tta: str | None = None, batch: int = 4, workers: int | None = None,
                images: np.ndarray | None = None, shapes: Sequence[tuple[int, int]] | None = None,
                loader: str | None = None) -> Iterator[tuple[EvalItem, torch.Tensor]]:
    """(EvalItem, logits (29, size, size) on the model's device) per sample, in order.

    `images`/`shapes`: the inputs already resized (the trainer's cache), so only the targets
    are made per image. `loader`: see `eval_batches`."""
    dev = next(model.parameters()).device
    workers = default_workers() if workers is None else workers
    dataset = EvalSet(samples, size, with_gt=with_gt, images=images, shapes=shapes)
    for items in eval_batches(dataset, batch, workers, loader):
        x = torch.stack([it.image for it in items]).to(dev, non_blocking=True)
        logits = forward_logits(model, x, tta)
        for it, lg in zip(items, logits):
            yield it, lg


EVAL_LOADERS = ("threads", "processes")


def eval_batches(dataset: EvalSet, batch: int, workers: int, loader: str | None = None) -> Iterator[list[EvalItem]]:
    """`dataset`'s items in order, `batch` at a time, made by `workers` in parallel.

    "threads" (the default): a pool of threads in this process, at most 2 x workers items
    ahead. Decoding, resizing and filling polygons run in OpenCV with the GIL released, and
    nothing is started, imported or copied between processes: an evaluation starts at once.
    "processes": DataLoader worker processes (forkserver), the earlier path."""
    loader = loader or os.environ.get("XAUG_EVAL_LOADER") or "threads"
    if loader not in EVAL_LOADERS:
        raise XaugError(f"unknown evaluation loader {loader!r}; known: {', '.join(EVAL_LOADERS)}",
                        where="XAUG_EVAL_LOADER")
    n = len(dataset)
    if workers <= 0 or n == 0:
        for start in range(0, n, batch):
            yield [dataset[i] for i in range(start, min(n, start + batch))]
        return
    if loader == "processes":
        yield from DataLoader(dataset, batch_size=batch, shuffle=False, num_workers=workers,
                              collate_fn=collate_eval, pin_memory=False, persistent_workers=False,
                              prefetch_factor=2, worker_init_fn=worker_init_for(os.getpid()),
                              multiprocessing_context=loader_context())
        return
    ahead = max(batch, 2 * workers)
    with ThreadPoolExecutor(workers, thread_name_prefix="xaug-eval") as pool:
        pending: deque = deque()
        nxt = 0
        try:
            while nxt < n or pending:
                while nxt < n and len(pending) < ahead:
                    pending.append(pool.submit(dataset.__getitem__, nxt))
                    nxt += 1
                k = min(batch, len(pending))
                yield [pending.popleft().result() for _ in range(k)]
        finally:  # a consumer that stops early (or an error) leaves nothing queued behind
            for f in pending:
                f.cancel()


def iter_predictions(model, samples: Sequence[Sample], size: int, *, with_gt: bool = False,
                     tta: str | None = None, batch: int = 4, workers: int | None = None):
    """(Sample, pred bool (29,H,W) tensor on device, gt bool tensor on device or None)."""
    dev = next(model.parameters()).device
    for it, lg in iter_logits(model, samples, size, with_gt=with_gt, tta=tta, batch=batch, workers=workers):
        pred = upsample_threshold(lg, it.shape)
        gt = unpack_masks(it.gt_packed, it.shape[1], dev) if it.gt_packed is not None else None
        yield samples[it.index], pred, gt


def iter_dice(model, samples: Sequence[Sample], size: int, *, tta: str | None = None, batch: int = 4,
              workers: int | None = None, chunk: int | None = None, images: np.ndarray | None = None,
              shapes: Sequence[tuple[int, int]] | None = None) -> Iterator[tuple[Sample, np.ndarray]]:
    """(Sample, per-class competition Dice (29,) float64) per labelled sample, in order: logits
    upsampled, thresholded and counted on the model's device, `chunk` classes at a time."""
    for it, lg in iter_logits(model, samples, size, with_gt=True, tta=tta, batch=batch, workers=workers,
                              images=images, shapes=shapes):
        counts = dice_counts(lg, it.gt_packed, it.shape, chunk)
        yield samples[it.index], dice_from_counts(*counts).cpu().numpy()


def iter_rle(model, samples: Sequence[Sample], size: int, *, tta: str | None = None, batch: int = 4,
             workers: int | None = None, chunk: int | None = None) -> Iterator[tuple[Sample, list[str]]]:
    """(Sample, 29 competition RLE strings) per sample at its original resolution; the masks
    are made and run-length coded on the model's device, `chunk` classes at a time."""
    for it, lg in iter_logits(model, samples, size, with_gt=False, tta=tta, batch=batch, workers=workers):
        rles: list[str] = []
        for _, pred in upsample_chunks(lg, it.shape, chunk):
            rles.extend(rle_torch(m) for m in pred)
        yield samples[it.index], rles


def predict_dataset(run_dir: Path | str, samples: Sequence[Sample], device: str = "auto",
                    tta: str | None = None, batch: int = 4, workers: int | None = None, loaded=None
                    ) -> Iterator[tuple[Sample, np.ndarray]]:
    """Yield (Sample, bool ndarray (29, H, W)) at each image's original resolution; `loaded`: the
    run's (model, config) when the caller has loaded them already (this generator loads lazily)."""
    model, cfg = loaded or load_model(Path(run_dir), device)
    samples = list(samples)
    for sample, pred, _ in iter_predictions(model, samples, cfg["size"], tta=tta, batch=batch, workers=workers):
        yield sample, pred.cpu().numpy()

