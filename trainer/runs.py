"""Runs over store versions: resolve what to train and validate on, train, evaluate, predict.

These are the functions the CLI (and the demo) call in-process:

    from xaug.store import Store
    from trainer.runs import train_version, evaluate_run
    store = Store(home)
    result = train_version(store, "rotate", run="rotate-512", epochs=30, size=512)
    table = evaluate_run(store, "rotate-512", split="test")

Datasets are read only through the store's public API (`store.open(ref).samples(...)`).
"""
from __future__ import annotations

import json
import pickle
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

from xaug.errors import XaugError
from xaug.model import Sample
from xaug.outputs import check_output_dir, check_output_file

RUNS_ROOT = Path("runs")


def run_path(run: str | Path, flag: str = "--run") -> Path:
    """A run name ("baseline") lives under runs/; anything with a separator is a path."""
    text = str(run)
    if not text.strip():  # "" would be runs/ itself
        raise XaugError("is empty; give a run name (a folder under runs/) or a run folder's path", where=flag)
    if "/" in text or "\\" in text or text.startswith("."):
        return Path(text)
    return RUNS_ROOT / text


_HEX_ID = re.compile(r"^[0-9a-f]{64}$")
_NEW_RUN = "start a new run with `xaug train --run NEW_NAME`"


def read_run_config(run_dir: Path) -> dict:
    """A run's config.json, checked: a missing, damaged or edited file is one line naming it and
    what to do (the trainer wrote it; nothing in it is used as a path)."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise XaugError("is a file, not a run folder; give a run name or folder", where=str(run_dir))
    path = run_dir / "config.json"
    if not path.exists():
        raise XaugError("not a run folder (no config.json); train one with `xaug train`", where=str(run_dir))
    try:
        cfg = json.loads(path.read_bytes().decode("utf-8"))
    except OSError as exc:
        raise XaugError(f"cannot read the run's config.json ({exc.strerror})", where=str(path)) from None
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise XaugError(f"config.json is damaged (not valid JSON); {_NEW_RUN}", where=str(path)) from None
    if not isinstance(cfg, dict):
        raise XaugError(f"config.json is damaged (not an object); {_NEW_RUN}", where=str(path))
    for key in ("dataset_id", "val_id"):
        if cfg.get(key) and not (isinstance(cfg[key], str) and _HEX_ID.match(cfg[key])):
            raise XaugError(f"config.json: {key} is not a version id; {_NEW_RUN}", where=str(path))
    for key in ("dataset", "val_dataset"):
        if key in cfg and not isinstance(cfg[key], str):
            raise XaugError(f"config.json: {key} is not a dataset name; {_NEW_RUN}", where=str(path))
    size = cfg.get("size")
    if size is not None and not (isinstance(size, int) and not isinstance(size, bool) and 1 <= size <= 16384):
        raise XaugError(f"config.json: size {size!r} is not an image side in pixels; {_NEW_RUN}", where=str(path))
    from trainer.config import TrainConfig

    # every setting, checked as `xaug train` checks it (a run of an older trainer lacks newer keys: defaults)
    TrainConfig.from_stored(cfg, str(path), f"config.json was edited or damaged: restore it, or {_NEW_RUN}")
    return cfg


# What torch.load and load_state_dict raise for a truncated, foreign or edited checkpoint.
_CHECKPOINT_ERRORS = (RuntimeError, EOFError, KeyError, ValueError, TypeError, AttributeError,
                      pickle.UnpicklingError, zipfile.BadZipFile)


def checkpoint_problem(path: Path, exc: BaseException, resume: bool = False) -> XaugError:
    what = (f"--resume is impossible: {_NEW_RUN}" if resume else
            f"train the run again (`xaug train --resume` if last.pt is intact) or {_NEW_RUN}")
    return XaugError(f"checkpoint {Path(path).name} is damaged ({exc.__class__.__name__}); {what}",
                     where=str(path))


def load_checkpoint(path: Path, resume: bool = False) -> dict:
    """A checkpoint as torch.load gives it (weights only), or one line naming the file and what to do."""
    import torch

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise XaugError("no such checkpoint; train the run first", where=str(path)) from None
    except _CHECKPOINT_ERRORS as exc:
        raise checkpoint_problem(path, exc, resume) from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("model"), dict) or not isinstance(ckpt.get("config"), dict):
        raise checkpoint_problem(path, ValueError("no model or config"), resume)
    return ckpt


def load_run_model(run_dir: Path, device: str = "auto"):
    """trainer.inference.load_model, with a damaged checkpoint reported as one line."""
    from trainer.inference import checkpoint_path, load_model

    path = checkpoint_path(run_dir)
    try:
        return load_model(run_dir, device)
    except _CHECKPOINT_ERRORS as exc:
        raise checkpoint_problem(path, exc) from None


# Host bytes per pixel of a batch: its float32 input and 29 uint8 target planes, twice (the batch
# the loader prepares and the one the step uses; a CPU step's activations come on top).
BATCH_BYTES_PER_PIXEL = 2 * (4 + 29)


def train_memory(cfg) -> int:
    """Host memory a training run holds at least: the resized images (uint8, train and val, kept
    in memory with `cache`) and the batches in flight. A lower bound: the model comes on top."""
    side = cfg.size * cfg.size
    images = (cfg.train_images + cfg.val_images) * side if cfg.cache else 0
    return images + cfg.batch * side * BATCH_BYTES_PER_PIXEL


def check_memory(cfg) -> None:
    """Refuse, before decoding an image, a run whose images and batches alone exceed the memory
    available (it would be killed by the kernel minutes later, or take the machine down with it)."""
    from xaug import pipeline
    from xaug.store.store import human_bytes

    need, free = train_memory(cfg), pipeline._available_memory()
    if free is not None and need > free:
        raise XaugError(f"{cfg.train_images + cfg.val_images:,} images at {cfg.size} px in batches of "
                        f"{cfg.batch} need at least {human_bytes(need)} of memory but only {human_bytes(free)} "
                        "is available; use a smaller --size or --batch", where="--size")


def _remove_temporaries(run_dir: Path) -> None:
    """What a failed or interrupted save leaves (last.tmp, best.tmp, *.csv.tmp)."""
    for tmp in Path(run_dir).glob("*.tmp"):
        tmp.unlink(missing_ok=True)


def lineage_root(store, ds):
    """Follow `source_id` to the dataset with no source (the imported or synthesised one)."""
    seen = set()
    while ds.source_id is not None and ds.id not in seen:
        seen.add(ds.id)
        ds = store.open(ds.source_id)
    return ds


def training_samples(ds) -> list[Sample]:
    """Derived versions hold only train-role items; a source dataset gives its role="train" items."""
    if ds.source_id is None:
        return ds.samples(split="train", role="train")
    return ds.samples(split="train")


def validation_samples(ds) -> list[Sample]:
    samples = ds.samples(split="train", role="val")
    if not samples:
        raise XaugError("dataset has no validation persons (role='val') in its train split; it "
                        "needs a recorded person-grouped split", where=ds.name)
    return samples


def labelled(samples: list[Sample], where: str) -> list[Sample]:
    missing = [s.relpath for s in samples if s.annotations is None]
    if missing:
        raise XaugError(f"{len(missing)} of {len(samples)} images have no labels (e.g. {missing[0]}); "
                        "scoring needs labels (synthetic test splits have them, the real test split "
                        "does not)", where=where)
    return samples


def trainer_cache_dir(store) -> Path:
    """Where the trainer keeps resized images between runs: `<home>/cache/trainer`."""
    return Path(store.home) / "cache" / "trainer"


def image_hashes(ds, samples: list[Sample]) -> list[str]:
    """Each sample's image file hash, as the version's manifest records it."""
    return [s.image_sha256 or ds.entry(s.relpath).image.sha256 for s in samples]


def train_version(store, dataset: str, *, val: str | None = None, run: str | Path | None = None,
                  resume: bool = False, device: str = "auto", progress: bool = True,
                  on_epoch_end=None, disk_cache: bool = True, **options):
    """Train on version `dataset`, validate on `val` (default: the lineage root's val persons).

    `options` are TrainConfig fields (epochs, size, batch, arch, width, ...). Returns a RunResult.
    Resized images are cached under `<home>/cache/trainer` (`disk_cache=False`: not).
    """
    from trainer.config import TrainConfig
    from trainer.loop import train

    ds = store.open(dataset)
    root = lineage_root(store, ds)
    val_ds = store.open(val) if val else root
    train_s = training_samples(ds)
    val_s = validation_samples(val_ds)
    # person IDs are only comparable within one lineage
    overlap = {s.person for s in train_s} & {s.person for s in val_s} if val_ds.id == root.id else set()
    if overlap:
        raise XaugError(f"validation persons also appear in the training data ({', '.join(sorted(overlap)[:5])}); "
                        "train on a version derived from the train role only", where=ds.name)
    cfg = TrainConfig(**options).replace(dataset=ds.name, dataset_id=ds.id, val_dataset=val_ds.name,
                                         val_id=val_ds.id, train_images=len(train_s), val_images=len(val_s))
    run_dir = run_path(run if run is not None else ds.name)
    check_output_dir(run_dir, "--run", store)  # before any training
    check_memory(cfg)
    if resume and (run_dir / "last.pt").exists():
        load_checkpoint(run_dir / "last.pt", resume=True)
    cache = dict(cache_dir=trainer_cache_dir(store), train_hashes=image_hashes(ds, train_s),
                 val_hashes=image_hashes(val_ds, val_s)) if disk_cache else {}
    try:
        return train(cfg, train_s, val_s, run_dir, device=device, resume=resume, progress=progress,
                     on_epoch_end=on_epoch_end, **cache)
    except BaseException:
        _remove_temporaries(run_dir)
        raise


def eval_samples(store, cfg: dict, dataset: str | None, split: str) -> tuple[object, list[Sample]]:
    ref = dataset or cfg.get("val_id") or cfg.get("val_dataset")
    if not ref:
        raise XaugError("the run records no validation dataset; give --dataset", where="--dataset")
    ds = store.open(ref)
    if split == "val":
        samples = validation_samples(ds)
    elif split == "test":
        samples = ds.samples(split="test")
        if not samples:
            raise XaugError("dataset has no test images", where=ds.name)
    else:
        raise XaugError(f"unknown split {split!r}; use val or test", where="--split")
    return ds, samples


def eval_stem(ds_name: str, split: str, tta: str | None) -> str:
    return f"eval_{ds_name}_{split}" + (f"_{tta}" if tta else "")


@dataclass
class Evaluation:
    run_dir: Path
    dataset: str
    dataset_id: str
    split: str
    tta: str | None
    table: object  # DiceTable
    json_path: Path
    csv_path: Path


def evaluate_run(store, run: str | Path, *, dataset: str | None = None, split: str = "val",
                 tta: str | None = None, device: str = "auto", progress: bool = True,
                 limit: int | None = None, workers: int | None = None, chunk: int | None = None) -> Evaluation:
    """Score a run's best checkpoint; writes eval_<dataset>_<split>.json/.csv (+ _images.csv,
    streamed row by row). Scoring runs on `device` (`chunk` classes of a full-size image at a
    time; default: what fits in memory)."""
    from trainer.inference import check_tta, checkpoint_path
    from trainer.loop import validate
    from trainer.config import TrainConfig

    check_tta(tta)  # --tta bogus left eval_<dataset>_<split>_bogus_images.csv.partial in the run
    run_dir = run_path(run)
    read_run_config(run_dir)
    model, cfg = load_run_model(run_dir, device)
    ds, samples = eval_samples(store, cfg, dataset, split)
    samples = labelled(samples[:limit] if limit else samples, f"{ds.name} {split}")
    tcfg = TrainConfig.from_dict(cfg)
    stem = eval_stem(ds.name, split, tta)
    threads = torch_threads_for(model, workers)
    try:
        table = validate(model, samples, tcfg, progress, desc=f"evaluate {split}", tta=tta, workers=workers,
                         image_csv=run_dir / f"{stem}_images.csv", chunk=chunk)
    finally:
        threads()
    table.write_json(run_dir / f"{stem}.json", run=run_dir.name, dataset=ds.name, dataset_id=ds.id,
                     split=split, tta=tta, checkpoint=checkpoint_path(run_dir).name, subsets=subsets(table, samples))
    table.write_class_csv(run_dir / f"{stem}.csv")
    return Evaluation(run_dir, ds.name, ds.id, split, tta, table, run_dir / f"{stem}.json", run_dir / f"{stem}.csv")


def torch_threads_for(model, workers: int | None):
    """On CPU, leave the DataLoader workers their cores (`trainer.loop.cpu_threads`); returns a
    callable that puts the previous thread count back."""
    import torch

    from trainer.inference import default_workers
    from trainer.loop import cpu_threads

    before = torch.get_num_threads()
    if next(model.parameters()).device.type == "cpu":
        torch.set_num_threads(min(before, cpu_threads(default_workers() if workers is None else workers)))
    return lambda: torch.set_num_threads(before)


def subsets(table, samples: list[Sample]) -> dict:
    """Mean and per-class Dice of the wrist-rotated and the upright hands, when items record it
    (synthetic data does: meta["wrist_rotated"])."""
    from xaug.classes import CLASSES
    import numpy as np

    flags = [s.meta.get("wrist_rotated") if s.meta else None for s in samples]
    if all(f is None for f in flags):
        return {}
    out = {}
    for key, want in (("wrist_rotated", True), ("upright", False)):
        rows = [r for r, f in zip(table.rows, flags) if bool(f) == want]
        if rows:
            per = np.mean(np.stack(rows), axis=0)
            out[key] = {"images": len(rows), "mean_dice": float(per.mean()),
                        "per_class": {c: float(d) for c, d in zip(CLASSES, per)}}
    return out


def predict_to_csv(store, run: str | Path, out: Path, *, dataset: str | None = None, split: str = "test",
                   tta: str | None = None, device: str = "auto", progress: bool = True) -> Path:
    """The competition submission CSV of a run's predictions on a split, streamed: masks are
    made and run-length coded on `device`, rows written image by image."""
    from trainer.inference import check_tta, iter_rle
    from trainer.submit import write_rle_submission

    check_tta(tta)
    if split not in ("test", "val"):  # anything else used to predict the val persons silently
        raise XaugError(f"unknown split {split!r}; use test or val", where="--split")
    run_dir = run_path(run)
    cfg = read_run_config(run_dir)
    check_output_file(Path(out), "--out", store)  # before any inference
    ref = dataset or cfg.get("val_id") or cfg.get("val_dataset")
    if not ref:
        raise XaugError("config.json names no validation dataset; give --dataset", where=str(run_dir / "config.json"))
    ds = store.open(ref)
    samples = ds.samples(split=split, load=False) if split == "test" else validation_samples(ds)
    if not samples:
        raise XaugError(f"dataset has no {split} images", where=ds.name)
    model, mcfg = load_run_model(run_dir, device)
    tmp = Path(out).with_name(Path(out).name + ".tmp")
    try:
        return write_rle_submission(iter_rle(model, samples, mcfg["size"], tta=tta), out, total=len(samples),
                                    progress=progress)
    except BaseException:
        tmp.unlink(missing_ok=True)  # nothing half-written is left behind
        raise


def load_evaluation(run: str | Path, split: str | None = None) -> dict:
    """The newest eval_*.json of a run (of `split` when given); else the training validation."""
    run_dir = run_path(run)
    if not run_dir.is_dir():  # said "no evaluation in the run folder" of a file or a typo
        raise XaugError("is a file, not a run folder; give a run name or folder" if run_dir.exists() else
                        "no such run folder; give a run name (a folder under runs/) or a run folder's path",
                        where=str(run_dir))
    cands = sorted(run_dir.glob("eval_*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
    for path in cands:
        try:
            data = json.loads(path.read_bytes())
        except (ValueError, UnicodeDecodeError):
            raise XaugError(f"{path.name} is damaged (not valid JSON); run `xaug evaluate --run {run}` again",
                            where=str(path)) from None
        if not isinstance(data, dict):
            raise XaugError(f"{path.name} is damaged (not an object); run `xaug evaluate --run {run}` again",
                            where=str(path))
        if split is None or data.get("split") == split:
            return data
    if split in (None, "val") and (run_dir / "val_dice.csv").exists():
        from trainer.metrics import read_class_csv

        per = read_class_csv(run_dir / "val_dice.csv")
        mean = per.pop("mean")
        return {"run": run_dir.name, "split": "val", "dataset": "(training validation)",
                "mean_dice": mean, "per_class": per}
    raise XaugError(f"no evaluation{' of split ' + split if split else ''} in the run folder; run "
                    f"`xaug evaluate --run {run}{' --split ' + split if split else ''}` first", where=str(run_dir))
