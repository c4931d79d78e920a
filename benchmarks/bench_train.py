"""Trainer benchmarks: step time, Dice at equal steps, start-up, evaluation speed.

    python benchmarks/bench_train.py step                       # CPU step time, sizes 256 and 512
    python benchmarks/bench_train.py step --device cuda --sizes 512 1024 --batch 8 --steps 30
    python benchmarks/bench_train.py dice --home bench-dice        # Dice of each arch at equal steps
    python benchmarks/bench_train.py paired --home bench-dice --arms unet=runs-bench-dice/unet-w16 \
        resunet=runs-bench-dice/resunet-w16 --seeds 0 1 2      # paired differences, bootstrap intervals
    python benchmarks/bench_train.py startup --home STORE --dataset raw [--code OLD_CHECKOUT]
    python benchmarks/bench_train.py eval --images 12 --px 2048  # scoring images/s, old vs new path

`step`: one step = forward + BCE/soft-Dice loss + backward + AdamW on random images and targets
(no data loading). CUDA: bf16 autocast and channels_last, as the trainer uses them. Models: the
classic U-Net, the ResUNet (`--arch resunet`; also its first, strided-stem design) and smp's
`Unet("resnet34", encoder_weights=None)`. Where segmentation_models_pytorch is not importable,
the last is `SmpUnetResnet34`, a plain-torch re-implementation of that architecture (same
layers, same 24.43 M parameters), and the row says so.

`dice`: the demo's synthetic set (32 train persons, 512 px; `xaug demo`'s data), each arch
trained for the same number of steps at 128 px, scored on the test split at 512 px. `--archs
resunet@16 resunet-strided@16 unet@16` (arch@width; `resunet-strided`: the ResUNet's first
design), `--seeds 0 1`. No online augmentation unless `--aug` adds some for all the runs of that
call: `--aug scale=0.5 translate=0.5 border=replicate` is the trainer's default (zoom and shift,
the edge replicated into what they bring in; without `border=` the border is black, as in the
rows measured before the option existed).

`startup`: wall time of `xaug train --epochs 1` (tiny model) run twice, cold and warm disk
cache; `--code DIR` runs another checkout of xaug (e.g. `git archive` of an older commit) the
same way, for a before/after.

`eval`: images/s of scoring full-size images with a small model, the earlier path (all 29
classes upsampled at once, masks to the host) against the chunked on-device one.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from trainer.config import TrainConfig  # noqa: E402
from trainer.loop import make_optimizer, train_step  # noqa: E402
from trainer.losses import BCEDiceLoss  # noqa: E402
from trainer.model import build_model, count_parameters  # noqa: E402


# ---------------------------------------------------------------- smp Unet-resnet34, in plain torch

class _Basic(nn.Module):
    """torchvision's ResNet BasicBlock."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                           if stride != 1 or cin != cout else None)

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)), inplace=True)
        y = self.bn2(self.conv2(y))
        return F.relu(y + (self.downsample(x) if self.downsample is not None else x), inplace=True)


def _conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class SmpUnetResnet34(nn.Module):
    """smp.Unet("resnet34", encoder_weights=None, in_channels=1, classes=29), re-implemented:
    ResNet-34 encoder (7x7/2 stem, 3x3/2 max-pool, BasicBlock layers [3, 4, 6, 3] of 64, 128, 256,
    512 channels) and smp's UnetDecoder (decoder_channels (256, 128, 64, 32, 16): nearest x2,
    concatenation with the skip, two conv3x3-BN-ReLU; no skip at full resolution), then a 3x3
    segmentation head. 24.43 M parameters, as smp's."""

    def __init__(self, in_channels: int = 1, classes: int = 29):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        layers, cin = [], 64
        for cout, n, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
            layers.append(nn.Sequential(_Basic(cin, cout, stride), *(_Basic(cout, cout, 1) for _ in range(n - 1))))
            cin = cout
        self.layers = nn.ModuleList(layers)
        skips, dec, blocks, cin = (256, 128, 64, 64, 0), (256, 128, 64, 32, 16), [], 512
        for cskip, cout in zip(skips, dec):
            blocks.append(nn.Sequential(_conv_bn_relu(cin + cskip, cout), _conv_bn_relu(cout, cout)))
            cin = cout
        self.blocks = nn.ModuleList(blocks)
        self.head = nn.Conv2d(16, classes, 3, padding=1)

    def forward(self, x):
        f0 = F.relu(self.bn1(self.conv1(x)), inplace=True)          # 1/2, 64
        y = F.max_pool2d(f0, 3, 2, 1)
        feats = [f0]
        for layer in self.layers:
            y = layer(y)
            feats.append(y)                                          # 1/4 .. 1/32
        skips = [feats[3], feats[2], feats[1], feats[0], None]
        y = feats[4]
        for block, skip in zip(self.blocks, skips):
            y = F.interpolate(y, scale_factor=2, mode="nearest")
            if skip is not None:
                y = torch.cat([y, skip], dim=1)
            y = block(y)
        return self.head(y)


def smp_unet_resnet34():
    """(name, constructor): the real smp model when importable, else the re-implementation."""
    try:
        import segmentation_models_pytorch as smp
    except ImportError:
        return "smp Unet resnet34 (plain-torch re-implementation)", lambda: SmpUnetResnet34()
    return "smp Unet resnet34", lambda: smp.Unet("resnet34", encoder_weights=None, in_channels=1, classes=29)


def step_models(width: int, depth: int, blocks: int):
    yield f"xaug unet w{width} d{depth}", lambda: build_model(width=width, depth=depth, arch="unet")
    yield (f"xaug resunet w{width} d{depth} b{blocks}",
           lambda: build_model(width=width, depth=depth, arch="resunet", blocks=blocks))
    yield (f"xaug resunet-strided w{width} d{depth} b{blocks}",  # the first design (stem="strided")
           lambda: build_model(width=width, depth=depth, arch="resunet", blocks=blocks, stem="strided"))
    yield smp_unet_resnet34()


def step_setup(make, size: int, batch: int, device: torch.device, compile_: bool = False):
    """(model, the model to step, optimizer, loss, x, y): random 1-channel inputs and 29-class
    targets, channels_last on CUDA, as the trainer steps."""
    torch.manual_seed(0)
    model = make().to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    step_model = torch.compile(model) if compile_ else model
    x = torch.randn(batch, 1, size, size, device=device)
    if device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
    y = (torch.rand(batch, 29, size, size, device=device) > 0.9).to(torch.uint8)
    return model, step_model, make_optimizer(model, TrainConfig()), BCEDiceLoss(), x, y


def timed_step(step_model, x, y, opt, crit, device: torch.device) -> float:
    """Seconds of one training step (synchronised on CUDA)."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    train_step(step_model, x, y, opt, crit, device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def time_steps(make, size: int, batch: int, steps: int, warmup: int, device: torch.device, compile_: bool):
    model, step_model, opt, crit, x, y = step_setup(make, size, batch, device, compile_)
    model.train()
    times = [timed_step(step_model, x, y, opt, crit, device) for _ in range(warmup + steps)][warmup:]
    mem = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return count_parameters(model), times, mem


def gflops(make, size: int, device: torch.device = torch.device("cpu")) -> float:
    """Forward + backward GFLOP of one image (torch's FLOP counter: convolutions and matmuls),
    counted on `device` (a 1024 px backward on the host would take longer than the timing)."""
    from torch.utils.flop_counter import FlopCounterMode

    model = make().to(device)
    with FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 1, size, size, device=device)).sum().backward()
    return counter.get_total_flops() / 1e9


def head(device: torch.device, **extra) -> dict:
    return {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine(),
            "torch": torch.__version__, "threads": torch.get_num_threads(),
            "load_avg": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
            "precision": "bf16 autocast, channels_last" if device.type == "cuda" else "float32", **extra}


def cmd_step(args) -> dict:
    device = torch.device(args.device)
    info = head(device, batch=args.batch)
    print(json.dumps(info))
    print("| model | params | GFLOP/image | size | batch | s/step (median) | images/s |")
    print("|---|---|---|---|---|---|---|")
    rows = []
    for size in args.sizes:
        # models interleaved per round, so a change in machine load hits all of them alike
        per = {}
        for _ in range(args.rounds):
            for name, make in step_models(args.width, args.depth, args.blocks):
                if args.models and not any(m in name for m in args.models):
                    continue
                params, times, mem = time_steps(make, size, args.batch, args.steps, args.warmup, device, args.compile)
                entry = per.setdefault(name, {"params": params, "times": [], "mem": mem,
                                              "gflop": round(gflops(make, size, device), 1)})
                entry["times"] += times
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)
        for name, entry in per.items():
            med = statistics.median(entry["times"])
            row = {"model": name, "params_m": round(entry["params"] / 1e6, 2), "gflop_per_image": entry["gflop"],
                   "size": size, "batch": args.batch,
                   "s_per_step": round(med, 4), "images_per_s": round(args.batch / med, 2),
                   "steps_timed": len(entry["times"]),
                   "max_mem_gib": round(entry["mem"], 2) if entry["mem"] is not None else None}
            rows.append(row)
            print(f"| {name} | {row['params_m']}M | {entry['gflop']} | {size} | {args.batch} | {med:.3f} | "
                  f"{row['images_per_s']:.2f} |"
                  + (f" (peak {entry['mem']:.1f} GiB)" if entry["mem"] is not None else ""), flush=True)
    return {**info, "rows": rows}


# ---------------------------------------------------------------- Dice at equal steps

# the `dice` runs' online augmentation unless --aug adds some: none, so that the rows measured
# before the trainer turned zoom and shift on by default stay reproducible by their commands
NO_ONLINE_AUG = {"hflip": 0.0, "scale": 0.0, "translate": 0.0, "gamma": 0.0, "black_level": 0.0,
                 "border": "constant"}


def cmd_dice(args) -> dict:
    from xaug.store import Store
    from xaug.synth.generate import synthesize
    from trainer.data import OnlineAug
    from trainer.runs import evaluate_run, train_version, training_samples

    store = Store(args.home)
    try:
        raw = store.open("bench")
    except Exception:
        raw = synthesize(store, name="bench", persons=args.persons, seed=0, size=args.image_px,
                         test_persons=args.test_persons, jobs=None, progress=False)
    n = len(training_samples(raw))
    steps_per_epoch = n // args.batch
    epochs = max(1, round(args.steps / steps_per_epoch))
    info = head(torch.device("cpu"), dataset=raw.name, dataset_id=raw.id[:12], train_images=n,
                steps=epochs * steps_per_epoch, size=args.size, batch=args.batch, lr=args.lr)
    print(json.dumps(info))
    rows = []
    for spec in args.archs:
        arch, _, width = spec.partition("@")
        width = int(width or 32)
        stem = ""
        if arch.startswith("resunet-"):  # resunet-strided: the first ResUNet design
            arch, _, stem = arch.partition("-")
        extra = {"stem": stem} if stem else {}
        for seed in args.seeds:
            tag = "".join(f"-{name}{p:g}" if isinstance(p, float) else f"-{p}" for name, p in args.aug)
            run = Path(args.runs) / f"{arch}{'-' + stem if stem else ''}-w{width}{tag}-s{seed}"
            t0 = time.perf_counter()
            train_version(store, raw.name, run=str(run), resume=(run / "last.pt").exists(), device="cpu",
                          epochs=epochs, size=args.size, batch=args.batch, arch=arch, width=width,
                          depth=args.depth, lr=args.lr, aug=OnlineAug(**{**NO_ONLINE_AUG, **dict(args.aug)}), seed=seed,
                          val_every=epochs, progress=False, **extra)
            train_s = time.perf_counter() - t0
            ev = evaluate_run(store, str(run), dataset=raw.name, split="test", device="cpu", progress=False)
            subs = json.loads(ev.json_path.read_text()).get("subsets", {})
            row = {"arch": arch + ("-" + stem if stem else ""), "width": width, "seed": seed,
                   "aug": dict(args.aug), "test_dice": round(ev.table.mean(), 4),
                   "rotated": round(subs.get("wrist_rotated", {}).get("mean_dice", float("nan")), 4),
                   "upright": round(subs.get("upright", {}).get("mean_dice", float("nan")), 4),
                   "train_seconds": round(train_s, 1)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    return {**info, "rows": rows}


def _arm_option(text: str) -> tuple[str, str]:
    name, sep, prefix = text.partition("=")
    if not sep or not name or not prefix:
        raise argparse.ArgumentTypeError(f"{text!r}: use NAME=RUN_PREFIX (run folders RUN_PREFIX-s<seed>)")
    return name, prefix


def cmd_paired(args) -> dict:
    """Paired differences of finished `dice` runs (first arm: the baseline), with the bootstrap
    intervals `xaug ablate` reports: over images, pairing by image and seed (`low`/`high`), and
    resampling the seeds too (`low_seeds`/`high_seeds`). Reads each run's per-image test CSV."""
    import csv

    import numpy as np

    from trainer.ablate import BootstrapSettings, Scores, analyse, eval_samples_meta, image_subsets
    from xaug.classes import CLASSES
    from xaug.store import Store

    data = Store(args.home).open(args.dataset)
    scores: dict[str, dict[int, Scores]] = {}
    for name, prefix in args.arms:
        scores[name] = {}
        for seed in args.seeds:
            run = Path(f"{prefix}-s{seed}")
            found = sorted(run.glob("eval_*_test_images.csv"))
            if len(found) != 1:
                raise SystemExit(f"{run}: expected one eval_*_test_images.csv, found {len(found)}")
            with open(found[0], newline="") as f:
                rows = list(csv.DictReader(f))
            scores[name][seed] = Scores([r["image_name"] for r in rows],
                                        np.array([[float(r[c]) for c in CLASSES] for r in rows]))
    samples = {s.name: s for s in eval_samples_meta(data, "test")}
    names = [n for n, _ in args.arms]
    ref = scores[names[0]][args.seeds[0]].images
    for name in names:
        for seed in args.seeds:
            sc = scores[name][seed]
            if sorted(sc.images) != sorted(ref) or set(ref) != set(samples):
                raise SystemExit(f"{name} seed {seed}: its test images are not {data.name}'s test images")
            scores[name][seed] = sc.in_order(ref)
    result = analyse(scores, names, list(args.seeds), image_subsets([samples[n] for n in ref]),
                     BootstrapSettings(resamples=args.resamples, seed=0))
    for subset, entry in result.items():
        for arm, d in entry["differences"].items():
            print(f"{subset:14s} {arm} - {names[0]}: {d['diff']:+.4f} [{d['low']:+.4f}, {d['high']:+.4f}] "
                  f"(seeds too: [{d['low_seeds']:+.4f}, {d['high_seeds']:+.4f}]); per seed "
                  + " ".join(f"{v:+.4f}" for v in d["per_seed"]))
    for d in result.values():  # keep the JSON to the figures the docs quote
        for diff in d["differences"].values():
            diff.pop("per_class")
        for arm in d["arms"].values():
            arm.pop("per_class"), arm.pop("per_class_std")
    return {"dataset": data.name, "dataset_id": data.id[:12], "baseline": names[0],
            "arms": {n: p for n, p in args.arms}, "seeds": list(args.seeds),
            "resamples": args.resamples, "subsets": result}


# ---------------------------------------------------------------- start-up

def startup_phases(args) -> dict:
    """The data part of start-up, in this process: the training and validation images decoded and
    resized one at a time (as before: one thread on a 2-core machine), in parallel, and read
    from a warm disk cache; and one validation pass's input decoding, which the cache removes."""
    from trainer.data import DiskCache, _decode_all, decode_jobs, resized_images
    from trainer.runs import image_hashes, training_samples, validation_samples
    from xaug.store import Store

    store = Store(args.home)
    ds = store.open(args.dataset)
    train_s, val_s = training_samples(ds), validation_samples(ds)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for rnd in range(args.repeat):
            disk = DiskCache(Path(tmp) / f"r{rnd}", ds.id)
            for name, fn in (
                ("before: serial decode of train + val", lambda: (_decode_all(train_s, args.size, 1),
                                                                   _decode_all(val_s, args.size, 1))),
                (f"after, cold: {decode_jobs()} threads, written to the cache",
                 lambda: (resized_images(train_s, args.size, disk=disk, hashes=image_hashes(ds, train_s)),
                          resized_images(val_s, args.size, disk=disk, hashes=image_hashes(ds, val_s)))),
                ("after, warm: read from the cache",
                 lambda: (resized_images(train_s, args.size, disk=disk, hashes=image_hashes(ds, train_s)),
                          resized_images(val_s, args.size, disk=disk, hashes=image_hashes(ds, val_s)))),
            ):
                t0 = time.perf_counter()
                fn()
                rows.append({"phase": name, "round": rnd + 1, "seconds": round(time.perf_counter() - t0, 3),
                             "images": len(train_s) + len(val_s)})
                print(json.dumps(rows[-1]), flush=True)
    return {**head(torch.device("cpu"), dataset=ds.name, size=args.size), "rows": rows}


def cmd_startup(args) -> dict:
    if args.phases:
        return startup_phases(args)
    code = Path(args.code).resolve() if args.code else ROOT
    env = {**os.environ, "PYTHONPATH": str(code), "XAUG_HOME": str(Path(args.home).resolve())}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for attempt in range(args.repeat):
            run = Path(tmp) / f"run{attempt}"
            cmd = [sys.executable, "-m", "xaug", "train", "--dataset", args.dataset, "--run", str(run),
                   "--epochs", "1", "--size", str(args.size), "--batch", "8", "--width", "8", "--depth", "3",
                   "--device", "cpu", "-q"]
            t0 = time.perf_counter()
            before = os.times()
            proc = subprocess.run(cmd, env=env, cwd=tmp, capture_output=True, text=True)
            after = os.times()
            wall = time.perf_counter() - t0
            if proc.returncode:
                raise SystemExit(proc.stderr[-2000:])
            metrics = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x.strip()]
            row = {"attempt": attempt + 1, "wall_s": round(wall, 1),
                   "user_s": round(after.children_user - before.children_user, 1),
                   "sys_s": round(after.children_system - before.children_system, 1),
                   "train_s": metrics[0].get("train_seconds"), "startup_s": metrics[0].get("startup_seconds")}
            rows.append(row)
            print(json.dumps(row), flush=True)
    return {**head(torch.device("cpu"), code=str(code), dataset=args.dataset, size=args.size), "rows": rows}


# ---------------------------------------------------------------- evaluation speed

def cmd_eval(args) -> dict:
    import numpy as np

    from trainer.inference import iter_dice, iter_predictions
    from trainer.metrics import dice_per_class_torch

    sys.path.insert(0, str(ROOT / "tests"))
    from _trainer_data import make_samples

    device = torch.device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        samples = make_samples(Path(tmp), n=args.images, size=args.px, classes=29)
        torch.manual_seed(0)
        model = build_model(width=8, depth=3, arch="resunet").to(device).eval()
        rows = []
        paths = {"before": "before: all classes at once, on the host", "after": "after: chunked on the device"}
        for rnd in range(args.rounds):
            for path in args.paths:
                for loader in args.loaders:
                    name = paths[path]
                    os.environ["XAUG_EVAL_LOADER"] = loader
                    t0 = time.perf_counter()
                    if path == "before":
                        out = [dice_per_class_torch(p, g).cpu().numpy() for _, p, g in
                               iter_predictions(model, samples, args.size, with_gt=True, workers=args.workers)]
                    else:
                        out = [d for _, d in iter_dice(model, samples, args.size, workers=args.workers)]
                    dt = time.perf_counter() - t0
                    rows.append({"path": name, "loader": loader, "round": rnd + 1, "seconds": round(dt, 2),
                                 "images_per_s": round(len(samples) / dt, 2), "mean": float(np.mean(out))})
                    print(json.dumps(rows[-1]), flush=True)
    return {**head(device, images=args.images, px=args.px, input=args.size), "rows": rows}


# ---------------------------------------------------------------- cold start of one training run

class _Bytes(torch.utils.data.Dataset):
    """Items of `mb` MB, as a numpy array (pickled through the worker's pipe) or a tensor (shared memory)."""

    def __init__(self, n: int, mb: float, kind: str):
        self.n, self.shape, self.kind = n, (int(mb * 2**20) // 2048, 2048), kind

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        import numpy as np

        a = np.full(self.shape, i % 251, np.uint8)
        return [torch.from_numpy(a) if self.kind == "tensor" else a]


def _first(x):
    return x


def cmd_coldstart(args) -> dict:
    """Where the first epoch's extra time goes: a fresh interpreter's `import torch`, DataLoader
    workers' start (to the first batch), the first training steps, and moving items from workers."""
    from torch.utils.data import DataLoader

    from trainer.data import loader_context, worker_init_for

    device = torch.device(args.device)
    rows = []

    def add(what: str, seconds: float, **extra) -> None:
        rows.append({"what": what, "seconds": round(seconds, 3), **extra})
        print(json.dumps(rows[-1]), flush=True)

    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch"], check=True)
    add("fresh interpreter: import torch", time.perf_counter() - t0)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import trainer.loop, xaug.store"], check=True, cwd=ROOT)
    add("fresh interpreter: import trainer.loop, xaug.store", time.perf_counter() - t0)
    for kind in ("numpy", "tensor"):
        ds = _Bytes(args.items, args.mb, kind)
        t0 = time.perf_counter()
        it = iter(DataLoader(ds, batch_size=4, num_workers=args.workers, collate_fn=_first,
                             worker_init_fn=worker_init_for(os.getpid()), multiprocessing_context=loader_context()))
        next(it)
        t1 = time.perf_counter()
        rest = sum(1 for _ in it)
        t2 = time.perf_counter()
        add(f"DataLoader {args.workers} workers (forkserver): first batch", t1 - t0, items=kind)
        add(f"DataLoader {args.workers} workers: {args.mb} MB items as {kind}", t2 - t1,
            items_per_s=round(rest * 4 / max(t2 - t1, 1e-9), 1), mb_per_s=round(rest * 4 * args.mb / max(t2 - t1, 1e-9)))
    model, step_model, opt, crit, x, y = step_setup(lambda: build_model(width=32, depth=5, arch="unet"),
                                                    args.size, args.batch, device)
    for i in range(3):
        add(f"unet w32 d5 train step {i + 1} ({args.size} px, batch {args.batch})",
            timed_step(step_model, x, y, opt, crit, device))
    return {**head(device), "rows": rows}


def _aug_option(text: str) -> tuple[str, float | str]:
    from trainer.data import BORDERS, OnlineAug

    name, _, value = text.partition("=")
    name = name.replace("-", "_")
    if name == "border":
        if value not in BORDERS:
            raise argparse.ArgumentTypeError(f"{text!r}: border is one of {', '.join(BORDERS)}")
        return name, value
    if name not in OnlineAug.__dataclass_fields__ or not value:
        raise argparse.ArgumentTypeError(f"{text!r}: use NAME=P with NAME one of scale, translate, gamma, "
                                         "black_level, hflip, brightness_contrast, clahe, sharpen, emboss")
    return name, float(value)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="what")
    st = sub.add_parser("step", help="training-step time per model")
    st.add_argument("--device", default="cpu")
    st.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    st.add_argument("--batch", type=int, default=4)
    st.add_argument("--steps", type=int, default=3)
    st.add_argument("--warmup", type=int, default=1)
    st.add_argument("--rounds", type=int, default=1, help="repeat every model this often, interleaved")
    st.add_argument("--width", type=int, default=32)
    st.add_argument("--depth", type=int, default=5)
    st.add_argument("--blocks", type=int, default=2)
    st.add_argument("--compile", action="store_true")
    st.add_argument("--models", nargs="+", default=None, help="only models whose name contains one of these")
    di = sub.add_parser("dice", help="test Dice per arch at equal steps (the demo's synthetic set)")
    di.add_argument("--home", required=True, help="store folder (made on first use)")
    di.add_argument("--runs", default="runs-bench-dice")
    di.add_argument("--archs", nargs="+", default=["unet@32", "resunet@32"], help="arch@width")
    di.add_argument("--seeds", type=int, nargs="+", default=[0])
    di.add_argument("--persons", type=int, default=32)
    di.add_argument("--test-persons", type=int, default=12)
    di.add_argument("--image-px", type=int, default=512)
    di.add_argument("--size", type=int, default=128)
    di.add_argument("--depth", type=int, default=4)
    di.add_argument("--batch", type=int, default=8)
    di.add_argument("--steps", type=int, default=600)
    di.add_argument("--lr", type=float, default=1e-2)
    di.add_argument("--aug", type=_aug_option, nargs="*", default=[], metavar="NAME=P",
                    help="online augmentation probabilities (default: none, no flips), e.g. scale=0.5 "
                         "translate=0.5 border=replicate (the trainer's default; border: constant unless "
                         "given); the run folders carry them in their names")
    pa = sub.add_parser("paired", help="paired differences of finished dice runs, with bootstrap intervals")
    pa.add_argument("--home", required=True, help="the store the runs were trained from")
    pa.add_argument("--dataset", default="bench")
    pa.add_argument("--arms", type=_arm_option, nargs="+", required=True, metavar="NAME=RUN_PREFIX",
                    help="first one: the baseline; run folders are RUN_PREFIX-s<seed>")
    pa.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    pa.add_argument("--resamples", type=int, default=10_000)
    su = sub.add_parser("startup", help="wall time of a 1-epoch xaug train, cold then warm")
    su.add_argument("--home", required=True)
    su.add_argument("--dataset", default="raw")
    su.add_argument("--size", type=int, default=64)
    su.add_argument("--repeat", type=int, default=2)
    su.add_argument("--code", default=None, help="another xaug checkout to run instead of this one")
    su.add_argument("--phases", action="store_true", help="time only the image decoding/caching, in this process")
    ev = sub.add_parser("eval", help="scoring images/s, earlier path vs chunked on-device")
    ev.add_argument("--device", default="cpu")
    ev.add_argument("--images", type=int, default=12)
    ev.add_argument("--px", type=int, default=2048)
    ev.add_argument("--size", type=int, default=128)
    ev.add_argument("--rounds", type=int, default=2)
    ev.add_argument("--paths", nargs="+", choices=["before", "after"], default=["before", "after"])
    ev.add_argument("--loaders", nargs="+", choices=["processes", "threads"], default=["processes", "threads"],
                    help="how items are made in parallel (trainer.inference.eval_batches)")
    ev.add_argument("--workers", type=int, default=0)
    cs = sub.add_parser("coldstart", help="import, DataLoader worker start, first training steps")
    cs.add_argument("--device", default="cpu")
    cs.add_argument("--workers", type=int, default=8)
    cs.add_argument("--items", type=int, default=64)
    cs.add_argument("--mb", type=float, default=15.0)
    cs.add_argument("--size", type=int, default=512)
    cs.add_argument("--batch", type=int, default=16)
    for p in (st, di, pa, su, ev, cs):
        p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
        p.add_argument("--json", type=Path, default=None, help="also write the result here")
    args = ap.parse_args(argv)
    if args.what is None:
        args = ap.parse_args(["step", *(argv if argv is not None else sys.argv[1:])])
    if args.threads:
        torch.set_num_threads(args.threads)
    result = {"step": cmd_step, "dice": cmd_dice, "paired": cmd_paired, "startup": cmd_startup, "eval": cmd_eval,
              "coldstart": cmd_coldstart}[args.what](args)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
