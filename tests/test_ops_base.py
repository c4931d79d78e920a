"""The op registry contract, plus small hand-made hands shared by the test_ops_* modules."""
from __future__ import annotations

import json
from typing import Annotated, Union

import numpy as np
import pytest
from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from xaug.classes import CLASSES
from xaug.errors import XaugError
from xaug.model import Annotation
from xaug.ops import ItemPlan, SourceInfo, get_op, op_names, spec_classes
from xaug.raster import class_masks

# ---------------------------------------------------------------- a schematic hand (ellipses)

# label -> (x0, y0, x1, y1) as fractions of the side; thumb on the left, forearm from the bottom.
BOXES: dict[str, tuple[float, float, float, float]] = {
    "Radius": (0.34, 0.80, 0.49, 1.20), "Ulna": (0.51, 0.82, 0.63, 1.20),
    "Scaphoid": (0.35, 0.69, 0.45, 0.77), "Lunate": (0.44, 0.69, 0.53, 0.77),
    "Triquetrum": (0.52, 0.69, 0.61, 0.77), "Pisiform": (0.56, 0.71, 0.63, 0.76),
    "Trapezium": (0.32, 0.61, 0.40, 0.69), "Trapezoid": (0.39, 0.61, 0.45, 0.68),
    "Capitate": (0.44, 0.60, 0.52, 0.70), "Hamate": (0.51, 0.61, 0.60, 0.70),
    "finger-3": (0.25, 0.48, 0.33, 0.63), "finger-2": (0.20, 0.37, 0.27, 0.48),
    "finger-1": (0.17, 0.29, 0.23, 0.37),
}
for _k, _x in enumerate((0.40, 0.47, 0.54, 0.61)):
    _first = 4 + 4 * _k
    for _j, (_y0, _y1) in enumerate(((0.12, 0.19), (0.19, 0.28), (0.28, 0.41), (0.41, 0.61))):
        BOXES[f"finger-{_first + _j}"] = (_x - 0.03, _y0 + 0.02 * abs(_k - 1), _x + 0.03, _y1)
assert sorted(BOXES) == sorted(CLASSES)


def ellipse(box, size: int, n: int = 40) -> np.ndarray:
    x0, y0, x1, y1 = np.asarray(box, float) * size
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    pts = np.stack([(x0 + x1) / 2 + (x1 - x0) / 2 * np.cos(t), (y0 + y1) / 2 + (y1 - y0) / 2 * np.sin(t)], 1)
    pts = np.clip(np.rint(pts), 0, size - 1).astype(np.int64)
    keep = np.r_[True, np.any(pts[1:] != pts[:-1], axis=1)]
    return pts[keep]


def hand_annotations(size: int = 256) -> list[Annotation]:
    return [Annotation(label, ellipse(BOXES[label], size), {"id": f"id-{i}", "type": "poly_seg",
                                                            "attributes": {}})
            for i, label in enumerate(CLASSES)]


def render(annotations: list[Annotation], size: int, channels: int = 3) -> np.ndarray:
    """Grey-looking X-ray: dark background with a vertical gradient, overlapping bones brighter."""
    masks = class_masks(annotations, (size, size)).astype(np.int32)
    grad = np.linspace(18, 34, size)[:, None].astype(np.int32)
    img = np.clip(grad + 55 * masks.sum(0), 0, 255).astype(np.uint8)
    img[: max(1, size // 64)] = 200  # the bright band along the top edge
    return np.repeat(img[:, :, None], 3, 2) if channels == 3 else img


def make_hand(size: int = 256, channels: int = 3) -> tuple[np.ndarray, list[Annotation]]:
    anns = hand_annotations(size)
    return render(anns, size, channels), anns


def sources_of(n: int, size: int = 64, split: str = "train") -> list[SourceInfo]:
    return [SourceInfo(f"{split}/DCM/ID{i:03d}/img{i}_{'RL'[i % 2]}.png", f"ID{i:03d}", "RL"[i % 2], split,
                       size, size, i % 5) for i in range(n)]


def rng_for_seed(seed: int):
    return lambda i: np.random.default_rng(np.random.SeedSequence([seed, i]))


# ---------------------------------------------------------------- the registry


def test_names():
    assert op_names() == ["flip", "mosaic", "rotate"]
    for name in op_names():
        op = get_op(name)
        assert op.name == name
        assert op.Spec.model_config.get("extra") == "forbid"
        assert op.Spec().op == name


def test_unknown_op_lists_known_and_close_match():
    with pytest.raises(XaugError, match=r"unknown op 'rotat'.*did you mean 'rotate'.*flip, mosaic, rotate"):
        get_op("rotat")
    with pytest.raises(XaugError, match="known ops: flip, mosaic, rotate"):
        get_op("zzz")


def test_discriminated_union_on_op():
    Step = Annotated[Union[tuple(spec_classes())], Field(discriminator="op")]

    class Pipe(BaseModel):
        steps: list[Step]

    pipe = Pipe.model_validate({"steps": [{"op": "rotate", "angle_range": "-10:10", "pivot": "wrist"},
                                          {"op": "mosaic", "grid": "2x3", "n": 5},
                                          {"op": "flip"}]})
    assert [s.op for s in pipe.steps] == ["rotate", "mosaic", "flip"]
    assert pipe.steps[0].angle_range == (-10.0, 10.0)
    assert pipe.steps[1].grid == (2, 3)
    with pytest.raises(ValidationError, match="steps.0.rotate.angel"):
        Pipe.model_validate({"steps": [{"op": "rotate", "angel": 3}]})
    with pytest.raises(ValidationError):
        Pipe.model_validate({"steps": [{"op": "shear"}]})
    TypeAdapter(Pipe).json_schema()  # the schema exports


def test_item_plan_round_trips_json():
    plan = get_op("rotate").plan(get_op("rotate").Spec(), sources_of(2), rng_for_seed(0))[0]
    again = ItemPlan.from_json(json.loads(json.dumps(plan.to_json())))
    assert again == plan
