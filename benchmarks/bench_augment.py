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


def run(*args: str, env: dict | None = None) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, *args], check=True, stdout=subprocess.DEVNULL, env=env)
    return time.perf_counter() - t0


def xaug(*args: str) -> float:
    return run("-m", "xaug", *args)


# ---------------------------------------------------------------- the floors and the alternative
# (each runs in its own process, like the command it is compared with)

def floor_rotate(job: dict) -> None:
    """Decode each source PNG, encode one PNG: the least any rotate command has to do."""
    import cv2
    import numpy as np

    for path in job["sources"]:
        img = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_UNCHANGED)
        cv2.imencode(".png", img, [cv2.IMWRITE_PNG_COMPRESSION, 1])


def floor_mosaic(job: dict) -> None:
    """Per mosaic: decode each of its sources, encode one output-sized PNG (the last source)."""
    import cv2
    import numpy as np

    for sources in job["mosaics"]:
        for path in sources:
            img = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_UNCHANGED)
        cv2.imencode(".png", img, [cv2.IMWRITE_PNG_COMPRESSION, 1])


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


MODES = {"floor-rotate": floor_rotate, "floor-mosaic": floor_mosaic, "alternative": alternative}


def child(mode: str, job_path: str) -> None:
    job = json.loads(Path(job_path).read_text())
    t0 = time.perf_counter()
    MODES[mode](job)
    Path(job_path + ".loop").write_text(str(time.perf_counter() - t0))


def timed_child(mode: str, job: dict, tmp: Path) -> tuple[float, float]:
    """(whole-process seconds, seconds inside the loop) of one child run."""
    path = tmp / f"{mode}.json"
    path.write_text(json.dumps(job))
    whole = run(str(HERE), "--child", mode, str(path))
    return whole, float(Path(str(path) + ".loop").read_text())


# ---------------------------------------------------------------- the benchmark

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--persons", type=int, default=16, help="synthetic training persons (2 images each)")
    ap.add_argument("--mosaics", type=int, default=16)
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--home", type=Path, help="reuse this store (made with `xaug synth` if empty)")
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
        pairs = [(str(s.image_path), str(raw.file_path(it["label"], it.get("stored_in"))))
                 for s in sources for it in [raw.item(s.relpath)]]
        n = len(sources)
        print(f"{n} source images ({args.size}x{args.size}, non-validation persons of "
              f"{args.persons}), {args.mosaics} mosaics, median of {args.repeat}", flush=True)

        t = {k: [] for k in ("rot1", "rot2", "wrist1", "mos1", "mos2", "floor_rot", "floor_rot_loop",
                              "floor_mos", "floor_mos_loop", "alt", "alt_loop", "python")}
        for r in range(args.repeat):
            seed = str(1000 + r)
            common = ["--from", raw.name, "--seed", seed, "--home", str(home), "-q"]
            t["rot1"].append(xaug("rotate", "--angles", "-30:30", "--jobs", "1", "--name", "brot1", *common))
            t["rot2"].append(xaug("rotate", "--angles", "-30:30", "--jobs", "2", "--name", "brot2", *common))
            t["wrist1"].append(xaug("rotate", "--angles", "-45:45", "--pivot", "wrist", "--jobs", "1",
                                    "--name", "bwrist", *common))
            t["mos1"].append(xaug("mosaic", "--grid", "2x2", "--n", str(args.mosaics), "--jobs", "1",
                                  "--name", "bmos1", *common))
            t["mos2"].append(xaug("mosaic", "--grid", "2x2", "--n", str(args.mosaics), "--jobs", "2",
                                  "--name", "bmos2", *common))
            whole, loop = timed_child("floor-rotate", {"sources": [p for p, _ in pairs]}, tmp)
            t["floor_rot"].append(whole)
            t["floor_rot_loop"].append(loop)
            mos = Store(home).open("bmos1")
            by_rel = {it["image"]["path"]: it for it in raw.items}
            mosaics = [[str(raw.file_path(by_rel[p["source"]]["image"], by_rel[p["source"]].get("stored_in")))
                        for p in it["provenance"]["patches"]] for it in mos.items]
            whole, loop = timed_child("floor-mosaic", {"mosaics": mosaics}, tmp)
            t["floor_mos"].append(whole)
            t["floor_mos_loop"].append(loop)
            whole, loop = timed_child("alternative", {"pairs": pairs, "out": str(tmp / f"alt{r}")}, tmp)
            t["alt"].append(whole)
            t["alt_loop"].append(loop)
            t["python"].append(run("-c", "import cv2, numpy"))
            print(f"  repeat {r + 1}: rotate {t['rot1'][-1]:.2f} s, floor {t['floor_rot'][-1]:.2f} s, "
                  f"mosaic {t['mos1'][-1]:.2f} s, floor {t['floor_mos'][-1]:.2f} s, "
                  f"alternative {t['alt'][-1]:.2f} s", flush=True)
        m = {k: statistics.median(v) for k, v in t.items()}
        report(m, n, args, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count())


def report(m: dict, n: int, args, cores: int) -> None:
    rows = [
        ("`xaug rotate --jobs 1` (whole process)", m["rot1"], n),
        ("floor: decode each source + encode one PNG (whole process)", m["floor_rot"], n),
        ("floor, inside the loop only (no start-up)", m["floor_rot_loop"], n),
        ("`xaug rotate --pivot wrist --jobs 1`", m["wrist1"], n),
        ("`xaug rotate --jobs 2`", m["rot2"], n),
        ("alternative: albumentations + 29 masks + findContours (whole process)", m["alt"], n),
        ("alternative, inside the loop only", m["alt_loop"], n),
        (f"`xaug mosaic --grid 2x2 --n {args.mosaics} --jobs 1`", m["mos1"], args.mosaics),
        ("floor: decode its sources + encode its output (whole process)", m["floor_mos"], args.mosaics),
        ("floor, inside the loop only", m["floor_mos_loop"], args.mosaics),
        (f"`xaug mosaic ... --jobs 2`", m["mos2"], args.mosaics),
        ("`python -c 'import cv2, numpy'` (start-up)", m["python"], None),
    ]
    print(f"\n{platform.processor() or platform.machine()}, {cores} cores, python {platform.python_version()}")
    print("| what | median s | ms / image |\n|---|---:|---:|")
    for what, sec, count in rows:
        per = f"{1000 * sec / count:.0f}" if count else ""
        print(f"| {what} | {sec:.2f} | {per} |")
    print()
    print(f"- rotate vs its floor: {m['rot1'] / m['floor_rot']:.2f}x whole process "
          f"(goal <= 1.2x); {m['rot1'] / m['floor_rot_loop']:.2f}x against the bare loop")
    print(f"- mosaic vs its floor: {m['mos1'] / m['floor_mos']:.2f}x whole process "
          f"(goal <= 1.5x); {m['mos1'] / m['floor_mos_loop']:.2f}x against the bare loop")
    print(f"- alternative vs xaug rotate: {m['alt'] / m['rot1']:.2f}x slower whole process (goal >= 4x); "
          f"the transform alone (loop minus the I/O floor loop): "
          f"{(m['alt_loop'] - m['floor_rot_loop']) / max(1e-9, m['rot1'] - m['floor_rot']):.1f}x")
    print(f"- 1 -> 2 workers: rotate {m['rot1'] / m['rot2']:.2f}x, mosaic {m['mos1'] / m['mos2']:.2f}x faster")


if __name__ == "__main__":
    main()
