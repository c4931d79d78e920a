"""The ResUNet's full-resolution design, its initialisation, and runs of its first (strided) design."""
from __future__ import annotations

import math

import pytest
import torch

from _trainer_data import make_samples
from trainer.config import TrainConfig
from trainer.inference import load_model
from trainer.loop import train
from trainer.model import PRIOR, BasicBlock, ResUNet, build_model, model_from_config
from xaug.errors import XaugError

TINY = dict(size=64, batch=2, width=8, depth=3, epochs=1, workers=0, lr=3e-3, warmup_epochs=0.5)


@pytest.mark.parametrize("stem", ["full", "strided"])
@pytest.mark.parametrize("norm", ["batch", "none"])
@pytest.mark.parametrize("depth,size", [(2, 16), (4, 48)])
def test_shapes_of_both_stems(stem, norm, depth, size):
    net = ResUNet(width=4, depth=depth, norm=norm, stem=stem)
    assert net(torch.zeros(2, 1, size, size)).shape == (2, 29, size, size)


def test_full_stem_keeps_full_resolution_features():
    net = ResUNet(width=32, depth=5)
    conv = net.stem[0]
    assert conv.stride == (1, 1) and conv.out_channels == 16  # max(16, width // 2)
    assert [s[0].conv1.stride for s in net.stages] == [(2, 2)] * 5  # 1/2 .. 1/32
    assert [s[-1].conv2.out_channels for s in net.stages] == [32, 64, 128, 256, 256]
    # the last decoder stage runs at full resolution on the stem's features
    feats = {}
    net.ups[-1].register_forward_pre_hook(lambda m, args: feats.update(y=args[0], skip=args[1]))
    net.eval()(torch.zeros(1, 1, 64, 64))
    assert feats["skip"].shape == (1, 16, 64, 64) and feats["y"].shape == (1, 32, 32, 32)
    assert ResUNet(width=64, depth=3).stem[0].out_channels == 32


def test_strided_stem_is_the_first_design():
    net = ResUNet(width=8, depth=4, blocks=3, max_width=32, stem="strided")
    assert net.stem[0].stride == (2, 2) and len(net.stages) == 3
    assert [up.conv[0].out_channels for up in net.ups] == [32, 16, 8, 8]
    assert net.head.in_channels == 8
    with pytest.raises(ValueError, match="blocks needs 3 entries"):
        ResUNet(width=8, depth=4, blocks=(1, 2, 3, 4), stem="strided")
    with pytest.raises(ValueError, match="unknown resunet stem 'half'; known: full, strided"):
        ResUNet(stem="half")


@pytest.mark.parametrize("norm", ["batch", "group", "none"])
def test_residual_blocks_start_as_identity_and_head_at_the_prior(norm):
    net = ResUNet(width=8, depth=3, norm=norm)
    blocks = [m for m in net.modules() if isinstance(m, BasicBlock)]
    assert blocks
    if norm != "none":
        assert all(float(b.bn2.weight.detach().abs().max()) == 0 for b in blocks)
        block = blocks[1]  # 8 -> 8 channels, identity skip: starts as relu(x)
        x = torch.randn(2, 8, 8, 8)
        assert torch.equal(block.eval()(x), torch.relu(x))
    assert torch.allclose(net.head.bias, torch.full((29,), math.log(PRIOR / (1 - PRIOR))))
    # a fresh model predicts about the prior, not 0.5, everywhere
    with torch.no_grad():
        prob = torch.sigmoid(net.eval()(torch.rand(1, 1, 32, 32)))
    assert float(prob.mean()) < 0.05


def test_config_stem_and_identity():
    assert TrainConfig(arch="resunet").stem == "full"
    with pytest.raises(XaugError, match="unknown resunet stem 'x'"):
        TrainConfig(stem="x")
    assert "stem" in TrainConfig(**TINY, arch="resunet").identity()
    assert "stem" not in TrainConfig(**TINY, arch="unet").identity()  # U-Net runs keep their identity
    assert model_from_config(TrainConfig(**TINY, arch="resunet", stem="strided")).stem[0].stride == (2, 2)


def test_a_run_of_the_first_design_still_loads_and_resumes(tmp_path):
    """A ResUNet run stored before `stem` existed (no `stem` key) is rebuilt with the strided
    stem for evaluation, and --resume continues it rather than failing on the weights."""
    samples = make_samples(tmp_path / "data", n=3, size=64)
    cfg = TrainConfig(**{**TINY, "epochs": 2}, arch="resunet", stem="strided")
    run = tmp_path / "run"
    train(cfg, samples[:2], samples[2:], run, device="cpu", progress=False)
    for name in ("best.pt", "last.pt"):  # as an older xaug wrote them
        ckpt = torch.load(run / name, weights_only=True)
        ckpt["config"].pop("stem")
        torch.save(ckpt, run / name)
    model, stored = load_model(run, "cpu")
    assert "stem" not in stored and model.stem[0].stride == (2, 2)
    # --resume with today's design is refused in one line; with the stored one it is the same run
    with pytest.raises(XaugError, match="than the stored run \\(stem: stored strided, given full\\)"):
        train(cfg.replace(stem="full"), samples[:2], samples[2:], run, device="cpu", progress=False, resume=True)
    assert train(cfg, samples[:2], samples[2:], run, device="cpu", progress=False, resume=True).epochs_done == 2


def test_build_model_passes_the_stem():
    assert build_model(width=8, depth=3, arch="resunet").stem[0].stride == (1, 1)
    assert build_model(width=8, depth=3, arch="resunet", stem="strided").stem[0].stride == (2, 2)
