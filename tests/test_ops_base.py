"""The op registry contract, plus the small source lists and seeds shared by the test_ops_* modules."""
from __future__ import annotations

import json
from typing import Annotated, Union

import numpy as np
import pytest
from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from xaug.errors import XaugError
from xaug.ops import ItemPlan, SourceInfo, get_op, op_names, spec_classes


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
