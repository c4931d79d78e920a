"""The mosaic op (RICAP): spec parsing, the random layer (Beta edges, distinct sources), apply."""
from __future__ import annotations

import json

import numpy as np
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from scipy import stats
from shapely.geometry import Polygon

from hands import make_hand
from test_ops_base import rng_for_seed, sources_of
from xaug import geometry as G
from xaug import imaging as I
from xaug.errors import XaugError
from xaug.ops import MosaicSpec, SourceInfo, get_op
from xaug.ops.mosaic import cell_edges

OP = get_op("mosaic")


def hand_loader(size=96, n=12):
    """n different hands (shifted, with per-source pixel noise) keyed like sources_of(n, size)."""
    srcs = sources_of(n, size)
    rng = np.random.default_rng(5)
    data = {}
    for i, s in enumerate(srcs):
        img, anns = make_hand(size)
        shift = G.translation_matrix(int(rng.integers(-8, 9)), int(rng.integers(-8, 9)))
        anns = G.transform_annotations(anns, shift, (size, size))
        img = np.clip(I.warp_image(img, shift).astype(np.int16) + rng.integers(-6, 7, img.shape), 0, 255)
        data[s.relpath] = (img.astype(np.uint8), anns)
    return srcs, data


# ---------------------------------------------------------------- spec


def test_spec_defaults_and_parsing():
    s = MosaicSpec()
    assert (s.grid, s.n, s.beta, s.resize, s.size) == ((2, 2), 800, 0.3, False, None)
    assert MosaicSpec(grid="3x2").grid == (3, 2)
    assert MosaicSpec(grid=[1, 4]).grid == (1, 4)


@pytest.mark.parametrize("bad, match", [
    ({"grid": "2by2"}, "ROWSxCOLS"), ({"grid": "0x2"}, "must be >= 1"), ({"beta": 0}, "greater than 0"),
    ({"n": 0}, "greater than or equal to 1"), ({"size": (0, 5)}, "positive"), ({"cells": 4}, "Extra inputs"),
])
def test_spec_rejects(bad, match):
    with pytest.raises(ValidationError, match=match):
        MosaicSpec(**bad)


# ---------------------------------------------------------------- plan (the random layer)


@pytest.mark.parametrize("grid", [(2, 2), (1, 3), (3, 2)])
def test_plan_cells_tile_the_canvas_with_distinct_sources(grid):
    srcs = sources_of(10, 64)
    plans = OP.plan(MosaicSpec(grid=grid, n=50), srcs, rng_for_seed(2))
    assert len(plans) == 50 and len({p.stem for p in plans}) == 50
    by_rel = {s.relpath: s for s in srcs}
    for p in plans:
        patches = p.params["patches"]
        sources = [pt["source"] for pt in patches]
        assert len(set(sources)) == len(sources) == len(p.sources)
        cover = np.zeros((64, 64), int)
        for pt in patches:
            x0, y0, x1, y1 = pt["dst_rect"]
            sx0, sy0, sx1, sy1 = pt["src_rect"]
            assert (x1 - x0, y1 - y0) == (sx1 - sx0, sy1 - sy0) and x1 > x0 and y1 > y0
            src = by_rel[pt["source"]]
            assert 0 <= sx0 and sx1 <= src.width and 0 <= sy0 and sy1 <= src.height
            cover[y0:y1, x0:x1] += 1
        assert (cover == 1).all()
        assert p.side is None and p.split == "train" and p.person in {s.person for s in srcs}
        json.dumps(p.to_json())


def test_plan_is_keyed_per_item():
    srcs = sources_of(10, 64)
    a = OP.plan(MosaicSpec(n=6), srcs, rng_for_seed(1))
    assert a == OP.plan(MosaicSpec(n=6), srcs, rng_for_seed(1))
    assert a[:3] == OP.plan(MosaicSpec(n=3), srcs, rng_for_seed(1))
    assert a != OP.plan(MosaicSpec(n=6), srcs, rng_for_seed(2))


def test_cell_edges_follow_beta():
    fracs = []
    for i in range(3000):
        rng = np.random.default_rng(np.random.SeedSequence([9, i]))
        e = cell_edges(100000, 2, 0.3, rng)
        assert e[0] == 0 and e[-1] == 100000
        fracs.append(e[1] / 100000)
    assert stats.kstest(fracs, stats.beta(0.3, 0.3).cdf).pvalue > 0.001
    e = cell_edges(50, 4, 0.3, np.random.default_rng(0))
    assert len(e) == 5 and e == sorted(e)


def test_plan_boundaries_are_beta_distributed():
    srcs = sources_of(8, 1000)
    plans = OP.plan(MosaicSpec(n=1500, beta=0.5), srcs, rng_for_seed(4))
    xs = []
    for p in plans:
        # the column boundary is the right edge of the first column's cells
        first = [pt["dst_rect"] for pt in p.params["patches"] if pt["dst_rect"][0] == 0]
        xs.append(max(r[2] for r in first) / 1000 if first else 0.0)
    xs = np.asarray(xs)
    inner = xs[(xs > 0) & (xs < 1)]  # an empty column leaves no first-column cell to read it from
    assert len(inner) > 1400
    assert stats.kstest(inner, stats.beta(0.5, 0.5).cdf).pvalue > 0.001


def test_sources_are_drawn_uniformly():
    srcs = sources_of(10, 64)
    plans = OP.plan(MosaicSpec(n=2000, grid=(1, 1)), srcs, rng_for_seed(6))
    _, counts = np.unique([p.sources[0] for p in plans], return_counts=True)
    assert len(counts) == 10 and stats.chisquare(counts).pvalue > 0.001


def test_too_few_sources_is_a_user_error():
    with pytest.raises(XaugError, match=r"2x3 mosaic of size \[64, 64\] \(height, width\) needs 6 different sources.*only 4 qualify"):
        OP.plan(MosaicSpec(grid="2x3", n=1), sources_of(4, 64), rng_for_seed(0))
    tall = [SourceInfo(f"train/DCM/ID{i}/a.png", f"ID{i}", None, "train", 517, 301) for i in range(3)]
    with pytest.raises(XaugError, match=r"2x2 mosaic of size \[517, 301\] \(height, width\)"):  # not 301x517
        OP.plan(MosaicSpec(grid="2x2", n=1), tall, rng_for_seed(0))
    small = [SourceInfo("train/DCM/ID9/a.png", "ID9", None, "train", 32, 32)]
    with pytest.raises(XaugError, match="only 3 qualify"):
        OP.plan(MosaicSpec(n=1), sources_of(3, 64) + small * 2, rng_for_seed(0))


def test_size_defaults_to_the_most_common_source_size():
    srcs = sources_of(6, 64) + [SourceInfo(f"train/DCM/ID9/b{i}.png", "ID9", None, "train", 80, 80)
                                for i in range(2)]
    plan = OP.plan(MosaicSpec(n=1), srcs, rng_for_seed(0))[0]
    assert plan.params["size"] == [64, 64]


# ---------------------------------------------------------------- apply


@pytest.mark.parametrize("grid, seed", [((2, 2), 0), ((2, 3), 1), ((3, 3), 2), ((1, 1), 3)])
def test_patches_are_exact_copies_and_areas_add_up(grid, seed):
    size = 96
    srcs, data = hand_loader(size)
    frozen = {k: (v[0].copy(), v[1]) for k, v in data.items()}
    for plan in OP.plan(MosaicSpec(grid=grid, n=4, min_area=0), srcs, rng_for_seed(seed)):
        out, anns, prov = OP.apply(plan, lambda rel: data[rel])
        assert out.shape == (size, size, 3) and out.dtype == np.uint8
        assert prov["grid"] == list(grid) and prov["beta"] == 0.3
        assert prov["patches"] == plan.params["patches"]
        expected_area = 0.0
        for pt in prov["patches"]:
            img, src_anns = data[pt["source"]]
            assert np.array_equal(I.crop(out, pt["dst_rect"]), I.crop(img, pt["src_rect"]))
            box = G.rect_box(pt["src_rect"])
            for a in src_anns:
                expected_area += shapely.make_valid(Polygon(a.points)).intersection(box).area
        G_area = G.annotation_area(anns)
        outline = sum(Polygon(a.points).length for a in anns)
        assert abs(G_area - expected_area) <= 0.75 * outline + 1
        for a in anns:  # every polygon inside one cell
            pts = a.points
            assert any(r[0] <= pts[:, 0].min() and pts[:, 0].max() <= r[2] - 1 and
                       r[1] <= pts[:, 1].min() and pts[:, 1].max() <= r[3] - 1
                       for r in (pt["dst_rect"] for pt in prov["patches"]))
            assert Polygon(pts).is_valid
        json.dumps(prov)
    for k in data:  # sources untouched
        assert np.array_equal(data[k][0], frozen[k][0])


def test_whole_cell_copy_keeps_polygons_exactly():
    size = 64
    srcs, data = hand_loader(size, n=1)
    plan = OP.plan(MosaicSpec(grid=(1, 1), n=1, min_area=0), srcs, rng_for_seed(0))[0]
    assert plan.params["patches"][0]["src_rect"] == [0, 0, 64, 64]
    out, anns, _ = OP.apply(plan, lambda rel: data[rel])
    img, src_anns = data[srcs[0].relpath]
    assert np.array_equal(out, img) and anns == src_anns


def test_min_area_drops_slivers_but_keeps_whole_small_bones():
    """Below min_area only what a cell's edge cut off is dropped; a bone wholly inside its cell
    stays however small (its polygon is the source's, moved: same label, same area)."""
    size = 96
    srcs, data = hand_loader(size)
    plans = OP.plan(MosaicSpec(n=6, min_area=40), srcs, rng_for_seed(3))
    whole = {(a.label, Polygon(a.points).area) for _, anns in data.values() for a in anns}
    small = 0
    for plan in plans:
        _, anns, _ = OP.apply(plan, lambda rel: data[rel])
        for a in anns:
            if Polygon(a.points).area < 40:
                assert (a.label, Polygon(a.points).area) in whole
                small += 1
    assert small > 0  # the case is exercised: this hand has bones under 40 px^2


def test_resize_fits_whole_sources_into_cells():
    size = 96
    srcs, data = hand_loader(size, n=4)
    plan = OP.plan(MosaicSpec(n=1, resize=True, min_area=0), srcs, rng_for_seed(0))[0]
    out, anns, prov = OP.apply(plan, lambda rel: data[rel])
    assert out.shape == (size, size, 3)
    for pt in prov["patches"]:
        assert pt["src_rect"] == [0, 0, size, size] and len(pt["matrix"]) == 2
    assert all(Polygon(a.points).is_valid for a in anns)


def test_mixed_gray_and_colour_sources():
    size = 64
    srcs, data = hand_loader(size, n=4)
    data = {k: (v[0][..., 0] if i % 2 else v[0], v[1]) for i, (k, v) in enumerate(data.items())}
    plan = OP.plan(MosaicSpec(n=1, grid="1x4"), srcs, rng_for_seed(1))[0]
    out, _, _ = OP.apply(plan, lambda rel: data[rel])
    first = data[plan.params["patches"][0]["source"]][0]
    assert out.ndim == first.ndim


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), rows=st.integers(1, 3), cols=st.integers(1, 3),
       beta=st.floats(0.2, 3.0))
def test_mosaic_area_is_the_sum_of_the_clipped_pieces(seed, rows, cols, beta):
    srcs, data = LOADER
    plan = OP.plan(MosaicSpec(grid=(rows, cols), n=1, beta=beta, min_area=0), srcs, rng_for_seed(seed))[0]
    out, anns, prov = OP.apply(plan, lambda rel: data[rel])
    pieces, outline = 0.0, 0.0
    for pt in prov["patches"]:
        box = G.rect_box(pt["src_rect"])
        for a in data[pt["source"]][1]:
            piece = shapely.make_valid(Polygon(a.points)).intersection(box)
            pieces += piece.area
            outline += piece.length
        assert np.array_equal(I.crop(out, pt["dst_rect"]), I.crop(data[pt["source"]][0], pt["src_rect"]))
    assert abs(G.annotation_area(anns) - pieces) <= 0.75 * outline + 1


def test_unlabelled_sources_give_pixels_only():
    srcs, data = hand_loader(64, n=4)
    plan = OP.plan(MosaicSpec(n=1), srcs, rng_for_seed(0))[0]
    out, anns, _ = OP.apply(plan, lambda rel: (data[rel][0], None))
    assert out.shape == (64, 64, 3) and anns == []


LOADER = hand_loader(64, n=10)
