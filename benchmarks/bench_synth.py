"""Synthetic generator speed: images per second per core at full size, PNG encode included.

    python benchmarks/bench_synth.py [--size 2048] [--images 12] [--jobs 2] [--appearance realistic]

Part 1 renders items in this process with one OpenCV thread (= one core) and times each stage.
Part 2 runs the real driver (`synthesize`, joblib workers, staging, manifest) into a
temporary store and reports wall-clock throughput.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

import cv2
import numpy as np


def per_core(size: int, images: int, appearance: str = "realistic") -> dict[str, float]:
    from xaug.layout import annotation_bytes, annotation_doc, encode_png
    from xaug.synth.anatomy import annotation_polygons, hand_geometry
    from xaug.synth.generate import _RENDER_STREAM
    from xaug.synth.plan import RealLook, appearance_spec, plan_dataset
    from xaug.synth.render import render as render_legacy
    from xaug.synth.render import render_realistic

    def render(polys, g, look, edges, rng):
        return (render_realistic if isinstance(look, RealLook) else render_legacy)(polys, g, look, edges, rng)

    cv2.setNumThreads(1)
    plans, _ = plan_dataset(max(1, (images + 1) // 2), 0, seed=0, rotated_train=0.5,
                            appearance=appearance_spec(appearance))
    plans = plans[:images]
    t = {"geometry": 0.0, "annotation": 0.0, "render": 0.0, "png": 0.0, "json": 0.0}
    cpu0 = time.process_time()
    # warm-up (imports, allocator)
    g = hand_geometry(plans[0].person.shape, plans[0].pose, plans[0].side, size)
    render(annotation_polygons(g), g, plans[0].look, {}, np.random.default_rng(0))
    for p in plans:
        t0 = time.perf_counter()
        g = hand_geometry(p.person.shape, p.pose, p.side, size)
        t1 = time.perf_counter()
        polys = annotation_polygons(g)
        t2 = time.perf_counter()
        img = render(polys, g, p.look, p.edges,
                     np.random.default_rng(np.random.SeedSequence([0, _RENDER_STREAM, p.index])))
        t3 = time.perf_counter()
        encode_png(img)
        t4 = time.perf_counter()
        from xaug.model import Annotation
        annotation_bytes(annotation_doc([Annotation(k, v) for k, v in polys.items()], filename="x.png"))
        t5 = time.perf_counter()
        for k, a, b in (("geometry", t0, t1), ("annotation", t1, t2), ("render", t2, t3), ("png", t3, t4),
                        ("json", t4, t5)):
            t[k] += b - a
    out = {k: v / len(plans) for k, v in t.items()}
    out["cpu"] = (time.process_time() - cpu0) / len(plans)
    return out


def driver(size: int, images: int, jobs: int, appearance: str = "realistic") -> float:
    from xaug.store import Store
    from xaug.synth.generate import synthesize

    persons = max(1, images // 2)
    with tempfile.TemporaryDirectory() as home:
        t0 = time.perf_counter()
        synthesize(Store(home), "bench", persons=persons, test_persons=0, seed=0, size=size, jobs=jobs,
                   progress=False, appearance=appearance)
        return 2 * persons / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--images", type=int, default=12)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--appearance", default="realistic", choices=("realistic", "randomised", "legacy"))
    args = ap.parse_args()
    stages = per_core(args.size, args.images, args.appearance)
    cpu = stages.pop("cpu")
    total = sum(stages.values())
    print(f"size {args.size}, {args.images} images, appearance {args.appearance}, one core (cv2 threads = 1)")
    for k, v in stages.items():
        print(f"  {k:<11} {1000 * v:7.1f} ms/image")
    print(f"  {'total':<11} {1000 * total:7.1f} ms/image  ->  {1 / total:.2f} images/s/core (wall-clock)")
    print(f"  {'CPU time':<11} {1000 * cpu:7.1f} ms/image  ->  {1 / cpu:.2f} images/s/core (process CPU time,"
          f" robust to other load)")
    rate = driver(args.size, args.images, args.jobs, args.appearance)
    print(f"synthesize(), jobs={args.jobs}, {os.cpu_count()} cores: {rate:.2f} images/s wall-clock "
          f"({rate / args.jobs:.2f} images/s per worker), store writes included")


if __name__ == "__main__":
    main()
