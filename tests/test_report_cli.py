"""eda, overlay and errors end to end through the CLI on tiny synthetic stores."""
from __future__ import annotations

import json
import re

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from xaug.cli import app
from xaug.classes import CLASSES


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def image_sources(index):
    """Every <img src> of a page exists next to it (relative paths, opens from disk)."""
    html = index.read_text(encoding="utf-8")
    srcs = re.findall(r'<img[^>]* src="([^"]+)"', html)
    assert srcs, "the page shows no images"
    for src in srcs:
        assert not src.startswith(("/", "http")), src
        assert (index.parent / src).is_file(), src
    return srcs


def swap_labels(label_path, a, b):
    doc = json.loads(label_path.read_text())
    for ann in doc["annotations"]:
        if ann["label"] in (a, b):
            ann["label"] = b if ann["label"] == a else a
    label_path.write_text(json.dumps(doc))


def test_eda_flags_labels_swapped_in_a_reimported_copy(store_copy, tmp_path):
    layout = tmp_path / "layout"
    assert invoke("export", "raw", layout, "--home", store_copy).exit_code == 0
    labels = sorted((layout / "train" / "outputs_json").glob("*/*.json"))
    swaps = {labels[0]: ("Radius", "Ulna"), labels[3]: ("finger-8", "finger-11")}
    for path, pair in swaps.items():
        swap_labels(path, *pair)
    res = invoke("import", layout, "--name", "swapped", "--home", store_copy)
    assert res.exit_code == 0, res.output
    res = invoke("eda", "swapped", "--out", tmp_path / "eda", "--home", store_copy, "--jobs", "1")
    assert res.exit_code == 0, res.output
    summary = json.loads((tmp_path / "eda" / "summary.json").read_text())
    flagged = {o["relpath"]: o["reason"] for o in summary["outliers"]["swaps"]}
    expected = {f"train/DCM/{p.parent.name}/{p.stem}.png": pair for p, pair in swaps.items()}
    assert set(flagged) == set(expected)
    items = {json.loads(line)["relpath"]: json.loads(line)
             for line in (tmp_path / "eda" / "items.jsonl").read_text().splitlines()}
    for rel, pair in expected.items():
        assert tuple(items[rel]["suspected_swap"]) == pair
        assert f"swap {pair[0]} ↔ {pair[1]}?" in flagged[rel]
    assert "Radius is on the little-finger side of Ulna" in " ".join(flagged.values())
    counts = summary["counts"]
    assert counts["persons"] == 8 and counts["images"] == 16 and counts["labelled_images"] == 16
    assert counts["annotations"] == 16 * 29 and counts["sizes"] == {"256x256": 16}
    assert summary["outliers"]["classes"] == []
    srcs = image_sources(tmp_path / "eda" / "index.html")
    assert any(s.startswith("thumbs/") for s in srcs) and "img/overlap.png" in srcs


def test_eda_scores_itself_on_swaps_the_generator_injected(tmp_path):
    home = tmp_path / "home"
    res = invoke("synth", "--persons", "8", "--test-persons", "1", "--size", "192", "--label-swaps", "3",
                 "--jobs", "1", "-q", "--home", home)
    assert res.exit_code == 0, res.output
    assert "labels swapped on 3 training person(s)" in res.stdout
    res = invoke("eda", "raw", "--out", tmp_path / "eda", "--home", home, "--jobs", "1", "-q")
    assert res.exit_code == 0, res.output
    summary = json.loads((tmp_path / "eda" / "summary.json").read_text())
    check = summary["swap_check"]
    assert check["recorded"] == 6 and check["clean"] == 12
    assert check["flagged"] + len(check["missed"]) == 6
    assert check["recall"] >= 5 / 6 and check["false_alarms"] == 0
    flagged = {o["relpath"] for o in summary["outliers"]["swaps"]}
    assert len(flagged) == check["flagged"] + check["false_alarms"]
    assert "Injected swaps (recorded by the generator as label_swap): 6 images" in \
        (tmp_path / "eda" / "index.html").read_text(encoding="utf-8")
    counts = summary["item_meta"]["counts"]["edge_cases"]["train"]
    assert counts["label_swap"] == 6


def test_eda_of_a_synthetic_set_shows_areas_metadata_poses_and_edge_cases(tiny_home, tmp_path):
    out = tmp_path / "eda"
    res = invoke("eda", "raw", "--out", out, "--home", tiny_home, "--gallery", "4", "--jobs", "2")
    assert res.exit_code == 0, res.output
    s = json.loads((out / "summary.json").read_text())
    assert list(s["mean_area"]) == list(CLASSES) and all(v > 0 for v in s["mean_area"].values())
    assert len(s["smallest_classes"]) == 3
    assert s["metadata"]["persons_in_sheet"] == 8 and sum(s["metadata"]["sex"].values()) == 8
    assert set(s["rotated_wrists"]["by_split"]) == {"train", "test"}
    assert s["rotated_wrists"]["vs_recorded_mae_deg"] < 5
    assert s["item_meta"]["counts"] and len(s["gallery"]) == 4
    for name in ("area_per_class", "vertices_per_class", "overlap", "persons", "area_by_sex", "wrist",
                 "brightness", "meta_numeric"):
        assert (out / "img" / f"{name}.png").is_file(), name
    html = (out / "index.html").read_text()
    for heading in ("Class overlaps", "Rotated wrists", "Outliers", "Recorded poses and edge cases",
                    "Ground-truth gallery", "Pisiform"):
        assert heading in html
    image_sources(out / "index.html")
    assert len((out / "items.jsonl").read_text().splitlines()) == 16


def test_overlay_draws_one_item_by_stem_and_names_unknown_items(tiny_home, tiny_dataset, tmp_path):
    sample = tiny_dataset.samples(split="train")[0]
    res = invoke("overlay", "raw", sample.stem, "--out", tmp_path / "o.png", "--home", tiny_home)
    assert res.exit_code == 0, res.output
    drawn = cv2.imread(str(tmp_path / "o.png"))
    original = cv2.imread(str(sample.image_path))
    assert drawn.shape == original.shape and (drawn != original).any()
    res = invoke("overlay", "raw", sample.name, "--out", tmp_path / "s.png", "--max-side", "64", "--home", tiny_home)
    assert res.exit_code == 0 and cv2.imread(str(tmp_path / "s.png")).shape[:2] == (64, 64)
    res = invoke("overlay", "raw", sample.stem[:-1] + "X", "--out", tmp_path / "x.png", "--home", tiny_home)
    assert res.exit_code == 2
    assert "no item with this relative path, file name or stem; did you mean" in res.output


def test_errors_report_of_a_tiny_cpu_run(store_copy, tmp_path, monkeypatch):
    pytest.importorskip("trainer.inference", reason="the trainer is not installed")
    monkeypatch.chdir(tmp_path)
    res = invoke("train", "--dataset", "raw", "--run", "tiny", "--home", store_copy, "--epochs", "1",
                 "--size", "64", "--batch", "2", "--width", "8", "--depth", "3", "--workers", "0",
                 "--device", "cpu")
    assert res.exit_code == 0, res.output
    out = tmp_path / "errors"
    res = invoke("errors", "--run", "tiny", "--home", store_copy, "--out", out, "--device", "cpu",
                 "--workers", "0", "--overlay-size", "128")
    assert res.exit_code == 0, res.output
    assert "mean Dice" in res.output
    s = json.loads((out / "errors.json").read_text())
    val = json.loads((tmp_path / "runs" / "tiny" / "config.json").read_text())["val_images"]
    assert s["images"] == val > 0
    assert sum(s["shares"].values()) == pytest.approx(1.0, abs=1e-3)
    assert 0 <= s["near_boundary"] <= 1 and list(s["per_class"]) == list(CLASSES)
    assert len(list((out / "overlays").glob("*.jpg"))) == val
    srcs = image_sources(out / "index.html")
    assert sum(src.startswith("overlays/") for src in srcs) == val


def test_errors_names_a_missing_run(tmp_path, monkeypatch):
    pytest.importorskip("trainer.inference", reason="the trainer is not installed")
    monkeypatch.chdir(tmp_path)
    res = invoke("errors", "--run", "nope", "--home", tmp_path / "home")
    assert res.exit_code == 2 and "not a run folder" in res.output


def test_eda_of_an_imported_folder_with_unlabelled_test_images(tmp_path):
    from _layout import make_layout

    home = tmp_path / "home"
    assert invoke("import", make_layout(tmp_path / "lay", persons=5), "--name", "raw", "--home", home).exit_code == 0
    res = invoke("eda", "raw", "--out", tmp_path / "eda", "--home", home, "--jobs", "1")
    assert res.exit_code == 0, res.output
    s = json.loads((tmp_path / "eda" / "summary.json").read_text())
    assert s["counts"]["images"] == 11 and s["counts"]["labelled_images"] == 10
    assert s["counts"]["by_split"] == {"train": 10, "test": 1}
    image_sources(tmp_path / "eda" / "index.html")
    res = invoke("eda", "nope", "--home", home)
    assert res.exit_code == 2 and "nope" in res.output


def test_swap_check_counts_missed_swaps_and_false_alarms():
    from types import SimpleNamespace

    from xaug.report.eda import swap_check
    from xaug.report.stats import Finding

    def rec(rel, recorded=None, found=None):
        meta = {"edge_details": {"label_swap": {"labels": list(recorded)}}} if recorded else {}
        findings = [Finding("order", found, "swapped labels?")] if found else []
        return SimpleNamespace(relpath=rel, meta=meta, findings=findings, swap=found,
                               areas=np.zeros(29))  # records carry arrays: compared by relpath only

    records = [rec("a", ("finger-9", "finger-10"), ("finger-9", "finger-10")),
               rec("b", ("Lunate", "Scaphoid"), ("Scaphoid", "Trapezium")),   # flagged, wrong pair
               rec("c", ("Trapezium", "Trapezoid")),                          # missed
               rec("d"), rec("e", found=("Radius", "Ulna"))]                  # clean, false alarm
    check = swap_check(records)
    assert (check["recorded"], check["flagged"], check["explained"]) == (3, 2, 1)
    assert check["recall"] == 2 / 3 and (check["clean"], check["false_alarms"]) == (2, 1)
    assert check["missed"] == [{"relpath": "c", "labels": ["Trapezium", "Trapezoid"]}]
    assert swap_check([rec("d")]) is None
