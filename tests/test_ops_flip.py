"""The flip op: a left hand becomes a right hand, pixels and polygons mirrored exactly."""
from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from hands import make_hand
from test_ops_base import rng_for_seed, sources_of
from xaug import imaging as I
from xaug.ops import FlipSpec, ItemPlan, SourceInfo, get_op
from xaug.raster import class_masks, dice

OP = get_op("flip")


def test_plan_swaps_the_side():
    srcs = sources_of(2) + [SourceInfo("train/DCM/ID7/img7.png", "ID7", None, "train", 64, 64, 2)]
    plans = OP.plan(FlipSpec(), srcs, rng_for_seed(0))
    assert [(p.stem, p.side) for p in plans] == [("img0_flip_L", "L"), ("img1_flip_R", "R"), ("img7_flip", None)]
    assert plans[0].sources == [srcs[0].relpath] and plans[2].fold == 2 and plans[0].person == "ID000"


def test_spec_forbids_extra():
    with pytest.raises(ValidationError, match="Extra inputs"):
        FlipSpec(axis="vertical")


def test_apply_mirrors_pixels_and_polygons():
    size = 128
    img, anns = make_hand(size)
    before = img.copy()
    plan = ItemPlan("x_flip_L", "ID1", "L", "train", ["x_R.png"], {"min_area": 0.0})
    out, out_anns, prov = OP.apply(plan, lambda rel: (img, anns))
    assert np.array_equal(out, img[:, ::-1]) and np.array_equal(img, before)
    assert prov == {"source": "x_R.png", "matrix": [[-1.0, 0.0, 127.0], [0.0, 1.0, 0.0]]}
    assert [a.label for a in out_anns] == [a.label for a in anns]
    for a, b in zip(anns, out_anns):  # integer mirror: no rounding, extra kept
        assert np.array_equal(b.points[:, 0], size - 1 - a.points[:, 0]) and b.extra == a.extra
    src, got = class_masks(anns, (size, size)), class_masks(out_anns, (size, size))
    # the points are an exact mirror; OpenCV's fillPoly is not exactly left-right symmetric on
    # edge pixels, so the masks agree to within that
    for c in range(29):
        assert dice(got[c], src[c][:, ::-1]) >= 0.98
    assert abs(int(got.sum()) - int(src.sum())) <= 0.005 * src.sum()
    # flipping twice gives the input back exactly
    again, again_anns, _ = OP.apply(plan, lambda rel: (out, out_anns))
    assert np.array_equal(again, img) and again_anns == anns


def test_gray_images_keep_their_shape():
    img = np.arange(20, dtype=np.uint8).reshape(4, 5)
    plan = ItemPlan("x_flip", "ID1", None, "train", ["x.png"], {})
    out, anns, _ = OP.apply(plan, lambda rel: (img, []))
    assert out.shape == (4, 5) and anns == [] and out[0, 0] == 4
    assert np.array_equal(I.hflip_image(out), img)
