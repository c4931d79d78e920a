"""The competition submission CSV: `image_name,class,rle`, one row per (image, class) in class
order, RLE per `xaug.raster.rle_encode` (row-major, 1-based starts, empty mask -> '').

>>> import io, numpy as np
>>> from xaug.model import Sample
>>> buf = io.StringIO()
>>> masks = np.zeros((29, 4, 4), bool); masks[0, 1, 1:3] = True
>>> _ = write_rows([(Sample("test/DCM/ID1/a.png", "a.png", "ID1", "test"), masks)], buf)
>>> buf.getvalue().splitlines()[:3]
['image_name,class,rle', 'a.png,finger-1,6 2', 'a.png,finger-2,']
"""
from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import IO, Iterable

import numpy as np
from xaug.progress import Progress

from xaug.classes import CLASSES
from xaug.model import Sample
from xaug.raster import rle_encode


def write_rows(predictions: Iterable[tuple[Sample, np.ndarray]], fh: IO[str], progress: bool = False,
               total: int | None = None) -> int:
    w = csv.writer(fh, lineterminator="\n")
    w.writerow(["image_name", "class", "rle"])
    n = 0
    for sample, masks in Progress.wrap(predictions, "predict", enabled=progress, total=total, unit="img"):
        for c, name in enumerate(CLASSES):
            w.writerow([sample.name, name, rle_encode(masks[c])])
        n += 1
    return n


def write_submission(predictions: Iterable[tuple[Sample, np.ndarray]], out: Path | str,
                     total: int | None = None, progress: bool = True) -> Path:
    """Write the CSV atomically (a temporary file renamed at the end)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "w", newline="") as fh:
        write_rows(predictions, fh, progress=progress, total=total)
    os.replace(tmp, out)
    return out


def write_rle_submission(rows: Iterable[tuple[Sample, list[str]]], out: Path | str, total: int | None = None,
                         progress: bool = True) -> Path:
    """`write_submission` for predictions already run-length coded (29 strings per image, in
    class order, as `trainer.inference.iter_rle` yields them), streamed to the CSV."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["image_name", "class", "rle"])
        for sample, rles in Progress.wrap(rows, "predict", enabled=progress, total=total, unit="img"):
            if len(rles) != len(CLASSES):
                raise ValueError(f"{sample.name}: {len(rles)} masks, expected {len(CLASSES)}")
            for name, rle in zip(CLASSES, rles):
                w.writerow([sample.name, name, rle])
    os.replace(tmp, out)
    return out
