"""Registered augmentation ops: each is a pydantic Spec, a random `plan` and a pure `apply`.

>>> from xaug.ops import get_op, op_names
>>> op_names()
['flip', 'mosaic', 'rotate']
>>> get_op("rotate").Spec(angle_range="-10:10").angle_range
(-10.0, 10.0)
"""
from xaug.ops.base import (ItemPlan, Loader, OpDef, RngFor, SourceInfo, get_op, op_names,
                           register_op, spec_classes)

# importing the op modules registers them
from xaug.ops import flip, mosaic, rotate  # noqa: E402,F401  (isort: skip)
from xaug.ops.flip import FlipSpec  # noqa: E402
from xaug.ops.mosaic import MosaicSpec  # noqa: E402
from xaug.ops.rotate import RotateSpec  # noqa: E402

__all__ = ["ItemPlan", "Loader", "OpDef", "RngFor", "SourceInfo", "get_op", "op_names", "register_op",
           "spec_classes", "RotateSpec", "MosaicSpec", "FlipSpec"]
