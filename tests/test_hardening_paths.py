"""Paths come only from inside the store: manifests, refs.json, run folders. Each bad input is
refused with one line naming the file and what to do (exit 2), and the store is left unchanged."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from _hardening import add_copy, refused, republish, snapshot, unchanged, xaug
from xaug.errors import BadInput
from xaug.store import Store, check_relpath


@pytest.mark.parametrize("rel", ["../../../x.png", "/etc/passwd", "train/../../x.png", "train//DCM/x.png",
                                 "C:/x.png", "train\\..\\x.png", "./x.png", "", "a\x00b"])
def test_unsafe_relpaths_are_refused(rel):
    with pytest.raises(BadInput, match="unsafe path"):
        check_relpath(rel, "m")


def _escape(tmp_path: Path):
    """An edit pointing the first image at a file outside the store (a PNG the attacker wants read)."""
    secret = tmp_path / "outside" / "secret.png"
    secret.parent.mkdir()
    secret.write_bytes(b"\x89PNG\r\n\x1a\n not really")

    def edit(manifest):
        manifest["items"][0]["image"]["path"] = "../../../../outside/secret.png"

    return secret, edit


@pytest.mark.parametrize("command", [
    ["export", "raw", "{tmp}/out"], ["show", "raw"], ["rotate", "--jobs", "1"], ["verify", "raw"],
    ["train", "--dataset", "raw", "--epochs", "1", "--size", "32", "--run", "{tmp}/run", "--device", "cpu"],
])
def test_a_manifest_path_leading_outside_is_refused_by_every_command(store_copy, tmp_path, command):
    secret, edit = _escape(tmp_path)
    add_copy(store_copy)  # a healthy version next to the damaged one
    new_id = republish(store_copy, "raw", edit)
    before = snapshot(store_copy)
    args = [a.replace("{tmp}", str(tmp_path)) for a in command]
    res = xaug(*args, "--home", store_copy)
    line = refused(res, f"{store_copy}/versions/{new_id}/manifest.json: ")
    assert "unsafe path '../../../../outside/secret.png'" in line
    assert not (tmp_path / "out").exists() and not (tmp_path / "run").exists()
    assert snapshot(store_copy) == before and secret.read_bytes().endswith(b"not really")
    # the healthy version is still listed (the damaged one named on stderr) and usable
    res = xaug("datasets", "--json", "--home", store_copy)
    assert res.exit_code == 0 and [r["name"] for r in json.loads(res.stdout)] == ["copy_v1"]
    assert res.stderr.startswith("warning: raw_v1: ") and "unsafe path" in res.stderr


def test_a_symlink_leading_out_of_the_store_is_refused(store_copy, tmp_path):
    store = Store(store_copy)
    ds = store.open("raw")
    it = ds.items[0]
    path = ds.file_path(it["image"], None)
    outside = tmp_path / "elsewhere.png"
    shutil.copyfile(path, outside)  # same bytes: only the path gives it away
    path.unlink()
    os.symlink(outside, path)
    before = snapshot(store_copy)
    res = xaug("export", "raw", tmp_path / "out", "--home", store_copy)
    refused(res, f"raw_v1: '{it['image']['path']}': path ")
    assert "leads outside its folder" in res.stderr and not (tmp_path / "out").exists()
    assert snapshot(store_copy) == before
    assert any(p.startswith("unsafe: ") for p in Store(store_copy).verify("raw"))


@pytest.mark.parametrize("refs, first", [
    ("{not json", "{home}/refs.json: not valid JSON: the store's list of names is damaged; restore"),
    ('{"raw": ["../../etc"]}', "{home}/refs.json: raw: version ids must be 64 hex digits"),
    ('{"raw": "abc"}', "{home}/refs.json: raw: version ids must be 64 hex digits"),
    ('{"../x": []}', "{home}/refs.json: '../x' is not a dataset name"),
    ('[1, 2]', "{home}/refs.json: not a mapping of names to version ids"),
])
@pytest.mark.parametrize("command", [["datasets"], ["show", "raw"], ["rotate", "--jobs", "1"]])
def test_a_damaged_refs_json_is_one_line_and_nothing_is_written(store_copy, refs, first, command):
    (store_copy / "refs.json").write_text(refs)
    before = snapshot(store_copy)
    res = xaug(*command, "--home", store_copy)
    refused(res, first.format(home=store_copy))
    assert snapshot(store_copy) == before


def test_refs_naming_a_version_that_does_not_exist(store_copy):
    add_copy(store_copy)
    refs = json.loads((store_copy / "refs.json").read_text())
    refs["ghost"] = ["0" * 64]
    (store_copy / "refs.json").write_text(json.dumps(refs))
    before = snapshot(store_copy)
    res = xaug("show", "ghost", "--home", store_copy)
    refused(res, f"{store_copy}/versions/{'0' * 64}/manifest.json: version listed in refs.json has no manifest")
    res = xaug("datasets", "--json", "--home", store_copy)
    assert res.exit_code == 0 and [r["name"] for r in json.loads(res.stdout)] == ["copy_v1", "raw_v1"]
    assert "warning: ghost_v1: " in res.stderr
    unchanged(store_copy, before, ("raw", "copy"))


@pytest.mark.parametrize("content, first", [
    ("{broken", "manifest is not valid JSON"),
    ('{"items": 3}', "not a manifest"),
    ('{"items": [{"image": {"path": "x.png", "sha256": "00", "size": 1}}], "files": []}', "items.0.image.sha256"),
])
def test_a_corrupt_manifest_names_the_file_and_the_store_lists_the_rest(store_copy, content, first):
    add_copy(store_copy)
    store = Store(store_copy)
    copy = store.open("copy")
    (store.version_dir(copy.id) / "manifest.json").write_text(content)
    before = snapshot(store_copy)
    res = xaug("show", "copy", "--home", store_copy)
    line = refused(res, f"{store_copy}/versions/{copy.id}/manifest.json: {first}")
    assert "the version is damaged" in line
    res = xaug("datasets", "--home", store_copy)
    assert res.exit_code == 0 and "raw_v1" in res.stdout and "copy_v1" not in res.stdout
    assert res.stderr.startswith(f"warning: copy_v1: {store_copy}/versions/{copy.id}/manifest.json")
    unchanged(store_copy, before)


def test_home_that_is_a_file(tmp_path):
    home = tmp_path / "home"
    home.write_text("not a store")
    for command in (["datasets"], ["show", "raw"], ["rotate"], ["import", str(tmp_path)]):
        refused(xaug(*command, "--home", home), f"{home}: is a file, not a store folder")
    assert home.read_text() == "not a store"


# ---------------------------------------------------------------- run folders


def _run_folder(tmp_path: Path, config: str | None = "{}", best: bytes | None = None, last: bytes | None = None):
    run = tmp_path / "run"
    run.mkdir()
    if config is not None:
        (run / "config.json").write_text(config)
    if best is not None:
        (run / "best.pt").write_bytes(best)
    if last is not None:
        (run / "last.pt").write_bytes(last)
    return run


@pytest.mark.parametrize("config, first", [
    ("{broken", "{run}/config.json: config.json is damaged (not valid JSON); start a new run"),
    ("[]", "{run}/config.json: config.json is damaged (not an object)"),
    ('{"val_id": "../../x"}', "{run}/config.json: config.json: val_id is not a version id"),
    ('{"size": 1e999}', "{run}/config.json: config.json: size"),
])
@pytest.mark.parametrize("command", ["evaluate", "predict"])
def test_a_damaged_run_config_is_one_line(store_copy, tmp_path, config, first, command):
    run = _run_folder(tmp_path, config)
    before = snapshot(store_copy)
    res = xaug(command, "--run", run, "--device", "cpu", "--home", store_copy)
    refused(res, first.format(run=run))
    unchanged(store_copy, before)


def test_a_damaged_checkpoint_is_one_line(store_copy, tmp_path):
    run = _run_folder(tmp_path, json.dumps({"val_dataset": "raw"}), best=b"not a checkpoint")
    res = xaug("evaluate", "--run", run, "--device", "cpu", "--home", store_copy)
    refused(res, f"{run}/best.pt: checkpoint best.pt is damaged (")
    res = xaug("predict", "--run", run, "--device", "cpu", "--out", tmp_path / "sub.csv", "--home", store_copy)
    refused(res, f"{run}/best.pt: checkpoint best.pt is damaged (")
    assert not list(tmp_path.glob("sub.csv*"))


def test_resume_from_a_damaged_last_checkpoint_says_start_a_new_run(store_copy, tmp_path):
    run = _run_folder(tmp_path, "{}", last=b"\x80\x04garbage")
    before = snapshot(store_copy)
    res = xaug("train", "--dataset", "raw", "--run", run, "--resume", "--epochs", "1", "--size", "32",
               "--device", "cpu", "--home", store_copy)
    line = refused(res, f"{run}/last.pt: checkpoint last.pt is damaged (")
    assert "--resume is impossible: start a new run" in line
    assert sorted(p.name for p in run.iterdir()) == ["config.json", "last.pt"]
    unchanged(store_copy, before)


# ---------------------------------------------------------------- caches and run outputs


def test_a_damaged_hash_cache_or_split_cache_is_rebuilt(tmp_path):
    from _layout import make_layout

    root = make_layout(tmp_path / "src", persons=2, size=16)
    home = tmp_path / "home"
    assert xaug("import", root, "--home", home, "--quiet").exit_code == 0
    (home / "cache" / "hashes.sqlite").write_bytes(b"not a database")
    for split in (home / "cache" / "splits").glob("*.json"):
        split.write_text("{broken")
    res = xaug("import", root, "--home", home, "--quiet")
    assert res.exit_code == 0 and "unchanged, already" in res.stdout, res.output
    assert (home / "cache" / "hashes.sqlite.damaged").is_file()
    res = xaug("import", root, "--home", home, "--quiet")
    assert res.exit_code == 0 and "hashed 0 files" in res.stdout  # the new cache works


def test_a_damaged_evaluation_is_one_line(tmp_path):
    run = _run_folder(tmp_path)
    (run / "eval_raw_v1_val.json").write_text("{broken")
    refused(xaug("compare", run, run), f"{run}/eval_raw_v1_val.json: eval_raw_v1_val.json is damaged")


def test_a_version_folder_that_is_a_link_out_of_the_store_is_refused(store_copy, tmp_path):
    store = Store(store_copy)
    ds = store.open("raw")
    elsewhere = tmp_path / "elsewhere"
    shutil.move(store.version_dir(ds.id), elsewhere)
    os.symlink(elsewhere, store.version_dir(ds.id))
    before = snapshot(store_copy)
    refused(xaug("export", "raw", tmp_path / "out", "--home", store_copy, "--quiet"),
            f"{store.version_dir(ds.id)}: the folder of version {ds.id[:12]} leads outside the store")
    assert snapshot(store_copy) == before and not (tmp_path / "out").exists()


def test_resume_after_a_kill_cut_the_metrics_line_short(tmp_path):
    from trainer.loop import read_metrics

    (tmp_path / "metrics.jsonl").write_text('{"epoch": 1, "train_loss": 0.5}\n{"epoch": 2, "train_lo')
    assert read_metrics(tmp_path) == [{"epoch": 1, "train_loss": 0.5}]  # was a JSONDecodeError on --resume


def test_an_ablation_spec_is_read_as_safely_as_a_pipeline(tmp_path):
    """One YAML reader for every spec: a billion-laughs ablation file or a repeated key is refused."""
    from trainer.ablate import load_ablation

    laughs = tmp_path / "laughs.yaml"
    lines = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    laughs.write_text("\n".join(lines) + "\n")
    with pytest.raises(BadInput, match="document expands to more than 10,000 values .*an ablation spec is only a few dozen values"):
        load_ablation(laughs)
    dup = tmp_path / "dup.yaml"
    dup.write_text("name: a\nname: b\n")
    with pytest.raises(BadInput, match="duplicate key 'name' \\(first at line 1\\)"):
        load_ablation(dup)


@pytest.mark.parametrize("key, value", [("split", 5), ("split", {"val_fold": "x"}), ("info", []), ("kind", 3),
                                        ("items", [{"image": {"path": "x.png", "sha256": "0" * 64, "size": 1}}])])
def test_a_manifest_with_ill_typed_fields_is_refused_even_with_a_matching_id(store_copy, key, value):
    new_id = republish(store_copy, "raw", lambda m: m.update({key: value}))
    before = snapshot(store_copy)
    line = refused(xaug("show", "raw", "--home", store_copy), f"{store_copy}/versions/{new_id}/manifest.json: ")
    assert "the version is damaged" in line
    assert snapshot(store_copy) == before
