"""Trainer-side inputs of the third audit: an ablation arm's `train` block (wrong types in `aug` and
`options`, settings the trainer fills in, `aug: null`), ablate's output folders and --seeds, a
damaged checkpoint under `xaug errors`, compare of a missing run and `--arch ''`. Each bad case is
one line, exit 2, and the store unchanged."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from _hardening import refused, snapshot, unchanged, xaug


SPEC = """name: t
dataset: raw
baseline: {{name: base}}
candidates:
  - name: c
    train: {arm}
  - name: rot
    pipeline: {{include_source: true, steps: [{{op: rotate, pivot: wrist, angles: [-40, 40]}}]}}
seeds: 1
train: {{steps: 2, size: 64, batch: 2, width: 4, depth: 2, workers: 0, aug: {{hflip: 0.0}}, options: {{warmup_epochs: 0.5}}}}
"""


def _spec(tmp_path: Path, arm: str = "{aug: {border: constant}}") -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(SPEC.format(arm=arm))
    return path


ARM_BLOCKS = [
    ("{aug: {scale: x}}", "candidates.0.train (--scale): scale is a probability, between 0 and 1"),
    ("{aug: {scale: null}}", "candidates.0.train (--scale): scale is a probability, between 0 and 1"),
    ("{aug: {hflip: true}}", "candidates.0.train (--hflip): hflip is a probability"),
    ("{aug: {border: [1]}}", "candidates.0.train (aug.border): unknown border [1]; known: constant, replicate"),
    ("{aug: {scale_range: 5}}", "candidates.0.train (aug.scale_range): scale_range must be a pair [low, high] "
                                "of finite numbers, got 5"),
    ("{aug: {scale_range: [1, 2, 3]}}", "candidates.0.train (aug.scale_range): scale_range must be a pair"),
    ("{aug: {gamma_range: [a, b]}}", "candidates.0.train (aug.gamma_range): gamma_range must be a pair"),
    ("{aug: {scale_range: [.nan, 1]}}", "candidates.0.train (aug.scale_range): scale_range must be a pair"),
    ("{aug: {black_level_range: [0, .inf]}}", "candidates.0.train (aug.black_level_range): black_level_range "
                                              "must be a pair"),
    ("{aug: {translate_range: 5}}", "candidates.0.train (aug.translate_range): translate_range is a fraction "
                                    "of the side, from 0 to below 1, got 5"),
    ("{aug: {translate_range: x}}", "candidates.0.train (aug.translate_range): translate_range is a fraction"),
    ("{options: {blocks: '3'}}", 'candidates.0.train.options.blocks: expected an integer, got "3"'),
    ("{options: {max_width: 2.5}}", "candidates.0.train.options.max_width: expected an integer, got 2.5"),
    ("{options: {compile: 'no'}}", 'candidates.0.train.options.compile: expected true or false, got "no"'),
    ("{options: {cache: 5}}", "candidates.0.train.options.cache: expected true or false, got 5"),
    ("{options: {dataset_id: abc}}", "candidates.0.train.options: candidates.0.train.options must not set "
                                     "dataset_id; the trainer fills them in"),
    ("{options: {world_size: 3}}", "candidates.0.train.options: candidates.0.train.options must not set world_size"),
    ("{options: {train_images: 5}}", "candidates.0.train.options: candidates.0.train.options must not set "
                                     "train_images"),
]


@pytest.mark.parametrize("arm, first", ARM_BLOCKS, ids=[a for a, _ in ARM_BLOCKS])
def test_an_arm_train_block_of_the_wrong_type_is_one_line_at_check(store_copy, tmp_path, arm, first):
    """These were tracebacks (TypeError/ValueError in OnlineAug or TrainConfig), or were taken:
    `compile: "no"` compiled, `translate_range: 5` shifted by five sides, `world_size: 3` entered
    the runs' hash and was then overwritten by the trainer."""
    before = snapshot(store_copy)
    refused(xaug("ablate", _spec(tmp_path, arm), "--check", "--home", store_copy), first)
    unchanged(store_copy, before)


def test_an_arm_with_aug_or_options_null_keeps_the_shared_ones(tmp_path):
    """`aug: null` in an arm replaced the shared block's aug (hflip 0.0) by the trainer's defaults."""
    from trainer.ablate import arm_settings, load_ablation

    spec = load_ablation(_spec(tmp_path, "{aug: null, options: null, width: 8}"))
    merged = arm_settings(spec, spec.candidates[0])
    assert (merged.aug, merged.options, merged.width) == ({"hflip": 0.0}, {"warmup_epochs": 0.5}, 8)


@pytest.mark.parametrize("args, first", [
    (["--out", "{afile}"], "--out {afile}: is a file, not a folder; choose another path"),
    (["--runs", "{afile}"], "--runs {afile}: is a file, not a folder; choose another path"),
    (["--out", "{home}/x"], "--out {home}/x: is inside the store {home}; write outputs elsewhere"),
    (["--runs", "{home}/r"], "--runs {home}/r: is inside the store {home}; write outputs elsewhere"),
    (["--seeds", "5"], "--seeds 5: the spec has only 1 seed ({spec}); give --seeds 1 or fewer"),
], ids=["out-file", "runs-file", "out-in-store", "runs-in-store", "seeds-above-spec"])
def test_ablate_outputs_and_seeds_are_checked_before_any_version_is_built(store_copy, tmp_path, args, first):
    """--out or --runs a file or inside the store failed after the `rot` arm's version was built and
    every run trained (--out inside the store was written to); --seeds 5 of a 1-seed spec ran 1 seed."""
    afile = tmp_path / "afile"
    afile.write_text("x")
    spec = _spec(tmp_path)
    fmt = dict(afile=afile, home=store_copy, spec=spec)
    before = snapshot(store_copy)
    refused(xaug("ablate", spec, "--device", "cpu", "--quiet", "--home", store_copy,
                 *[a.format(**fmt) for a in args]), first.format(**fmt))
    unchanged(store_copy, before)


@pytest.fixture(scope="module")
def trained(tiny_home, tmp_path_factory) -> Path:
    from trainer.runs import train_version
    from xaug.store import Store

    run = tmp_path_factory.mktemp("runs") / "r"
    train_version(Store(tiny_home), "raw", run=run, epochs=1, size=64, batch=2, width=4, depth=2, workers=0,
                  device="cpu", progress=False, disk_cache=False)
    return run


def test_errors_on_a_damaged_checkpoint_is_one_line_and_makes_no_folder(store_copy, trained, tmp_path):
    """An empty best.pt under `xaug errors` printed only "Aborted." (click's answer to the EOFError),
    exit 1, and left an empty report folder in the run."""
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    (run / "best.pt").write_bytes(b"")
    before = snapshot(store_copy)
    refused(xaug("errors", "--run", run, "--device", "cpu", "--workers", "0", "--home", store_copy),
            f"{run / 'best.pt'}: checkpoint best.pt is damaged (EOFError)")
    assert not list(run.glob("errors_*"))
    unchanged(store_copy, before)


def test_compare_names_a_missing_run_or_a_file_as_such(store_copy, trained, tmp_path):
    """Both said "no evaluation in the run folder; run `xaug evaluate` first"."""
    afile = tmp_path / "afile"
    afile.write_text("x")
    refused(xaug("compare", tmp_path / "nosuch", trained, "--home", store_copy),
            f"{tmp_path / 'nosuch'}: no such run folder; give a run name")
    refused(xaug("compare", afile, trained, "--home", store_copy), f"{afile}: is a file, not a run folder")


def test_train_arch_empty_is_refused_not_the_default(store_copy, tmp_path):
    """`--arch ''` trained the default model."""
    before = snapshot(store_copy)
    refused(xaug("train", "--dataset", "raw", "--arch", "", "--run", tmp_path / "r", "--device", "cpu",
                 "--home", store_copy), "--arch: unknown arch ''")
    assert not (tmp_path / "r").exists()
    unchanged(store_copy, before)


@pytest.mark.parametrize("command", ["evaluate", "errors", "predict"])
def test_an_unknown_tta_is_refused_before_anything_is_written(store_copy, trained, tmp_path, command):
    """evaluate --tta bogus left eval_<dataset>_val_bogus_images.csv.partial in the run, errors an
    empty report folder (predict already checked it before writing)."""
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    files = sorted(p.name for p in run.iterdir())
    extra = ["--out", tmp_path / "sub.csv"] if command == "predict" else []
    refused(xaug(command, "--run", run, "--tta", "bogus", "--device", "cpu", *extra, "--home", store_copy),
            "--tta: unknown TTA 'bogus'; known: hflip")
    assert sorted(p.name for p in run.iterdir()) == files
    assert not (tmp_path / "sub.csv").exists()


@pytest.mark.parametrize("edit, words", [
    (lambda c: c.__setitem__("aug", None), "aug: expected an object of online augmentation settings, got null"),
    (lambda c: c["aug"].__setitem__("border", "wrap"), "aug.border: unknown border 'wrap'"),
    (lambda c: c["aug"].__setitem__("scale_range", 5), "aug.scale_range: scale_range must be a pair"),
], ids=["aug-null", "border-wrap", "scale-range-5"])
def test_resume_from_a_checkpoint_with_edited_settings_names_the_checkpoint(store_copy, trained, tmp_path, edit, words):
    """`aug: null` in last.pt's config was an AttributeError traceback under --resume; the others
    were one line that did not name last.pt."""
    import torch

    run = tmp_path / "run"
    shutil.copytree(trained, run)
    ckpt = torch.load(run / "last.pt", weights_only=True)
    edit(ckpt["config"])
    torch.save(ckpt, run / "last.pt")
    before = snapshot(store_copy)
    line = refused(xaug("train", "--dataset", "raw", "--run", run, "--resume", "--epochs", "1", "--size", "64",
                        "--width", "4", "--depth", "2", "--batch", "2", "--workers", "0", "--device", "cpu",
                        "--no-disk-cache", "--quiet", "--home", store_copy), f"{run / 'last.pt'}: {words}")
    assert "--resume is impossible" in line
    unchanged(store_copy, before)


@pytest.mark.parametrize("spec, first", [
    ("{arm}", "candidates.0 (c): trains exactly what baseline (base) trains: the same images and settings"),
    ("{version}", "candidates.0 (c): trains exactly what baseline (base) trains"),
], ids=["border-without-zoom", "version-of-the-baseline"])
def test_an_arm_that_trains_what_another_does_is_refused(store_copy, tmp_path, spec, first):
    """`aug: {border: constant}` with zoom and shift off (the border then acts on nothing) and
    `version: raw` (the baseline's images) trained the baseline's runs again and reported +0.0000."""
    text = SPEC.format(arm="{aug: {border: constant}}").replace("aug: {hflip: 0.0}", "aug: {scale: 0, translate: 0}")
    if spec == "{version}":
        text = text.replace("    train: {aug: {border: constant}}", "    version: raw")
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    before = snapshot(store_copy)
    args = ["--check"] if spec == "{arm}" else ["--device", "cpu", "--quiet", "--runs", tmp_path / "runs",
                                                "--out", tmp_path / "out"]
    refused(xaug("ablate", path, *args, "--home", store_copy), first)
    assert not (tmp_path / "runs").exists()
    if spec == "{arm}":
        unchanged(store_copy, before)
