"""The training loop: AdamW with linear warm-up and cosine/poly decay, BCE + soft Dice, bf16
autocast + channels_last (+ optional torch.compile) on CUDA and float32 on CPU, validation with
the competition Dice at the original resolution, metrics.jsonl, best/last checkpoints, resume.

Checkpoints hold only tensors, numbers, strings and dicts, so `torch.load(path,
weights_only=True)` reads them. Epochs are the unit of resume: a killed run continues from the
last finished epoch and, on CPU, ends with the same weights as an uninterrupted one (data order
and augmentation are keyed by (seed, epoch, index), not by process state).
"""
from __future__ import annotations

import json
import math
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from trainer import distributed as ddp
from trainer.config import TrainConfig
from trainer.data import (DiskCache, EpochSampler, TrainSet, loader_context, resized_images, start_loader_server,
                          start_workers, worker_init_for)
from trainer.inference import autocast, default_workers, iter_dice, resolve_device
from trainer.losses import BCEDiceLoss
from trainer.metrics import DiceTable, StreamingImageCSV
from trainer.model import count_parameters, model_from_config
from xaug.errors import XaugError
from xaug.model import Sample
from xaug.report.plots import save_figure
from xaug.store import atomic_write


@dataclass
class RunResult:
    run_dir: Path
    epochs_done: int
    best_epoch: int | None
    best_dice: float | None
    last_dice: float | None
    per_class: dict[str, float] = field(default_factory=dict)


def lr_factor(step: int, total: int, warmup: int, schedule: str = "cosine", min_ratio: float = 0.01) -> float:
    """Multiplier of the peak LR at `step` (0-based): linear warm-up, then cosine or poly(0.9)."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, total - warmup))
    decay = 0.5 * (1 + math.cos(math.pi * t)) if schedule == "cosine" else (1 - t) ** 0.9
    return min_ratio + (1 - min_ratio) * decay


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for p in model.parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)  # no weight decay on norms and biases
    return torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)


def train_step(model, x, y, optimizer, criterion, device: torch.device) -> torch.Tensor:
    """One optimisation step; returns the (detached) loss."""
    with autocast(device):
        logits = model(x)
    loss = criterion(logits.float(), y.float())
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


def validate(model, samples: Sequence[Sample], cfg: TrainConfig, progress: bool = True,
             desc: str = "validate", tta: str | None = None, workers: int | None = None, *,
             image_csv: Path | None = None, chunk: int | None = None, images=None, shapes=None) -> DiceTable:
    """Competition Dice of `model` on labelled samples at their original resolution.

    Upsampling, thresholding and counting run on the model's device, `chunk` classes at a time
    (`trainer.metrics.dice_counts`). With `image_csv`, per-image rows are written as they come.
    `images`/`shapes`: the inputs already resized (skips decoding the full-size images)."""
    table = DiceTable()
    model.eval()
    stream = StreamingImageCSV(image_csv) if image_csv is not None else None
    # a bar on a terminal only: in a log the epoch line says it (no redrawn bars in files)
    bar = tqdm(total=len(samples), desc=desc, disable=not progress or not sys.stderr.isatty(), leave=False,
               file=sys.stderr)
    try:
        for sample, dice in iter_dice(model, samples, cfg.size, tta=tta, batch=cfg.val_batch, workers=workers,
                                      chunk=chunk, images=images, shapes=shapes):
            table.add(sample.name, dice)
            if stream is not None:
                stream.add(sample.name, dice)
            bar.update(1)
            bar.set_postfix(dice=f"{table.mean():.4f}")
    finally:
        bar.close()
        if stream is not None:
            stream.fh.close()
    if stream is not None:
        stream.close()
    return table


def _save(obj: dict, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)  # a kill never leaves a half-written checkpoint


def _environment(device: torch.device) -> dict:
    import xaug

    env = {"python": platform.python_version(), "torch": torch.__version__,
           "numpy": np.__version__, "xaug": getattr(xaug, "__version__", "?"), "device": str(device)}
    try:
        import albumentations

        env["albumentations"] = albumentations.__version__
    except ImportError:  # pragma: no cover
        pass
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    return env


def read_metrics(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            row = json.loads(line) if line.strip() else None
        except ValueError:  # a line cut short by a kill during its append: the epoch is redone
            continue
        if isinstance(row, dict) and isinstance(row.get("epoch"), int):
            rows.append(row)
    return rows


def plot_curves(run_dir: Path) -> Path:
    """training-curve PNG (loss and validation Dice per epoch) from metrics.jsonl."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(run_dir)
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    ax.plot([r["epoch"] for r in rows], [r["loss"] for r in rows], "o-", color="tab:blue", label="train loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss", color="tab:blue")
    val = [r for r in rows if r.get("val_dice") is not None]
    if val:
        ax2 = ax.twinx()
        ax2.plot([r["epoch"] for r in val], [r["val_dice"] for r in val], "s-", color="tab:red", label="val Dice")
        ax2.set_ylabel("val Dice", color="tab:red")
    ax.set_title(Path(run_dir).name)
    fig.tight_layout()
    out = Path(run_dir) / "curve.png"
    save_figure(fig, out)
    plt.close(fig)
    return out


def _load_resume(run_dir: Path, cfg: TrainConfig) -> dict | None:
    last = run_dir / "last.pt"
    if not last.exists():
        return None
    ckpt = torch.load(last, map_location="cpu", weights_only=True)
    stored = ckpt["config"]
    if stored.get("arch") == "resunet" and "stem" not in stored:  # a ResUNet of the first design
        stored = {**stored, "stem": "strided"}
    # checked as evaluate checks a checkpoint's settings (an edited `aug: null` was an AttributeError)
    saved = TrainConfig.from_stored(stored, str(last), "the checkpoint's settings were edited or are damaged: "
                                    "--resume is impossible; start a new run with `xaug train --run NEW_NAME`")
    diff = settings_diff(saved.identity(), cfg.identity())
    if diff:
        raise XaugError(f"--resume with different settings than the stored run ({'; '.join(diff)}); "
                        "use the stored options or another --run", where=str(run_dir))
    return ckpt


def settings_diff(stored: dict, given: dict, prefix: str = "") -> list[str]:
    """`key: stored A, given B` for each setting that differs (nested ones as `aug.scale`).

    >>> settings_diff({"arch": "unet", "aug": {"scale": 0.0}}, {"arch": "resunet", "aug": {"scale": 0.5}})
    ['arch: stored unet, given resunet', 'aug.scale: stored 0.0, given 0.5']
    """
    out = []
    for key in sorted(set(stored) | set(given)):
        a, b = stored.get(key), given.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += settings_diff(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: stored {a}, given {b}")
    return out


def train(cfg: TrainConfig, train_samples: Sequence[Sample], val_samples: Sequence[Sample],
          run_dir: Path | str, *, device: str | torch.device = "auto", resume: bool = False,
          progress: bool = True, on_epoch_end: Callable[[dict], None] | None = None,
          cache_dir: Path | str | None = None, train_hashes: Sequence[str] | None = None,
          val_hashes: Sequence[str] | None = None) -> RunResult:
    """Train `cfg.arch` on `train_samples`, validating on `val_samples`; everything goes to `run_dir`.

    With `resume`, continues from `run_dir/last.pt` (a finished run returns at once).
    `cache_dir`: keep the resized images there between runs, keyed by (`cfg.dataset_id` /
    `cfg.val_id`, each image's file hash from `train_hashes` / `val_hashes`, else from the store
    Samples; without hashes nothing is cached on disk, size). Started by torchrun (WORLD_SIZE > 1), trains with
    DistributedDataParallel: `cfg.batch` per process, rank 0 validates and writes.
    """
    env = ddp.dist_env()
    threads = torch.get_num_threads()
    try:
        return _train(cfg, train_samples, val_samples, Path(run_dir), env, device=device, resume=resume,
                      progress=progress, on_epoch_end=on_epoch_end, cache_dir=cache_dir,
                      train_hashes=train_hashes, val_hashes=val_hashes)
    finally:
        torch.set_num_threads(threads)
        if env.distributed:
            ddp.shutdown()


def cpu_threads(workers: int, world: int = 1, cores: int | None = None) -> int:
    """torch threads for training on CPU beside `workers` DataLoader workers, one of `world`
    processes: the cores left over, at least 1. More threads than cores makes OpenMP threads
    spin and wait for each other: measured on 2 busy cores, a ResUNet step took 12-19 s with 2
    threads beside a worker and 1.4-1.9 s with 1 (docs/benchmarks.md).

    >>> cpu_threads(workers=1, cores=2), cpu_threads(workers=0, cores=2), cpu_threads(4, world=2, cores=16)
    (1, 2, 4)
    """
    cores = cores if cores is not None else (os.cpu_count() or 1)
    return max(1, cores // max(1, world) - workers)


def _file_keys(samples, hashes) -> list[str] | None:
    """The images' file hashes (given, or carried by store Samples); None when unknown: then
    nothing is cached on disk (a path alone does not say which bytes it holds)."""
    if hashes is not None:
        return list(hashes)
    keys = [getattr(s, "image_sha256", None) for s in samples]
    return keys if all(keys) else None


def _train(cfg: TrainConfig, train_samples, val_samples, run_dir: Path, env: "ddp.DistEnv", *, device,
           resume: bool, progress: bool, on_epoch_end, cache_dir, train_hashes, val_hashes) -> RunResult:
    dev = resolve_device(device)
    if env.distributed:
        dev = ddp.init(dev, env)
    main = env.is_main
    progress = progress and main
    if cfg.world_size != env.world:
        cfg = cfg.replace(world_size=env.world)
    if not train_samples:
        raise XaugError("no training images", where=cfg.dataset or "dataset")
    if (run_dir / "last.pt").exists() and not resume:
        raise XaugError("run folder already holds a run; pass --resume to continue it or choose "
                        "another --run", where=str(run_dir))
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed % 2**32)  # only for libraries that still use it; xaug never does
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = cfg.cudnn_benchmark
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    try:  # before the run folder exists: a model that cannot be made leaves no empty run behind
        model = model_from_config(cfg)
    except (ImportError, ValueError) as e:  # --arch smp:... without smp, or an architecture/encoder smp lacks
        raise XaugError(str(e), where="--arch") from None
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt = _load_resume(run_dir, cfg) if resume else None
    ddp.barrier(env)  # every rank has read the folder before rank 0 writes into it
    if ddp.want_sync_batchnorm(cfg.norm, dev, env):
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model = model.to(dev)
    if dev.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, cfg)
    criterion = BCEDiceLoss(cfg.bce_weight, cfg.dice_weight)

    start_epoch, step, best, best_epoch = 0, 0, -1.0, None
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        start_epoch, step = int(ckpt["epoch"]), int(ckpt["step"])
        best = float(ckpt["best_dice"])
        best_epoch = int(ckpt["best_epoch"]) if ckpt["best_epoch"] >= 0 else None
        torch.set_rng_state(ckpt["torch_rng"])
        if main:
            rows = [r for r in read_metrics(run_dir) if r["epoch"] <= start_epoch]
            atomic_write(run_dir / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in rows).encode())
    elif main:
        atomic_write(run_dir / "metrics.jsonl", b"")
    if main:  # atomically: a resume killed here keeps a readable config.json (the run stays resumable)
        atomic_write(run_dir / "config.json", (json.dumps(
            {**cfg.to_dict(), "parameters": count_parameters(model), "environment": _environment(dev)},
            indent=2) + "\n").encode())
    if start_epoch >= cfg.epochs:
        ddp.barrier(env)
        return _result(run_dir, start_epoch, best, best_epoch)

    workers = default_workers() if cfg.workers is None else cfg.workers
    if dev.type == "cpu":
        torch.set_num_threads(min(torch.get_num_threads(), cpu_threads(workers, env.world)))
    if workers:
        start_loader_server()  # its imports overlap the image cache and the model's set-up
    t_start = time.perf_counter()
    train_keys = _file_keys(train_samples, train_hashes)
    train_disk = (DiskCache(Path(cache_dir), cfg.dataset_id or "unversioned")
                  if cache_dir and cfg.cache and train_keys is not None else None)
    if not main:
        ddp.barrier(env)  # rank 0 fills the disk cache first; the others then read it
    dataset = TrainSet(train_samples, cfg.size, cfg.aug, seed=cfg.seed, cache=cfg.cache, disk=train_disk,
                       hashes=train_keys)
    val_images = val_shapes = None
    if main and val_samples and cfg.cache:  # validation inputs resized once, not every epoch
        vlist = list(val_samples)[: cfg.val_limit] if cfg.val_limit else list(val_samples)
        vkeys = _file_keys(vlist, list(val_hashes)[: len(vlist)] if val_hashes is not None else None)
        val_disk = DiskCache(Path(cache_dir), cfg.val_id or "unversioned") if cache_dir and vkeys else None
        val_images, val_shapes = resized_images(vlist, cfg.size, disk=val_disk, hashes=vkeys)
    if main:
        ddp.barrier(env)
    startup_seconds = time.perf_counter() - t_start
    sampler = EpochSampler(len(dataset), cfg.seed, rank=env.rank, world=env.world, batch=cfg.batch)
    loader = DataLoader(dataset, batch_size=cfg.batch, sampler=sampler, num_workers=workers,
                        drop_last=env.world == 1 and len(dataset) > cfg.batch, pin_memory=dev.type == "cuda",
                        persistent_workers=workers > 0, prefetch_factor=4 if workers else None,
                        worker_init_fn=worker_init_for(os.getpid()) if workers else None,
                        multiprocessing_context=loader_context() if workers else None)
    steps_per_epoch = len(loader)
    total = steps_per_epoch * cfg.epochs
    warmup = int(round(cfg.warmup_epochs * steps_per_epoch))
    step_model = model
    if env.distributed:
        from torch.nn.parallel import DistributedDataParallel

        step_model = DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)
    if cfg.compile and dev.type == "cuda":
        step_model = torch.compile(step_model)

    for epoch in range(start_epoch, cfg.epochs):
        sampler.set_epoch(epoch)
        model.train()
        t0 = time.perf_counter()
        loss_sum, n_batches, seen = torch.zeros((), device=dev), 0, 0
        bar = tqdm(total=steps_per_epoch, desc=f"epoch {epoch + 1}/{cfg.epochs}",
                   disable=not progress or not sys.stderr.isatty(), leave=False, file=sys.stderr)
        # the first epoch starts the (persistent) workers: not to be cut in half by a Ctrl-C
        batches = start_workers(loader) if workers and epoch == start_epoch else loader
        for x, y in batches:
            for group in optimizer.param_groups:
                group["lr"] = cfg.lr * lr_factor(step, total, warmup, cfg.schedule, cfg.min_lr_ratio)
            x = x.to(dev, non_blocking=True)
            y = y.to(dev, non_blocking=True)
            if dev.type == "cuda":
                x = x.contiguous(memory_format=torch.channels_last)
            loss_sum += train_step(step_model, x, y, optimizer, criterion, dev)
            n_batches += 1
            seen += x.shape[0]
            step += 1
            bar.update(1)
            if n_batches % 10 == 0 or n_batches == steps_per_epoch:
                bar.set_postfix(loss=f"{loss_sum.item() / n_batches:.4f}")
        bar.close()
        train_seconds = time.perf_counter() - t0
        # every rank ran the same number of steps; the mean over ranks is the global batch's loss
        loss_all = ddp.sum_across(loss_sum, env)
        seen_all = int(ddp.sum_across(torch.tensor(seen, device=loss_sum.device), env).item())
        row = {"epoch": epoch + 1, "step": step, "loss": loss_all.item() / env.world / max(1, n_batches),
               "lr": optimizer.param_groups[0]["lr"], "train_seconds": round(train_seconds, 3),
               "images_per_s": round(seen_all / max(train_seconds, 1e-9), 2), "val_dice": None}
        if epoch == start_epoch:
            row["startup_seconds"] = round(startup_seconds, 3)
        if not main:
            ddp.barrier(env)  # rank 0 validates and writes this epoch
            continue
        last_epoch = epoch + 1 == cfg.epochs
        table = None
        if val_samples and ((epoch + 1) % cfg.val_every == 0 or last_epoch):
            subset = list(val_samples)[: cfg.val_limit] if cfg.val_limit else list(val_samples)
            table = validate(model, subset, cfg, progress, desc=f"validate {epoch + 1}", workers=workers,
                             images=val_images, shapes=val_shapes)
            row["val_dice"] = table.mean()
            row["val_per_class"] = [round(float(d), 6) for d in table.per_class()]
        improved = table is not None and table.mean() > best
        if improved or (not val_samples and last_epoch):
            best, best_epoch = (table.mean() if table is not None else -1.0), epoch + 1
        state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch + 1,
                 "step": step, "best_dice": float(best), "best_epoch": best_epoch if best_epoch else -1,
                 "torch_rng": torch.get_rng_state(), "config": cfg.to_dict()}
        _save(state, run_dir / "last.pt")
        if improved or (not val_samples and last_epoch):
            _save({"model": model.state_dict(), "epoch": epoch + 1, "best_dice": float(best),
                   "config": cfg.to_dict()}, run_dir / "best.pt")
            if table is not None:
                table.write_class_csv(run_dir / "val_dice.csv")
                table.write_image_csv(run_dir / "val_images.csv")
        with open(run_dir / "metrics.jsonl", "a") as fh:
            fh.write(json.dumps(row) + "\n")
        plot_curves(run_dir)
        if progress:
            val_txt = f" val Dice {row['val_dice']:.4f}" if row["val_dice"] is not None else ""
            print(f"epoch {epoch + 1}/{cfg.epochs} loss {row['loss']:.4f}{val_txt} "
                  f"({row['images_per_s']:.1f} img/s)", file=sys.stderr)
        if on_epoch_end is not None:
            on_epoch_end(row)
        ddp.barrier(env)
    if not main:  # rank 0's files are complete: read the result from them
        ckpt = torch.load(run_dir / "last.pt", map_location="cpu", weights_only=True)
        best, best_epoch = float(ckpt["best_dice"]), (int(ckpt["best_epoch"]) if ckpt["best_epoch"] >= 0 else None)
    return _result(run_dir, cfg.epochs, best, best_epoch)


def _result(run_dir: Path, epochs_done: int, best: float, best_epoch: int | None) -> RunResult:
    rows = read_metrics(run_dir)
    last = next((r["val_dice"] for r in reversed(rows) if r.get("val_dice") is not None), None)
    per_class = {}
    if (run_dir / "val_dice.csv").exists():
        from trainer.metrics import read_class_csv

        per_class = {k: v for k, v in read_class_csv(run_dir / "val_dice.csv").items() if k != "mean"}
    return RunResult(run_dir, epochs_done, best_epoch, best if best >= 0 else None, last, per_class)
