"""Run and report inputs left by the first audit: compare's --png, a run's stored settings, predict's
--split, empty names, --angles items and the range of a seed. Each bad case is one line, exit 2,
and the store unchanged."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from _hardening import refused, snapshot, unchanged, xaug

SEED_MAX = 2**32 - 1


@pytest.fixture(scope="module")
def trained(tiny_home, tmp_path_factory) -> Path:
    """A tiny run on the session store (no disk cache: the store is not written) and one evaluation."""
    from trainer.runs import evaluate_run, train_version
    from xaug.store import Store

    run = tmp_path_factory.mktemp("runs") / "r"
    train_version(Store(tiny_home), "raw", run=run, epochs=1, size=64, batch=2, width=4, depth=2, workers=0,
                  device="cpu", progress=False, disk_cache=False)
    evaluate_run(Store(tiny_home), run, device="cpu", progress=False, workers=0)
    return run


@pytest.fixture
def run_copy(trained, tmp_path) -> Path:
    dst = tmp_path / "run"
    shutil.copytree(trained, dst)
    return dst


# ---------------------------------------------------------------- compare --png

@pytest.mark.parametrize("png, first", [
    ("{home}/compare.png", "--png {home}/compare.png: is inside the store {home}; write outputs elsewhere"),
    ("{home}/versions/x/c.png", "--png {home}/versions/x/c.png: is inside the store"),
    ("{tmp}/c.txt", "--png {tmp}/c.txt: is not a .png file name; give one such as compare.png"),
    ("{tmp}/d.png", "--png {tmp}/d.png: is a folder; give a file path such as compare.png"),
], ids=["store-root", "store-subfolder", "suffix", "folder"])
def test_compare_png_is_checked_like_the_other_report_outputs(store_copy, run_copy, tmp_path, png, first):
    """--png inside the store wrote an unlisted file there (compare had no --home); c.txt was a
    matplotlib traceback."""
    (tmp_path / "d.png").mkdir()
    before = snapshot(store_copy)
    fmt = dict(home=store_copy, tmp=tmp_path)
    refused(xaug("compare", run_copy, run_copy, "--png", png.format(**fmt), "--home", store_copy), first.format(**fmt))
    unchanged(store_copy, before)


def test_compare_home_defaults_to_xaug_home(store_copy, run_copy, monkeypatch):
    monkeypatch.setenv("XAUG_HOME", str(store_copy))
    refused(xaug("compare", run_copy, "--png", store_copy / "c.png"), f"--png {store_copy / 'c.png'}: is inside the store")
    res = xaug("compare", run_copy, "--png", run_copy / "c.png")
    assert res.exit_code == 0, res.output
    assert (run_copy / "c.png").exists()


# ---------------------------------------------------------------- a run's stored settings

def _edit_json(run: Path, key: str, value) -> None:
    cfg = json.loads((run / "config.json").read_text())
    cfg[key] = value
    (run / "config.json").write_text(json.dumps(cfg))


def _edit_checkpoint(run: Path, key: str, value) -> None:
    (run / "last.pt").unlink()
    ckpt = torch.load(run / "best.pt", weights_only=True)
    ckpt["config"][key] = value
    torch.save(ckpt, run / "best.pt")


EDITS = [
    ("arch", "bogus", "arch: unknown arch 'bogus'; known: resunet, unet"),
    ("depth", 40, "depth 40 is above 13"),
    ("val_batch", 0, "val_batch must be >= 1"),
    ("depth", "2", 'depth: expected an integer, got "2"'),
    ("norm", "layer", "norm: unknown norm 'layer'; known: batch, group, instance, none"),
    ("seed", -1, "seed must be 0 to 2**32 - 1, got -1"),
    ("workers", -2, "workers must be >= 0 (or null)"),
    ("aug", {"hflip": 2.0}, "hflip is a probability"),
    ("aug", {"flip": 0.5}, "unknown key(s) aug.flip"),
    ("epoch", 3, "unknown key(s) epoch"),
]
EDIT_IDS = [f"{k}={v}" for k, v, _ in EDITS]


@pytest.mark.parametrize("key, value, words", EDITS, ids=EDIT_IDS)
@pytest.mark.parametrize("command", ["evaluate", "predict", "errors"])
def test_an_edited_config_json_is_one_line_naming_the_file_the_key_and_what_to_do(
        store_copy, run_copy, tmp_path, command, key, value, words):
    """arch: bogus, depth: 40 or val_batch: 0 in config.json were taken (the checkpoint's copy was used)."""
    _edit_json(run_copy, key, value)
    before = snapshot(store_copy)
    extra = ["--out", tmp_path / "out.csv"] if command == "predict" else []
    line = refused(xaug(command, "--run", run_copy, "--device", "cpu", *extra, "--home", store_copy),
                   f"{run_copy / 'config.json'}: {words}")
    assert line.endswith("config.json was edited or damaged: restore it, or start a new run with "
                         "`xaug train --run NEW_NAME`")
    assert not (tmp_path / "out.csv").exists()
    unchanged(store_copy, before)


@pytest.mark.parametrize("key, value, words", EDITS, ids=EDIT_IDS)
def test_the_settings_a_checkpoint_rebuilds_its_model_from_are_checked_before_building(
        store_copy, run_copy, key, value, words):
    """val_batch: 0 in the checkpoint was a torch traceback ('stack expects a non-empty TensorList')."""
    _edit_checkpoint(run_copy, key, value)
    line = refused(xaug("evaluate", "--run", run_copy, "--device", "cpu", "--home", store_copy),
                   f"{run_copy / 'best.pt'}: {words}")
    assert "the checkpoint's settings were edited or are damaged" in line


@pytest.fixture(scope="module")
def older(tiny_home, tmp_path_factory) -> dict[str, Path]:
    """Runs of the models older trainers made: a U-Net (before `arch`, the only model) and a
    ResUNet of the first, strided design (before `stem`, the only design)."""
    from trainer.runs import train_version
    from xaug.store import Store

    runs = {}
    for name, extra in (("unet", {"arch": "unet"}), ("strided", {"arch": "resunet", "stem": "strided"})):
        runs[name] = tmp_path_factory.mktemp("older") / name
        train_version(Store(tiny_home), "raw", run=runs[name], epochs=1, size=64, batch=2, width=4, depth=2,
                      workers=0, device="cpu", progress=False, disk_cache=False, **extra)
    return runs


AUG_OPTIONS = ("scale", "translate", "gamma", "black_level", "border")


@pytest.mark.parametrize("model, dropped", [
    ("unet", ("arch", "blocks", "world_size")), ("strided", ("stem",)), ("default", ("max_width", "val_batch")),
    ("unet", tuple(f"aug.{k}" for k in AUG_OPTIONS))],
    ids=["before-arch", "before-stem", "before-val-batch", "before-online-geometry"])
def test_a_run_of_an_older_trainer_still_evaluates(store_copy, trained, older, tmp_path, model, dropped):
    """Configs written before newer keys existed are read as what that trainer did (the model:
    model_from_config's; online zoom and shift: off), and evaluate as before."""
    from trainer.config import TrainConfig

    run = tmp_path / "run"
    shutil.copytree(trained if model == "default" else older[model], run)

    def drop(cfg: dict) -> dict:
        out = {k: v for k, v in cfg.items() if k not in dropped}
        out["aug"] = {k: v for k, v in cfg["aug"].items() if f"aug.{k}" not in dropped}
        return out

    path = run / "config.json"
    path.write_text(json.dumps(drop(json.loads(path.read_text()))))
    for name in ("best.pt", "last.pt"):
        ckpt = torch.load(run / name, weights_only=True)
        ckpt["config"] = drop(ckpt["config"])
        torch.save(ckpt, run / name)
    res = xaug("evaluate", "--run", run, "--device", "cpu", "--quiet", "--home", store_copy)
    assert res.exit_code == 0, res.output
    if "aug.scale" in dropped:
        aug = TrainConfig.from_stored(json.loads(path.read_text()), where="config.json", fix="").aug
        assert (aug.scale, aug.translate, aug.gamma, aug.black_level, aug.border) == (0.0, 0.0, 0.0, 0.0, "constant")


# ---------------------------------------------------------------- predict --split

@pytest.mark.parametrize("split", ["train", "VAL", ""])
def test_predict_refuses_a_split_its_help_does_not_allow(store_copy, run_copy, tmp_path, split):
    """--split train predicted the val persons silently (anything but test meant val)."""
    out = tmp_path / "sub.csv"
    refused(xaug("predict", "--run", run_copy, "--split", split, "--out", out, "--home", store_copy),
            f"--split: unknown split {split!r}; use test or val")
    assert not out.exists()


# ---------------------------------------------------------------- a file for a folder, empty names

@pytest.mark.parametrize("fmt, first", [
    ("competition", "{file}: is a file, not a folder; give the folder that holds train/DCM and train/outputs_json"),
    ("coco", "{file}: is a file, not a folder; give the folder that holds the COCO images (a COCO .json file "
             "goes to --coco-json)"),
])
def test_import_of_a_file_says_it_is_a_file(tmp_path, fmt, first):
    """It said 'no such folder' of a file that exists."""
    file = tmp_path / "data.json"
    file.write_text("{}")
    home = tmp_path / "home"
    refused(xaug("import", file, "--format", fmt, "--home", home), first.format(file=file))
    assert not (home / "refs.json").exists()


@pytest.mark.parametrize("args, first", [
    (["evaluate", "--run", ""], "--run: is empty; give a run name"),
    (["predict", "--run", " "], "--run: is empty; give a run name"),
    (["errors", "--run", ""], "--run: is empty; give a run name"),
    (["train", "--dataset", "raw", "--run", "", "--size", "32"], "--run: is empty; give a run name"),
    (["compare", "{run}", ""], "RUNS: is empty; give a run name"),
    (["overlay", "raw", "", "--out", "{tmp}/o.png"], "ITEM: is empty; give an item's relative path, file name or stem"),
], ids=["evaluate", "predict", "errors", "train", "compare", "overlay"])
def test_an_empty_run_or_item_names_the_argument(store_copy, run_copy, tmp_path, args, first):
    """`--run ""` was 'runs: not a run folder' (train would have written into runs/ itself); an
    empty overlay item named nothing."""
    before = snapshot(store_copy)
    args = [a.format(run=run_copy, tmp=tmp_path) for a in args]
    refused(xaug(*args, "--home", store_copy), first)
    assert not (tmp_path / "o.png").exists()
    unchanged(store_copy, before)


# ---------------------------------------------------------------- --angles items

@pytest.mark.parametrize("angles, first", [
    ("1,,2", "--angles: '1,,2' has an empty item between commas; give each angle once"),
    ("1,2,", "--angles: '1,2,' has an empty item between commas"),
    (",5", "--angles: ',5' has an empty item between commas"),
    ("", "--angles: angles is empty; give at least one angle or leave it out"),
    ("1,x", "--angles: expected a comma-separated list of degrees"),
])
def test_rotate_angles_with_an_empty_item_are_refused_naming_the_flag(store_copy, angles, first):
    """'1,,2' silently became [1, 2]; an empty list was blamed on `steps.0`."""
    before = snapshot(store_copy)
    refused(xaug("rotate", "--angles", angles, "--home", store_copy), first)
    unchanged(store_copy, before)


@pytest.mark.parametrize("text, angles", [("1,2", [1.0, 2.0]), ("1, 2", [1.0, 2.0]), ("1 2", [1.0, 2.0]),
                                          (" -30 , 15 ", [-30.0, 15.0]), ("20", [20.0])])
def test_angle_lists_without_empty_items_parse_as_before(text, angles):
    from xaug.pipeline import parse_pipeline

    spec = parse_pipeline({"steps": [{"op": "rotate", "angles": text}]})
    assert spec.steps[0].angles == angles


def test_an_empty_angle_item_in_a_pipeline_file_names_the_key():
    from xaug.errors import BadInput
    from xaug.pipeline import parse_pipeline

    with pytest.raises(BadInput) as exc:
        parse_pipeline({"steps": [{"op": "rotate", "angles": "1,,2"}]})
    assert exc.value.problems[0].startswith("steps.0.angles: '1,,2' has an empty item")


# ---------------------------------------------------------------- seeds: 0 to 2**32 - 1 everywhere

@pytest.mark.parametrize("seed", [SEED_MAX + 1, 10**20, -1])
@pytest.mark.parametrize("args, first", [
    (["rotate", "--angles", "5", "--seed"], "--seed: Input should be"),
    (["synth", "--persons", "2", "--seed"], "synth: --seed must be 0 to 2**32 - 1, got"),
    (["import", "{tmp}", "--split-seed"], "import: --split-seed must be 0 to 2**32 - 1, got"),
    (["import", "{tmp}", "--format", "coco", "--split-seed"], "import: --split-seed must be 0 to 2**32 - 1, got"),
    (["train", "--dataset", "raw", "--size", "32", "--depth", "2", "--run", "{tmp}/r", "--seed"],
     "--seed: seed must be 0 to 2**32 - 1, got"),
], ids=["pipeline-flag", "synth", "import", "import-coco", "train"])
def test_a_seed_above_2_32_is_refused_wherever_it_is_read(store_copy, tmp_path, args, first, seed):
    """--seed had no upper bound (a 20-digit train seed was a torch traceback); --split-seed stopped
    at 2**32 - 1."""
    before = snapshot(store_copy)
    args = [a.format(tmp=tmp_path) for a in args]
    refused(xaug(*args, seed, "--home", store_copy), first)
    unchanged(store_copy, before)
    assert not (tmp_path / "r").exists()


ABLATION = {"name": "a", "synth": {}, "candidates": [{"name": "rot", "version": "rot"}], "train": {"steps": 10}}


@pytest.mark.parametrize("seed, ok", [(SEED_MAX, True), (SEED_MAX + 1, False)])
def test_pipeline_and_ablation_seeds_share_the_bound(seed, ok):
    from pydantic import ValidationError

    from trainer.ablate import parse_ablation
    from trainer.config import TrainConfig
    from xaug.errors import BadInput, XaugError
    from xaug.pipeline import parse_pipeline

    cases = [
        lambda: parse_pipeline({"seed": seed, "steps": [{"op": "flip"}]}),
        lambda: parse_ablation({**ABLATION, "synth": {"seed": seed}}),
        lambda: parse_ablation({**ABLATION, "seeds": [seed]}),
        lambda: parse_ablation({**ABLATION, "bootstrap": {"seed": seed}}),
        lambda: TrainConfig(seed=seed),
    ]
    for case in cases:
        if ok:
            case()
        else:
            with pytest.raises((BadInput, XaugError, ValidationError)):
                case()
