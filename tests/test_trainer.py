"""The U-Net, the loss, data, the training loop (steps, checkpoints, resume) and inference."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from _trainer_data import make_samples
from trainer.config import TrainConfig
from trainer.data import EpochSampler, OnlineAug, TrainSet, scaled_masks
from trainer.inference import predict_dataset
from trainer.loop import lr_factor, make_optimizer, read_metrics, train, train_step
from trainer.losses import BCEDiceLoss, soft_dice_loss
from trainer.model import UNet, count_parameters
from xaug.errors import XaugError
from xaug.raster import class_masks

TINY = dict(size=64, batch=2, width=8, depth=3, epochs=1, workers=0, lr=3e-3, warmup_epochs=0.5)


@pytest.mark.parametrize("norm", ["batch", "group", "instance", "none"])
@pytest.mark.parametrize("depth", [1, 3])
def test_unet_shapes(norm, depth):
    net = UNet(width=4, depth=depth, norm=norm)
    assert net(torch.zeros(2, 1, 32, 32)).shape == (2, 29, 32, 32)


def test_unet_width_changes_parameters():
    assert count_parameters(UNet(width=8, depth=3)) > count_parameters(UNet(width=4, depth=3))


def test_size_must_divide_by_two_to_the_depth():
    with pytest.raises(XaugError, match="multiple of 2\\*\\*depth"):
        TrainConfig(size=100, depth=5)


def test_soft_dice_perfect_and_wrong():
    t = torch.zeros(1, 2, 8, 8)
    t[:, :, :4] = 1
    assert float(soft_dice_loss(t * 40 - 20, t)) < 1e-3
    assert float(soft_dice_loss(20 - t * 40, t)) > 0.9


def test_two_training_steps_lower_the_loss(tmp_path):
    samples = make_samples(tmp_path, n=2)
    ds = TrainSet(samples, 64, aug=None)
    x = torch.stack([ds[i][0] for i in range(2)])
    y = torch.stack([ds[i][1] for i in range(2)])
    torch.manual_seed(0)
    model = UNet(width=8, depth=3)
    opt = make_optimizer(model, TrainConfig(**TINY))
    crit = BCEDiceLoss()
    dev = torch.device("cpu")
    losses = [float(train_step(model, x, y, opt, crit, dev)) for _ in range(3)]
    assert losses[2] < losses[0]


def test_lr_schedule_warmup_then_decay():
    f = [lr_factor(s, 100, 10, "cosine", 0.01) for s in range(100)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(f[10:], f[11:])) and f[-1] < 0.02
    p = [lr_factor(s, 100, 0, "poly", 0.0) for s in range(100)]
    assert p[0] == 1.0 and p[-1] < 0.1


def test_targets_scale_polygons_to_training_size(tmp_path):
    s = make_samples(tmp_path, n=1, size=64)[0]
    small = scaled_masks(s, (64, 64), 32)
    full = class_masks(s.annotations, (64, 64))
    assert small.shape == (29, 32, 32)
    # areas scale by about 1/4
    assert abs(small.sum() * 4 - full.sum()) < 0.2 * full.sum()


def test_augmentation_is_keyed_by_seed_epoch_index(tmp_path):
    samples = make_samples(tmp_path, n=3)
    a = TrainSet(samples, 64, OnlineAug(hflip=0.5, clahe=0.5), seed=1)
    b = TrainSet(samples, 64, OnlineAug(hflip=0.5, clahe=0.5), seed=1, cache=False)
    for key in [(0, 2), (3, 1), (0, 2)]:
        xa, ya = a[key]
        xb, yb = b[key]
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert ya.dtype == torch.uint8 and set(torch.unique(ya).tolist()) <= {0, 1}
    s = EpochSampler(5, seed=3)
    s.set_epoch(1)
    first = list(s)
    s.set_epoch(1)
    assert list(s) == first and sorted(i for _, i in first) == list(range(5))


def test_hflip_flips_image_and_mask_together(tmp_path):
    samples = make_samples(tmp_path, n=1)
    plain = TrainSet(samples, 64, aug=None)[0]
    flip = TrainSet(samples, 64, OnlineAug(0, 0, 0, 0, hflip=1.0, scale=0.0, translate=0.0))[0]
    assert torch.equal(flip[0], plain[0].flip(-1)) and torch.equal(flip[1], plain[1].flip(-1))


def _weights(path):
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def test_train_writes_run_folder_and_resume_reproduces(tmp_path):
    samples = make_samples(tmp_path / "data", n=6)
    train_s, val_s = samples[:4], samples[4:]
    cfg = TrainConfig(**{**TINY, "epochs": 2})
    full = train(cfg, train_s, val_s, tmp_path / "full", device="cpu", progress=False)
    assert full.epochs_done == 2 and full.best_dice is not None
    for name in ("config.json", "metrics.jsonl", "best.pt", "last.pt", "val_dice.csv", "val_images.csv", "curve.png"):
        assert (tmp_path / "full" / name).exists(), name
    ckpt = torch.load(tmp_path / "full" / "last.pt", weights_only=True)
    assert ckpt["epoch"] == 2 and ckpt["config"]["size"] == 64

    class Killed(Exception):
        pass

    def kill(row):
        if row["epoch"] == 1:
            raise Killed

    with pytest.raises(Killed):
        train(cfg, train_s, val_s, tmp_path / "cut", device="cpu", progress=False, on_epoch_end=kill)
    with pytest.raises(XaugError, match="--resume"):
        train(cfg, train_s, val_s, tmp_path / "cut", device="cpu", progress=False)
    resumed = train(cfg, train_s, val_s, tmp_path / "cut", device="cpu", progress=False, resume=True)
    wa, wb = _weights(tmp_path / "full" / "last.pt"), _weights(tmp_path / "cut" / "last.pt")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    strip = lambda rows: [{k: v for k, v in r.items() if k not in ("train_seconds", "images_per_s", "startup_seconds")} for r in rows]
    assert strip(read_metrics(tmp_path / "full")) == strip(read_metrics(tmp_path / "cut"))
    assert resumed.best_dice == full.best_dice
    # a finished run resumes as a no-op; different settings are refused
    again = train(cfg, train_s, val_s, tmp_path / "cut", device="cpu", progress=False, resume=True)
    assert again.epochs_done == 2
    with pytest.raises(XaugError, match="than the stored run \\(lr: stored .*, given 1.0\\)"):
        train(cfg.replace(lr=1.0), train_s, val_s, tmp_path / "cut", device="cpu", progress=False, resume=True)


def test_predict_dataset_returns_original_resolution(tmp_path):
    samples = make_samples(tmp_path / "data", n=3, size=64)
    train(TrainConfig(**TINY), samples[:2], samples[2:], tmp_path / "run", device="cpu", progress=False)
    big = make_samples(tmp_path / "big", n=1, size=96, split="test")
    out = list(predict_dataset(tmp_path / "run", big, device="cpu", tta="hflip", workers=0))
    assert len(out) == 1
    sample, masks = out[0]
    assert sample is big[0] and masks.shape == (29, 96, 96) and masks.dtype == bool
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert cfg["width"] == 8 and "environment" in cfg


# ---------------------------------------------------------------- ResUNet, arch choice, online kernels

@pytest.mark.parametrize("norm", ["batch", "group", "instance", "none"])
@pytest.mark.parametrize("depth,size", [(2, 32), (3, 40), (5, 64)])
def test_resunet_shapes(norm, depth, size):
    from trainer.model import ResUNet

    net = ResUNet(width=4, depth=depth, norm=norm)
    assert net(torch.zeros(2, 1, size, size)).shape == (2, 29, size, size)


def test_resunet_layout_blocks_and_channels():
    from trainer.model import ResUNet

    net = ResUNet(width=8, depth=4, blocks=3, max_width=32)
    assert [len(s) for s in net.stages] == [3, 3, 3, 3]
    assert [s[-1].conv2.out_channels for s in net.stages] == [8, 16, 32, 32]  # 1/2 .. 1/16 (capped)
    assert [up.conv[0].out_channels for up in net.ups] == [32, 16, 8, 16]  # 1/8, 1/4, 1/2, full: max(16, w/2)
    assert net.head.in_channels == 16
    assert count_parameters(ResUNet(width=8, depth=4, blocks=1)) < count_parameters(net)
    with pytest.raises(ValueError, match="blocks needs 4 entries"):
        ResUNet(width=8, depth=4, blocks=(1, 2))


def test_resunet_few_steps_lower_the_loss(tmp_path):
    from trainer.model import ResUNet

    samples = make_samples(tmp_path, n=2)
    ds = TrainSet(samples, 64, aug=None)
    x = torch.stack([ds[i][0] for i in range(2)])
    y = torch.stack([ds[i][1] for i in range(2)])
    torch.manual_seed(0)
    model = ResUNet(width=8, depth=3)
    opt = make_optimizer(model, TrainConfig(**TINY))
    crit = BCEDiceLoss()
    losses = [float(train_step(model, x, y, opt, crit, torch.device("cpu"))) for _ in range(4)]
    assert losses[3] < losses[0]


def test_arch_is_checked_and_old_configs_are_unets(tmp_path):
    from trainer.inference import load_model
    from trainer.model import ResUNet

    from trainer.model import DEFAULT_ARCH

    assert TrainConfig().arch == DEFAULT_ARCH
    with pytest.raises(XaugError, match="unknown arch 'resnet' \\(did you mean resunet\\?\\); known: resunet, unet"):
        TrainConfig(arch="resnet")
    with pytest.raises(XaugError, match="use smp:<Architecture>:<encoder>"):
        TrainConfig(arch="smp:Unet")
    with pytest.raises(XaugError, match="resunet needs depth >= 2"):
        TrainConfig(arch="resunet", depth=1, size=64)
    # a checkpoint written before `arch` existed: its config describes a U-Net
    old = {k: v for k, v in TrainConfig(**TINY, arch="unet").to_dict().items() if k not in ("arch", "blocks", "world_size")}
    assert TrainConfig.from_dict(old).arch == "unet"
    torch.save({"model": UNet(width=8, depth=3).state_dict(), "config": old}, tmp_path / "best.pt")
    model, cfg = load_model(tmp_path, "cpu")
    assert isinstance(model, UNet) and "arch" not in cfg
    new = TrainConfig(**TINY, arch="resunet").to_dict()
    torch.save({"model": ResUNet(width=8, depth=3).state_dict(), "config": new}, tmp_path / "best.pt")
    assert isinstance(load_model(tmp_path, "cpu")[0], ResUNet)


def test_geometry_and_exposure_kernels():
    from trainer.data import affine_scale_translate, gamma_black_level

    rng = np.random.default_rng(0)
    g = rng.integers(0, 256, (16, 16), dtype=np.uint8)
    m = (rng.random((3, 16, 16)) > 0.5).astype(np.uint8)
    g0, m0 = g.copy(), m.copy()
    same_g, same_m = affine_scale_translate(g, m, 1.0, (0.0, 0.0))
    assert np.array_equal(same_g, g) and np.array_equal(same_m, m)
    shifted_g, shifted_m = affine_scale_translate(g, m, 1.0, (3.0, 2.0))  # whole pixels: exact copies
    assert np.array_equal(shifted_g[2:, 3:], g[:-2, :-3]) and np.array_equal(shifted_m[:, 2:, 3:], m[:, :-2, :-3])
    assert shifted_g[:2].max() == 0 and shifted_m[:, :, :3].max() == 0
    # replicate: what comes in is the edge row / column, pixels and labels alike
    rg, rm = affine_scale_translate(g, m, 1.0, (3.0, 2.0), border="replicate")
    assert np.array_equal(rg[2:, 3:], shifted_g[2:, 3:]) and np.array_equal(rm[:, 2:, 3:], shifted_m[:, 2:, 3:])
    assert np.array_equal(rg[0, 3:], g[0, :-3]) and np.array_equal(rg[5, :3], np.full(3, g[3, 0]))
    assert np.array_equal(rm[:, 0, 3:], m[:, 0, :-3]) and np.array_equal(rm[:, 1], rm[:, 2])
    out, _ = affine_scale_translate(g, m, 0.5, (0.0, 0.0), border="replicate")  # zoomed out: no black frame
    assert out[0, 0] == g[0, 0] and out[-1, -1] == g[-1, -1]
    with pytest.raises(Exception, match="unknown border 'wrap'"):
        OnlineAug(border="wrap")
    zg, zm = affine_scale_translate(g, m, 1.3, (0.0, 0.0))
    assert zg.dtype == np.uint8 and zm.dtype == np.uint8 and set(np.unique(zm)) <= {0, 1}
    assert np.array_equal(g, g0) and np.array_equal(m, m0)  # inputs untouched
    assert np.array_equal(gamma_black_level(g), g)
    lut = gamma_black_level(np.arange(256, dtype=np.uint8), gamma=2.0, black=55.0)
    assert lut[:56].max() == 0 and lut[255] == 255 and lut[155] == round(((155 - 55) / 200) ** 2 * 255)
    assert np.all(np.diff(lut.astype(int)) >= 0)


def test_online_geometry_is_seeded_and_only_zoom_and_shift_are_on_by_default(tmp_path):
    samples = make_samples(tmp_path, n=2)
    default = OnlineAug()
    assert (default.scale, default.translate, default.gamma, default.black_level) == (0.5, 0.5, 0.0, 0.0)
    assert default.border == "replicate"
    assert OnlineAug(scale=0.0, translate=0.0).geometry() is None
    # a config stored before the options existed had them off and a black border, whatever today's defaults
    old = TrainConfig(**TINY).to_dict()
    old["aug"] = {k: v for k, v in old["aug"].items()
                  if k not in ("scale", "translate", "gamma", "black_level", "border")}
    assert TrainConfig.from_dict(old).aug.geometry() is None and TrainConfig.from_dict(old).aug.border == "constant"
    assert TrainConfig.from_dict(TrainConfig(**TINY).to_dict()).aug == default
    # the border is part of a run's identity only where zoom or shift can bring one in
    assert "border" in TrainConfig(**TINY).identity()["aug"]
    assert "border" not in TrainConfig(**TINY, aug=OnlineAug(scale=0.0, translate=0.0)).identity()["aug"]
    aug = OnlineAug(0, 0, 0, 0, hflip=0.0, scale=1.0, translate=1.0, gamma=1.0, black_level=1.0)
    a = TrainSet(samples, 64, aug, seed=3)
    b = TrainSet(samples, 64, aug, seed=3, cache=False)
    plain = TrainSet(samples, 64, None)
    xa, ya = a[(2, 1)]
    xb, yb = b[(2, 1)]
    assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert not torch.equal(xa, plain[1][0]) and not torch.equal(xa, a[(3, 1)][0])
    assert set(torch.unique(ya).tolist()) <= {0, 1}
    p = aug.geometry().draw(np.random.default_rng(1), 64)
    assert 0.85 <= p["scale"] <= 1.15 and max(map(abs, p["shift"])) <= 6.4
    assert 0.7 <= p["gamma"] <= 1.5 and 0 <= p["black"] <= 40
    # stored configs give lists back; they compare equal to the tuples
    assert OnlineAug(**{**aug.__dict__, "scale_range": [0.85, 1.15]}) == aug
    with pytest.raises(Exception, match="scale_range low 2.0 > high 1.0"):
        OnlineAug(scale_range=(2.0, 1.0))


def test_a_resume_killed_while_it_rewrites_config_and_metrics_stays_resumable(tmp_path, monkeypatch):
    """--resume rewrites metrics.jsonl and config.json before training: a kill there kept half a
    config.json (the run could not be read nor resumed); now each file is the old one or the new."""
    import os

    samples = make_samples(tmp_path / "data", n=6)
    cfg2 = TrainConfig(**{**TINY, "epochs": 2})
    run = tmp_path / "run"

    def kill(row):
        if row["epoch"] == 1:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        train(cfg2, samples[:4], samples[4:], run, device="cpu", progress=False, on_epoch_end=kill)
    before = {n: (run / n).read_bytes() for n in ("config.json", "metrics.jsonl")}
    for n in (1, 2):  # stopped while writing metrics.jsonl, then config.json
        calls = []

        def fsync(fd, n=n):
            calls.append(fd)
            if len(calls) == n:
                raise KeyboardInterrupt
        with monkeypatch.context() as m:
            m.setattr(os, "fsync", fsync)
            with pytest.raises(KeyboardInterrupt):
                train(cfg2, samples[:4], samples[4:], run, device="cpu", progress=False, resume=True)
        assert {n: (run / n).read_bytes() for n in before} == before
        assert not [p.name for p in run.iterdir() if p.name.startswith(".")]
    done = train(cfg2, samples[:4], samples[4:], run, device="cpu", progress=False, resume=True)
    assert done.epochs_done == 2 and [r["epoch"] for r in read_metrics(run)] == [1, 2]


@pytest.mark.parametrize("module", ["trainer.loop", "trainer.bootstrap", "trainer.model", "trainer.ablate"])
def test_docstring_examples(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module))
    assert result.failed == 0 and result.attempted > 0
