"""Ultralytics' segment layout: `images/<split>/...png`, `labels/<split>/...txt`, `data.yaml`.

A label line is `<class> x1 y1 x2 y2 ...` with coordinates divided by the image width and height
(class = index in `xaug.classes.CLASSES`, 0..28). Each ring of the label file is one line, so a
class drawn in several parts gets one line per part. Ultralytics rasterises these rings with
`cv2.fillPoly` on pixel-centre coordinates, as xaug does, so the points are written unchanged
but for a 0.001 px nudge: Ultralytics truncates pixel coordinates to int32 after reading them as
float32, so 1209.9999 would become 1209; 1210.001 stays 1210 whatever the image size.
"""
from __future__ import annotations

from xaug.classes import CLASS_INDEX, CLASSES
from xaug.interop.export import ExportJob, item_dir, register_format

SIGNIFICANT = 12
NUDGE_PX = 1e-3   # Ultralytics truncates pixel coordinates to int32: land just above the integer


def label_lines(polygons, height: int, width: int) -> list[str]:
    """YOLO-seg lines of an item's polygons (file order).

    >>> import numpy as np
    >>> from xaug.api import Polygon
    >>> label_lines([Polygon("Ulna", np.array([[0., 0.], [50., 0.], [50., 25.]]))], 100, 200)
    ['28 5e-06 1e-05 0.250005 1e-05 0.250005 0.25001']
    """
    lines = []
    for p in polygons:
        if len(p.points) < 3:
            continue
        xy = " ".join(f"{(x + NUDGE_PX) / width:.{SIGNIFICANT}g} {(y + NUDGE_PX) / height:.{SIGNIFICANT}g}"
                      for x, y in p.points)
        lines.append(f"{CLASS_INDEX[p.label]} {xy}")
    return lines


def data_yaml(splits: list[str]) -> str:
    """data.yaml with the split folders (relative to the file: no `path`, so the folder can move)."""
    import yaml

    doc = {s: f"images/{s}" for s in splits}
    doc["nc"] = len(CLASSES)
    doc["names"] = {i: c for i, c in enumerate(CLASSES)}
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)


@register_format("yolo-seg")
def write_yolo(job: ExportJob) -> dict:
    n_lines = n_images = 0
    for split, it in job.all_items():
        base = f"{item_dir(split, it)}/{it.stem}"
        job.write_bytes(f"images/{item_dir(split, it)}/{it.name}", it.image_bytes())
        if it.label_file is not None:
            h, w = it.size
            lines = label_lines(it.annotations(), h, w)
            job.write_text(f"labels/{base}.txt", "".join(line + "\n" for line in lines))
            n_lines += len(lines)
        n_images += 1
        job.advance()
    job.write_text("data.yaml", data_yaml(list(job.items)))
    return {"images": n_images, "polygons": n_lines}
