"""The rotate op: spec parsing, the random layer (angles), apply for both pivots."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from pydantic import ValidationError
from scipy import stats

from hands import make_hand
from test_ops_base import rng_for_seed, sources_of
from xaug import geometry as G
from xaug import imaging as I
from xaug import anatomy as A
from xaug.classes import CLASS_INDEX, FOREARM
from xaug.ops import ItemPlan, RotateSpec, get_op
from xaug.raster import class_masks, dice

OP = get_op("rotate")


def readonly(img):
    img = img.copy()
    img.setflags(write=False)
    return img


def plan_for(angle, pivot="image", **params):
    return ItemPlan("img0_rot0_R", "ID000", "R", "train", ["train/DCM/ID000/img0_R.png"],
                    {"angle": angle, "pivot": pivot, "fill": "background", "min_area": 0.0, **params})


# ---------------------------------------------------------------- spec


def test_spec_defaults_and_parsing():
    s = RotateSpec()
    assert (s.angle_range, s.angles, s.per_image, s.pivot, s.fill) == ((-30.0, 30.0), None, 1, "image", "texture")
    assert RotateSpec(angle_range="-45:-30").angle_range == (-45.0, -30.0)
    assert RotateSpec(angles="-30,-15, 15,30").angles == [-30.0, -15.0, 15.0, 30.0]
    assert RotateSpec(fill=0).fill == 0


@pytest.mark.parametrize("bad, match", [
    ({"angle_range": "30:-30"}, "low 30.0 is above high -30.0"),
    ({"angle_range": "thirty"}, "low:high"),
    ({"angles": "a,b"}, "comma-separated"),
    ({"angles": []}, "angles is empty"),
    ({"per_image": 0}, "greater than or equal to 1"),
    ({"pivot": "elbow"}, "'image' or 'wrist'"),
    ({"fill": 300}, "fill must be"),
    ({"angle": 3}, "Extra inputs are not permitted"),
])
def test_spec_rejects(bad, match):
    with pytest.raises(ValidationError, match=match):
        RotateSpec(**bad)


# ---------------------------------------------------------------- plan (the random layer)


def test_plan_names_and_counts():
    plans = OP.plan(RotateSpec(per_image=3), sources_of(4), rng_for_seed(1))
    assert len(plans) == 12
    assert [p.stem for p in plans[:3]] == ["img0_rot0_R", "img0_rot1_R", "img0_rot2_R"]
    assert plans[4].stem == "img1_rot1_L" and plans[4].side == "L" and plans[4].person == "ID001"
    assert plans[4].sources == ["train/DCM/ID001/img1_L.png"] and plans[4].fold == 1
    assert all(p.op == "rotate" and p.split == "train" for p in plans)


def test_plan_is_keyed_per_item():
    a = OP.plan(RotateSpec(per_image=2), sources_of(5), rng_for_seed(7))
    b = OP.plan(RotateSpec(per_image=2), sources_of(5), rng_for_seed(7))
    c = OP.plan(RotateSpec(per_image=2), sources_of(5), rng_for_seed(8))
    assert a == b and a != c
    # item i's angle only depends on (seed, i): planning fewer sources keeps the prefix
    short = OP.plan(RotateSpec(per_image=2), sources_of(3), rng_for_seed(7))
    assert [p.params["angle"] for p in short] == [p.params["angle"] for p in a[:6]]


def test_texture_fill_is_seeded_per_item_and_recorded():
    textured = OP.plan(RotateSpec(per_image=2), sources_of(3), rng_for_seed(7))
    flat = OP.plan(RotateSpec(per_image=2, fill="background"), sources_of(3), rng_for_seed(7))
    assert [p.params["angle"] for p in textured] == [p.params["angle"] for p in flat]  # fill draws last
    seeds = [p.params["fill_seed"] for p in textured]
    assert len(set(seeds)) == len(seeds) and all("fill_seed" not in p.params for p in flat)
    img, anns = make_hand(128)
    _, _, prov = OP.apply(textured[0], lambda rel: (img, anns))
    assert prov["fill"] == "texture" and prov["fill_seed"] == seeds[0]
    _, _, prov = OP.apply(flat[0], lambda rel: (img, anns))
    assert prov["fill"] == "background" and "fill_seed" not in prov


def test_angles_uniform_in_range():
    plans = OP.plan(RotateSpec(angle_range=(-30, 45)), sources_of(2000), rng_for_seed(3))
    angles = np.array([p.params["angle"] for p in plans])
    assert angles.min() >= -30 and angles.max() <= 45
    assert stats.kstest(angles, stats.uniform(loc=-30, scale=75).cdf).pvalue > 0.001


def test_explicit_angles_uniform_over_the_list():
    plans = OP.plan(RotateSpec(angles=[-30, -15, 15, 30]), sources_of(2000), rng_for_seed(3))
    values, counts = np.unique([p.params["angle"] for p in plans], return_counts=True)
    assert values.tolist() == [-30, -15, 15, 30]
    assert stats.chisquare(counts).pvalue > 0.001


def test_random_sign_gives_both_wrist_directions():
    plans = OP.plan(RotateSpec(angle_range="30:45", random_sign=True, pivot="wrist"), sources_of(2000),
                    rng_for_seed(5))
    angles = np.array([p.params["angle"] for p in plans])
    assert ((np.abs(angles) >= 30) & (np.abs(angles) <= 45)).all()
    assert abs((angles > 0).mean() - 0.5) < 0.05
    assert stats.kstest(np.abs(angles), stats.uniform(loc=30, scale=15).cdf).pvalue > 0.001
    # without it the same seed gives the same magnitudes, all positive
    plain = OP.plan(RotateSpec(angle_range="30:45"), sources_of(20), rng_for_seed(5))
    assert [p.params["angle"] for p in plain] == [abs(a) for a in angles[:20]]


def test_fixed_angle_range():
    plans = OP.plan(RotateSpec(angle_range=(12, 12)), sources_of(3), rng_for_seed(0))
    assert {p.params["angle"] for p in plans} == {12.0}


# ---------------------------------------------------------------- apply, image pivot


def test_image_pivot_matches_kernels_and_records_the_matrix():
    img, anns = make_hand(256)
    src = readonly(img)
    out, out_anns, prov = OP.apply(plan_for(23.0), lambda rel: (src, anns))
    m = np.asarray(prov["matrix"])
    np.testing.assert_allclose(m, cv2.getRotationMatrix2D((127.5, 127.5), 23.0, 1.0))
    assert prov["source"] == "train/DCM/ID000/img0_R.png" and prov["angle"] == 23.0 and prov["pivot"] == "image"
    assert np.array_equal(out, I.warp_image(img, m))
    assert out.shape == img.shape and out.dtype == img.dtype
    assert np.array_equal(src, img)
    assert [a.label for a in out_anns] == [a.label for a in anns]  # nothing left the canvas
    assert all(a.extra["type"] == "poly_seg" for a in out_anns)
    json.dumps(prov)


def test_zero_angle_is_identity():
    img, anns = make_hand(128)
    for pivot in ("image", "wrist"):
        out, out_anns, _ = OP.apply(plan_for(0.0, pivot), lambda rel: (img, anns))
        assert np.array_equal(out, img)
        assert out_anns == anns


def exact_masks(anns, m, size):
    """The source polygons moved by `m` in float and rasterised at 1/256 px: no rounding at all."""
    out = np.zeros((29, size, size), np.uint8)
    for a in anns:
        pts = np.rint(G.apply_points(a.points, m) * 256).astype(np.int32).reshape(-1, 1, 2)
        cv2.fillPoly(out[CLASS_INDEX[a.label]], [pts], 1, shift=8)
    return out


@pytest.mark.parametrize("angle", [-35.0, 12.5])
def test_image_pivot_fidelity(angle):
    # 1024 px so the bones have the pixel counts they have in real 2048 images (thousands of px)
    size = 1024
    img, anns = make_hand(size, channels=1)
    _, out_anns, prov = OP.apply(plan_for(angle), lambda rel: (img, anns))
    m = np.asarray(prov["matrix"])
    src, pred = class_masks(anns, (size, size)), class_masks(out_anns, (size, size))
    exact = exact_masks(anns, m, size)
    scores = []
    for c in range(src.shape[0]):
        if src[c].sum() <= 2000:
            continue
        warped = cv2.warpAffine(src[c], m, (size, size), flags=cv2.INTER_NEAREST)
        scores.append(dice(pred[c], warped))
        # the warped mask is itself resampled (about 1% Dice noise on a thin 2500-px bone);
        # our polygons agree with it as well as the exactly moved polygon does ...
        assert scores[-1] >= dice(exact[c], warped) - 0.002
        # ... because they differ from the exactly moved polygon only by the integer rounding
        assert dice(pred[c], exact[c]) >= 0.995
    assert len(scores) >= 25
    assert np.mean(scores) >= 0.99 and min(scores) >= 0.985


# ---------------------------------------------------------------- apply, wrist pivot


def test_wrist_pivot_turns_the_hand_and_keeps_the_forearm():
    size = 256
    img, anns = make_hand(size)
    src = readonly(img)
    out, out_anns, prov = OP.apply(plan_for(35.0, "wrist"), lambda rel: (src, anns))
    m = np.asarray(prov["matrix"])
    wrist = prov["wrist"]
    assert wrist["estimated"] and wrist["axis"][1] < -0.95
    np.testing.assert_allclose(m, cv2.getRotationMatrix2D(tuple(wrist["pivot"]), 35.0, 1.0), atol=1e-9)
    by_label = {a.label: a for a in out_anns}
    for lab in FOREARM:  # radius and ulna polygons stay exactly
        assert np.array_equal(by_label[lab].points, next(a for a in anns if a.label == lab).points)
    for a in anns:  # the hand moved by the recorded matrix
        if a.label not in FOREARM:
            expect = G.transform_annotations([a], m, (size, size))
            assert [e.points.tolist() for e in expect] == [o.points.tolist() for o in out_anns
                                                           if o.label == a.label]
    # pixels: forearm side beyond the band = source, hand side beyond the band = rotated image
    px, py = wrist["pivot"]
    nx, ny = wrist["axis"]
    hw = wrist["half_width"]
    yy, xx = np.mgrid[0:size, 0:size]
    s = (xx - px) * nx + (yy - py) * ny
    rotated = I.warp_image(img, m)
    assert np.array_equal(out[s <= -hw - 1], img[s <= -hw - 1])
    # the turned fingers are the rotated image's pixels
    fingers = class_masks([a for a in out_anns if a.label.startswith("finger")], (size, size)).max(0) > 0
    fingers &= s >= hw + 1
    assert fingers.sum() > 1000 and np.array_equal(out[fingers], rotated[fingers])
    # the detector band along the top stays put (it does not turn with the hand)
    band = I.top_band_rows(img)
    assert band >= 4 and np.array_equal(out[:band], img[:band])
    assert np.array_equal(src, img)


def test_wrist_pivot_leaves_no_forearm_ghost():
    size = 256
    img, anns = make_hand(size, channels=1)
    out, out_anns, prov = OP.apply(plan_for(40.0, "wrist"), lambda rel: (img, anns))
    m = np.asarray(prov["matrix"])
    # where the turned Radius/Ulna would land on the hand side, no bright bone remains
    turned_forearm = class_masks(G.transform_annotations([a for a in anns if a.label in FOREARM], m,
                                                         (size, size)), (size, size)).max(0) > 0
    kept_bones = class_masks(out_anns, (size, size)).max(0) > 0
    px, py = prov["wrist"]["pivot"]
    nx, ny = prov["wrist"]["axis"]
    yy, xx = np.mgrid[0:size, 0:size]
    hand_side = (xx - px) * nx + (yy - py) * ny >= prov["wrist"]["half_width"] + 2
    ghost = turned_forearm & hand_side & ~cv2.dilate(kept_bones.astype(np.uint8), np.ones((5, 5))).astype(bool)
    assert ghost.sum() > 20
    bone_level = np.median(img[class_masks([a for a in anns if a.label == "Radius"], (size, size))[27] > 0])
    assert np.median(out[ghost]) < bone_level - 30


def test_top_band_rows():
    img = np.full((100, 50), 20, np.uint8)
    assert I.top_band_rows(img) == 0
    img[:5] = 220
    img[5:7] = 40
    assert I.top_band_rows(img) == 7


def test_wrist_pivot_band_width_and_fidelity():
    size = 512
    img, anns = make_hand(size)
    _, out_anns, prov = OP.apply(plan_for(-30.0, "wrist", band_width=5.0), lambda rel: (img, anns))
    assert prov["wrist"]["half_width"] == 5.0
    m = np.asarray(prov["matrix"])
    src, pred = class_masks(anns, (size, size)), class_masks(out_anns, (size, size))
    for c in range(src.shape[0]):
        expect = src[c] if c in (CLASS_INDEX["Radius"], CLASS_INDEX["Ulna"]) else \
            cv2.warpAffine(src[c], m, (size, size), flags=cv2.INTER_NEAREST)
        if expect.sum() > 2000:
            assert dice(pred[c], expect) >= 0.98


def test_wrist_pivot_without_annotations_falls_back():
    img = np.full((64, 64), 20, np.uint8)
    out, out_anns, prov = OP.apply(plan_for(20.0, "wrist"), lambda rel: (img, []))
    assert out.shape == img.shape and out_anns == [] and prov["wrist"]["estimated"] is False


# ---------------------------------------------------------------- on the shared synthetic hands


def test_wrist_rotation_on_synthetic_hands(tiny_dataset):
    from xaug.layout import read_image

    samples = tiny_dataset.samples(split="train")[:4]
    for k, sample in enumerate(samples):
        img = read_image(sample.image_path)
        anns = sample.annotations
        h, w = img.shape[:2]
        frame = A.wrist_frame(anns, (h, w))
        assert frame.estimated and frame.axis[1] < -0.8  # the forearm enters from the bottom
        radius_top = min(a.points[:, 1].min() for a in anns if a.label in FOREARM)
        assert radius_top - 0.1 * h < frame.pivot[1] < radius_top + 0.1 * h
        angle = (-40.0, 35.0, -30.0, 45.0)[k]
        out, out_anns, prov = OP.apply(plan_for(angle, "wrist"), lambda rel: (img, anns))
        m = np.asarray(prov["matrix"])
        assert out.shape == img.shape and out.dtype == img.dtype
        src, pred = class_masks(anns, (h, w)), class_masks(out_anns, (h, w))
        for c in range(29):
            if c in (CLASS_INDEX["Radius"], CLASS_INDEX["Ulna"]):
                assert np.array_equal(pred[c], src[c])
            elif src[c].sum() > 400:  # 256 px images: bones of a few hundred px
                expect = cv2.warpAffine(src[c], m, (w, h), flags=cv2.INTER_NEAREST)
                if expect.sum() > 0.9 * src[c].sum():  # not pushed off the canvas
                    assert dice(pred[c], expect) >= 0.9


@pytest.mark.parametrize("turn", [90.0, -90.0, 180.0])
def test_wrist_pivot_works_for_any_forearm_direction(turn):
    size = 256
    img, anns = make_hand(size)
    m0 = G.rotation_matrix(turn, (127.5, 127.5))
    img, anns = I.warp_image(img, m0), G.transform_annotations(anns, m0, (size, size))
    frame = A.wrist_frame(anns, (size, size))
    expect_axis = G.apply_points([[0.0, -1.0]], np.c_[m0[:, :2], [0, 0]])[0]
    assert np.dot(frame.axis, expect_axis) > 0.95
    out, out_anns, prov = OP.apply(plan_for(30.0, "wrist"), lambda rel: (img, anns))
    assert out.shape == img.shape
    for lab in FOREARM:
        assert [a.points.tolist() for a in out_anns if a.label == lab] == \
               [a.points.tolist() for a in anns if a.label == lab]
