"""Mask rasters: per image `masks/<split>/<person>/<stem>.npz` next to `images/<split>/<person>/<file>.png`.

Each .npz holds `masks`: the (29, H, W) boolean masks bit-packed along the width
(`numpy.packbits(m, axis=-1)`, uint8 (29, H, ceil(W/8))), `shape` (29, H, W), `classes` (the 29
names, channel order) and `image` (the PNG's path relative to the export folder). The masks come
from the same rasteriser the evaluator uses; `load_masks` unpacks them.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from xaug.classes import CLASSES
from xaug.interop.export import ExportJob, item_dir, register_format


def pack_masks(masks: np.ndarray, image: str) -> bytes:
    """The .npz bytes of one item's (29, H, W) masks."""
    m = np.asarray(masks).astype(bool)
    buf = io.BytesIO()
    np.savez_compressed(buf, masks=np.packbits(m, axis=-1), shape=np.asarray(m.shape, np.int64),
                        classes=np.asarray(CLASSES), image=np.asarray(image))
    return buf.getvalue()


def load_masks(path: Path | str) -> np.ndarray:
    """A masks .npz back as bool (29, H, W).

    >>> m = np.zeros((29, 3, 10), bool); m[4, 1, 2:9] = True
    >>> p = Path(__import__("tempfile").mkdtemp()) / "x.npz"; _ = p.write_bytes(pack_masks(m, "x.png"))
    >>> bool((load_masks(p) == m).all())
    True
    """
    with np.load(path) as z:
        shape = tuple(int(v) for v in z["shape"])
        return np.unpackbits(z["masks"], axis=-1, count=shape[-1]).astype(bool).reshape(shape)


@register_format("masks")
def write_masks(job: ExportJob) -> dict:
    n = 0
    for split, it in job.all_items():
        image_rel = f"images/{item_dir(split, it)}/{it.name}"
        job.write_bytes(image_rel, it.image_bytes())
        if it.label_file is not None:
            job.write_bytes(f"masks/{item_dir(split, it)}/{it.stem}.npz", pack_masks(it.masks(), image_rel))
            n += 1
        job.advance()
    return {"images": sum(len(v) for v in job.items.values()), "mask_files": n}
