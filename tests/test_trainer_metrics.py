"""Dice at the competition convention, RLE against an independent implementation, submission CSV."""
from __future__ import annotations

import csv
import io

import numpy as np
import pytest
import torch

from trainer.metrics import DiceTable, competition_dice, dice_per_class_torch, unpack_masks, upsample_threshold
from trainer.submit import write_rle_submission, write_rows
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


# ---------------------------------------------------------------- the chunked on-device evaluator

@pytest.mark.parametrize("chunk", [1, 3, 7, 29, None])
def test_chunked_counts_equal_the_earlier_evaluator(chunk):
    """Device-independent tiny case: logits at 16x16, targets at 37x53 (odd width, not a
    multiple of 8): the chunked counts give exactly the earlier per-image Dice."""
    from trainer.metrics import dice_counts, dice_from_counts

    rng = np.random.default_rng(5)
    logits = torch.from_numpy(rng.normal(0, 2, (29, 16, 16)).astype(np.float32))
    gt = rng.random((29, 37, 53)) > 0.55
    gt[3] = False  # an empty class
    packed = np.packbits(gt.astype(np.uint8), axis=-1)
    old = competition_dice(logits, torch.from_numpy(gt))
    new = dice_from_counts(*dice_counts(logits, packed, (37, 53), chunk)).numpy()
    assert new.dtype == np.float64 and np.array_equal(old, new)
    inter, psum, gsum = dice_counts(logits, packed, (37, 53), chunk)
    pred = upsample_threshold(logits, (37, 53))
    assert torch.equal(gsum, torch.from_numpy(gt.reshape(29, -1).sum(1)))
    assert torch.equal(psum, pred.reshape(29, -1).sum(1)) and int(inter[3]) == 0


def test_iter_dice_equals_the_earlier_validation(tmp_path):
    """The evaluator the trainer now uses (inputs from a cache, chunked counts) against the
    earlier one (all classes upsampled at once, Dice per image), on a small model."""
    from _trainer_data import make_samples
    from trainer.data import resized_images
    from trainer.inference import iter_dice, iter_predictions
    from trainer.model import build_model

    samples = make_samples(tmp_path, n=3, size=72, classes=5)
    torch.manual_seed(0)
    model = build_model(width=4, depth=2, arch="resunet").eval()
    old = [dice_per_class_torch(p, g).numpy() for _, p, g in iter_predictions(model, samples, 32, with_gt=True, workers=0)]
    new = [d for _, d in iter_dice(model, samples, 32, workers=0, chunk=4)]
    images, shapes = resized_images(samples, 32, jobs=2)
    cached = [d for _, d in iter_dice(model, samples, 32, workers=0, images=images, shapes=shapes)]
    assert all(np.array_equal(a, b) and np.array_equal(a, c) for a, b, c in zip(old, new, cached))


def test_class_chunk_fits_the_budget():
    from trainer.metrics import class_chunk

    assert class_chunk((2048, 2048), "cpu") == 9  # 256 MiB / (2048**2 * 7 B)
    assert class_chunk((2048, 2048), "cpu", budget_bytes=1) == 1
    assert class_chunk((64, 64), "cpu") == 64


def test_rle_on_the_device_equals_the_reference():
    from trainer.metrics import rle_torch

    rng = np.random.default_rng(2)
    for shape in [(1, 1), (5, 7), (33, 40)]:
        for p in (0.0, 0.3, 1.0):
            m = rng.random(shape) < p
            assert rle_torch(torch.from_numpy(m)) == rle_encode(m)


def test_streamed_image_csv_equals_the_table_csv(tmp_path):
    from trainer.metrics import StreamingImageCSV

    table, stream = DiceTable(), StreamingImageCSV(tmp_path / "streamed.csv")
    for i in range(3):
        row = np.linspace(0, 1, 29) * (i + 1) / 3
        table.add(f"img{i}.png", row)
        stream.add(f"img{i}.png", row)
    assert (tmp_path / "streamed.csv.partial").exists() and not (tmp_path / "streamed.csv").exists()
    stream.close()
    table.write_image_csv(tmp_path / "table.csv")
    assert (tmp_path / "streamed.csv").read_text() == (tmp_path / "table.csv").read_text()


def test_rle_submission_equals_the_mask_submission(tmp_path):
    from trainer.metrics import rle_torch
    from trainer.submit import write_submission

    rng = np.random.default_rng(3)
    preds = [(Sample(f"test/DCM/ID1/img{i}.png", f"img{i}.png", "ID1", "test"), rng.random((29, 6, 5)) > 0.5)
             for i in range(2)]
    write_submission(iter(preds), tmp_path / "a.csv", progress=False)
    write_rle_submission(((s, [rle_torch(torch.from_numpy(m)) for m in masks]) for s, masks in preds),
                         tmp_path / "b.csv", progress=False)
    assert (tmp_path / "a.csv").read_text() == (tmp_path / "b.csv").read_text()


@pytest.mark.parametrize("src, dst", [((16, 16), (37, 53)), ((24, 24), (24, 24)), ((8, 12), (64, 96))])
def test_cpu_popcount_counts_equal_the_device_counts(src, dst):
    """The CPU path (prediction packed to bits, popcounts) and the device path (unpacked target,
    bool sums; what a GPU runs) count the same, for odd widths, equal sizes and chunks."""
    from trainer.metrics import _dice_counts_packed, unpack_masks, upsample_chunks

    rng = np.random.default_rng(7)
    logits = torch.from_numpy(rng.normal(0, 2, (29, *src)).astype(np.float32))
    gt = rng.random((29, *dst)) > 0.5
    packed = np.packbits(gt, axis=-1)
    for chunk in (1, 5, None):
        fast = _dice_counts_packed(logits, packed, dst, chunk)
        inter, psum = torch.zeros(29, dtype=torch.int64), torch.zeros(29, dtype=torch.int64)
        for c0, pred in upsample_chunks(logits, dst, chunk):
            g = unpack_masks(packed[c0:c0 + pred.shape[0]], dst[1])
            inter[c0:c0 + pred.shape[0]] = (pred & g).reshape(pred.shape[0], -1).sum(1)
            psum[c0:c0 + pred.shape[0]] = pred.reshape(pred.shape[0], -1).sum(1)
        assert torch.equal(fast[0], inter) and torch.equal(fast[1], psum)
        assert torch.equal(fast[2], torch.from_numpy(gt.reshape(29, -1).sum(1)))


def test_a_killed_evaluate_keeps_its_previous_csv_and_json_whole(tmp_path, monkeypatch):
    """evaluate rewrites eval_<dataset>_<split>.{csv,json}: stopped mid-write (Ctrl-C, SIGTERM, a
    kill), the previous file stays as it was, never truncated, and no temporary is left."""
    import os

    from trainer.compare import Comparison, plot_comparison

    table = DiceTable()
    table.add("img0.png", np.linspace(0, 1, 29))
    writers = {"eval.csv": table.write_class_csv, "eval_images.csv": table.write_image_csv,
               "eval.json": lambda p: table.write_json(p, run="r"),
               "compare.png": lambda p: plot_comparison(Comparison(["a"], ["val"], ["d"], np.ones((1, 29)),
                                                                   np.ones(1)), p)}
    for name, write in writers.items():
        write(tmp_path / name)
    before = {name: (tmp_path / name).read_bytes() for name in writers}

    def killed(fd):
        raise KeyboardInterrupt
    monkeypatch.setattr(os, "fsync", killed)
    table.add("img1.png", np.zeros(29))
    for name, write in writers.items():
        with pytest.raises(KeyboardInterrupt):
            write(tmp_path / name)
    assert {name: (tmp_path / name).read_bytes() for name in writers} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(writers)
