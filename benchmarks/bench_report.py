"""Report benchmark: the EDA's per-image pass and the error analysis at full resolution.

Synthesises a set with `xaug synth` (2048x2048 by default), then times, in one process:
- `eda.item_record` per image (header, quarter-size grey decode, polygon statistics, anatomical
  checks, overlap matrix rasterised at 512 px), sequentially;
- `errors.analyse_errors` per image on the 29-channel masks against a prediction shifted by
  3 px (every kind of error present), and the 1024 px error overlay;
- the whole `xaug eda` command (`--jobs` workers), as a process.
Medians over the images.

    python benchmarks/bench_report.py --persons 6 --size 2048
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--persons", type=int, default=6)
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args()

    from xaug.layout import read_image
    from xaug.raster import class_masks
    from xaug.report.eda import item_record
    from xaug.report.errors import analyse_errors, error_overlay
    from xaug.store import Store

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        subprocess.run([sys.executable, "-m", "xaug", "synth", "--persons", str(args.persons), "--test-persons",
                        "1", "--size", str(args.size), "--seed", "0", "--home", str(home)],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        samples = Store(home).open("raw").samples()
        rec_t, err_t, ovl_t = [], [], []
        for s in samples:
            t0 = time.perf_counter()
            item_record(s)
            rec_t.append(time.perf_counter() - t0)
            img = read_image(s.image_path)
            gt = class_masks(s.annotations, img.shape[:2]).astype(bool)
            pred = np.roll(gt, 3, axis=2)
            t0 = time.perf_counter()
            a = analyse_errors(gt, pred)
            err_t.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            error_overlay(img, a, 1024)
            ovl_t.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "xaug", "eda", "raw", "--home", str(home), "--out",
                        str(Path(tmp) / "eda"), "--jobs", str(args.jobs)],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        eda_s = time.perf_counter() - t0
    print(json.dumps({"images": len(samples), "size": args.size,
                      "eda_item_record_s": round(statistics.median(rec_t), 4),
                      "analyse_errors_s": round(statistics.median(err_t), 4),
                      "error_overlay_1024_s": round(statistics.median(ovl_t), 4),
                      "xaug_eda_command_s": round(eda_s, 2), "jobs": args.jobs}, indent=1))


if __name__ == "__main__":
    main()
