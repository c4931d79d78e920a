"""`xaug diff A B`: items added / removed / changed / unchanged and the lineage between two versions."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import xaug
from xaug.cli import app
from xaug.interop.diff import diff_versions

runner = CliRunner()


def cli(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def home(tiny_home, tmp_path_factory):
    import shutil

    home = tmp_path_factory.mktemp("diff") / "store"
    shutil.copytree(tiny_home, home, ignore=shutil.ignore_patterns("*.lock", "lock"))
    for args in (["flip", "--include-source"], ["rotate", "--angles", "-20:20", "--seed", "0"],
                 ["rotate", "--angles", "-20:20", "--seed", "1"]):
        r = cli(*args, "--jobs", "1", "-q", "--home", home)
        assert r.exit_code == 0, r.output
    return home


def test_derived_version_added_and_unchanged(home):
    raw, flip = xaug.open("raw", home=home), xaug.open("flip", home=home)
    d = diff_versions(raw, flip)
    referenced = {it.path for it in flip if it.stored_in}
    made = {it.path for it in flip if not it.stored_in}
    assert set(d.unchanged) == referenced and set(d.added) == made and not d.changed
    assert set(d.removed) == {it.path for it in raw} - referenced
    assert d.counts["added"] + d.counts["unchanged"] == len(flip)
    assert d.counts["removed"] + d.counts["unchanged"] + d.counts["changed"] == len(raw)
    assert d.relation == "flip_v1 derives from raw_v1 in 1 step"
    assert [(s.name, s.op) for s in d.steps] == [("flip_v1", "flip")]
    back = diff_versions(flip, raw)
    assert back.relation == "flip_v1 derives from raw_v1 in 1 step" and set(back.removed) == made


def test_same_paths_other_bytes_are_changed(home):
    a, b = xaug.open("rotate_v1", home=home), xaug.open("rotate_v2", home=home)
    d = diff_versions(a, b)
    assert d.changed and not d.added and not d.removed
    assert all(c["what"] == ["image", "label"] for c in d.changed)
    assert d.relation == "both derive from raw_v1" and d.common == {"name": "raw_v1", "id": a.source.id}
    assert [s.name for s in d.steps] == ["rotate_v1", "rotate_v2"] and [s.seed for s in d.steps] == [0, 1]


def test_a_version_against_itself(home):
    raw = xaug.open("raw", home=home)
    d = diff_versions(raw, raw)
    assert d.same and d.relation == "same version" and len(d.unchanged) == len(raw)


def test_unrelated_versions_and_metadata_only_changes(home, tmp_path):
    from _layout import make_layout
    from xaug.store import Store

    Store(home).import_folder(make_layout(tmp_path / "layout", persons=2, size=48), name="real")
    Store(home).import_folder(tmp_path / "layout", name="real2", folds=2, split_seed=5)
    d = diff_versions(xaug.open("raw", home=home), xaug.open("real", home=home))
    assert d.relation == "unrelated (no common source)" and not d.unchanged
    same_bytes = diff_versions(xaug.open("real", home=home), xaug.open("real2", home=home))
    assert not same_bytes.changed and len(same_bytes.unchanged) == 5
    assert all(m["fields"] == ["fold"] for m in same_bytes.metadata_changed)


def test_cli_diff_text_and_json(home):
    r = cli("diff", "raw", "flip", "--limit", "2", "--home", home)
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert lines[0] == "Added:" and lines[1].startswith("  + train/DCM/") and "more (--limit 0 or --json lists all)" in r.output
    assert "raw_v1 -> flip_v1: " in r.output and "lineage: flip_v1 derives from raw_v1 in 1 step" in r.output
    assert "  flip_v1 (" in r.output and "): flip(" in r.output and "the source items, seed 0" in r.output
    r = cli("diff", "rotate_v1", "rotate_v2", "--json", "--home", home)
    data = json.loads(r.output)
    assert data["counts"]["changed"] == len(data["changed"]) > 0 and data["common_ancestor"]["name"] == "raw_v1"
    assert [s["name"] for s in data["lineage"]] == ["rotate_v1", "rotate_v2"] and data["lineage"][0]["spec"]
    r = cli("diff", "raw", "nope", "--home", home)
    assert r.exit_code == 2 and "unknown dataset 'nope'" in r.output


@pytest.mark.parametrize("module", ["xaug.interop.coco", "xaug.interop.yolo", "xaug.interop.masks"])
def test_docstring_examples(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module))
    assert result.failed == 0 and result.attempted > 0


def test_diff_across_stores_after_a_coco_round_trip(home, tmp_path):
    from xaug.interop.coco_import import import_coco
    from xaug.interop.export import export
    from xaug.store import Store

    export(xaug.open("raw", home=home), tmp_path / "coco", format="coco")
    import_coco(Store(tmp_path / "other"), tmp_path / "coco", name="back")
    r = cli("diff", "raw", "back", "--home", home, "--home-b", tmp_path / "other", "--json")
    data = json.loads(r.output)
    assert r.exit_code == 0 and data["counts"]["unchanged"] == len(xaug.open("raw", home=home))
    assert data["counts"]["changed"] == data["counts"]["added"] == data["counts"]["removed"] == 0
    assert data["metadata_changed"] == [] and data["files"]["changed"] == []
    assert data["relation"] == "unrelated (no common source)"
