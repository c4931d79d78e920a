"""Augmentation benchmark: `xaug rotate` / `xaug mosaic` against their I/O floors and against
the usual alternative (albumentations on 29 rasterised masks + contour tracing), 1 vs 2 workers.

Everything runs on the same synthetic 2048x2048 images (`xaug synth`), in one run; every figure is
the median of --repeat whole-process timings (a fresh seed each time, so no run is a cache hit).

- rotate floor: a process that decodes each source PNG and encodes one PNG per output item.
- mosaic floor: a process that decodes each mosaic's sources and encodes its output.
- alternative: a process that, per source, decodes, rasterises the 29 class masks, rotates image
  and masks with albumentations, traces the masks back to polygons with cv2.findContours, then
  encodes the PNG and writes the label JSON (what people do without exact polygon geometry).

    python benchmarks/bench_augment.py --persons 16 --mosaics 16 --repeat 3
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

HERE = Path(__file__).resolve()
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # no network version check in the timed child


CPU: dict[str, list[float]] = {}   # CPU seconds (user + sys) of the last child, by label


def _cpu() -> float:
    import resource

    u = resource.getrusage(resource.RUSAGE_CHILDREN)
    return u.ru_utime + u.ru_stime


def run(*args: str, env: dict | None = None) -> float:
    """Wall seconds of one child process; its CPU seconds (workers included) go to CPU['last']."""
    c0, t0 = _cpu(), time.perf_counter()
    subprocess.run([sys.executable, *args], check=True, stdout=subprocess.DEVNULL, env=env)
    wall = time.perf_counter() - t0
    CPU["last"] = [_cpu() - c0]
    return wall


def xaug(*args: str) -> float:
    return run("-m", "xaug", *args)


# ---------------------------------------------------------------- the floors and the alternative
# (each runs in its own process, like the command it is compared with)

def floor_rotate(job: dict) -> None:
    """Decode each source PNG, encode one PNG: the least any rotate command has to do.
    (xaug's own decoder and encoder, so both sides use the same PNG settings.)"""
    from xaug.layout import encode_png, read_image

    for path in job["sources"]:
        encode_png(read_image(path))


def floor_rotate_checked(job: dict) -> None:
    """The rotate floor plus the read-time integrity check every store reader does: the sha256 of
    the bytes already read compared with the manifest's (`xaug.store.read_verified`)."""
    from xaug.layout import decode_image, encode_png
    from xaug.store import read_verified

    for path, sha in zip(job["sources"], job["sha256"]):
        encode_png(decode_image(read_verified(path, sha, where=path, name="bench"), path))


def floor_mosaic(job: dict) -> None:
    """Per mosaic: decode each of its sources, encode one output-sized PNG (the last source)."""
    from xaug.layout import encode_png, read_image

    for sources in job["mosaics"]:
        for path in sources:
            img = read_image(path)
        encode_png(img)


def alternative(job: dict) -> None:
    """albumentations Rotate on the image + 29 rasterised masks, then findContours -> polygons."""
    import albumentations as A
    import cv2
    import numpy as np

    from xaug.classes import CLASSES
    from xaug.layout import annotation_bytes, annotation_doc, encode_png, parse_annotation_doc, read_image
    from xaug.model import Annotation
    from xaug.raster import class_masks

    out = Path(job["out"])
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i, (img_path, label_path) in enumerate(job["pairs"]):
        image = read_image(img_path)
        anns, _, _, _ = parse_annotation_doc(Path(label_path).read_bytes(), label_path)
        masks = class_masks(anns, image.shape[:2], channels_last=True)        # (H, W, 29)
        angle = float(rng.uniform(-30, 30))
        aug = A.Rotate(limit=(angle, angle), border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=0, p=1.0)
        res = aug(image=image, mask=masks)
        polys = []
        for c, label in enumerate(CLASSES):
            contours, _ = cv2.findContours(np.ascontiguousarray(res["mask"][..., c]), cv2.RETR_EXTERNAL,
                                           cv2.CHAIN_APPROX_SIMPLE)
            for cnt in contours:
                if len(cnt) >= 3:
                    polys.append(Annotation(label, cnt.reshape(-1, 2).astype(np.int64)))
        h, w = res["image"].shape[:2]
        (out / f"{i:05d}.png").write_bytes(encode_png(res["image"]))
        (out / f"{i:05d}.json").write_bytes(annotation_bytes(annotation_doc(polys, height=h, width=w)))


MODES = {"floor-rotate": floor_rotate, "floor-rotate-checked": floor_rotate_checked,
         "floor-mosaic": floor_mosaic, "alternative": alternative}


def child(mode: str, job_path: str) -> None:
    job = json.loads(Path(job_path).read_text())
    t0, c0 = time.perf_counter(), time.process_time()
    MODES[mode](job)
    Path(job_path + ".loop").write_text(json.dumps([time.perf_counter() - t0, time.process_time() - c0]))


def timed_child(mode: str, job: dict, tmp: Path) -> tuple[float, float, float]:
    """(whole-process wall seconds, wall and CPU seconds inside the loop) of one child run."""
    path = tmp / f"{mode}.json"
    path.write_text(json.dumps(job))
    whole = run(str(HERE), "--child", mode, str(path))
    loop_wall, loop_cpu = json.loads(Path(str(path) + ".loop").read_text())
    return whole, loop_wall, loop_cpu


# ---------------------------------------------------------------- the benchmark

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--persons", type=int, default=16, help="synthetic training persons (2 images each)")
    ap.add_argument("--mosaics", type=int, default=16)
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--jobs", type=int, nargs="+", default=[2], help="worker counts compared with 1")
    ap.add_argument("--home", type=Path, help="reuse this store (made with `xaug synth` if empty)")
    ap.add_argument("--json", type=Path, help="also write the medians here")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(*args.child)
        return

    with tempfile.TemporaryDirectory(prefix="xaug-bench-") as tmp_name:
        tmp = Path(tmp_name)
        home = args.home or tmp / "home"
        from xaug.store import Store

        store = Store(home)
        if not store.names():
            xaug("synth", "--persons", str(args.persons), "--test-persons", "0", "--size", str(args.size),
                 "--seed", "0", "--home", str(home))
        raw = store.open("raw")
        sources = raw.samples(split="train", role="train", load=False)  # what the pipeline reads
        entries = {e.relpath: e for e in raw.entries}
        pairs = [(str(s.image_path), str(raw.file_path(entries[s.relpath].label))) for s in sources]
        n = len(sources)
        print(f"{n} source images ({args.size}x{args.size}, non-validation persons of "
              f"{len({e.person for e in raw.entries})}), {args.mosaics} mosaics, median of {args.repeat}",
              flush=True)

        wall: dict[str, list[float]] = {}
        cpu: dict[str, list[float]] = {}

        def keep(key: str, seconds: float, cpu_s: float | None = None) -> None:
            wall.setdefault(key, []).append(seconds)
            cpu.setdefault(key, []).append(CPU["last"][0] if cpu_s is None else cpu_s)

        base_seed = int(time.time()) % 1_000_000 * 100  # never used before: no run is a cache hit
        for r in range(args.repeat):
            seed = str(base_seed + r)
            common = ["--from", raw.name, "--seed", seed, "--home", str(home), "-q"]
            keep("rotate", xaug("rotate", "--angles", "-30:30", "--jobs", "1", "--name", "brot", *common))
            keep("wrist", xaug("rotate", "--angles", "-45:45", "--pivot", "wrist", "--jobs", "1",
                               "--name", "bwrist", *common))
            keep("mosaic", xaug("mosaic", "--grid", "2x2", "--n", str(args.mosaics), "--jobs", "1",
                                "--name", "bmos", *common))
            for j in args.jobs:
                keep(f"rotate_j{j}", xaug("rotate", "--angles", "-30:30", "--jobs", str(j),
                                          "--name", f"brot{j}", *common))
                keep(f"mosaic_j{j}", xaug("mosaic", "--grid", "2x2", "--n", str(args.mosaics), "--jobs", str(j),
                                          "--name", f"bmos{j}", *common))
            whole, loop, loop_cpu = timed_child("floor-rotate", {"sources": [p for p, _ in pairs]}, tmp)
            keep("rotate_floor", whole)
            keep("rotate_floor_loop", loop, loop_cpu)
            shas = [entries[s.relpath].image.sha256 for s in sources]
            whole, loop, loop_cpu = timed_child("floor-rotate-checked", {"sources": [p for p, _ in pairs],
                                                                         "sha256": shas}, tmp)
            keep("rotate_floor_checked_loop", loop, loop_cpu)
            mos = Store(home).open("bmos")
            mosaics = [[str(raw.file_path(entries[p["source"]].image)) for p in e.provenance["patches"]]
                       for e in mos.entries]
            whole, loop, loop_cpu = timed_child("floor-mosaic", {"mosaics": mosaics}, tmp)
            keep("mosaic_floor", whole)
            keep("mosaic_floor_loop", loop, loop_cpu)
            whole, loop, loop_cpu = timed_child("alternative", {"pairs": pairs, "out": str(tmp / f"alt{r}")}, tmp)
            keep("alternative", whole)
            keep("alternative_loop", loop, loop_cpu)
            keep("python", run("-c", "import cv2, numpy"))
            print(f"  repeat {r + 1}: rotate {wall['rotate'][-1]:.2f} s, floor {wall['rotate_floor'][-1]:.2f} s, "
                  f"mosaic {wall['mosaic'][-1]:.2f} s, floor {wall['mosaic_floor'][-1]:.2f} s, "
                  f"alternative {wall['alternative'][-1]:.2f} s", flush=True)
        med = {k: statistics.median(v) for k, v in wall.items()}
        med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        report(med, med_cpu, n, args, cores)
        if args.json:
            args.json.write_text(json.dumps({"wall": wall, "cpu": cpu, "images": n, "mosaics": args.mosaics,
                                             "cores": cores, "size": args.size}, indent=1))


def report(m: dict, c: dict, n: int, args, cores: int) -> None:
    rows = [
        ("`xaug rotate --jobs 1` (whole process)", "rotate", n),
        ("floor: decode each source + encode one PNG (whole process)", "rotate_floor", n),
        ("floor, inside its loop only (no start-up)", "rotate_floor_loop", n),
        ("floor + read-time sha256 check of each source, inside its loop", "rotate_floor_checked_loop", n),
        ("`xaug rotate --pivot wrist --jobs 1`", "wrist", n),
        *[(f"`xaug rotate --jobs {j}`", f"rotate_j{j}", n) for j in args.jobs],
        ("alternative: albumentations Rotate on image + 29 masks, findContours (whole process)", "alternative", n),
        ("alternative, inside its loop only", "alternative_loop", n),
        (f"`xaug mosaic --grid 2x2 --n {args.mosaics} --jobs 1`", "mosaic", args.mosaics),
        ("floor: decode its sources + encode its output (whole process)", "mosaic_floor", args.mosaics),
        ("floor, inside its loop only", "mosaic_floor_loop", args.mosaics),
        *[(f"`xaug mosaic ... --jobs {j}`", f"mosaic_j{j}", args.mosaics) for j in args.jobs],
        ("`python -c 'import cv2, numpy'` (start-up)", "python", None),
    ]
    print(f"\n{platform.machine()}, {cores} cores, python {platform.python_version()}; "
          f"{n} images of {args.size}x{args.size}, {args.mosaics} mosaics, medians of {args.repeat}")
    print("| what | wall s | CPU s | wall ms / image |\n|---|---:|---:|---:|")
    for what, key, count in rows:
        per = f"{1000 * m[key] / count:.0f}" if count else ""
        print(f"| {what} | {m[key]:.2f} | {c[key]:.2f} | {per} |")
    print()
    print(f"- rotate / its floor: {m['rotate'] / m['rotate_floor']:.2f}x wall, {c['rotate'] / c['rotate_floor']:.2f}x CPU "
          f"(goal <= 1.2x); {m['rotate'] / m['rotate_floor_loop']:.2f}x against the floor's bare loop")
    print(f"- read-time integrity check: {100 * (m['rotate_floor_checked_loop'] / m['rotate_floor_loop'] - 1):+.1f}% "
          f"wall, {100 * (c['rotate_floor_checked_loop'] / c['rotate_floor_loop'] - 1):+.1f}% CPU on the floor's loop "
          "(goal: a few %)")
    print(f"- mosaic / its floor: {m['mosaic'] / m['mosaic_floor']:.2f}x wall, {c['mosaic'] / c['mosaic_floor']:.2f}x CPU "
          f"(goal <= 1.5x); {m['mosaic'] / m['mosaic_floor_loop']:.2f}x against the floor's bare loop")
    def beyond(t: dict, unit: str) -> str:
        extra_alt, extra_xaug = t["alternative"] - t["rotate_floor"], t["rotate"] - t["rotate_floor"]
        if extra_xaug <= 0.02 * t["rotate_floor"]:
            return f"{unit}: xaug within noise of the floor, the alternative adds {1000 * extra_alt / n:.0f} ms/image"
        return f"{unit}: {extra_alt / extra_xaug:.0f}x ({1000 * extra_alt / n:.0f} vs {1000 * extra_xaug / n:.0f} ms/image)"
    print(f"- alternative / xaug rotate: {m['alternative'] / m['rotate']:.2f}x wall, "
          f"{c['alternative'] / c['rotate']:.2f}x CPU (goal >= 4x); work beyond the shared decode+encode "
          f"floor, {beyond(m, 'wall')}; {beyond(c, 'CPU')}")
    for j in args.jobs:
        print(f"- 1 -> {j} workers (wall): rotate {m['rotate'] / m[f'rotate_j{j}']:.2f}x, "
              f"mosaic {m['mosaic'] / m[f'mosaic_j{j}']:.2f}x faster")


if __name__ == "__main__":
    main()
