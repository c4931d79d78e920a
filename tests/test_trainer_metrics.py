"""Dice at the competition convention, RLE against an independent implementation, submission CSV."""
from __future__ import annotations

import csv
import io

import numpy as np
import pytest
import torch

from trainer.metrics import DiceTable, competition_dice, dice_per_class_torch, unpack_masks, upsample_threshold
from trainer.submit import write_rows
from xaug.classes import CLASSES
from xaug.model import Sample
from xaug.raster import DICE_EPS, dice, dice_per_class, rle_decode, rle_encode


def four_cases():
    z = np.zeros((4, 4), bool)
    a = z.copy(); a[0, :4] = True           # 4 px
    b = z.copy(); b[0, 2:4] = True; b[1, 2:4] = True  # 4 px, overlap 2 with a
    return [(z, z, 1.0),
            (z, a, DICE_EPS / (4 + DICE_EPS)),
            (a, z, DICE_EPS / (4 + DICE_EPS)),
            (a, b, (2 * 2 + DICE_EPS) / (8 + DICE_EPS))]


@pytest.mark.parametrize("pred,gt,expected", four_cases())
def test_dice_four_cases_and_overlap(pred, gt, expected):
    assert dice(pred, gt) == pytest.approx(expected, abs=1e-12)
    stack_p, stack_g = pred[None], gt[None]
    assert dice_per_class(stack_p, stack_g)[0] == pytest.approx(expected, abs=1e-12)
    t = dice_per_class_torch(torch.from_numpy(stack_p), torch.from_numpy(stack_g))
    assert float(t[0]) == pytest.approx(expected, abs=1e-12)


def test_torch_dice_matches_numpy_on_random_masks():
    rng = np.random.default_rng(0)
    p = rng.random((29, 33, 17)) > 0.6
    g = rng.random((29, 33, 17)) > 0.5
    g[3] = False
    p[3] = False
    np.testing.assert_allclose(dice_per_class_torch(torch.from_numpy(p), torch.from_numpy(g)).numpy(),
                               dice_per_class(p, g), rtol=0, atol=1e-12)


def test_upsampled_logits_threshold_at_sigmoid_half():
    logits = torch.full((2, 4, 4), -3.0)
    logits[0, :2, :] = 3.0  # top half positive -> top half of the 8x8 image
    pred = upsample_threshold(logits, (8, 8))
    assert pred.shape == (2, 8, 8) and pred.dtype == torch.bool
    assert pred[0, :3].all() and not pred[0, 5:].any() and not pred[1].any()
    gt = torch.zeros(2, 8, 8, dtype=torch.bool)
    gt[0, :4] = True
    d = competition_dice(logits, gt)
    assert d[1] == 1.0 and d[0] == pytest.approx(1.0)


def test_unpack_masks_inverts_packbits():
    rng = np.random.default_rng(1)
    m = rng.random((3, 5, 13)) > 0.5
    assert np.array_equal(unpack_masks(np.packbits(m, axis=-1), 13).numpy(), m)


def test_dice_table_means_images_then_classes():
    t = DiceTable(("a", "b"))
    t.add("x.png", np.array([1.0, 0.0]))
    t.add("y.png", np.array([0.5, 0.0]))
    assert t.per_class().tolist() == [0.75, 0.0]
    assert t.mean() == pytest.approx(0.375)


def naive_rle(mask: np.ndarray) -> str:
    """Independent RLE: walk the row-major pixels, 1-based starts."""
    runs, start, prev = [], None, False
    flat = [bool(v) for row in mask for v in row]
    for i, v in enumerate(flat + [False]):
        if v and not prev:
            start = i
        if not v and prev:
            runs += [start + 1, i - start]
        prev = v
    return " ".join(str(r) for r in runs)


def naive_decode(rle: str, shape) -> np.ndarray:
    flat = [0] * (shape[0] * shape[1])
    nums = [int(t) for t in rle.split()]
    for s, n in zip(nums[::2], nums[1::2]):
        for k in range(s - 1, s - 1 + n):
            flat[k] = 1
    return np.array(flat, np.uint8).reshape(shape)


@pytest.mark.parametrize("seed", range(6))
def test_rle_against_independent_implementation(seed):
    rng = np.random.default_rng(seed)
    shape = (int(rng.integers(1, 20)), int(rng.integers(1, 20)))
    mask = rng.random(shape) > rng.random()
    if seed == 0:
        mask[:] = False
    if seed == 1:
        mask[:] = True
    enc = rle_encode(mask)
    assert enc == naive_rle(mask)
    assert np.array_equal(rle_decode(enc, shape), mask.astype(np.uint8))
    assert np.array_equal(naive_decode(enc, shape), mask.astype(np.uint8))


def test_empty_mask_rle_is_empty_string():
    assert rle_encode(np.zeros((5, 5), bool)) == ""


def test_submission_rows_in_class_order():
    masks = np.zeros((29, 6, 6), bool)
    masks[2, 1, 1:4] = True
    buf = io.StringIO()
    write_rows([(Sample("test/DCM/ID1/im_R.png", "im_R.png", "ID1", "test"), masks)], buf)
    rows = list(csv.reader(io.StringIO(buf.getvalue())))
    assert rows[0] == ["image_name", "class", "rle"]
    assert [r[1] for r in rows[1:]] == list(CLASSES)
    assert rows[3] == ["im_R.png", "finger-3", "8 3"]
    assert all(r[2] == "" for i, r in enumerate(rows[1:]) if i != 2)
