"""Appearance styles of the synthetic generator: ranges, validation, determinism, statistics."""
from __future__ import annotations

from dataclasses import asdict, fields

import numpy as np
import pytest
from shapely.geometry import Polygon
from typer.testing import CliRunner

from xaug.errors import BadInput
from xaug.report.realism import image_stats, summarise
from xaug.synth.anatomy import (BONE_KINDS, LONG_BONES, HandShape, Pose, annotation_polygons, hand_geometry,
                                long_bone_anatomic)
from xaug.synth.generate import render_item, synth_spec
from xaug.synth.plan import APPEARANCE_RANGES, RealLook, appearance_spec, plan_dataset

LOOK_FIELDS = {"black": "black_range", "gradient": "gradient_range", "band": "band_range",
               "tissue": "tissue_range", "bone": "bone_range", "cortex": "cortex_range",
               "cortex_mm": "cortex_mm_range", "trabecular": "trabecular_range", "overlap": "overlap_range",
               "tissue_mm": "tissue_mm_range", "gamma": "gamma_range", "noise": "noise_range",
               "blur": "blur_range", "vignette": "vignette_range"}


# ------------------------------------------------------------------ the spec

def test_legacy_spec_is_todays_spec_exactly():
    legacy = synth_spec(6, 0, size=256, test_persons=2, appearance="legacy")
    assert legacy == {"generator": "xaug.synth", "version": 2, "persons": 6, "test_persons": 2, "seed": 0,
                      "size": 256, "rotated_train": 0.12, "rotated_test": 0.6}


def test_realistic_spec_records_every_resolved_range():
    spec = synth_spec(6, 0, size=256, test_persons=2)
    app = spec["appearance"]
    assert app["mode"] == "realistic" and app["version"] == 1
    assert set(app) == {"mode", "version", *APPEARANCE_RANGES}
    assert app["tissue_range"] == [55.0, 78.0]
    spec2 = synth_spec(6, 0, size=256, test_persons=2, look={"tissue_range": (40, 60), "noise_range": (2, 2)})
    assert spec2["appearance"]["tissue_range"] == [40.0, 60.0] and spec2["appearance"]["noise_range"] == [2.0, 2.0]
    assert synth_spec(6, 0, appearance="randomised")["appearance"]["mode"] == "randomised"


@pytest.mark.parametrize("name", sorted(APPEARANCE_RANGES))
def test_presets_are_valid_and_the_realistic_range_lies_inside_the_randomised_one(name):
    limits, realistic, randomised, what = APPEARANCE_RANGES[name]
    assert what and limits[0] <= randomised[0] <= realistic[0] <= realistic[1] <= randomised[1] <= limits[1]


@pytest.mark.parametrize("look, message", [
    ({"tissue_range": (80, 70)}, "--look tissue_range: low 80.0 is above high 70.0"),
    ({"gamma_range": (0.1, 1.0)}, r"--look gamma_range: \(0.1, 1.0\) leaves the allowed 0.3..3"),
    ({"tisue_range": (1, 2)}, "--look tisue_range: unknown parameter \\(did you mean tissue_range\\?\\)"),
])
def test_bad_ranges_name_the_parameter(look, message):
    with pytest.raises(BadInput, match=message):
        synth_spec(2, 0, look=look)


def test_bad_appearance_and_legacy_overrides():
    with pytest.raises(BadInput, match="--appearance must be one of realistic, randomised, legacy, got 'real'"):
        synth_spec(2, 0, appearance="real")
    with pytest.raises(BadInput, match="the legacy appearance has no parameters"):
        appearance_spec("legacy", {"tissue_range": (40, 60)})


# ------------------------------------------------------------------ the draws

@pytest.mark.parametrize("mode", ["realistic", "randomised"])
def test_every_draw_lies_in_its_range(mode):
    app = appearance_spec(mode)
    items, _ = plan_dataset(20, 5, seed=3, appearance=app)
    for it in items:
        assert isinstance(it.look, RealLook)
        for f, rng_name in LOOK_FIELDS.items():
            lo, hi = getattr(app, rng_name)
            v = getattr(it.look, f)
            if f in ("black", "tissue", "bone") and ("bright" in it.edges or "dark" in it.edges):
                continue  # unusual exposures scale these on purpose
            assert lo <= v <= hi, (f, v, (lo, hi))
        shape = it.person.shape
        for f in ("finger_width", "scaphoid", "joint_gap"):
            lo, hi = getattr(app, f + "_range")
            assert lo <= getattr(shape, f) <= hi
        assert shape.ends == "anatomic"
        assert app.hand_width_range[0] <= it.pose.hand_width <= app.hand_width_range[1]
        assert app.spread_range[0] <= it.pose.spread <= app.spread_range[1]
        meta = it.meta()
        assert set(meta["appearance"]) == {f.name for f in fields(RealLook)} and "exposure" not in meta
    # a person's two hands share the anatomy
    by_person = {}
    for it in items:
        by_person.setdefault(it.person.index, []).append(it.person.shape.finger_width)
    assert all(len(set(v)) == 1 for v in by_person.values())


def test_styles_share_persons_poses_and_edge_cases():
    legacy, sheet_a = plan_dataset(10, 4, seed=2)
    real, sheet_b = plan_dataset(10, 4, seed=2, appearance=appearance_spec("realistic"))
    assert sheet_a == sheet_b
    for a, b in zip(legacy, real):
        assert (a.stem, a.side, a.split, a.edges) == (b.stem, b.side, b.split, b.edges)
        assert a.pose.wrist_deg == b.pose.wrist_deg and a.pose.flex == b.pose.flex
        assert a.pose.hand_width is None and "hand_width" not in a.meta()["pose"]


def test_fixed_ranges_give_fixed_values():
    app = appearance_spec("realistic", {"tissue_range": (60, 60), "gamma_range": (1, 1)})
    items, _ = plan_dataset(3, 0, seed=0, appearance=app)
    assert {it.look.tissue for it in items if not {"bright", "dark"} & set(it.edges)} == {60.0}
    assert {it.look.gamma for it in items} == {1.0}


# ------------------------------------------------------------------ anatomy of the realistic styles

@pytest.mark.parametrize("kind", BONE_KINDS)
def test_anatomic_bone_outline_is_valid_with_its_ends(kind):
    length, wb, ws, wh = LONG_BONES["finger-10"]
    poly = long_bone_anatomic(length, wb * 1.2, ws * 1.2, wh * 1.2, kind, (0.04, 1.0, -0.03, 2.0))
    shp = Polygon(poly)
    assert shp.is_valid and shp.area > 0
    u, v = poly[:, 0], np.abs(poly[:, 1])
    mid = v[(u > 0.45 * length) & (u < 0.55 * length)].max()
    assert v[u < 0.15 * length].max() > 1.3 * mid  # flared base
    assert 0 <= u.min() < 0.12 * length and u.max() <= length + 1e-6
    if kind in ("proximal", "middle"):  # two condyles: the centre of the head is recessed
        centre = u[(v < 0.05 * wh) & (u > 0.8 * length)].max()
        assert centre < u.max() - 0.2  # mm
    with pytest.raises(ValueError, match="kind must be one of"):
        long_bone_anatomic(length, wb, ws, wh, "tip")


def test_realistic_anatomy_is_wider_with_a_shorter_scaphoid_and_wider_joints():
    def measure(shape):
        g = hand_geometry(shape, Pose(), "R", 1024)
        p = annotation_polygons(g)
        ratio = {k: Polygon(p[k]).area / Polygon(p["finger-10"]).area for k in ("Scaphoid",)}
        width = Polygon(p["finger-10"]).area / np.ptp(p["finger-10"][:, 1])
        gap = p["finger-10"][:, 1].min() - p["finger-9"][:, 1].max()
        return ratio["Scaphoid"], width / np.ptp(p["finger-10"][:, 1]), gap

    legacy = measure(HandShape())
    real = measure(HandShape(finger_width=1.2, scaphoid=0.7, joint_gap=1.5, ends="anatomic"))
    assert real[0] < 0.85 * legacy[0]
    assert real[1] > 1.1 * legacy[1]
    assert real[2] > legacy[2]


def test_hand_width_sets_the_bone_extent():
    for target in (0.42, 0.5, 0.58):
        g = hand_geometry(HandShape(ray_angle=(-8.0, 0.0, 0.0, 0.0, 0.0)), Pose(hand_width=target, spread=1.4),
                          "R", 512)
        pts = np.vstack([b[b[:, 1] < 511] for b in g.bones.values()])
        width = np.ptp(pts[:, 0]) / 512
        # as wide as asked, unless the fingertips, carpus and some forearm would leave the image
        assert abs(width - target) < 0.02 if target < 0.55 else target - 0.04 < width < target + 0.01
        radius_top = g.bones["Radius"][:, 1].min()
        assert 511 - radius_top > 25 * g.px_per_mm  # enough forearm to see which way it runs


# ------------------------------------------------------------------ pixels

def test_same_plan_same_bytes():
    items, _ = plan_dataset(2, 0, seed=4, appearance=appearance_spec("randomised"))
    a, _ = render_item(items[1], 192)
    b, _ = render_item(items[1], 192)
    assert np.array_equal(a, b) and a.shape == (192, 192, 3) and a.dtype == np.uint8
    assert np.array_equal(a[..., 0], a[..., 2])


def test_rendered_statistics_land_in_the_documented_ranges():
    """A tiny realistic set measures near the real X-rays (docs/synthetic.md), the legacy one does not."""
    stats = {}
    for mode in ("realistic", "legacy"):
        items, _ = plan_dataset(3, 0, seed=6, appearance=appearance_spec(mode))
        rows = []
        for it in items:
            img, anns = render_item(it, 256)
            rows.append(image_stats(img[..., 0], anns, 256))
        stats[mode] = {k: v["median"] for k, v in summarise(rows).items()}
    r = stats["realistic"]
    assert r["background"] <= 8 and 4 <= r["median"] <= 25
    assert 40 <= r["tissue_mean"] <= 80 and 110 <= r["bone_mean"] <= 170
    assert 0.44 <= r["bone_width"] <= 0.62 and 0.08 <= r["bone_share"] <= 0.17
    assert 0.38 <= r["scaphoid_ratio"] <= 0.54
    leg = stats["legacy"]
    assert leg["background"] > 10 and leg["tissue_mean"] > 100 and leg["scaphoid_ratio"] > 0.56


def test_bone_overlaps_are_brighter_but_less_than_double():
    from xaug.raster import class_masks

    items, _ = plan_dataset(2, 0, seed=1, appearance=appearance_spec("realistic", {"overlap_range": (0.5, 0.5)}))
    img, anns = render_item(items[0], 512)
    grey = img[..., 0].astype(float)
    masks = class_masks(anns, (512, 512))
    n = masks.sum(axis=0)
    one, two = grey[n == 1].mean(), grey[n >= 2].mean()
    assert one < two < 2 * one


# ------------------------------------------------------------------ CLI

def test_cli_appearance_and_look(tmp_path):
    from xaug.cli import app
    from xaug.store import Store

    home = tmp_path / "home"
    base = ["synth", "--persons", "1", "--test-persons", "0", "--size", "96", "--jobs", "1", "-q", "--home", str(home)]
    res = CliRunner().invoke(app, base + ["--appearance", "randomised", "--look", "vignette_range=0",
                                          "--look", "tissue_range=40,60"])
    assert res.exit_code == 0, res.output
    assert "appearance randomised" in res.stdout
    ds = Store(home).open("raw")
    assert ds.manifest["spec"]["appearance"]["vignette_range"] == [0.0, 0.0]
    assert ds.manifest["spec"]["appearance"]["tissue_range"] == [40.0, 60.0]
    looks = [s.meta["appearance"] for s in ds.samples(load=False)]
    assert all(lk["vignette"] == 0.0 for lk in looks)
    bad = CliRunner().invoke(app, base + ["--look", "tissue_range=a,b"])
    assert bad.exit_code == 2 and "error: synth: --look 'tissue_range=a,b': expected NAME=LOW,HIGH" in bad.output
    legacy = CliRunner().invoke(app, base + ["--appearance", "legacy", "--name", "old"])
    assert legacy.exit_code == 0 and "appearance" not in Store(home).open("old").manifest["spec"]
    assert asdict(RealLook())  # the defaults are a complete look
