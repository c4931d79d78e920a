"""xaug.geometry: exact-value kernel tests and hypothesis properties."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import shapely
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from shapely.geometry import Polygon

from xaug import geometry as G
from xaug import imaging as I
from xaug import anatomy as A
from xaug.model import Annotation
from xaug.raster import class_masks, dice, polygon_mask

FAST = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])  # examples: conftest profile

# ---------------------------------------------------------------- strategies


@st.composite
def star_rings(draw, centre=(128.0, 128.0), r_max=100.0, r_min=20.0):
    """Star-shaped integer rings around `centre` within r_max of it, without sub-pixel spikes
    (angular gaps >= 2pi/48, radii within [0.6 R, R]): shapes a pixel grid can hold."""
    n = draw(st.integers(3, 16))
    gaps = np.asarray(draw(st.lists(st.floats(1, 3), min_size=n, max_size=n)))
    start = draw(st.floats(0, 2 * np.pi))
    angles = start + np.cumsum(gaps) / gaps.sum() * 2 * np.pi
    big = draw(st.floats(r_min, r_max))
    radii = big * np.asarray(draw(st.lists(st.floats(0.6, 1.0), min_size=n, max_size=n)))
    pts = np.stack([centre[0] + radii * np.cos(angles), centre[1] + radii * np.sin(angles)], 1)
    return np.rint(pts).astype(np.int64)


@st.composite
def any_rings(draw, size=256):
    """Arbitrary integer rings: may self-intersect, repeat points or leave the canvas."""
    n = draw(st.integers(3, 16))
    xs = draw(st.lists(st.integers(-40, size + 40), min_size=n, max_size=n))
    ys = draw(st.lists(st.integers(-40, size + 40), min_size=n, max_size=n))
    return np.stack([xs, ys], 1).astype(np.int64)


@st.composite
def affines(draw):
    angle = draw(st.floats(-180, 180))
    scale = draw(st.floats(0.5, 2.0))
    dx, dy = draw(st.floats(-80, 80)), draw(st.floats(-80, 80))
    m = cv2.getRotationMatrix2D((128.0, 128.0), angle, scale)
    m[:, 2] += (dx, dy)
    return m


def area(points) -> float:
    return float(Polygon(np.asarray(points, float)).area)


def assert_clean(anns, shape):
    """Every output: integer points, a valid simple ring with area, inside the canvas."""
    h, w = shape
    for a in anns:
        p = np.asarray(a.points)
        assert p.dtype.kind == "i" and p.ndim == 2 and p.shape[1] == 2 and len(p) >= 3
        assert p[:, 0].min() >= 0 and p[:, 0].max() <= w - 1
        assert p[:, 1].min() >= 0 and p[:, 1].max() <= h - 1
        poly = Polygon(p)
        assert poly.is_valid, shapely.is_valid_reason(poly)
        assert poly.area > 0


# ---------------------------------------------------------------- matrices


@pytest.mark.parametrize("angle", [-45.0, 0.0, 13.5, 90.0, 180.0])
def test_rotation_matrix_is_opencvs(angle):
    np.testing.assert_allclose(G.rotation_matrix(angle, (31.5, 12.0)),
                               cv2.getRotationMatrix2D((31.5, 12.0), angle, 1.0), atol=1e-12)


def test_compose_invert_and_identity():
    a = G.rotation_matrix(30, (10, 20))
    b = G.translation_matrix(5, -3)
    ab = G.compose(a, b)
    p = np.array([[1.0, 2.0], [40.0, -7.0]])
    np.testing.assert_allclose(G.apply_points(p, ab), G.apply_points(G.apply_points(p, a), b))
    assert G.is_identity(G.compose(ab, G.invert(ab)), tol=1e-9)
    assert G.is_identity(G.identity_matrix())


def test_hflip_matrix_matches_cv2_flip():
    img = np.zeros((5, 7), np.uint8)
    img[1, 2] = 255
    flipped = cv2.flip(img, 1)
    x, y = G.apply_points([[2, 1]], G.hflip_matrix(7))[0]
    assert flipped[int(y), int(x)] == 255


def test_resize_matrix_maps_pixel_centres_like_cv2():
    m = G.resize_matrix((10, 10), (20, 20))
    np.testing.assert_allclose(G.apply_points([[0, 0], [9, 9]], m), [[0.5, 0.5], [18.5, 18.5]])


def test_rounding_rule_is_half_up():
    assert G.round_half_up([0.5, 1.5, -0.5, 2.49, -1.5]).tolist() == [1, 2, 0, 2, -1]
    tri = Annotation("Lunate", np.array([[0, 0], [10, 0], [0, 10]]))
    out = G.transform_annotations([tri], G.translation_matrix(0.5, 0.5), (32, 32))
    assert sorted(out[0].points.tolist()) == [[1, 1], [1, 11], [11, 1]]


# ---------------------------------------------------------------- polygon kernels (exact values)


def test_identity_keeps_points_and_extra_exactly():
    pts = np.array([[3, 4], [20, 5], [18, 30], [2, 25]])
    ann = Annotation("Capitate", pts, {"id": "c", "type": "poly_seg", "attributes": {"x": 1}})
    out = G.transform_annotations([ann], G.identity_matrix(), (64, 64))
    assert out == [ann]


def test_clip_splits_into_parts_with_derived_ids():
    # a U shape whose bottom leaves the canvas: two arms remain
    u = np.array([[10, 10], [20, 10], [20, 60], [40, 60], [40, 10], [50, 10], [50, 90], [10, 90]])
    ann = Annotation("Hamate", u, {"id": "h", "note": "keep"})
    out = G.transform_annotations([ann], G.identity_matrix(), (64, 64), clip_rect=[0, 0, 64, 50])
    assert [a.label for a in out] == ["Hamate", "Hamate"]
    assert sorted(a.extra["id"] for a in out) == ["h-1", "h-2"]
    assert all(a.extra["note"] == "keep" for a in out)
    assert_clean(out, (64, 64))
    assert all(a.points[:, 1].max() <= 49 for a in out)


def test_bowtie_becomes_two_valid_parts():
    bow = Annotation("Lunate", np.array([[0, 0], [20, 20], [20, 0], [0, 20]]), {"id": "b"})
    out = G.transform_annotations([bow], G.identity_matrix(), (32, 32))
    assert len(out) == 2
    assert_clean(out, (32, 32))
    assert abs(G.annotation_area(out) - 200.0) < 1e-9


def test_min_area_drops_small_parts():
    # clipping leaves a 2-px sliver on one side and a large part on the other
    ann = Annotation("Radius", np.array([[0, 0], [30, 0], [30, 30], [0, 30]]))
    out = G.transform_annotations([ann], G.translation_matrix(-28, 0), (40, 40))
    assert len(out) == 1 and area(out[0].points) == 2 * 30
    assert G.transform_annotations([ann], G.translation_matrix(-28, 0), (40, 40), min_area=61) == []


def test_min_area_keeps_whole_small_polygons():
    """min_area drops what clipping cut off (slivers at a border), never a whole bone still in the
    image: in a small image a carpal can be under 16 px^2 and must not vanish while its pixels stay."""
    small = Annotation("Pisiform", np.array([[10, 10], [13, 10], [13, 13], [10, 13]]))   # 9 px^2
    moved = G.transform_annotations([small], G.translation_matrix(5, 3), (40, 40), min_area=16)
    assert len(moved) == 1 and area(moved[0].points) == 9
    turned = G.transform_annotations([small], G.rotation_matrix(30, (20, 20)), (40, 40), min_area=16)
    assert len(turned) == 1 and 6 <= area(turned[0].points) <= 12   # snapped to the pixel grid
    # the same polygon cut by the border: the 3 px^2 left inside is a sliver, dropped
    assert G.transform_annotations([small], G.translation_matrix(-12, 0), (40, 40), min_area=16) == []
    assert len(G.transform_annotations([small], G.translation_matrix(-12, 0), (40, 40), min_area=0)) == 1


def test_outside_and_degenerate_inputs_vanish():
    far = Annotation("Ulna", np.array([[100, 100], [120, 100], [120, 120]]))
    line = Annotation("Ulna", np.array([[1, 1], [5, 5], [9, 9]]))
    two = Annotation("Ulna", np.array([[1, 1], [5, 5]]))
    assert G.transform_annotations([far, line, two], G.identity_matrix(), (50, 50)) == []


def test_overlapping_classes_both_survive():
    a = Annotation("Triquetrum", np.array([[10, 10], [40, 10], [40, 40], [10, 40]]))
    b = Annotation("Pisiform", np.array([[30, 30], [50, 30], [50, 50], [30, 50]]))
    out = G.transform_annotations([a, b], G.rotation_matrix(20, (32, 32)), (64, 64))
    assert [o.label for o in out] == ["Triquetrum", "Pisiform"]
    assert Polygon(out[0].points).intersection(Polygon(out[1].points)).area > 50


def test_fixed_labels_do_not_move():
    r = Annotation("Radius", np.array([[10, 50], [20, 50], [20, 63], [10, 63]]))
    c = Annotation("Lunate", np.array([[10, 10], [20, 10], [20, 20], [10, 20]]))
    out = G.transform_annotations([r, c], G.translation_matrix(5, 0), (64, 64), fixed={"Radius"})
    assert out[0] == r
    assert out[1].points[:, 0].min() == 15


def test_winding_is_kept():
    ccw = np.array([[0, 0], [10, 0], [10, 10], [0, 10]])
    for pts in (ccw, ccw[::-1]):
        ann = Annotation("Lunate", pts)
        out = G.transform_annotations([ann], G.rotation_matrix(33, (5, 5)), (64, 64))
        sign_in = np.sign(G._signed_area(pts.astype(float)))
        assert np.sign(G._signed_area(out[0].points.astype(float))) == sign_in


# ---------------------------------------------------------------- polygon properties


@FAST
@given(ring=star_rings(), angle=st.floats(-180, 180))
def test_rotate_then_back_is_identity_within_rounding(ring, angle):
    poly = Polygon(ring)
    assume(poly.is_valid and poly.area > 30)
    ann = Annotation("Capitate", ring)
    m = G.rotation_matrix(angle, (128, 128))
    there = G.transform_annotations([ann], m, (256, 256))
    back = G.transform_annotations(there, G.rotation_matrix(-angle, (128, 128)), (256, 256))
    assert_clean(there + back, (256, 256))
    merged = shapely.union_all([Polygon(a.points) for a in back])
    # two roundings move a vertex by at most sqrt(2)/2 each; rotation does not amplify it
    assert shapely.hausdorff_distance(merged, poly) <= 1.5
    assert abs(merged.area - poly.area) <= 1.5 * poly.length + 1


@FAST
@given(ring=star_rings(), angle=st.floats(-180, 180))
def test_area_preserved_when_inside(ring, angle):
    # star rings lie within 100 px of the centre, so every rotation stays on the 256 canvas
    poly = Polygon(ring)
    assume(poly.is_valid and poly.area > 30)
    out = G.transform_annotations([Annotation("Lunate", ring)], G.rotation_matrix(angle, (128, 128)),
                                  (256, 256))
    assert_clean(out, (256, 256))
    assert abs(G.annotation_area(out) - poly.area) <= 0.75 * poly.length + 1


@FAST
@given(ring=any_rings(), m=affines(),
       rect=st.tuples(st.integers(0, 200), st.integers(0, 200), st.integers(1, 120), st.integers(1, 120)))
def test_every_output_valid_inside_and_no_larger(ring, m, rect):
    x0, y0, w, h = rect
    clip_rect = [x0, y0, x0 + w, y0 + h]
    ann = Annotation("Hamate", ring, {"id": "q"})
    out = G.transform_annotations([ann], m, (256, 256), clip_rect=clip_rect, min_area=0)
    assert_clean(out, (256, 256))
    for a in out:
        assert a.points[:, 0].min() >= x0 and a.points[:, 0].max() <= min(x0 + w, 256) - 1
        assert a.points[:, 1].min() >= y0 and a.points[:, 1].max() <= min(y0 + h, 256) - 1
        assert a.label == "Hamate"
    # clipped area <= original area (up to the rounding of the clipped outline). The reference
    # follows the format's contract: each valid part of the ring is kept with its holes filled.
    parts = filled_parts(shapely.make_valid(Polygon(G.apply_points(ring, m))))
    clip = G.canvas_box((256, 256)).intersection(G.rect_box(clip_rect))
    pieces = [p.intersection(clip) for p in parts]
    exact_area, outline = sum(p.area for p in pieces), sum(p.length for p in pieces)
    assert G.annotation_area(out) <= sum(p.area for p in parts) + 0.75 * outline + 1
    assert abs(G.annotation_area(out) - exact_area) <= 0.75 * outline + 1


def filled_parts(geom) -> list[Polygon]:
    """The polygons of a geometry with their holes filled (written independently of xaug)."""
    if isinstance(geom, Polygon):
        return [Polygon(geom.exterior)] if not geom.is_empty else []
    return [p for g in getattr(geom, "geoms", []) for p in filled_parts(g)]


def exact_mask(points: np.ndarray, shape) -> np.ndarray:
    """Sub-pixel rasterisation (1/256 px) of a float ring: the reference without any rounding."""
    mask = np.zeros(shape, np.uint8)
    cv2.fillPoly(mask, [np.rint(np.asarray(points) * 256).astype(np.int32).reshape(-1, 1, 2)], 1, shift=8)
    return mask


@FAST
@given(ring=star_rings(r_max=60, r_min=30), angle=st.floats(-180, 180), dx=st.floats(-20, 20))
def test_rasterised_output_agrees_with_the_transformed_shape(ring, angle, dx):
    poly = Polygon(ring)
    assume(poly.is_valid and poly.area > 2000)
    m = G.rotation_matrix(angle, (120, 130))
    m[0, 2] += dx
    out = G.transform_annotations([Annotation("Capitate", ring)], m, (256, 256))
    pred = class_masks(out, (256, 256))[21]
    # against the exactly transformed polygon only our integer rounding differs: each vertex
    # moves by at most sqrt(2)/2 px, so the pixels that disagree lie along the outline
    exact = exact_mask(G.apply_points(ring, m), (256, 256))
    assert np.count_nonzero(pred != exact) <= 0.75 * poly.length + 8
    # worst case: every vertex rounded by half a pixel the same way (a pure 0.5 px shift) costs a
    # 2,000 px shape about 2.3% Dice (0.9775 the lowest of 4,000 random stars); bone-sized shapes
    # in a hand average >= 0.99 (the next test)
    assert dice(pred, exact) >= 0.97
    # against the source mask warped by the same matrix (nearest neighbour): that reference is
    # itself quantised twice, about 1% Dice noise at 2000 px, so the bound here is looser
    warped = cv2.warpAffine(polygon_mask(ring, (256, 256)), m, (256, 256), flags=cv2.INTER_NEAREST)
    assert dice(pred, warped) >= 0.975


def test_rasterised_hand_agrees_with_warped_masks():
    """Bone-sized shapes (over 2000 px): the mean Dice against the warped source masks >= 0.99."""
    from hands import hand_annotations

    size = 640
    anns = hand_annotations(size)
    src = class_masks(anns, (size, size))
    rng = np.random.default_rng(4)
    scores = []
    for _ in range(4):
        m = G.rotation_matrix(rng.uniform(-40, 40), rng.uniform(250, 390, 2))
        out = G.transform_annotations(anns, m, (size, size))
        pred = class_masks(out, (size, size))
        for c in range(src.shape[0]):
            warped = cv2.warpAffine(src[c], m, (size, size), flags=cv2.INTER_NEAREST)
            if warped.sum() > 2000 and src[c].sum() > 2000:
                scores.append(dice(pred[c], warped))
    assert len(scores) > 40
    assert np.mean(scores) >= 0.99 and np.min(scores) >= 0.98


# ---------------------------------------------------------------- image kernels


@pytest.mark.parametrize("shape", [(40, 50), (40, 50, 3), (40, 50, 1)])
def test_warp_image_kernel_checks(shape):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, shape, dtype=np.uint8)
    before = img.copy()
    m = G.rotation_matrix(17, (20, 20))
    out = I.warp_image(img, m)
    assert np.array_equal(img, before)  # not modified
    assert out.dtype == img.dtype and out.shape == img.shape
    assert out is not img
    same = I.warp_image(img, G.identity_matrix())
    assert np.array_equal(same, img) and same is not img
    assert I.warp_image(img, m, out_size=(10, 12)).shape == (10, 12) + shape[2:]


@pytest.mark.parametrize("fill", ["background", 9, (1, 2, 3)])
def test_grey_bgr_shortcut_is_bit_identical(fill):
    rng = np.random.default_rng(3)
    grey = rng.integers(0, 256, (48, 40), dtype=np.uint8)
    img = np.repeat(grey[:, :, None], 3, 2)
    m = G.rotation_matrix(21, (20, 22))
    border = I._border_value(img, fill)
    expect = cv2.warpAffine(img, m, (40, 48), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                            borderValue=border)
    assert np.array_equal(I.grey_channel(img), grey)
    assert I.grey_channel(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)) is None
    one_off = img.copy()
    one_off[47, 39, 2] ^= 1  # one value of one channel differs: not grey
    assert I.grey_channel(one_off) is None and I.grey_channel(grey) is None
    assert np.array_equal(I.warp_image(img, m, fill=fill), expect)
    # the texture fill: the grey shortcut and the 3-channel path fill the same pixels alike
    tex = I.warp_image(img, m, fill="texture", seed=4)
    colour = img.copy()
    colour[0, 0, 0] ^= 1  # the generic path, one pixel apart in the source
    tex3 = I.warp_image(colour, m, fill="texture", seed=4)
    uncovered = I.uncovered_mask(m, img.shape[:2], (48, 40)).astype(bool)
    assert uncovered.any() and np.array_equal(tex[uncovered], tex3[uncovered])


def test_warp_fills_with_background_or_value():
    img = np.full((64, 64, 3), 30, np.uint8)
    img[:4] = 250  # the bright top band must not leak into the fill
    img[20:40, 20:40] = 200
    out = I.warp_image(img, G.translation_matrix(30, 0))
    assert (out[32, :25] == 30).all()
    out = I.warp_image(img, G.translation_matrix(30, 0), fill=7)
    assert (out[32, :25] == 7).all()
    assert I.background_value(img) == (30.0, 30.0, 30.0)


def _grainy_background(shape=(256, 256), level=40.0, sigma=4.0, seed=0):
    rng = np.random.default_rng(seed)
    grad = np.linspace(0, 10, shape[0])[:, None]  # a slow vertical gradient: not grain
    grey = np.clip(np.rint(level + grad + rng.normal(0, sigma, shape)), 0, 255).astype(np.uint8)
    grey[:8] = 230  # the bright top band
    grey[60:200, 90:170] = 190  # a "hand"
    return grey


@pytest.mark.parametrize("channels", [1, 3])
def test_texture_fill_changes_only_the_uncovered_pixels_and_matches_the_grain(channels):
    grey = _grainy_background()
    img = grey if channels == 1 else np.repeat(grey[:, :, None], 3, 2)
    m = G.rotation_matrix(30, (127.5, 127.5))
    flat = I.warp_image(img, m, fill="background")
    tex = I.warp_image(img, m, fill="texture", seed=5)
    uncovered = I.uncovered_mask(m, (256, 256), (256, 256)).astype(bool)
    assert 0.1 < uncovered.mean() < 0.4  # the four corners
    assert np.array_equal(tex[~uncovered], flat[~uncovered])  # the image itself is untouched
    med = I.background_value(img)[0]
    vals = (tex if channels == 1 else tex[..., 0])[uncovered].astype(float)
    assert abs(np.median(vals) - med) <= 1.0
    grain = I.background_grain(img)
    assert 3.2 < grain < 4.8  # the gradient is not counted as grain
    assert 0.8 * grain < vals.std() < 1.25 * grain
    assert np.array_equal(I.warp_image(img, m, fill="texture", seed=5), tex)  # deterministic
    assert not np.array_equal(I.warp_image(img, m, fill="texture", seed=6), tex)
    if channels == 3:
        assert (tex[..., 0] == tex[..., 2]).all()  # grey stays grey


def test_uncovered_mask_of_simple_moves():
    assert not I.uncovered_mask(G.identity_matrix(), (20, 30), (20, 30)).any()
    mask = I.uncovered_mask(G.translation_matrix(5, 0), (20, 30), (20, 30))
    assert mask[:, :5].all() and not mask[:, 5:].any()
    assert I.uncovered_mask(G.identity_matrix(), (10, 10), (20, 30))[15:, 25:].all()


def test_texture_fill_in_the_wrist_pivot():
    from hands import hand_annotations, render

    anns = hand_annotations(256)
    img = render(anns, 256, channels=3)
    noise = np.random.default_rng(1).normal(0, 3, img.shape[:2])
    img = np.clip(img + noise[:, :, None], 0, 255).astype(np.uint8)
    frame = A.wrist_frame(anns, (256, 256))
    flat, m = A.wrist_warp(img, anns, 35.0, frame, frame.half_width, "background")
    tex, m2 = A.wrist_warp(img, anns, 35.0, frame, frame.half_width, "texture", seed=2)
    assert np.array_equal(m, m2)
    differ = (flat != tex).any(axis=2)
    assert differ.any()
    # only where the turned hand-side image leaves the canvas uncovered (or the band was painted)
    uncovered = I.uncovered_mask(m, (256, 256), (256, 256)).astype(bool)
    band = I.top_band_rows(img)
    outside = differ & ~uncovered
    outside[:band + 2] = False
    assert outside.mean() < 0.01


def test_warp_moves_pixels_like_the_polygons():
    img = np.zeros((64, 64), np.uint8)
    img[10:20, 30:40] = 255
    m = G.translation_matrix(7, 3)
    out = I.warp_image(img, m, fill=0)
    assert np.array_equal(out[13:23, 37:47], img[10:20, 30:40])


def test_hflip_image_kernel_checks():
    img = np.random.default_rng(1).integers(0, 256, (9, 11, 3), dtype=np.uint8)
    before = img.copy()
    out = I.hflip_image(img)
    assert np.array_equal(img, before) and out.shape == img.shape and out.dtype == img.dtype
    assert np.array_equal(out[:, ::-1], img)
    gray = img[..., 0]
    assert I.hflip_image(gray).shape == gray.shape


@pytest.mark.parametrize("normal", [(0.0, -1.0), (0.2, -1.0), (-1.0, 0.3), (1.0, 1.0), (0.0, 1.0)])
def test_blend_band(normal):
    h, w = 60, 80
    base = np.full((h, w, 3), 10, np.uint8)
    moved = np.full((h, w, 3), 210, np.uint8)
    b0, m0 = base.copy(), moved.copy()
    point, hw = (40.0, 30.0), 6.0
    out = I.blend_band(base, moved, point, normal, hw)
    assert np.array_equal(base, b0) and np.array_equal(moved, m0)
    n = np.asarray(normal) / np.linalg.norm(normal)
    yy, xx = np.mgrid[0:h, 0:w]
    s = (xx - point[0]) * n[0] + (yy - point[1]) * n[1]
    assert (out[s >= hw + 1e-6] == 210).all()
    assert (out[s <= -hw - 1e-6] == 10).all()
    expect = np.rint(10 + 200 * np.clip(s / (2 * hw) + 0.5, 0, 1))
    assert np.abs(out[..., 0].astype(float) - expect).max() <= 1
    # in place on `moved`
    again = I.blend_band(base, m0, point, normal, hw, out=m0)
    assert again is m0 and np.array_equal(again, out)


# ---------------------------------------------------------------- the wrist


def test_wrist_frame_on_an_upright_hand():
    from hands import BOXES, hand_annotations

    size = 256
    frame = A.wrist_frame(hand_annotations(size), (size, size))
    assert frame.estimated
    ax, ay = frame.axis
    assert ay < -0.95  # the fingers point up
    # between the top of the radius/ulna and the bottom of the proximal row
    top_forearm = min(BOXES["Radius"][1], BOXES["Ulna"][1]) * size
    bottom_row = max(BOXES[k][3] for k in ("Scaphoid", "Lunate", "Triquetrum")) * size
    assert bottom_row - 3 <= frame.pivot[1] <= top_forearm + 3
    assert 0.4 * size < frame.pivot[0] < 0.6 * size
    assert frame.half_width >= 2.56


def test_wrist_frame_falls_back_without_forearm():
    fr = A.wrist_frame([Annotation("Lunate", np.array([[1, 1], [5, 1], [5, 5]]))], (100, 200))
    assert not fr.estimated and fr.axis == (0.0, -1.0)


def test_docs_example_runs(capsys):
    import re
    from pathlib import Path

    doc = Path(__file__).resolve().parents[1] / "docs" / "geometry.md"
    code = re.search(r"```python\n(.*?)```", doc.read_text(), re.S).group(1)
    exec(compile(code, str(doc), "exec"), {})
    assert "hand_rot0_R" in capsys.readouterr().out


@pytest.mark.parametrize("module", ["xaug.geometry", "xaug.imaging", "xaug.ops", "xaug.ops.rotate", "xaug.ops.mosaic",
                                    "xaug.ops.flip"])
def test_docstring_examples(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module))
    assert result.failed == 0 and result.attempted > 0
