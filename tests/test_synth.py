"""The synthetic generator: layout, labels, anatomy, rates, determinism, the sheet."""
from __future__ import annotations

import json

import numpy as np
import pytest
from shapely.geometry import Polygon

from xaug.classes import CLASSES, FINGERTIPS, METACARPALS, RAYS, SMALLEST
from xaug.errors import BadInput
from xaug.layout import read_image, read_meta, scan_layout
from xaug.store import Store
from xaug.synth.anatomy import HandShape, Pose, annotation_polygons, hand_geometry, integer_outline
from xaug.synth.generate import render_item, synth_spec, synthesize
from xaug.synth.plan import EDGE_RATES, plan_dataset


# ------------------------------------------------------------------ layout and schema

def test_layout_and_json_schema(tiny_dataset):
    root = tiny_dataset.root
    scan = scan_layout(root)
    assert not scan.problems
    train = [s for s in scan.samples if s.split == "train"]
    test = [s for s in scan.samples if s.split == "test"]
    assert len(train) == 12 and len(test) == 4
    for s in scan.samples:
        assert s.relpath.startswith(f"{s.split}/DCM/ID0")
        assert s.stem.startswith("image") and s.stem[5:18].isdigit() and len(s.stem[5:18]) == 13
        label = root / s.label_relpath
        assert label.is_file(), "test labels are kept in test/outputs_json"
        doc = json.loads(label.read_bytes())
        assert doc["filename"] == s.name and doc["parent_path"] == f"/{s.person}"
        assert doc["metadata"] == {"height": 256, "width": 256}
        for ann in doc["annotations"]:
            assert set(ann) >= {"id", "type", "attributes", "label", "points"}
            assert ann["type"] == "poly_seg"
            assert all(isinstance(v, int) for p in ann["points"] for v in p)
        img = read_image(s.image_path)
        assert img.shape == (256, 256, 3) and img.dtype == np.uint8
        assert np.array_equal(img[..., 0], img[..., 1]) and np.array_equal(img[..., 1], img[..., 2])


def test_both_hands_per_person(tiny_dataset):
    by_person: dict[str, list] = {}
    for s in tiny_dataset.samples(load=False):
        by_person.setdefault(s.person, []).append(s)
    assert len(by_person) == 8
    for person, samples in by_person.items():
        assert sorted(s.side for s in samples) == ["L", "R"]
        assert len({s.split for s in samples}) == 1


def test_29_distinct_valid_polygons(tiny_dataset):
    for s in tiny_dataset.samples():
        labels = [a.label for a in s.annotations]
        assert labels == list(CLASSES)
        for a in s.annotations:
            poly = Polygon(a.points)
            assert poly.is_valid and poly.area > 0, (s.relpath, a.label)
            assert a.points.min() >= 0 and a.points.max() <= 255
        keys = {tuple(map(tuple, a.points)) for a in s.annotations}
        assert len(keys) == 29


def test_vertex_counts_at_full_size():
    items, _ = plan_dataset(1, 0, seed=3)
    for it in items:
        polys = annotation_polygons(hand_geometry(it.person.shape, it.pose, it.side, 2048))
        assert min(len(p) for p in polys.values()) >= 40


# ------------------------------------------------------------------ anatomy

def _wrist(polys):
    return (Polygon(polys["Radius"]).union(Polygon(polys["Ulna"]))).centroid


def _centroids(polys):
    return {k: np.asarray(Polygon(v).centroid.coords[0]) for k, v in polys.items()}


@pytest.mark.parametrize("side", ["R", "L"])
@pytest.mark.parametrize("wrist", [0.0, 40.0, -35.0])
def test_anatomical_order(side, wrist):
    g = hand_geometry(HandShape(), Pose(wrist_deg=wrist), side, 512)
    polys = annotation_polygons(g)
    c = _centroids(polys)
    pivot = (c["Capitate"] + c["Lunate"]) / 2
    for tip, mc in zip(FINGERTIPS, METACARPALS):
        assert np.hypot(*(c[tip] - pivot)) > np.hypot(*(c[mc] - pivot)) + 20
    for ray in RAYS:  # each ray runs tip -> base towards the wrist
        d = [np.hypot(*(c[b] - pivot)) for b in ray]
        assert d == sorted(d, reverse=True)
    assert Polygon(polys["Pisiform"]).intersection(Polygon(polys["Triquetrum"])).area > \
        0.3 * Polygon(polys["Pisiform"]).area
    assert Polygon(polys["Trapezium"]).intersects(Polygon(polys["Trapezoid"]))
    for mc, carpal in (("finger-7", "Trapezoid"), ("finger-11", "Capitate"), ("finger-15", "Hamate")):
        assert Polygon(polys[mc]).intersects(Polygon(polys[carpal])), (mc, carpal)
    # radius on the thumb side, ulna on the little-finger side; both enter from the bottom edge
    thumb_left = c["finger-1"][0] < c["finger-16"][0]
    assert (c["Radius"][0] < c["Ulna"][0]) == thumb_left
    assert thumb_left == (side == "R")
    for bone in ("Radius", "Ulna"):
        assert polys[bone][:, 1].max() == 511
    # the forearm stays vertical whatever the wrist does
    assert abs(c["Radius"][1] - c["Ulna"][1]) < 40


@pytest.mark.parametrize("appearance", ["legacy", "realistic"])
def test_smallest_classes_are_small(appearance):
    from xaug.synth.plan import appearance_spec

    items, _ = plan_dataset(4, 0, seed=1, appearance=appearance_spec(appearance))
    areas = np.zeros(len(CLASSES))
    for it in items:
        polys = annotation_polygons(hand_geometry(it.person.shape, it.pose, it.side, 1024))
        areas += [Polygon(polys[k]).area for k in CLASSES]
    smallest = [CLASSES[i] for i in np.argsort(areas)[:3]]
    assert set(smallest) == set(SMALLEST)


def test_left_hand_mirrors_right():
    g_r = annotation_polygons(hand_geometry(HandShape(), Pose(), "R", 512))
    g_l = annotation_polygons(hand_geometry(HandShape(), Pose(), "L", 512))
    for k in ("finger-8", "Capitate", "Lunate"):
        xr, yr = Polygon(g_r[k]).centroid.coords[0]
        xl, yl = Polygon(g_l[k]).centroid.coords[0]
        assert abs(yr - yl) < 2 and abs((xr - 256) + (xl - 256)) < 60


def test_integer_outline_is_valid_for_tiny_shapes():
    t = np.linspace(0, 2 * np.pi, 80, endpoint=False)
    for r in (1.2, 2.0, 3.5):
        ring = integer_outline(np.stack([10 + r * np.cos(t), 10 + 0.6 * r * np.sin(t)], 1), 32)
        assert Polygon(ring).is_valid and ring.dtype == np.int64


# ------------------------------------------------------------------ rates and metadata

def test_rotation_rates_per_split():
    items, _ = plan_dataset(200, 150, seed=5, rotated_train=0.12, rotated_test=0.6)
    for split, rate in (("train", 0.12), ("test", 0.6)):
        sub = [it for it in items if it.split == split]
        share = np.mean([it.rotated for it in sub])
        assert abs(share - rate) < 0.01
        angles = np.abs([it.pose.wrist_deg for it in sub if it.rotated])
        assert angles.min() >= 20 and angles.max() <= 50 and 30 <= np.median(angles) <= 45


def test_edge_case_rates():
    items, _ = plan_dataset(300, 0, seed=2)
    for name, rate in EDGE_RATES.items():
        share = np.mean([name in it.edges for it in items])
        assert abs(share - rate) < 0.035, name
    assert any("nail_art" in it.edges for it in items)


def test_item_meta_records_pose_and_edges(tiny_dataset):
    metas = [s.meta for s in tiny_dataset.samples(load=False)]
    for m in metas:
        assert m["synthetic"] is True
        assert set(m["pose"]) >= {"wrist_deg", "rotation_deg", "spread", "flex"}
        assert isinstance(m["edge_cases"], list)
        assert m["wrist_rotated"] == (abs(m["pose"]["wrist_deg"]) > 0)


def test_sheet_reads_back(tiny_dataset):
    persons = read_meta(tiny_dataset.root / "meta_data.xlsx")
    assert sorted(persons) == [f"ID{i:03d}" for i in range(1, 9)]
    for p in persons.values():
        assert p.sex in ("M", "F") and 145 <= p.height <= 198 and 20 <= p.age <= 65 and p.weight > 30
    assert tiny_dataset.persons.keys() == persons.keys()


def test_bigger_people_have_bigger_hands():
    items, sheet = plan_dataset(60, 0, seed=4)
    h = np.array([it.person.meta.height for it in items])
    s = np.array([it.person.shape.scale for it in items])
    assert np.corrcoef(h, s)[0, 1] > 0.8


# ------------------------------------------------------------------ rendering

def test_render_bones_brighter_than_tissue_than_background():
    items, _ = plan_dataset(1, 0, seed=0)
    it = items[0]
    image, anns = render_item(it, 256)
    grey = image[..., 0].astype(float)
    from xaug.raster import class_masks
    masks = class_masks(anns, (256, 256))
    bone = masks.any(axis=0)
    overlap = masks.sum(axis=0) >= 2
    assert grey[bone].mean() > grey[~bone][grey[~bone] > 60].mean() > grey[140:, :10].mean()
    assert grey[overlap].mean() > grey[bone & ~overlap].mean()


def test_rings_stay_inside_the_label():
    items, _ = plan_dataset(40, 0, seed=9)
    it = next(i for i in items if "ring" in i.edges)
    image, anns = render_item(it, 512)
    plain = type(it)(**{**it.__dict__, "edges": {}})
    image0, anns0 = render_item(plain, 512)
    assert [a.to_json() for a in anns] == [a.to_json() for a in anns0]
    assert (image.astype(int) - image0.astype(int)).max() > 40


# ------------------------------------------------------------------ determinism, cache, errors

def _item_hashes(ds):
    return sorted((it["image"]["path"], it["image"]["sha256"], it["label"]["sha256"]) for it in ds.items)


@pytest.mark.parametrize("appearance", ["realistic", "randomised", "legacy"])
def test_same_seed_same_bytes_whatever_jobs(tmp_path, appearance):
    a = synthesize(Store(tmp_path / "a"), persons=3, test_persons=1, seed=7, size=160, jobs=1, progress=False,
                   appearance=appearance)
    b = synthesize(Store(tmp_path / "b"), persons=3, test_persons=1, seed=7, size=160, jobs=2, progress=False,
                   appearance=appearance)
    assert _item_hashes(a) == _item_hashes(b)
    assert a.id == b.id
    c = synthesize(Store(tmp_path / "c"), persons=3, test_persons=1, seed=8, size=160, jobs=1, progress=False,
                   appearance=appearance)
    assert _item_hashes(a) != _item_hashes(c)


def test_same_spec_is_a_cache_hit(store_copy, tiny_dataset):
    store = Store(store_copy)
    ds = synthesize(store, "raw", persons=6, test_persons=2, seed=0, size=256, progress=False)
    assert ds.id == tiny_dataset.id and len(store.datasets()) == 1


def test_bad_spec_names_the_flag():
    with pytest.raises(BadInput, match="--rotated-test is a fraction"):
        synth_spec(2, 0, rotated_test=1.5)
    with pytest.raises(BadInput, match="--persons must be at least 1"):
        synth_spec(0, 0)


# ------------------------------------------------------------------ injected label swaps

def test_label_swaps_change_only_the_labels_of_the_chosen_persons(tmp_path, tiny_dataset):
    from xaug.classes import NEIGHBOUR_PAIRS

    ds = synthesize(Store(tmp_path / "s"), persons=6, test_persons=2, seed=0, size=256, jobs=1,
                    progress=False, label_swaps=2)
    assert ds.manifest["spec"]["label_swaps"] == 2 and ds.id != tiny_dataset.id
    clean = {s.relpath: s for s in tiny_dataset.samples()}
    swapped_persons = set()
    for s in ds.samples():
        ref = clean[s.relpath]
        assert s.image_path.read_bytes() == ref.image_path.read_bytes()  # pixels untouched
        recorded = (s.meta.get("edge_details") or {}).get("label_swap")
        got = {a.label: a.points.tolist() for a in s.annotations}
        want = {a.label: a.points.tolist() for a in ref.annotations}
        if recorded is None:
            assert got == want
            continue
        assert s.split == "train" and "label_swap" in s.meta["edge_cases"]
        a, b = recorded["labels"]
        assert (a, b) in NEIGHBOUR_PAIRS
        assert got[a] == want[b] and got[b] == want[a]
        assert {k: v for k, v in got.items() if k not in (a, b)} == {k: v for k, v in want.items() if k not in (a, b)}
        swapped_persons.add(s.person)
    assert len(swapped_persons) == 2
    both_hands = [s for s in ds.samples() if s.person in swapped_persons]
    assert len(both_hands) == 4 and all("label_swap" in s.meta["edge_cases"] for s in both_hands)


def test_no_label_swaps_keeps_the_spec_and_ids_of_earlier_versions():
    assert "label_swaps" not in synth_spec(6, 0, size=256, test_persons=2)
    with pytest.raises(BadInput, match="--label-swaps counts training persons: 0 to 2, got 3"):
        synth_spec(2, 0, label_swaps=3)
