"""Evaluation items made in parallel (`trainer.inference.eval_batches`): threads (the default) and
DataLoader worker processes give the same items in the same order as no workers; a consumer that
stops early or an item that fails leaves nothing running; a bad loader name is one line."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

from tests._trainer_data import make_samples
from trainer.data import EvalSet
from trainer.inference import eval_batches, iter_dice
from trainer.model import build_model
from xaug.errors import BadInput, XaugError


def _flat(batches):
    return [it for b in batches for it in b]


@pytest.fixture()
def evalset(tmp_path):
    return EvalSet(make_samples(tmp_path, n=7, size=96, classes=5), 64)


@pytest.mark.parametrize("loader,workers", [("threads", 3), ("processes", 2), ("threads", 1)])
def test_parallel_items_equal_serial_items_in_order(evalset, loader, workers):
    serial = list(eval_batches(evalset, 3, 0))
    assert [len(b) for b in serial] == [3, 3, 1]
    got = list(eval_batches(evalset, 3, workers, loader))
    assert [len(b) for b in got] == [3, 3, 1]
    for a, b in zip(_flat(serial), _flat(got)):
        assert a.index == b.index and a.shape == b.shape
        assert torch.equal(a.image, b.image) and torch.equal(a.gt_packed, b.gt_packed)
    assert all(isinstance(it.gt_packed, torch.Tensor) and it.gt_packed.dtype == torch.uint8 for it in _flat(got))


def test_loader_from_the_environment_and_bad_names(evalset, monkeypatch):
    monkeypatch.setenv("XAUG_EVAL_LOADER", "threads")
    assert len(_flat(eval_batches(evalset, 2, 2))) == 7
    monkeypatch.setenv("XAUG_EVAL_LOADER", "fibers")
    with pytest.raises(XaugError, match="unknown evaluation loader 'fibers'.*threads, processes") as e:
        next(eval_batches(evalset, 2, 2))
    assert e.value.where == "XAUG_EVAL_LOADER"


def test_early_stop_and_failing_item_leave_no_thread(tmp_path):
    samples = make_samples(tmp_path, n=12, size=64, classes=3)
    before = {t.ident for t in threading.enumerate()}
    gen = eval_batches(EvalSet(samples, 32), 2, 3)
    next(gen)
    gen.close()  # the consumer stops after one batch
    samples[5].annotations = None  # an unlabelled image cannot be scored: the item's own error
    with pytest.raises(BadInput, match="no label file") as e:
        list(eval_batches(EvalSet(samples, 32), 2, 3))
    assert e.value.where == samples[5].relpath
    deadline = time.time() + 5
    while time.time() < deadline and any(t.name.startswith("xaug-eval") for t in threading.enumerate()
                                         if t.ident not in before):
        time.sleep(0.05)
    assert not [t.name for t in threading.enumerate() if t.ident not in before and t.name.startswith("xaug-eval")]


def test_dice_is_the_same_with_threads_processes_and_no_workers(tmp_path, monkeypatch):
    samples = make_samples(tmp_path, n=5, size=80, classes=29)
    torch.manual_seed(0)
    model = build_model(width=4, depth=2, arch="unet").eval()
    out = {}
    for loader, workers in (("threads", 0), ("threads", 2), ("processes", 2)):
        monkeypatch.setenv("XAUG_EVAL_LOADER", loader)
        out[loader, workers] = np.stack([d for _, d in iter_dice(model, samples, 32, workers=workers)])
    ref = out["threads", 0]
    assert all(np.array_equal(ref, v) for v in out.values())
