"""The data model: an Annotation (one labelled polygon) and a Sample (one image and its labels)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from xaug.paths import label_relpath_for


@dataclass(frozen=True)
class Annotation:
    """One labelled closed ring; `points` is an (N, 2) int array, x first.

    `extra` keeps every other key of the annotation JSON (id, type, attributes, ...) verbatim.
    """

    label: str
    points: np.ndarray
    extra: dict[str, Any] = field(default_factory=dict)

    def with_points(self, points: np.ndarray) -> "Annotation":
        return Annotation(self.label, np.asarray(points), dict(self.extra))

    def to_json(self) -> dict[str, Any]:
        out = dict(self.extra)
        out["label"] = self.label
        pts = np.asarray(self.points).reshape(-1, 2)
        out["points"] = (pts.astype(np.int64).tolist() if pts.dtype.kind == "i" else
                         [[int(x), int(y)] for x, y in pts])
        return out

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Annotation):
            return NotImplemented
        return (self.label == other.label and self.extra == other.extra
                and np.array_equal(np.asarray(self.points), np.asarray(other.points)))

    __hash__ = None  # type: ignore[assignment]


@dataclass
class Sample:
    """One image of the competition layout with its annotations (None when it has no label file).

    relpath:  the image's path inside the layout, e.g. "train/DCM/ID001/image1_R.png"
    image_path: where the image bytes are on disk now (absolute)
    person:   "ID001"; side: "R", "L" or None; split: "train" or "test"
    doc_extra: the label JSON's other top-level keys (attributes, file_id, metadata, ...)
    meta:     item metadata recorded by the store (synthetic pose, edge cases, ...)
    provenance: how the item was made (source items, parameters); {} for imported items
    fold:     the person's k-fold index, when the dataset records a split
    image_sha256, dataset: set on Samples of a store version (the manifest's hash of the image
              and the version's name), so readers can check the bytes they read
              (`xaug.store.read_sample_image`)
    """

    relpath: str
    image_path: Path
    person: str
    split: str
    side: str | None = None
    annotations: list[Annotation] | None = None
    doc_extra: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    fold: int | None = None
    image_sha256: str | None = None
    dataset: str | None = None

    @property
    def stem(self) -> str:
        return Path(self.relpath).stem

    @property
    def name(self) -> str:
        return Path(self.relpath).name

    @property
    def label_relpath(self) -> str:
        return label_relpath_for(self.relpath)
