"""Training-step throughput of the bundled U-Net beside segmentation_models_pytorch's
Unet("resnet34", encoder_weights=None, classes=29), same batch, same input, one process.

    python benchmarks/bench_train.py                         # CPU, sizes 256 and 512
    python benchmarks/bench_train.py --device cuda --sizes 512 1024 --batch 8 --steps 30

One step = forward + BCE/soft-Dice loss + backward + AdamW, on random images and targets (no
data loading). CUDA: bf16 autocast and channels_last, as the trainer uses them. smp is a
bench-only extra (`pip install .[bench]`); without it only the U-Net is timed.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trainer.config import TrainConfig  # noqa: E402
from trainer.inference import autocast  # noqa: E402
from trainer.loop import make_optimizer, train_step  # noqa: E402
from trainer.losses import BCEDiceLoss  # noqa: E402
from trainer.model import build_model, count_parameters  # noqa: E402


def models(width: int, depth: int):
    yield f"xaug UNet w{width} d{depth}", lambda: build_model(width=width, depth=depth), 1
    try:
        import segmentation_models_pytorch as smp
    except ImportError:
        print("segmentation_models_pytorch not installed: skipping it", file=sys.stderr)
        return
    yield "smp Unet resnet34", lambda: smp.Unet("resnet34", encoder_weights=None, in_channels=1, classes=29), 1


def time_steps(make, size: int, batch: int, steps: int, warmup: int, device: torch.device, compile_: bool):
    torch.manual_seed(0)
    model = make().to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    step_model = torch.compile(model) if compile_ else model
    opt = make_optimizer(model, TrainConfig())
    crit = BCEDiceLoss()
    x = torch.randn(batch, 1, size, size, device=device)
    if device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
    y = (torch.rand(batch, 29, size, size, device=device) > 0.9).to(torch.uint8)
    model.train()
    times = []
    for i in range(warmup + steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        train_step(step_model, x, y, opt, crit, device)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    mem = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return count_parameters(model), times, mem


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--depth", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    head = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine(),
            "torch": torch.__version__, "threads": torch.get_num_threads(), "batch": args.batch,
            "precision": "bf16 autocast, channels_last" if device.type == "cuda" else "float32"}
    print(json.dumps(head))
    print(f"| model | params | size | batch | s/step (median) | images/s |")
    print(f"|---|---|---|---|---|---|")
    rows = []
    for size in args.sizes:
        for name, make, _ in models(args.width, args.depth):
            params, times, mem = time_steps(make, size, args.batch, args.steps, args.warmup, device, args.compile)
            med = statistics.median(times)
            row = {"model": name, "params_m": round(params / 1e6, 2), "size": size, "batch": args.batch,
                   "s_per_step": round(med, 4), "images_per_s": round(args.batch / med, 2),
                   "max_mem_gib": round(mem, 2) if mem is not None else None}
            rows.append(row)
            print(f"| {name} | {row['params_m']}M | {size} | {args.batch} | {med:.3f} | {row['images_per_s']:.1f} |"
                  + (f" (peak {mem:.1f} GiB)" if mem is not None else ""), flush=True)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
    if args.json:
        args.json.write_text(json.dumps({**head, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
