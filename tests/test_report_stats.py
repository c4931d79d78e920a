"""xaug.report.stats: exact polygon numbers, overlaps, wrist angle and anatomical-order checks."""
from __future__ import annotations

import numpy as np
import pytest

from hands import schematic_hand
from xaug.classes import CLASS_INDEX, CLASSES
from xaug.model import Annotation
from xaug.raster import class_masks
from xaug.report import stats


def rect(label, x0, y0, x1, y1):
    return Annotation(label, np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]]))


def test_polygon_moments_of_a_rectangle_are_exact_in_either_orientation():
    pts = np.array([[2, 4], [12, 4], [12, 24], [2, 24]])
    for p in (pts, pts[::-1]):
        m = stats.polygon_moments(p)
        assert (m.area, m.cx, m.cy) == pytest.approx((200.0, 7.0, 14.0))
        # second central moments of a w x h rectangle: w^2/12, h^2/12
        assert (m.mu20, m.mu02, m.mu11) == pytest.approx((100 / 12, 400 / 12, 0.0), abs=1e-9)
        axis, ratio = m.axis()
        assert abs(axis[1]) == pytest.approx(1.0) and ratio == pytest.approx(2.0)
    assert stats.polygon_moments(np.array([[0, 0], [1, 1], [2, 2]])) is None


def test_combined_moments_equal_the_moments_of_the_union():
    a = stats.polygon_moments(np.array([[0, 0], [10, 0], [10, 10], [0, 10]]))
    b = stats.polygon_moments(np.array([[10, 0], [30, 0], [30, 10], [10, 10]]))
    whole = stats.polygon_moments(np.array([[0, 0], [30, 0], [30, 10], [0, 10]]))
    both = stats.combine([a, b])
    for f in ("area", "cx", "cy", "mu20", "mu11", "mu02"):
        assert getattr(both, f) == pytest.approx(getattr(whole, f))


def test_areas_vertices_and_polygon_counts_per_class():
    anns = [rect("Radius", 0, 0, 10, 20), rect("Radius", 20, 0, 30, 10), rect("Ulna", 0, 0, 4, 4)]
    areas = stats.class_areas(anns)
    assert areas[CLASS_INDEX["Radius"]] == 300 and areas[CLASS_INDEX["Ulna"]] == 16
    assert areas.sum() == 316
    assert stats.vertex_counts(anns)[CLASS_INDEX["Radius"]] == 8
    counts = stats.polygon_counts(anns)
    assert counts[CLASS_INDEX["Radius"]] == 2 and counts.sum() == 3


def test_missing_and_duplicated_classes_are_found():
    anns, _ = schematic_hand(128)
    anns = [a for a in anns if a.label != "Pisiform"] + [anns[0]]
    found = {f.kind: f for f in stats.class_findings(anns)}
    assert found["missing"].labels == ("Pisiform",)
    assert found["duplicated"].labels == ("finger-1",)
    assert "2 polygons" in found["duplicated"].message
    assert stats.class_findings(schematic_hand(128)[0]) == []


def test_overlap_matrix_counts_shared_pixels_and_is_symmetric():
    m = np.zeros((29, 6, 6), np.uint8)
    m[0, :2] = 1          # 12 px
    m[1, 1:3] = 1         # 12 px, 6 shared with class 0
    m[2, 5, 5] = 1
    ov = stats.overlap_pixels(m)
    assert ov[0, 0] == 12 and ov[0, 1] == ov[1, 0] == 6 and ov[0, 2] == 0 and ov[2, 2] == 1
    assert (ov == ov.T).all()


def test_scaled_overlap_is_exact_at_full_size_and_close_when_downscaled():
    anns, _ = schematic_hand(256)
    full = stats.overlap_pixels(class_masks(anns, (256, 256)))
    same, scale = stats.scaled_overlap(anns, (256, 256), max_side=256)
    assert scale == 1.0 and (same == full).all()
    small, scale = stats.scaled_overlap(anns, (256, 256), max_side=128)
    assert scale == 0.5
    tri, pis = CLASS_INDEX["Triquetrum"], CLASS_INDEX["Pisiform"]
    assert small[tri, pis] / scale ** 2 == pytest.approx(full[tri, pis], rel=0.3)


def test_robust_z_flags_the_odd_one_out():
    z = stats.robust_z([10, 11, 9, 10, 10.5, 9.5, 40])
    assert abs(z[-1]) > 10 and np.all(np.abs(z[:-1]) < 2)
    assert (stats.robust_z([5, 5, 5, 5]) == 0).all()


@pytest.mark.parametrize("side", ["R", "L"])
def test_wrist_angle_follows_the_hand_turn_with_the_forearm_vertical(side):
    base = stats.hand_geometry(schematic_hand(256, side)[0])
    assert abs(base.wrist_angle) < 8 and abs(base.forearm_tilt) < 1
    for turn in (-40, -20, 25, 45):
        geo = stats.hand_geometry(schematic_hand(256, side, turn)[0])
        assert geo.wrist_angle - base.wrist_angle == pytest.approx(turn, abs=1.5)
        assert abs(geo.forearm_tilt) < 1


def test_wrist_angle_sign_means_towards_the_thumb_on_both_hands():
    right = stats.hand_geometry(schematic_hand(256, "R", 30)[0]).wrist_angle
    left = stats.hand_geometry(schematic_hand(256, "L", 30)[0]).wrist_angle
    assert right == pytest.approx(left, abs=0.5) and right > 20


@pytest.mark.parametrize("side", ["R", "L"])
@pytest.mark.parametrize("turn", [0, -40, 40])
def test_a_correct_hand_has_no_order_findings(side, turn):
    assert stats.order_findings(schematic_hand(256, side, turn)[0]) == []


@pytest.mark.parametrize("pair", [("Radius", "Ulna"), ("finger-4", "finger-7"), ("finger-7", "finger-11"),
                                  ("Trapezoid", "Capitate"), ("Scaphoid", "Triquetrum"), ("finger-1", "finger-16")])
@pytest.mark.parametrize("side", ["R", "L"])
def test_swapped_labels_are_found_and_explained(pair, side):
    anns = schematic_hand(256, side, 30, swap=pair)[0]
    findings = stats.order_findings(anns)
    assert findings and all(f.kind == "order" for f in findings)
    assert "swapped labels?" in findings[0].message
    assert stats.explain_swap(anns, findings) == pair


def test_radius_on_the_little_finger_side_is_named_in_the_message():
    anns = schematic_hand(256, "R", swap=("Radius", "Ulna"))[0]
    (finding,) = stats.order_findings(anns)
    assert finding.labels == ("Radius", "Ulna")
    assert finding.message.startswith("Radius is on the little-finger side of Ulna")


def test_fingertip_closer_to_the_wrist_than_its_metacarpal_is_flagged():
    anns = schematic_hand(256, "L", swap=("finger-8", "finger-11"))[0]
    messages = [f.message for f in stats.order_findings(anns)]
    assert any(m.startswith("finger-8 (middle distal phalanx) is closer to the wrist") for m in messages)


def test_synthetic_hands_pass_the_order_checks_and_match_the_recorded_wrist(tiny_dataset):
    """No false alarms on the generator's anatomy; the geometric angle matches the recorded pose."""
    checked = 0
    for sample in tiny_dataset.samples():
        assert stats.order_findings(sample.annotations) == [], sample.relpath
        assert [f.kind for f in stats.class_findings(sample.annotations)] == []
        recorded = (sample.meta.get("pose") or {}).get("wrist_deg")
        if recorded is not None:
            geo = stats.hand_geometry(sample.annotations)
            assert abs(geo.wrist_angle) == pytest.approx(abs(recorded), abs=6), sample.relpath
            checked += 1
    assert checked > 0


def test_bone_names_only_decorate_finger_labels():
    assert stats.bone("finger-19") == "finger-19 (5th metacarpal)"
    assert stats.bone("Hamate") == "Hamate"
    assert set(stats.THUMB_SIDE) <= set(CLASSES) and set(stats.LITTLE_SIDE) <= set(CLASSES)
