"""Pure kernels of xaug.synth.anatomy: exact values and properties."""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from shapely.geometry import Polygon

from xaug.synth.anatomy import (LONG_BONES, HandShape, Pose, carpal_outline, hand_geometry,
                                integer_outline, long_bone_local, resample_closed, rotate)


def test_rotate_exact_and_inverse():
    p = np.array([[1.0, 0.0], [0.0, 2.0]])
    assert np.allclose(rotate(p, 90.0), [[0.0, 1.0], [-2.0, 0.0]])
    assert np.allclose(rotate(rotate(p, 33.0, (5, 5)), -33.0, (5, 5)), p)


def test_resample_closed_spacing():
    square = np.array([[0, 0], [4, 0], [4, 4], [0, 4]], float)
    pts = resample_closed(square, 8)
    assert np.allclose(pts, [[0, 0], [2, 0], [4, 0], [4, 2], [4, 4], [2, 4], [0, 4], [0, 2]])


def test_long_bone_has_shaft_base_and_head():
    length, wb, ws, wh = LONG_BONES["finger-11"]
    poly = long_bone_local(length, wb, ws, wh)
    assert Polygon(poly).is_valid
    u, v = poly[:, 0], np.abs(poly[:, 1])
    mid = v[(u > 0.45 * length) & (u < 0.55 * length)].max()
    assert v[u < 0.1 * length].max() > mid * 1.4 and v[u > 0.9 * length].max() > mid * 1.2
    assert 0 <= u.min() < 0.1 * length and np.isclose(u.max(), length, atol=0.5)  # concave base


def test_kernels_do_not_modify_inputs():
    p = np.array([[1.0, 2.0], [3.0, 4.0], [0.0, 5.0]])
    before = p.copy()
    rotate(p, 10)
    resample_closed(p, 12)
    integer_outline(p * 10, 64)
    assert np.array_equal(p, before)


def test_pose_identity_is_deterministic():
    a = hand_geometry(HandShape(), Pose(), "R", 300)
    b = hand_geometry(HandShape(), Pose(), "R", 300)
    assert all(np.array_equal(a.bones[k], b.bones[k]) for k in a.bones)


@settings(max_examples=60, deadline=None)
@given(cx=st.floats(-10, 80), cy=st.floats(-10, 80), rx=st.floats(0.8, 30), ry=st.floats(0.8, 30),
       angle=st.floats(-90, 90), bend=st.floats(-0.35, 0.35), size=st.sampled_from([32, 64, 128]))
def test_integer_outline_always_valid_and_inside(cx, cy, rx, ry, angle, bend, size):
    poly = carpal_outline(cx, cy, rx, ry, angle, bend, 0.1, 0.08, 2.3)
    ring = integer_outline(poly, size, clip=True)
    assert ring.min() >= 0 and ring.max() <= size - 1
    if len(ring) >= 3 and Polygon(ring).area > 0:
        assert Polygon(ring).is_valid
