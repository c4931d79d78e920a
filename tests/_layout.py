"""A tiny hand-made competition-layout folder for store and layout tests (no generator needed)."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from xaug.classes import CLASSES
from xaug.layout import PersonMeta, write_meta


def make_layout(root: Path, persons: int = 6, size: int = 48, seed: int = 0, test_persons: int = 1,
                order: str = "forward") -> Path:
    """Write `persons` persons x 2 hands (train, labelled) and test images; deterministic content."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    people = []
    entries = []
    for i in range(1, persons + 1):
        pid = f"ID{i:03d}"
        people.append(PersonMeta(pid, 20.0 + i, "MF"[i % 2], 55.0 + i, 160.0 + i, "has nail art" if i == 2 else None))
        for side in "RL":
            stem = f"image16611308{i:05d}_{side}"
            img = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
            anns = [{"id": f"{pid}{side}{k}", "type": "poly_seg", "attributes": {}, "label": c,
                     "points": [[k % size, k % size], [(k + 20) % size, k % size], [(k + 20) % size, (k + 20) % size]]}
                    for k, c in enumerate(CLASSES)]
            doc = {"annotations": anns, "attributes": {}, "file_id": stem, "filename": stem + ".png",
                   "parent_path": "/" + pid, "metadata": {"height": size, "width": size}}
            entries.append(("train", pid, stem, img, doc))
    for j in range(test_persons):
        pid = f"ID{40 + j:03d}"
        entries.append(("test", pid, f"image16611442{j:05d}", rng.integers(0, 255, (size, size, 3), dtype=np.uint8), None))
    if order == "reverse":
        entries = entries[::-1]
    for split, pid, stem, img, doc in entries:
        p = root / split / "DCM" / pid / f"{stem}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        ok, buf = cv2.imencode(".png", img)
        p.write_bytes(buf.tobytes())
        if doc is not None:
            j = root / split / "outputs_json" / pid / f"{stem}.json"
            j.parent.mkdir(parents=True, exist_ok=True)
            j.write_text(json.dumps(doc))
    write_meta(root / "meta_data.xlsx", people)
    return root


def first_label(root: Path) -> Path:
    return sorted((Path(root) / "train" / "outputs_json").glob("*/*.json"))[0]


def first_image(root: Path) -> Path:
    return sorted((Path(root) / "train" / "DCM").glob("*/*.png"))[0]
