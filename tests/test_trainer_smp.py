"""`--arch smp:<Architecture>:<encoder>` without segmentation_models_pytorch installed: parsing,
the one-line error that says what to install, and construction through a fake smp module
injected in sys.modules (CI never installs smp: it pulls a CUDA torch)."""
from __future__ import annotations

import sys
import types

import pytest
import torch
from torch import nn

from trainer.config import TrainConfig
from trainer.model import build_model, check_arch, parse_smp, smp_model
from xaug.errors import XaugError


class FakeUnet(nn.Module):
    made: list[dict] = []

    def __init__(self, encoder_name, encoder_weights, in_channels, classes):
        super().__init__()
        FakeUnet.made.append(dict(encoder_name=encoder_name, encoder_weights=encoder_weights,
                                  in_channels=in_channels, classes=classes))
        if encoder_name not in ("resnet34", "resnet18"):
            raise KeyError(f"Wrong encoder name `{encoder_name}`")
        self.conv = nn.Conv2d(in_channels, classes, 3, padding=1)

    def forward(self, x):
        return self.conv(x)


@pytest.fixture
def fake_smp(monkeypatch):
    mod = types.ModuleType("segmentation_models_pytorch")
    mod.Unet = FakeUnet
    mod.UnetPlusPlus = FakeUnet
    mod.encoders = types.ModuleType("encoders")  # lower case: not an architecture
    FakeUnet.made = []
    monkeypatch.setitem(sys.modules, "segmentation_models_pytorch", mod)
    return mod


@pytest.fixture
def no_smp(monkeypatch):
    monkeypatch.setitem(sys.modules, "segmentation_models_pytorch", None)  # import raises ImportError


def test_parse_smp():
    assert parse_smp("smp:UnetPlusPlus:resnet34") == ("UnetPlusPlus", "resnet34")
    assert parse_smp("smp:Unet:tu-convnext_tiny") == ("Unet", "tu-convnext_tiny")
    for bad in ("smp:Unet", "smp::resnet34", "smp:Unet:", "smp:Unet:resnet34:x", "smpx:Unet:resnet34"):
        with pytest.raises(ValueError, match="use smp:<Architecture>:<encoder>"):
            parse_smp(bad)
    assert check_arch("smp:Unet:resnet34") == "smp:Unet:resnet34"


def test_without_smp_the_error_says_what_to_install(no_smp):
    with pytest.raises(ImportError) as err:
        smp_model("smp:Unet:resnet34")
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("segmentation_models_pytorch is not installed")
    assert "pip install --no-deps segmentation-models-pytorch" in msg and "docs/training.md" in msg
    # the config itself is valid: the error comes when the model is made, as a one-line XaugError
    cfg = TrainConfig(arch="smp:Unet:resnet34", size=64)
    assert cfg.arch == "smp:Unet:resnet34"


def test_train_without_smp_is_a_one_line_error(no_smp, tmp_path):
    from _trainer_data import make_samples
    from trainer.loop import train

    samples = make_samples(tmp_path / "data", n=2)
    cfg = TrainConfig(arch="smp:Unet:resnet34", size=64, batch=2, epochs=1, workers=0)
    with pytest.raises(XaugError, match="segmentation_models_pytorch is not installed") as err:
        train(cfg, samples, [], tmp_path / "run", device="cpu", progress=False)
    assert err.value.where == "--arch"
    assert not (tmp_path / "run").exists()  # no empty run folder left behind


@pytest.mark.parametrize("arch, message", [("smp:FPN:resnet34", "no architecture 'FPN'; known: Unet, UnetPlusPlus"),
                                           ("smp:Unet:resnet999", "cannot build Unet with encoder 'resnet999'")])
def test_train_with_an_architecture_smp_lacks_is_a_one_line_error(fake_smp, tmp_path, arch, message):
    from _trainer_data import make_samples
    from trainer.loop import train

    samples = make_samples(tmp_path / "data", n=2)
    cfg = TrainConfig(arch=arch, size=64, batch=2, epochs=1, workers=0)
    with pytest.raises(XaugError, match=message) as err:
        train(cfg, samples, [], tmp_path / "run", device="cpu", progress=False)
    assert err.value.where == "--arch" and not (tmp_path / "run").exists()


def test_fake_smp_builds_the_named_architecture(fake_smp):
    model = build_model(arch="smp:UnetPlusPlus:resnet34")
    assert isinstance(model, FakeUnet)
    assert FakeUnet.made[-1] == dict(encoder_name="resnet34", encoder_weights=None, in_channels=1, classes=29)
    assert model(torch.zeros(1, 1, 32, 32)).shape == (1, 29, 32, 32)
    with pytest.raises(ValueError, match="no architecture 'FPN'; known: Unet, UnetPlusPlus"):
        build_model(arch="smp:FPN:resnet34")
    with pytest.raises(ValueError, match="cannot build Unet with encoder 'resnet999'"):
        build_model(arch="smp:Unet:resnet999")


def test_fake_smp_trains_evaluates_and_reloads(fake_smp, tmp_path):
    """The same loop, evaluator and run folder as the bundled models."""
    from _trainer_data import make_samples
    from trainer.inference import load_model
    from trainer.loop import train

    samples = make_samples(tmp_path / "data", n=3)
    cfg = TrainConfig(arch="smp:Unet:resnet18", size=64, batch=2, epochs=1, workers=0, depth=3)
    result = train(cfg, samples[:2], samples[2:], tmp_path / "run", device="cpu", progress=False)
    assert result.best_dice is not None and (tmp_path / "run" / "val_dice.csv").exists()
    model, stored = load_model(tmp_path / "run", "cpu")
    assert isinstance(model, FakeUnet) and stored["arch"] == "smp:Unet:resnet18"
