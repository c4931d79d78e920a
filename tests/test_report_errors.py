"""xaug.report.errors: the RED / YELLOW / GREEN definitions on multi-label masks, and the report."""
from __future__ import annotations

import csv
import json
import os

import cv2
import numpy as np
import pytest

from hands import schematic_hand
from xaug.classes import CLASS_INDEX
from xaug.errors import BadInput
from xaug.model import Sample
from xaug.raster import class_masks
from xaug.report.errors import (KIND_COLORS, analyse_errors, boundary_band, error_overlay, summarize,
                                write_error_report)

A, B = CLASS_INDEX["Triquetrum"], CLASS_INDEX["Pisiform"]


def stack(h=20, w=20):
    return np.zeros((29, h, w), bool)


def test_perfect_prediction_colours_nothing():
    gt = class_masks(schematic_hand(128)[0], (128, 128)).astype(bool)
    a = analyse_errors(gt, gt.copy())
    assert a.errors == 0 and not (a.confusion.any() or a.missed.any() or a.over.any())
    assert (a.dice == 1).all() and (a.shares() == 0).all()
    rgb = error_overlay(np.full((128, 128), 200, np.uint8), a)
    assert (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()  # grey only


def test_a_bone_given_the_wrong_class_is_red_for_both_classes():
    gt, pred = stack(), stack()
    gt[A, 5:10, 5:10] = True
    pred[B, 5:10, 5:10] = True
    a = analyse_errors(gt, pred)
    assert a.confusion.sum() == 25 and not a.missed.any() and not a.over.any()
    assert a.counts[A].tolist() == [25, 0, 0] and a.counts[B].tolist() == [25, 0, 0]
    assert a.shares().tolist() == [1.0, 0.0, 0.0]


def test_missed_bone_is_yellow_and_bone_on_background_is_green():
    gt, pred = stack(), stack()
    gt[A, 0:4, 0:4] = True            # missed entirely
    pred[B, 10:13, 10:13] = True      # predicted where there is no bone
    a = analyse_errors(gt, pred)
    assert a.missed.sum() == 16 and a.over.sum() == 9 and not a.confusion.any()
    assert a.counts[A].tolist() == [0, 16, 0] and a.counts[B].tolist() == [0, 0, 9]
    assert a.shares() == pytest.approx([0, 16 / 25, 9 / 25])


def test_overlapping_classes_count_per_channel():
    gt, pred = stack(), stack()
    gt[A, 2:8, 2:8] = True
    gt[B, 5:8, 5:8] = True            # B overlaps A on 9 px
    pred[A, 2:8, 2:8] = True          # A right, B missed: yellow, not confusion
    a = analyse_errors(gt, pred)
    assert a.counts[B].tolist() == [0, 9, 0] and a.counts[A].sum() == 0
    pred[B, 2:5, 2:5] = True          # B predicted on A-only pixels: red
    a = analyse_errors(gt, pred)
    assert a.counts[B].tolist() == [9, 9, 0]


def test_kinds_are_disjoint_cover_every_wrong_pixel_and_shares_add_to_one():
    rng = np.random.default_rng(np.random.SeedSequence([6, 0]))
    gt = rng.random((29, 40, 40)) < 0.08
    pred = rng.random((29, 40, 40)) < 0.08
    a = analyse_errors(gt, pred)
    maps = [a.confusion, a.missed, a.over]
    assert sum(m.astype(int) for m in maps).max() == 1
    assert (np.logical_or.reduce(maps) == (gt != pred).any(0)).all()
    assert a.counts.sum() == (gt != pred).sum()
    assert a.shares().sum() == pytest.approx(1.0)
    s = summarize_one(a)
    for name, v in s["per_class"].items():
        if v["error_pixels"]:
            assert v["confusion"] + v["missed"] + v["over"] == pytest.approx(1.0, abs=1e-3), name


def summarize_one(a):
    from xaug.report.errors import ImageErrors

    return summarize([ImageErrors("x.png", None, float(a.dice.mean()), a.dice, a.counts, a.near_boundary,
                                  {}, "o.jpg")])


def test_errors_near_the_boundary():
    gt, pred = stack(40, 40), stack(40, 40)
    gt[A, 10:30, 10:30] = True
    pred[A, 11:31, 10:30] = True      # shifted by one pixel: every error touches the edge
    pred[B, 0:3, 36:39] = True        # a blob far from B's (empty) ground truth
    a = analyse_errors(gt, pred, boundary_px=2)
    assert a.near_boundary[A].sum() == a.counts[A].sum() == 40
    assert a.near_boundary[B].sum() == 0
    s = summarize_one(a)
    assert s["near_boundary"] == pytest.approx(40 / 49, abs=1e-3)


def test_boundary_band_ignores_the_image_border():
    m = np.zeros((20, 20), np.uint8)
    m[10:, :] = 1                     # touches left, right and bottom borders
    band = boundary_band(m, 2)
    assert band[8:12].all() and not band[15:].any() and not band[:7].any()


def test_shapes_must_match():
    with pytest.raises(BadInput, match="same size"):
        analyse_errors(stack(10, 10), stack(10, 12))


def test_downscaled_overlay_keeps_thin_errors_visible():
    gt, pred = stack(400, 400), stack(400, 400)
    pred[A, 100, 50:350] = True       # a one-pixel line of over-prediction
    rgb = error_overlay(np.zeros((400, 400), np.uint8), analyse_errors(gt, pred), max_side=100)
    assert rgb.shape == (100, 100, 3)
    assert (rgb.reshape(-1, 3) == KIND_COLORS["over"]).all(1).sum() >= 70


def _samples(tmp_path, n=3, size=96):
    out = []
    for i in range(n):
        anns, img = schematic_hand(size, "RL"[i % 2], 10 * i)
        p = tmp_path / f"img{i}.png"
        cv2.imwrite(str(p), img)
        out.append(Sample(f"train/DCM/ID00{i}/img{i}.png", p, f"ID00{i}", "train", annotations=anns))
    return out


def test_report_files_worst_first_and_perfect_images_score_one(tmp_path):
    samples = _samples(tmp_path)
    pairs = []
    for i, s in enumerate(samples):
        gt = class_masks(s.annotations, (96, 96)).astype(bool)
        pred = gt.copy() if i == 0 else np.roll(gt, i, axis=2)
        pairs.append((s, pred))
    rep = write_error_report(iter(pairs), tmp_path / "rep", "test", progress=False, overlay_side=64)
    assert [im.relpath for im in rep.images] == [samples[2].relpath, samples[1].relpath, samples[0].relpath]
    assert rep.images[-1].mean_dice == 1.0 and rep.images[-1].counts.sum() == 0
    data = json.loads((tmp_path / "rep/errors.json").read_text())
    assert data["images"] == 3 and sum(data["shares"].values()) == pytest.approx(1.0, abs=1e-3)
    assert 0 < data["near_boundary"] <= 1
    rows = list(csv.DictReader(open(tmp_path / "rep/images.csv")))
    assert [r["image"] for r in rows] == [im.relpath for im in rep.images]
    assert float(rows[-1]["mean_dice"]) == 1.0 and rows[-1]["error_pixels"] == "0"
    html = (tmp_path / "rep/index.html").read_text()
    for im in rep.images:
        assert (tmp_path / "rep" / im.overlay).is_file() and im.overlay in html
    assert (tmp_path / "rep/img/shares.png").is_file() and (tmp_path / "rep/img/dice.png").is_file()


def _kill_at_the_nth_file(monkeypatch, n):
    """Every output file goes through xaug.store.atomic_write (one fsync each): stop the command
    (as Ctrl-C does) while it writes its n-th file."""
    calls, real = [], os.fsync

    def fsync(fd):
        calls.append(fd)
        if len(calls) == n:
            raise KeyboardInterrupt
        real(fd)
    monkeypatch.setattr(os, "fsync", fsync)


@pytest.mark.parametrize("n", [1, 3, 5, 6])  # an overlay, a plot, errors.json, images.csv
def test_a_killed_report_over_an_earlier_one_shows_no_index_and_the_next_is_whole(tmp_path, monkeypatch, n):
    samples = _samples(tmp_path)

    def pairs():
        return iter([(s, np.roll(class_masks(s.annotations, (96, 96)).astype(bool), i, axis=2))
                     for i, s in enumerate(samples)])
    rep = tmp_path / "rep"
    write_error_report(pairs(), rep, "first", progress=False, overlay_side=64)
    with monkeypatch.context() as m:
        _kill_at_the_nth_file(m, n)
        with pytest.raises(KeyboardInterrupt):
            write_error_report(pairs(), rep, "second", progress=False, overlay_side=64)
    # no index.html over a mix of old and new files, no summary of the earlier report; what is
    # there is whole, and nothing half-written is left
    assert not (rep / "index.html").exists() and not (rep / "errors.json").exists()
    assert not (rep / "images.csv").exists()
    assert all(cv2.imread(str(p)) is not None for p in rep.rglob("*.png"))
    assert not [p for p in rep.rglob("*") if p.name.startswith(".")]
    (rep / "img" / ".dice.png.999999.tmp").write_bytes(b"\x89PNG half")  # what a SIGKILL leaves
    write_error_report(pairs(), rep, "third", progress=False, overlay_side=64)
    assert "third" in (rep / "index.html").read_text() and json.loads((rep / "errors.json").read_text())["images"] == 3
    assert len((rep / "images.csv").read_text().splitlines()) == 4
    assert not [p for p in rep.rglob("*") if p.name.startswith(".")]


def test_predictions_at_another_size_are_resized_to_the_image(tmp_path):
    (s,) = _samples(tmp_path, 1)
    gt = class_masks(s.annotations, (96, 96)).astype(bool)
    small = gt[:, ::2, ::2]
    rep = write_error_report([(s, small)], tmp_path / "rep", "t", progress=False)
    assert rep.images[0].mean_dice > 0.8


def naive_analysis(gt, pred, px):
    """The definitions written out on whole images, channel by channel (reference)."""
    g_any, wrong = gt.any(0), (pred & ~gt).any(0)
    counts, near = np.zeros((29, 3), int), np.zeros((29, 3), int)
    for c in range(29):
        fp, fn = pred[c] & ~gt[c], gt[c] & ~pred[c]
        kinds = ((fp & g_any) | (fn & wrong), fn & ~wrong, fp & ~g_any)
        band = boundary_band(gt[c], px)
        counts[c] = [k.sum() for k in kinds]
        near[c] = [(k & band).sum() for k in kinds]
    return g_any & wrong, counts, near


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_windowed_analysis_equals_the_definitions_on_whole_images(seed):
    rng = np.random.default_rng(np.random.SeedSequence([6, seed]))
    gt, pred = stack(64, 64), stack(64, 64)
    for c in rng.choice(29, 12, replace=False):  # blobs, some at the image border, some classes empty
        for m, shift in ((gt, 0), (pred, int(rng.integers(-3, 4)))):
            y, x = rng.integers(-4, 60, 2)
            hh, ww = rng.integers(3, 20, 2)
            m[c, max(0, y + shift):max(0, y + shift + hh), max(0, x):max(0, x + ww)] = True
    a = analyse_errors(gt, pred, boundary_px=2)
    red, counts, near = naive_analysis(gt, pred, 2)
    assert (a.confusion == red).all()
    assert (a.counts == counts).all() and (a.near_boundary == near).all()
