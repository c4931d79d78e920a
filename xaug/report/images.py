"""Pictures for the reports: ground-truth overlays and thumbnails of one sample, written as files."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from xaug.errors import BadInput
from xaug.layout import read_image
from xaug.model import Annotation, Sample
from xaug.raster import class_masks, overlay
from xaug.store import atomic_write


def resize_to(img: np.ndarray, max_side: int | None) -> tuple[np.ndarray, float]:
    """Downscale (INTER_AREA) so the longer side is at most `max_side`; returns (image, scale)."""
    h, w = img.shape[:2]
    if not max_side or max(h, w) <= max_side:
        return img, 1.0
    scale = max_side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA), scale


def scaled_annotations(annotations, scale: float) -> list[Annotation]:
    if scale == 1.0:
        return list(annotations)
    return [Annotation(a.label, np.asarray(a.points, np.float64) * scale) for a in annotations]


def overlay_image(sample: Sample, max_side: int | None = None, alpha: float = 0.45) -> np.ndarray:
    """RGB overlay of the sample's ground truth in the customary colours (image if unlabelled).

    The image is downscaled first and the polygons are rasterised at the small size, so a
    thumbnail of a 2048x2048 image costs little more than decoding it.
    """
    from xaug.store import read_sample_image

    img, scale = resize_to(read_sample_image(sample), max_side)
    if not sample.annotations:
        base = img if img.ndim == 3 else cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
        return cv2.cvtColor(base[..., :3], cv2.COLOR_BGR2RGB)
    masks = class_masks(scaled_annotations(sample.annotations, scale), img.shape[:2])
    return overlay(img, masks, alpha=alpha)


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def check_image_suffix(path: Path, flag: str | None = None) -> None:
    """`path` names a PNG or JPEG file (what `write_rgb` can encode); else one line naming it."""
    if Path(path).suffix.lower() not in IMAGE_SUFFIXES:
        where = f"{flag} {path}" if flag else str(path)
        raise BadInput("is not a .png or .jpg file name; give one such as overlay.png", where=where)


def write_rgb(path: Path, rgb: np.ndarray, quality: int = 88) -> Path:
    """Write an RGB array as PNG or JPEG (by suffix); creates the folder."""
    path = Path(path)
    check_image_suffix(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    bgr = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR)
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if path.suffix.lower() in (".jpg", ".jpeg") else []
    ok, buf = cv2.imencode(path.suffix, bgr, params)
    if not ok:
        raise BadInput("cannot encode an image with this file suffix; use .png or .jpg", where=str(path))
    atomic_write(path, buf.tobytes())  # a killed command leaves the old image or none, never half of one
    return path


def read_gray_reduced(path: Path | Sample) -> np.ndarray:
    """The image as grey at a quarter of its size (fast brightness statistics); a store Sample's
    bytes are checked against the manifest first."""
    if isinstance(path, Sample):
        from xaug.store import read_sample_image

        return read_sample_image(path, cv2.IMREAD_REDUCED_GRAYSCALE_4)
    buf = np.fromfile(str(path), dtype=np.uint8)
    img = cv2.imdecode(buf, cv2.IMREAD_REDUCED_GRAYSCALE_4) if buf.size else None
    if img is None:
        raise BadInput("not a readable PNG image; replace or remove the file", where=str(path))
    return img


def file_stem(relpath: str) -> str:
    """A flat file name for an item: 'train/DCM/ID001/x_R.png' -> 'train_ID001_x_R'."""
    parts = Path(relpath).with_suffix("").parts
    keep = [p for p in parts if p != "DCM"]
    return "_".join(keep).replace(" ", "_")
