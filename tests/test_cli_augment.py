"""`xaug rotate | mosaic | flip | run | schema` through the real CLI on a tiny store."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from xaug.cli import app
from xaug.store import Store

PIPELINES = Path(__file__).resolve().parents[1] / "pipelines"


def pipeline_files() -> list[Path]:
    """The pipeline files in pipelines/ (ablation specs, which hold pipelines, live there too)."""
    import yaml as _yaml

    return [p for p in sorted(PIPELINES.glob("*.yaml"))
            if "steps" in (_yaml.safe_load(p.read_text(encoding="utf-8")) or {})]
runner = CliRunner()


@pytest.fixture
def home(store_copy) -> Path:
    """A private copy of the shared tiny synthetic store (conftest.py), holding `raw`."""
    return store_copy


def n_sources(home: Path) -> int:
    """Training images outside the validation fold: what a pipeline on `train` reads."""
    return len(Store(home).open("raw").samples(split="train", role="train", load=False))


def xaug(home: Path, *args: str):
    return runner.invoke(app, [*args, "--home", str(home)])


def snapshot(home: Path) -> dict[str, bytes]:
    return {p.relative_to(home).as_posix(): p.read_bytes() for p in sorted(home.rglob("*")) if p.is_file()}


def test_rotate_then_the_same_command_is_a_cache_hit_and_another_seed_is_v2(home):
    first = xaug(home, "rotate", "--angles", "-30:30", "--per-image", "2", "--jobs", "1")
    assert first.exit_code == 0, first.output
    n = 2 * n_sources(home)
    assert re.match(rf"rotate_v1 \([0-9a-f]{{8}}…\) {n} items \({n} made\)", first.stdout), first.stdout
    before = snapshot(home)
    again = xaug(home, "rotate", "--angles", "-30:30", "--per-image", "2", "--jobs", "2")
    assert again.exit_code == 0, again.output
    assert again.stdout.startswith(first.stdout.split(" items")[0]) and "up to date" in again.stdout
    assert snapshot(home) == before
    other = xaug(home, "rotate", "--angles", "-30:30", "--per-image", "2", "--seed", "1", "-q")
    assert other.exit_code == 0 and other.stdout.startswith("rotate_v2 ")


def test_rotate_with_an_angle_list_and_wrist_pivot_records_provenance_for_show(home):
    res = xaug(home, "rotate", "--angles", "-30,-15,15,30", "--pivot", "wrist", "--name", "wrist", "-q")
    assert res.exit_code == 0, res.output
    show = xaug(home, "show", "wrist", "--items", "--json")
    assert show.exit_code == 0, show.output
    items = json.loads(show.stdout)["items_list"]
    assert items
    for it in items:
        prov = it["provenance"]
        assert prov["op"] == "rotate" and prov["pivot"] == "wrist"
        assert prov["angle"] in (-30, -15, 15, 30)
        assert len(prov["matrix"]) == 2 and len(prov["matrix"][0]) == 3
        assert prov["source"].startswith("train/DCM/")


def test_hands_without_the_wrist_bones_turn_about_the_default_wrist_and_are_counted_once(home, tmp_path):
    full = xaug(home, "rotate", "--pivot", "wrist", "-q")
    assert full.exit_code == 0 and "note:" not in full.stderr  # the synthetic labels have them all
    layout = tmp_path / "layout"
    assert xaug(home, "export", "raw", str(layout), "-q").exit_code == 0
    labels = sorted((layout / "train" / "outputs_json").rglob("*.json"))
    for path, keep in ((labels[0], lambda a: a["label"] not in ("Radius", "Ulna")), (labels[1], lambda a: False)):
        doc = json.loads(path.read_text())
        doc["annotations"] = [a for a in doc["annotations"] if keep(a)]
        path.write_text(json.dumps(doc))
    other = tmp_path / "other"
    assert xaug(other, "import", str(layout), "-q").exit_code == 0
    res = xaug(other, "rotate", "--pivot", "wrist", "-q")
    assert res.exit_code == 0, res.output
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and re.match(r"note: 2 of \d+ images \(e\.g\. train/DCM/.+_rot0.*\.png\) come from labels "
                                        r"with no Radius/Ulna or no carpal polygons", lines[0]), lines
    again = xaug(other, "rotate", "--pivot", "wrist", "-q")  # a cache hit says nothing more
    assert again.exit_code == 0 and again.stderr == ""


def test_rotations_and_flips_keep_their_labels_unknown_top_level_keys(home, tmp_path):
    """The competition layout: keep unknown keys intact. A one-source item keeps its source label's
    keys (the image-naming ones are its own); a mosaic, made of several labels, keeps none."""
    layout = tmp_path / "layout"
    assert xaug(home, "export", "raw", str(layout), "-q").exit_code == 0
    for path in (layout / "train" / "outputs_json").rglob("*.json"):
        doc = json.loads(path.read_text())
        doc.update({"attributes": {"hand": "kept"}, "foo": [1, {"b": "ü"}]})
        doc["metadata"]["dpi"] = 300
        path.write_text(json.dumps(doc, ensure_ascii=False))
    other = tmp_path / "other"
    assert xaug(other, "import", str(layout), "-q").exit_code == 0
    for args in (("rotate", "--pivot", "wrist"), ("flip",), ("mosaic", "--n", "2")):
        res = xaug(other, *args, "-q")
        assert res.exit_code == 0, res.output
        ds = Store(other).open(args[0])
        for entry in ds.entries:
            doc = json.loads(ds.file_path(entry.label, entry.stored_in).read_bytes())
            name = Path(entry.image.path).name
            assert (doc["filename"], doc["file_id"]) == (name, Path(name).stem)
            assert doc["parent_path"] == f"/{entry.person}"
            assert doc["metadata"]["height"] > 0 and doc["metadata"]["width"] > 0
            if args[0] == "mosaic":
                assert "foo" not in doc and doc["attributes"] == {} and "dpi" not in doc["metadata"]
            else:
                assert doc["foo"] == [1, {"b": "ü"}] and doc["attributes"] == {"hand": "kept"}
                assert doc["metadata"]["dpi"] == 300


def test_mosaic_and_flip(home):
    res = xaug(home, "mosaic", "--grid", "2x2", "--n", "3", "--beta", "0.3", "--seed", "2", "-q")
    assert res.exit_code == 0, res.output
    assert res.stdout.startswith("mosaic_v1 ") and "3 items" in res.stdout
    items = json.loads(xaug(home, "show", "mosaic", "--items", "--json").stdout)["items_list"]
    assert all(it["provenance"]["patches"] for it in items)
    res = xaug(home, "flip", "--include-source", "-q")
    assert res.exit_code == 0, res.output
    assert "by reference" in res.stdout
    ds = Store(home).open("flip")
    assert {it["side"] for it in ds.items if not it["stored_in"]} == {"R", "L"}


@pytest.mark.parametrize("args, message", [
    (["mosaic", "--grid", "2y2", "--n", "2"], "error: --grid: cannot read '2y2'"),
    (["mosaic", "--grid", "0x2", "--n", "2"], "error: --grid: grid 0x2: rows and cols must be >= 1"),
    (["rotate", "--angles", "30:-30"], "error: --angles: range '30:-30' runs backwards"),
    (["rotate", "--angles", "a:b"], "error: --angles: cannot read 'a:b'"),
    (["rotate", "--per-image", "0"], "error: --per-image: Input should be greater than or equal to 1"),
    (["mosaic", "--n", "0"], "error: --n: Input should be greater than or equal to 1"),
    (["rotate", "--name", "bad name"], "error: --name: 'bad name' is not a plain name"),
    (["rotate", "--name", "rotate_v3"], "error: --name: 'rotate_v3' is not a plain name"),
    (["rotate", "--from", "nope"], "error: unknown dataset 'nope'"),
])
def test_bad_flags_give_one_line_exit_2_and_leave_the_store_alone(home, args, message):
    before = snapshot(home)
    res = xaug(home, *args)
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), res.stderr
    assert "Traceback" not in res.output
    assert snapshot(home) == before


def test_run_a_small_pipeline_file_then_the_cache_hit(home, tmp_path):
    spec = tmp_path / "small.yaml"
    spec.write_text("name: small\ninclude_source: true\nseed: 4\nsteps:\n"
                    "  - op: rotate\n    pivot: wrist\n    angles: [-40, 40]\n"
                    "  - op: mosaic\n    grid: 1x2\n    n: 2\n")
    res = xaug(home, "run", str(spec), "--jobs", "2", "-q")
    assert res.exit_code == 0, res.output
    assert res.stdout.startswith("small_v1 ") and "by reference" in res.stdout
    ds = Store(home).open("small")
    assert ds.kind == "pipeline" and {it["provenance"].get("op") for it in ds.items if not it["stored_in"]} \
        == {"rotate", "mosaic"}
    again = xaug(home, "run", str(spec), "-q")
    assert again.exit_code == 0 and again.stdout.startswith("small_v1 ") and "up to date" in again.stdout
    reseeded = xaug(home, "run", str(spec), "--seed", "5", "-q")
    assert reseeded.exit_code == 0 and reseeded.stdout.startswith("small_v2 ")


@pytest.mark.parametrize("path", pipeline_files(), ids=lambda p: p.name)
def test_every_example_pipeline_checks(home, path):
    res = xaug(home, "run", str(path), "--check")
    assert res.exit_code == 0, res.output
    assert "valid;" in res.stdout and "not made yet" in res.stdout
    assert not Store(home).names() or Store(home).names() == ["raw_v1"]


def test_the_flags_and_the_yaml_make_the_same_plan(home):
    res = xaug(home, "rotate", "--angles", "-30:30", "--per-image", "2", "-q")
    assert res.exit_code == 0, res.output
    check = xaug(home, "run", str(PIPELINES / "rotate.yaml"), "--check")
    assert check.exit_code == 0 and "already made as rotate_v1" in check.stdout


def test_run_reports_spec_problems_by_key_path_and_writes_nothing(home, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: r\nsteps:\n  - op: rotat\n  - op: mosaic\n    grid: 2x2\n    n: -1\n")
    before = snapshot(home)
    res = xaug(home, "run", str(bad))
    assert res.exit_code == 2
    lines = res.stderr.strip().splitlines()
    assert lines[0] == f"error: {bad}: invalid pipeline (2 problems); nothing was run"
    assert lines[1].startswith("error: steps.0.op: unknown op 'rotat' (did you mean 'rotate'?)")
    assert lines[2].startswith("error: steps.1.n: Input should be greater than or equal to 1 (line 6)")
    assert snapshot(home) == before

    res = xaug(home, "run", str(tmp_path / "nope.yaml"))
    assert res.exit_code == 2 and "nope.yaml: no such pipeline file" in res.stderr
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed\n")
    res = xaug(home, "run", str(broken))
    assert res.exit_code == 2 and f"{broken}:2: not valid YAML" in res.stderr


def test_schema_prints_the_json_schema():
    res = runner.invoke(app, ["schema"])
    assert res.exit_code == 0
    schema = json.loads(res.stdout)
    assert schema["title"] == "xaug pipeline"
    assert set(schema["properties"]) >= {"name", "source", "split", "seed", "include_source", "steps"}
    assert set(schema["properties"]["steps"]["items"]["discriminator"]["mapping"]) == {"rotate", "mosaic", "flip"}


@pytest.mark.parametrize("command, flag, spec_cls, field", [
    ("rotate", "--angles", "xaug.ops.rotate:RotateSpec", "angle_range"),
    ("rotate", "--per-image", "xaug.ops.rotate:RotateSpec", "per_image"),
    ("rotate", "--pivot", "xaug.ops.rotate:RotateSpec", "pivot"),
    ("mosaic", "--grid", "xaug.ops.mosaic:MosaicSpec", "grid"),
    ("mosaic", "--n", "xaug.ops.mosaic:MosaicSpec", "n"),
    ("mosaic", "--beta", "xaug.ops.mosaic:MosaicSpec", "beta"),
])
def test_op_flags_take_their_defaults_from_the_op_spec_and_say_them(command, flag, spec_cls, field):
    """An op's defaults live in its spec: the flag passes nothing when not given, and the
    `(default: ...)` its help shows is the spec's."""
    import importlib

    import typer.main

    module, cls = spec_cls.split(":")
    default = getattr(importlib.import_module(module), cls).model_fields[field].default
    shown = {"angle_range": lambda d: f"{d[0]:g}:{d[1]:g}", "grid": lambda d: f"{d[0]}x{d[1]}"}.get(field, str)(default)
    cmd = typer.main.get_command(app).commands[command]
    param = next(p for p in cmd.params if flag in p.opts)
    assert param.default is None
    assert f"(default: {shown})" in param.help
