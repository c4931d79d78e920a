"""Pipeline files, numeric options, resource bounds and OS errors: each bad case is one line,
exit 2, nothing half-done, and the store unchanged."""
from __future__ import annotations

import errno
import json
import os
import shutil
from collections import namedtuple
from pathlib import Path

import pytest

from _hardening import refused, snapshot, unchanged, xaug

LAUGHS = "".join(f"{c}: &{c} [{', '.join(['*' + p] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi"))
BILLION_LAUGHS = 'a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n' + LAUGHS + "steps: *i\n"


@pytest.mark.parametrize("text, first", [
    (BILLION_LAUGHS, "{file}:5: document expands to more than 10,000 values"),
    ("a: &x [1, *x]\n", "{file}:1: an alias refers to its own anchor"),
    ("name: one\nsteps: [{op: flip}]\nname: two\n", "{file}:3: duplicate key 'name' (first at line 1); keep one"),
    ("steps:\n  - op: rotate\n    per_image: 2\n    per_image: 3\n",
     "{file}:4: duplicate key 'per_image' (first at line 3)"),
    ("[" * 2000 + "]" * 2000, "{file}"),
], ids=["billion-laughs", "self-alias", "duplicate-top-key", "duplicate-step-key", "deep-nesting"])
def test_pipeline_yaml_bombs_and_duplicate_keys_are_refused(store_copy, tmp_path, text, first):
    file = tmp_path / "p.yaml"
    file.write_text(text)
    before = snapshot(store_copy)
    for command in (["run", file], ["run", file, "--check"]):
        refused(xaug(*command, "--home", store_copy), first.format(file=file))
    unchanged(store_copy, before)


@pytest.mark.parametrize("make, first", [
    (lambda f: f.mkdir(), "{file}: is a folder; give a pipeline file (a YAML file such as pipelines/rotate.yaml)"),
    (lambda f: f.write_bytes(b"\xff\xfe\x00\x01binary"), "{file}: is not UTF-8 text (byte 0xff at offset 0); "
                                                        "a pipeline file is YAML text: save it as UTF-8"),
    (lambda f: f.write_bytes("name: caf\u00e9\n".encode("latin-1")), "{file}: is not UTF-8 text (byte 0xe9 at offset 9)"),
], ids=["folder", "binary", "latin-1"])
def test_a_pipeline_file_that_is_no_text_file_is_one_line_saying_what_to_do(store_copy, tmp_path, make, first):
    file = tmp_path / "p.yaml"
    make(file)
    before = snapshot(store_copy)
    refused(xaug("run", file, "--home", store_copy), first.format(file=file))
    unchanged(store_copy, before)


@pytest.mark.parametrize("args, env, first", [
    (["rotate", "--jobs", "0"], {}, "xaug rotate: Invalid value for '--jobs' / '-j': Input should be greater than"),
    (["mosaic", "-j", "-3"], {}, "xaug mosaic: Invalid value for '--jobs' / '-j'"),
    (["rotate"], {"XAUG_BACKEND": "dsk"}, "$XAUG_BACKEND: unknown backend 'dsk' (did you mean dask?)"),
    (["rotate"], {"XAUG_STORAGE": "x"}, "$XAUG_STORAGE: unknown storage mode 'x'; one of: auto, shared, bytes"),
    (["rotate", "--storage", "x"], {"XAUG_STORAGE": "bytes"}, "--storage: unknown storage mode 'x'"),
])
def test_worker_counts_and_backend_settings_name_where_they_came_from(store_copy, monkeypatch, args, env, first):
    """--jobs 0 or -3 silently meant all cores; a bad $XAUG_BACKEND was blamed on --backend."""
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    before = snapshot(store_copy)
    refused(xaug(*args, "--home", store_copy), first)
    unchanged(store_copy, before)


@pytest.mark.parametrize("args, first", [
    (["mosaic", "--beta", "nan"], "--beta: Input should be a finite number"),
    (["mosaic", "--beta", "inf"], "--beta: Input should be a finite number"),
    (["mosaic", "--beta", "1e-9"], "--beta: beta 1e-09 is below 0.01"),
    (["mosaic", "--beta", "1e9"], "--beta: Input should be less than or equal to 100"),
    (["mosaic", "--n", "10000000"], "--n: Input should be less than or equal to 1000000"),
    (["mosaic", "--n", "0"], "--n: Input should be greater than or equal to 1"),
    (["rotate", "--per-image", "1000"], "--per-image: Input should be less than or equal to 100"),
    (["rotate", "--angles", "nan:1"], "--angles: cannot read 'nan:1'"),
    (["rotate", "--angles", "-1000:10"], "--angles: angle_range must lie within -360..360 degrees"),
    (["rotate", "--angles", "5,9999"], "--angles: every angle must be a number within -360..360 degrees"),
    (["synth", "--persons", "2", "--rotated-train", "nan"], "synth: --rotated-train is a fraction"),
    (["synth", "--persons", "2", "--size", "100000"], "synth: --size must be between 64 and 8192"),
    (["synth", "--persons", "2", "--seed", "-1"], "synth: --seed must be 0 to 2**32 - 1, got -1"),
    (["train", "--dataset", "raw", "--lr", "nan"], "--lr: lr must be a finite number >= 0, got nan"),
    (["train", "--dataset", "raw", "--lr", "0"], "--lr: lr must be > 0"),
])
def test_absurd_numeric_options_are_refused_by_the_spec(store_copy, args, first):
    before = snapshot(store_copy)
    refused(xaug(*args, "--home", store_copy), first)
    unchanged(store_copy, before)


@pytest.mark.parametrize("step, first", [
    ("{op: mosaic, beta: .nan}", "steps.0.beta: Input should be a finite number"),
    ("{op: mosaic, size: [0, 5]}", "steps.0.size: size must be positive"),
    ("{op: mosaic, size: [100000, 100000]}", "steps.0.size: size must be positive and at most 8192"),
    ("{op: rotate, angles: [.inf]}", "steps.0.angles: every angle must be a number within -360..360"),
    ("{op: rotate, band_width: .inf}", "steps.0.band_width: Input should be a finite number"),
    ("{op: flip, min_area: -1}", "steps.0.min_area: Input should be greater than or equal to 0"),
    # a boolean or a fraction where a count or number belongs was read as 1 (or cut) and run
    ("{op: mosaic, n: true}", "steps.0.n: Input should be a valid integer, got true"),
    ("{op: mosaic, n: 2.5}", "steps.0.n: Input should be a valid integer, got 2.5"),
    ("{op: mosaic, grid: [true, 2]}", "steps.0.grid.0: Input should be a valid integer, got true"),
    ("{op: rotate, per_image: true}", "steps.0.per_image: Input should be a valid integer, got true"),
    ("{op: rotate, angles: [1, false]}", "steps.0.angles.1: Input should be a valid number, got false"),
    ("{op: rotate, angle_range: [true, 5]}", "steps.0.angle_range.0: Input should be a valid number, got true"),
    ("{op: rotate, fill: true}", "steps.0.fill: fill must be 'texture', 'background' or a pixel value 0..255, got true"),
    ("{op: rotate, fill: purple}", "steps.0.fill: fill must be 'texture', 'background' or a pixel value 0..255, "
                                   "got 'purple'"),
    ("{op: flip, min_area: true}", "steps.0.min_area: Input should be a valid number, got true"),
])
def test_absurd_numbers_in_a_pipeline_file(store_copy, tmp_path, step, first):
    res = _refused_pipeline(store_copy, tmp_path, f"steps: [{step}]\n")
    assert f"error: {first}" in res.stderr, res.stderr


def _refused_pipeline(home, tmp_path, text: str):
    """`xaug run` of a pipeline file with `text`: refused (exit 2, no traceback), the store as it was."""
    file = tmp_path / "p.yaml"
    file.write_text(text)
    before = snapshot(home)
    res = xaug("run", file, "--home", home)
    assert res.exit_code == 2 and "Traceback" not in res.output, res.output
    unchanged(home, before)
    return res


@pytest.mark.parametrize("top, first", [
    ("seed: true", "seed: Input should be a valid integer, got true (line 1)"),
    ("include_source: 1", "include_source: Input should be a valid boolean, got 1 (line 1)"),
    ("name: 7", "name: Input should be a valid string, got 7 (line 1)"),
])
def test_ill_typed_top_level_pipeline_keys(store_copy, tmp_path, top, first):
    res = _refused_pipeline(store_copy, tmp_path, f"{top}\nsteps: [{{op: flip}}]\n")
    assert f"error: {first}" in res.stderr.splitlines(), res.stderr


def test_ill_typed_values_in_an_ablation_spec_name_the_key(tmp_path):
    file = tmp_path / "a.yaml"
    file.write_text("name: a\ndataset: raw\ncandidates: [{name: c, version: raw}]\n"
                    "train: {steps: true, lr: .nan}\nseeds: [0, false]\n")
    res = xaug("ablate", file, "--check", "--home", tmp_path / "home")
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert "error: train.steps: Input should be a valid integer, got true (line 4)" in res.stderr.splitlines()


Usage = namedtuple("Usage", "total used free")


def _free(monkeypatch, free: int) -> None:
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda p: Usage(real(p).total, real(p).used, free))


@pytest.mark.parametrize("args, what", [
    (["mosaic", "--n", "1000"], "1,000 new items needs about "),
    (["rotate", "--per-image", "50"], "400 new items needs about "),
    (["synth", "--persons", "400", "--size", "2048"], "1,100 synthetic images needs about 4.2 GB"),
])
def test_work_that_does_not_fit_the_disk_is_refused_before_it_starts(store_copy, monkeypatch, args, what):
    _free(monkeypatch, 10 << 20)
    before = snapshot(store_copy)
    line = refused(xaug(*args, "--home", store_copy), f"{store_copy}: {what}")
    assert "is free on the store's disk; free space" in line
    assert not (store_copy / "staging").exists() or not any((store_copy / "staging").iterdir())
    unchanged(store_copy, before)


def test_planning_memory_is_checked_before_planning(store_copy, monkeypatch):
    import xaug.pipeline as pipeline

    monkeypatch.setattr(pipeline, "_available_memory", lambda: 100 << 20)
    before = snapshot(store_copy)
    refused(xaug("mosaic", "--n", "1000000", "--home", store_copy),
            "mosaic: planning 1,000,000 items needs about 2.5 GB of memory but only 104.9 MB is available")
    unchanged(store_copy, before)


# ---------------------------------------------------------------- output paths and OS errors


def test_export_destinations(store_copy, tmp_path, monkeypatch):
    before = snapshot(store_copy)
    a_file = tmp_path / "file"
    a_file.write_text("x")
    full = tmp_path / "full"
    (full / "keep").mkdir(parents=True)
    refused(xaug("export", "raw", a_file, "--home", store_copy), f"{a_file}: is a file; give a new folder")
    refused(xaug("export", "raw", full, "--home", store_copy), f"{full}: folder exists and is not empty")
    inside = store_copy / "versions" / "out"
    refused(xaug("export", "raw", inside, "--home", store_copy), f"{inside}: is inside the store")
    refused(xaug("export", "raw", store_copy.parent, "--home", store_copy), f"{store_copy.parent}: folder exists")
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == tmp_path else real_access(p, mode))
    refused(xaug("export", "raw", tmp_path / "new", "--home", store_copy), f"{tmp_path / 'new'}: cannot write in")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "full", "store"]
    unchanged(store_copy, before)


def test_no_space_left_during_export_leaves_nothing(store_copy, tmp_path, monkeypatch):
    calls = {"n": 0}
    real = Path.write_bytes

    def write_bytes(self, data):
        calls["n"] += 1
        if calls["n"] == 5:
            raise OSError(errno.ENOSPC, "No space left on device", str(self))
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", write_bytes)
    before = snapshot(store_copy)
    res = xaug("export", "raw", tmp_path / "out", "--home", store_copy, "--quiet")
    line = refused(res, f"{tmp_path}/.out.xaug-export/")
    assert line.endswith("no space left on the device; free some space and run the same command again "
                         "(finished work is kept)")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store"]  # no half-written export
    unchanged(store_copy, before)


def test_a_read_only_store_is_one_line(store_copy, tmp_path, monkeypatch):
    from _layout import make_layout

    root = make_layout(tmp_path / "src", persons=2, size=16)
    real_mkdir = Path.mkdir

    def mkdir(self, *args, **kwargs):
        if str(self).startswith(str(store_copy)):
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", mkdir)
    before = snapshot(store_copy)
    line = refused(xaug("import", root, "--name", "more", "--home", store_copy, "--quiet"), f"{store_copy}/")
    assert line.endswith("the file system is read-only; use a writable --home or output folder")
    unchanged(store_copy, before)


def _run_folder(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"val_dataset": "raw", "size": 32}))
    return run


def test_predict_out_is_checked_before_inference(store_copy, tmp_path, monkeypatch):
    run = _run_folder(tmp_path)  # no checkpoint: reaching inference would fail differently
    before = snapshot(store_copy)
    folder = tmp_path / "adir"
    folder.mkdir()
    refused(xaug("predict", "--run", run, "--out", folder, "--home", store_copy),
            f"--out {folder}: is a folder; give a file path such as submission.csv")
    inside = store_copy / "sub.csv"
    refused(xaug("predict", "--run", run, "--out", inside, "--home", store_copy),
            f"--out {inside}: is inside the store")
    blocked = tmp_path / "afile" / "sub.csv"
    (tmp_path / "afile").write_text("x")
    refused(xaug("predict", "--run", run, "--out", blocked, "--home", store_copy), f"--out {blocked}: ")
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == tmp_path else real_access(p, mode))
    refused(xaug("predict", "--run", run, "--out", tmp_path / "sub.csv", "--home", store_copy),
            f"--out {tmp_path / 'sub.csv'}: cannot write in {tmp_path}")
    assert not list(tmp_path.glob("*.tmp")) and not (tmp_path / "sub.csv").exists()
    unchanged(store_copy, before)


def test_train_run_is_checked_before_training(store_copy, tmp_path):
    before = snapshot(store_copy)
    a_file = tmp_path / "run"
    a_file.write_text("x")
    common = ["--dataset", "raw", "--epochs", "1", "--size", "32", "--device", "cpu", "--home", store_copy]
    refused(xaug("train", "--run", a_file, *common), f"--run {a_file}: is a file, not a folder")
    inside = store_copy / "runs" / "r"
    refused(xaug("train", "--run", inside, *common), f"--run {inside}: is inside the store")
    assert not inside.exists()
    unchanged(store_copy, before)


def test_import_split_options(tmp_path):
    from _layout import make_layout

    root = make_layout(tmp_path / "src", persons=2, size=16)  # one man, one woman
    home = tmp_path / "home"
    refused(xaug("import", root, "--split-seed", "-5", "--home", home), "import: --split-seed must be 0 to 2**32 - 1")
    refused(xaug("import", root, "--folds", "1000", "--home", home), "import: --folds is the k of a k-fold split")
    assert not (home / "refs.json").exists()
    res = xaug("import", root, "--folds", "1", "--home", home, "--quiet")  # was a scikit-learn traceback
    assert res.exit_code == 0, res.output


def test_no_space_left_during_an_import_is_one_line_and_registers_nothing(tmp_path, monkeypatch):
    from _layout import make_layout

    root = make_layout(tmp_path / "src", persons=2, size=16)
    home = tmp_path / "home"
    calls = {"n": 0}
    real = shutil.copyfile

    def copyfile(src, dst, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            Path(dst).write_bytes(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device", str(dst))
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(shutil, "copyfile", copyfile)
    line = refused(xaug("import", root, "--home", home, "--quiet"), f"{home}/staging/")
    assert line.endswith("no space left on the device; free some space and run the same command again "
                         "(finished work is kept)")
    assert not (home / "refs.json").exists() and not list(home.rglob("*.tmp"))
    monkeypatch.setattr(shutil, "copyfile", real)
    res = xaug("import", root, "--home", home, "--quiet")  # after freeing space: finishes the work
    assert res.exit_code == 0 and "raw_v1" in res.stdout


@pytest.mark.parametrize("args, first", [
    (["--size", "100000"], "--size: size 100,000 is above 8,192; the input side is at most the images'"),
    (["--batch", "1000000"], "--batch: batch 1,000,000 is above 4,096; use a batch that fits the memory"),
    (["--epochs", "100000000000"], "--epochs: epochs 100,000,000,000 is above 100,000; train for fewer epochs"),
    (["--width", "100000"], "--width: width 100,000 is above 1,024; use 16 to 64 channels"),
    (["--blocks", "1000", "--arch", "resunet"], "--blocks: blocks 1,000 is above 32"),
])
def test_absurdly_large_training_options_are_refused_before_any_work(store_copy, tmp_path, args, first):
    """A typo such as an extra zero in --size would allocate tens of gigabytes (the kernel kills the
    run, or the machine swaps); refused before an image is decoded or the run folder made."""
    before = snapshot(store_copy)
    run = tmp_path / "run"
    defaults = {"--size": "64", "--epochs": "1", "--batch": "2", "--depth": "2"}
    given = dict(zip(args[::2], args[1::2]))
    rest = [x for k, v in defaults.items() if k not in given for x in (k, v)]
    refused(xaug("train", "--dataset", "raw", "--run", run, *args, *rest, "--device", "cpu", "--workers", "0",
                 "--home", store_copy, "-q"), first)
    assert not run.exists()
    unchanged(store_copy, before)


def test_a_training_run_larger_than_the_memory_is_refused_before_decoding(store_copy, tmp_path, monkeypatch):
    import xaug.pipeline as pipeline

    monkeypatch.setattr(pipeline, "_available_memory", lambda: 100 << 20)
    before = snapshot(store_copy)
    run = tmp_path / "run"
    line = refused(xaug("train", "--dataset", "raw", "--run", run, "--size", "2048", "--batch", "8", "--epochs", "1",
                        "--device", "cpu", "--workers", "0", "--home", store_copy, "-q"),
                   "--size: 12 images at 2048 px in batches of 8 need at least 2.3 GB")
    assert line.endswith("of memory but only 104.9 MB is available; use a smaller --size or --batch")
    assert not run.exists()
    unchanged(store_copy, before)


def _stem(home: Path) -> str:
    from xaug.store import Store

    return Store(home).open("raw").samples(load=False)[0].stem


@pytest.mark.parametrize("out, first", [
    ("{tmp}/o.txt", "--out {tmp}/o.txt: is not a .png or .jpg file name; give one such as overlay.png"),
    ("{tmp}/o", "--out {tmp}/o: is not a .png or .jpg file name"),
    ("{tmp}", "--out {tmp}: is not a .png or .jpg file name"),
    ("{tmp}/afile/o.png", "--out {tmp}/afile/o.png: {tmp}/afile is a file, not a folder; choose another path"),
    ("{home}/o.png", "--out {home}/o.png: is inside the store {home}; write outputs elsewhere"),
], ids=["txt", "no-suffix", "folder", "under-a-file", "in-store"])
def test_overlay_out_is_checked_before_drawing(store_copy, tmp_path, out, first):
    """A .txt suffix was an OpenCV traceback; a path inside the store wrote an unlisted file there."""
    (tmp_path / "afile").write_text("x")
    before = snapshot(store_copy)
    fill = dict(tmp=tmp_path, home=store_copy)
    refused(xaug("overlay", "raw", _stem(store_copy), "--out", out.format(**fill), "--home", store_copy),
            first.format(**fill))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "store"]
    unchanged(store_copy, before)


@pytest.mark.parametrize("command", ["eda", "errors"])
def test_report_folders_are_refused_inside_the_store_or_on_a_file(store_copy, tmp_path, command):
    """eda and errors wrote their HTML and PNGs into the store (files no manifest lists)."""
    run = _run_folder(tmp_path)  # no checkpoint: reaching inference would fail differently
    (tmp_path / "afile").write_text("x")
    before = snapshot(store_copy)
    head = ["eda", "raw", "-j", "1"] if command == "eda" else ["errors", "--run", run, "--device", "cpu"]
    for out, first in ((store_copy / "reports", f"--out {store_copy / 'reports'}: is inside the store "),
                       (tmp_path / "afile", f"--out {tmp_path / 'afile'}: is a file, not a folder")):
        refused(xaug(*head, "--out", out, "--home", store_copy, "-q"), first)
    unchanged(store_copy, before)
