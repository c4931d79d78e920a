"""Bad input is refused at the door: `xaug import` names each bad file (and annotation), exits 2,
registers nothing; a corpus of broken inputs never gives a traceback."""
from __future__ import annotations

import json
import os
import shutil
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from _hardening import refused, snapshot, xaug
from _layout import first_image, first_label, make_layout
from xaug.store import Store


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return make_layout(tmp_path_factory.mktemp("base") / "src", persons=2, size=32)


@pytest.fixture
def root(base, tmp_path) -> Path:
    dst = tmp_path / "src"
    shutil.copytree(base, dst)
    return dst


@pytest.fixture
def home(base, tmp_path) -> Path:
    """A store already holding a healthy `raw` (so "unchanged" can be checked)."""
    home = tmp_path / "home"
    assert xaug("import", base, "--home", home, "--quiet").exit_code == 0
    return home


def _import(root: Path, home: Path, *flags):
    return xaug("import", root, "--name", "other", "--home", home, "--quiet", *flags)


def _problem_lines(res) -> list[str]:
    return [line for line in res.stderr.splitlines() if line.startswith("error: ")]


def _set_points(label: Path, index: int, points) -> None:
    doc = json.loads(label.read_text())
    doc["annotations"][index]["points"] = points
    label.write_text(json.dumps(doc))  # json writes NaN / Infinity as the bare tokens


def test_a_jpeg_named_png_is_refused(root, home):
    image = first_image(root)
    ok, buf = cv2.imencode(".jpg", np.full((32, 32, 3), 128, np.uint8))
    image.write_bytes(buf.tobytes())  # decodable by OpenCV, but not a PNG
    before = snapshot(home)
    res = _import(root, home)
    assert res.exit_code == 2
    rel = image.relative_to(root).as_posix()
    assert _problem_lines(res) == [f"error: 1 problem(s) in {root}; nothing was registered",
                                   f"error: {rel}: not a readable PNG image; replace or remove the file"]
    assert snapshot(home) == before


@pytest.mark.parametrize("points, words", [
    ([[1, 1], [float("nan"), 2], [3, 3]], "point 1 is not a finite number (nan, 2)"),
    ([[1, 1], [2, 2], [float("inf"), 3]], "point 2 is not a finite number (inf, 3)"),
    ([[1, 1], [2, 2], [3, -float("inf")]], "point 2 is not a finite number (3, -inf)"),
    ([[1, 1], [2, 2], [41, 3]], "point 2 (41, 3) lies far outside the 32x32 image (more than 25% of its size"),
    ([[1, -9], [2, 2], [3, 3]], "point 0 (1, -9) lies far outside the 32x32 image"),
    ([[1, 1], [2, 2], [10 ** 30, 3]], "point 2 lies far outside any image"),
])
def test_non_finite_or_far_coordinates_are_refused_with_the_annotation_index(root, home, points, words):
    label = first_label(root)
    _set_points(label, 4, points)
    before = snapshot(home)
    res = _import(root, home)
    rel = label.relative_to(root).as_posix()
    doc = json.loads(label.read_text())
    assert _problem_lines(res)[1].startswith(
        f"error: {rel}: annotation 4: label {doc['annotations'][4]['label']}: {words}"), res.stderr
    assert res.exit_code == 2 and snapshot(home) == before


def test_points_a_little_outside_are_accepted(root, home):
    _set_points(first_label(root), 0, [[-8, -8], [39, 0], [0, 39]])  # 25% of 32 = 8 px beyond the edges
    res = _import(root, home)
    assert res.exit_code == 0, res.output


def test_an_image_of_another_size_is_a_warning_and_with_strict_an_error(root, home):
    image = first_image(root)
    ok, buf = cv2.imencode(".png", np.zeros((40, 32, 3), np.uint8))
    image.write_bytes(buf.tobytes())
    rel = image.relative_to(root).as_posix()
    before = snapshot(home)
    res = _import(root, home, "--strict")
    assert res.exit_code == 2
    lines = _problem_lines(res)
    assert lines[0] == f"error: 2 problem(s) in {root}; nothing was registered"
    assert f"error: {rel}: image is 32x40 but most images are 32x32; check it is the right file" in lines
    label_rel = rel.replace("/DCM/", "/outputs_json/").replace(".png", ".json")
    assert (f"error: {label_rel}: metadata says 32x32 but the image {rel} is 32x40; fix the label or the image"
            in lines)
    assert snapshot(home) == before
    res = _import(root, home)
    assert res.exit_code == 0 and "registered" in res.stdout
    assert f"warning: {rel}: image is 32x40 but most images are 32x32" in res.stderr
    assert Store(home).verify("other") == []


def test_a_file_name_that_is_not_utf8_is_refused_in_a_safe_form(root, home):
    image = first_image(root)
    bad = Path(os.fsdecode(os.fsencode(str(image.parent)) + b"/image\xff\xfe_R.png"))
    shutil.copyfile(image, bad)
    before = snapshot(home)
    res = _import(root, home)
    assert res.exit_code == 2 and "Traceback" not in res.output
    rel = image.parent.relative_to(root).as_posix()
    assert f"error: {rel}/image\\xff\\xfe_R.png: file name is not valid UTF-8; rename it" in _problem_lines(res)
    assert snapshot(home) == before


def test_a_label_file_name_that_is_not_utf8_is_refused(root, home):
    label = first_label(root)
    Path(os.fsdecode(os.fsencode(str(label.parent)) + b"/\x80.json")).write_text("{}")
    res = _import(root, home)
    assert res.exit_code == 2
    assert any(line.endswith("/\\x80.json: file name is not valid UTF-8; rename it") for line in _problem_lines(res))


# ---------------------------------------------------------------- the corpus


def _png_with_header(w: int, h: int) -> bytes:
    """A PNG whose header claims w x h but holds almost no data (a decompression-bomb shape)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (len(data).to_bytes(4, "big") + kind + data
                + zlib.crc32(kind + data).to_bytes(4, "big"))
    ihdr = w.to_bytes(4, "big") + h.to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 10)) + chunk(b"IEND", b"")


def _image(data: bytes):
    return lambda root: first_image(root).write_bytes(data)


def _label(data: bytes):
    return lambda root: first_label(root).write_bytes(data)


def _doc(edit):
    def apply(root):
        label = first_label(root)
        doc = json.loads(label.read_text())
        edit(doc)
        label.write_text(json.dumps(doc))
    return apply


def _png16(root):
    ok, buf = cv2.imencode(".png", np.zeros((32, 32), np.uint16))
    first_image(root).write_bytes(buf.tobytes())


def _dir_named(kind: str):
    def apply(root):
        where = first_image(root).parent if kind == "png" else first_label(root).parent
        (where / f"folder.{kind}").mkdir()
    return apply


def _bad_name(root):
    Path(os.fsdecode(os.fsencode(str(first_image(root).parent)) + b"/\xc3\x28.png")).write_bytes(b"x")


def _symlink_loop(root):
    link = first_image(root).parent / "loop.png"
    os.symlink(link, link)


def _control_name(root):
    (first_image(root).parent / "a\nb\x1b[31m.png").write_bytes(b"not png")


CORPUS = {
    "empty image": _image(b""),
    "truncated png": lambda root: first_image(root).write_bytes(first_image(root).read_bytes()[:40]),
    "jpeg bytes": _image(cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))[1].tobytes()),
    "gif bytes": _image(b"GIF89a" + b"\0" * 20),
    "text as png": _image(b"hello"),
    "png signature only": _image(b"\x89PNG\r\n\x1a\n"),
    "huge header": _image(_png_with_header(100000, 100000)),
    "zero size header": _image(_png_with_header(0, 0)),
    "16-bit png": _png16,
    "empty label": _label(b""),
    "null label": _label(b"null"),
    "list label": _label(b"[]"),
    "invalid utf8 label": _label(b'{"annotations": ["\xff"]}'),
    "utf16 label": _label('{"annotations": []}'.encode("utf-16")),
    "deep label": _label(b"[" * 100000),
    "huge int": _label(b'{"annotations": [{"label": "Ulna", "points": [[1' + b"0" * 5000 + b', 1], [2, 2], [3, 3]]}]}'),
    "NaN token": _label(b'{"annotations": [{"label": "Ulna", "points": [[NaN, 1], [2, 2], [3, 3]]}]}'),
    "annotations null": _doc(lambda d: d.update(annotations=None)),
    "annotation not object": _doc(lambda d: d["annotations"].append(7)),
    "label is int": _doc(lambda d: d["annotations"][0].update(label=3)),
    "label unknown": _doc(lambda d: d["annotations"][0].update(label="finger-99")),
    "points dict": _doc(lambda d: d["annotations"][0].update(points={"x": 1})),
    "points strings": _doc(lambda d: d["annotations"][0].update(points=[["1", "2"], ["3", "4"], ["5", "6"]])),
    "points bools": _doc(lambda d: d["annotations"][0].update(points=[[True, False]] * 3)),
    "points triples": _doc(lambda d: d["annotations"][0].update(points=[[1, 2, 3]] * 3)),
    "two points": _doc(lambda d: d["annotations"][0].update(points=[[1, 2], [3, 4]])),
    "no points": _doc(lambda d: d["annotations"][0].pop("points")),
    "metadata not a dict": _doc(lambda d: d.update(metadata=[1, 2])),
    "metadata strings": _doc(lambda d: d.update(metadata={"height": "x", "width": None})),
    "folder named png": _dir_named("png"),
    "folder named json": _dir_named("json"),
    "label without image": lambda root: (first_label(root).parent / "ghost.json").write_text('{"annotations": []}'),
    "image without label": lambda root: first_label(root).unlink(),
    "garbage sheet": lambda root: (root / "meta_data.xlsx").write_bytes(b"PK\x03\x04 garbage"),
    "empty sheet": lambda root: (root / "meta_data.xlsx").write_bytes(b""),
    "text sheet": lambda root: (root / "meta_data.xlsx").write_text("ID,age\n1,2\n"),
    "non-utf8 name": _bad_name,
    "control characters in a name": _control_name,
    "symlink loop": _symlink_loop,
    "nothing at all": lambda root: shutil.rmtree(root / "train") or shutil.rmtree(root / "test"),
}


def test_a_corpus_of_bad_inputs_never_gives_a_traceback(base, tmp_path):
    home = tmp_path / "home"
    assert xaug("import", base, "--home", home, "--quiet").exit_code == 0
    before = snapshot(home)
    outcomes = {}
    for i, (name, breaker) in enumerate(CORPUS.items()):
        root = tmp_path / f"case{i}"
        shutil.copytree(base, root)
        breaker(root)
        for flags in ((), ("--lenient",), ("--strict",)):
            target = home if not flags else tmp_path / f"scratch{i}"  # --lenient may register
            res = xaug("import", root, "--name", "bad", "--home", target, "--quiet", *flags)
            assert "Traceback" not in res.output, (name, flags, res.output)
            assert res.exit_code in (0, 2), (name, flags, res.exit_code, res.output, res.exception)
            if res.exit_code == 2:
                lines = res.stderr.strip().splitlines()
                assert lines and all(line.startswith(("error: ", "warning: ")) for line in lines), (name, lines)
                assert all(line.isprintable() for line in lines), (name, lines)
            outcomes[name, flags] = res.exit_code
            if not flags and res.exit_code == 2:  # refused: nothing registered
                assert snapshot(home) == before, name
            elif not flags:  # accepted: drop it again for the next case
                shutil.rmtree(home)
                assert xaug("import", base, "--home", home, "--quiet").exit_code == 0
                before = snapshot(home)
    refused_cases = {name for (name, flags), code in outcomes.items() if code == 2 and not flags}
    # everything but the cases xaug accepts on purpose (lenient-skippable or harmless) is refused
    assert refused_cases >= set(CORPUS) - {"folder named png", "folder named json", "metadata not a dict",
                                           "metadata strings", "symlink loop", "garbage sheet"}


def test_a_refused_import_fails_again_until_fixed(root, home):
    _set_points(first_label(root), 2, [[1, 1], [float("nan"), 2], [3, 3]])
    for _ in range(2):  # the hash cache must not hide the bad file
        refused_res = _import(root, home)
        assert refused_res.exit_code == 2
    assert sorted(Store(home).refs()) == ["raw"]


def test_the_reason_an_image_is_refused_is_named(root, home):
    image = first_image(root)
    ok, buf = cv2.imencode(".png", np.zeros((32, 32), np.uint16))
    image.write_bytes(buf.tobytes())
    rel = image.relative_to(root).as_posix()
    res = _import(root, home)
    assert (f"error: {rel}: image is uint16, xaug reads 8-bit PNG only; convert it to 8 bits per channel "
            "(e.g. scale its grey range to 0-255) and import again") in _problem_lines(res)
    image.write_bytes(_png_with_header(100000, 100000))
    res = _import(root, home)
    assert (f"error: {rel}: image claims 100000x100000 pixels, more than xaug reads (268,435,456); "
            "replace or remove the file") in _problem_lines(res)


def test_upper_case_extensions_import_and_the_export_round_trips(root, tmp_path):
    for p in sorted(root.glob("train/*/*/*")):
        p.rename(p.with_suffix(p.suffix.upper()))   # x.PNG with x.JSON
    home = tmp_path / "h"
    assert _import(root, home).exit_code == 0
    ds = Store(home).open("other")
    assert {e["label"]["path"][-5:] for e in ds.items if e["label"]} == {".json"}  # the layout's label name
    assert xaug("export", "other", tmp_path / "out", "--home", home, "--quiet").exit_code == 0
    assert xaug("import", tmp_path / "out", "--name", "back", "--home", home, "--quiet").exit_code == 0
    again = Store(home).open("back")
    assert [(s.relpath, s.annotations) for s in ds.samples()] == [(s.relpath, s.annotations) for s in again.samples()]


def test_an_image_in_a_sub_folder_of_a_person_folder_is_refused_not_dropped(root, home):
    image = first_image(root)
    (image.parent / "extra").mkdir()
    image.rename(image.parent / "extra" / image.name)
    label = first_label(root)
    (label.parent / "extra").mkdir()
    label.rename(label.parent / "extra" / label.name)
    before = snapshot(home)
    res = _import(root, home)
    rel = image.parent.relative_to(root).as_posix()
    assert res.exit_code == 2
    assert (f"error: {rel}/extra: a sub-folder of a person folder holds 1 image file(s) that xaug would not "
            "read; it reads train/DCM/<ID>/<name>.png: move them up or remove the folder") in _problem_lines(res)
    assert snapshot(home) == before


def test_bad_annotations_point_at_lenient_and_other_problems_do_not(root, home):
    label = first_label(root)
    _set_points(label, 4, [[1, 1], [2, 2]])
    _set_points(label, 5, [[1, 1], [2, 2], [90, 3]])
    res = _import(root, home)
    assert _problem_lines(res)[0] == (f"error: 2 problem(s) in {root}; nothing was registered; fix them, or import "
                                      "with --lenient to skip the 2 bad annotation(s) (recorded in the manifest)")
    assert _import(root, home, "--lenient").exit_code == 0
    label.write_text("{not json")  # a whole file: --lenient would not help, so it is not offered
    res = _import(root, home)
    assert _problem_lines(res)[0] == f"error: 1 problem(s) in {root}; nothing was registered"
