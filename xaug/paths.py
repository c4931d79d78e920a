"""Where things are in the competition layout: path rules only (no I/O, imports nothing of xaug).

>>> label_relpath_for("train/DCM/ID001/image1_R.png")
'train/outputs_json/ID001/image1_R.json'
>>> side_from_stem("image1_L"), side_from_stem("image2")
('L', None)
"""
from __future__ import annotations

from pathlib import PurePosixPath

SPLITS = ("train", "test")
IMAGE_DIR = "DCM"
LABEL_DIR = "outputs_json"


def image_relpath(split: str, person: str, stem: str) -> str:
    return f"{split}/{IMAGE_DIR}/{person}/{stem}.png"


def label_relpath_for(image_rel: str) -> str:
    """train/DCM/ID001/x.png -> train/outputs_json/ID001/x.json"""
    p = PurePosixPath(image_rel)
    split, _, person = p.parts[0], p.parts[1], p.parts[2]
    return f"{split}/{LABEL_DIR}/{person}/{p.stem}.json"


def side_from_stem(stem: str) -> str | None:
    if stem.endswith("_R"):
        return "R"
    if stem.endswith("_L"):
        return "L"
    return None
