"""Damaged or unusual data files as users bring them: each bad file is one `error:` line naming it and
saying why, with nothing else on the real stderr (OpenCV's libpng prints its own lines), and the
store as it was; unusual but valid files read as before."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from _hardening import xaug
from _layout import make_layout
from xaug.errors import BadInput
from xaug.layout import decode_image, encode_png, parse_annotation_doc, png_damage
from xaug.store import Store


def _chunk(kind: bytes, data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")


def _flip(data: bytes, at: float) -> bytes:
    out = bytearray(data)
    out[int(len(out) * at)] ^= 0x55
    return bytes(out)


GOOD = encode_png(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))


def _pil_pngs() -> dict[str, bytes]:
    from PIL import Image

    rgb = Image.fromarray(np.random.default_rng(1).integers(0, 255, (40, 30, 3), dtype=np.uint8))
    out = {}
    for mode in ("L", "LA", "RGBA", "P", "1", "I;16"):
        buf = io.BytesIO()
        rgb.convert(mode).save(buf, format="PNG", optimize=mode == "P")
        out[mode] = buf.getvalue()
    buf = io.BytesIO()
    rgb.save(buf, format="PNG", interlace=1, pnginfo=None)
    out["interlaced"] = buf.getvalue()
    return out


VALID = {"opencv": GOOD, "bytes after IEND": GOOD + b"bytes after IEND", **_pil_pngs(),
         "ancillary chunk": GOOD[:33] + _chunk(b"tEXt", b"Comment\0hi") + GOOD[33:]}


@pytest.mark.parametrize("name", VALID)
def test_valid_pngs_have_no_damage(name):
    assert png_damage(VALID[name]) is None
    assert png_damage(np.frombuffer(VALID[name], np.uint8)) is None


CUT = "the file is cut short: an interrupted copy or download?"
DAMAGED = {
    "last byte missing": (GOOD[:-1], CUT),
    "IEND missing": (GOOD[:-12], CUT),
    "half the file": (GOOD[: len(GOOD) // 2], CUT),
    "signature only": (GOOD[:8], CUT),
    "a flipped bit in the pixels": (_flip(GOOD, 0.6), "its IDAT chunk is damaged: checksum mismatch"),
    "a flipped bit in the header": (GOOD[:20] + bytes([GOOD[20] ^ 1]) + GOOD[21:],
                                    "its IHDR chunk is damaged: checksum mismatch"),
    "width and height 0": (GOOD[:8] + _chunk(b"IHDR", bytes(8) + bytes([8, 0, 0, 0, 0])) + _chunk(b"IEND", b""),
                           "its header is damaged or gives a width or height of 0"),
    "chunk name not letters": (GOOD[:12] + b"I\0DR" + GOOD[16:], "damaged chunk at byte 8"),
}


@pytest.mark.parametrize("name", DAMAGED)
def test_damaged_pngs_are_named_with_the_reason(name):
    data, reason = DAMAGED[name]
    assert png_damage(data) == reason
    with pytest.raises(BadInput, match=r"^x\.png: not a readable PNG image \(" + reason.replace("?", r"\?")
                       + r"\); replace or remove the file$"):
        decode_image(data, "x.png")


def test_a_first_chunk_that_is_not_the_header_is_damage():
    assert png_damage(GOOD[:8] + _chunk(b"IDAT", b"x") + GOOD[8:]) == "damaged chunk at byte 8"


def test_decoded_pixels_of_valid_pngs_are_unchanged():
    img = decode_image(GOOD + b"trailing", "x.png")
    assert img.shape == (64, 64, 3)
    assert np.array_equal(img, cv2.imdecode(np.frombuffer(GOOD, np.uint8), cv2.IMREAD_UNCHANGED))


def test_import_of_damaged_images_is_one_error_line_each_and_nothing_else_on_stderr(tmp_path):
    """Through a real process: OpenCV's libpng writes to file descriptor 2, which CliRunner does not see."""
    root = make_layout(tmp_path / "src", persons=3, size=32)
    images = sorted((root / "train" / "DCM").glob("*/*.png"))
    damaged = {images[0]: GOOD[: len(GOOD) // 2], images[1]: _flip(images[1].read_bytes(), 0.7),
               images[2]: images[2].read_bytes()[:-12]}
    for path, data in damaged.items():
        path.write_bytes(data)
    home = tmp_path / "home"
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    res = subprocess.run([sys.executable, "-m", "xaug", "import", str(root), "--home", str(home), "--quiet"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert all(line.startswith("error: ") for line in lines), lines
    for path in damaged:
        rel = path.relative_to(root).as_posix()
        assert any(line.startswith(f"error: {rel}: not a readable PNG image (") for line in lines), (rel, lines)
    assert not home.exists() or Store(home).refs() == {}



# ---------------------------------------------------------------- labels


def _label_problems(label) -> list[str]:
    doc = {"annotations": [{"label": label, "points": [[1, 1], [9, 1], [9, 9]]}]}
    return parse_annotation_doc(json.dumps(doc).encode(), "x.json")[2]


@pytest.mark.parametrize("label", [["Ulna"], {"name": "Ulna"}, [], None, 3])
def test_a_label_that_is_a_list_or_object_is_one_line_not_a_crash(label):
    assert _label_problems(label) == [f"x.json: annotation 0: unknown label {label!r}; expected one of the 29 "
                                      "classes (finger-1..finger-19, Trapezium, ..., Ulna)"]


@pytest.mark.parametrize("label, meant", [("Ulna ", "Ulna"), ("ulna", "Ulna"), ("finger_1", "finger-1"),
                                          ("Finger 12", "finger-12"), (" TRAPEZOID", "Trapezoid")])
def test_a_misspelt_label_names_the_class_it_means_and_is_still_refused(label, meant):
    assert _label_problems(label) == [f"x.json: annotation 0: unknown label {label!r}; did you mean {meant!r}? "
                                      "(labels are matched exactly: fix the file)"]


def test_a_label_far_from_any_class_gets_no_guess():
    assert "did you mean" not in _label_problems("finger-99")[0]
    assert "did you mean" not in _label_problems("Wrist")[0]


def test_a_labelme_file_is_named_as_one():
    doc = {"version": "5.2.1", "shapes": [{"label": "Ulna", "points": [[1, 1], [9, 1], [9, 9]],
                                           "shape_type": "polygon"}], "imageHeight": 32, "imageWidth": 32}
    assert parse_annotation_doc(json.dumps(doc).encode(), "x.json")[2] == [
        "x.json: a LabelMe file ('shapes'); xaug reads the competition's label format ('annotations': "
        "[{'label': ..., 'points': [[x, y], ...]}]): convert it first"]


def test_import_with_a_list_label_is_refused_in_one_line_and_registers_nothing(tmp_path):
    root = make_layout(tmp_path / "src", persons=2, size=32)
    label = sorted((root / "train" / "outputs_json").glob("*/*.json"))[0]
    doc = json.loads(label.read_text())
    doc["annotations"][0]["label"] = ["Ulna"]
    label.write_text(json.dumps(doc))
    home = tmp_path / "home"
    for flags in ((), ("--lenient",)):
        res = xaug("import", root, "--home", home, "--quiet", *flags)
        if not flags:
            assert res.exit_code == 2 and "Traceback" not in res.output
            assert f"error: {label.relative_to(root).as_posix()}: annotation 0: unknown label ['Ulna']" in res.stderr
            assert not home.exists() or Store(home).refs() == {}
        else:  # skipped and recorded, like any other bad annotation
            assert res.exit_code == 0, res.output


# ---------------------------------------------------------------- COCO ids and label maps


def _coco(tmp_path: Path, edit) -> Path:
    (tmp_path / "images").mkdir()
    cv2.imwrite(str(tmp_path / "images" / "a.png"), np.zeros((32, 32), np.uint8))
    doc = {"images": [{"id": 1, "file_name": "a.png", "height": 32, "width": 32}],
           "categories": [{"id": 1, "name": "Ulna"}],
           "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "segmentation": [[2, 2, 20, 2, 20, 20]]}]}
    edit(doc)
    (tmp_path / "c.json").write_text(json.dumps(doc))
    return tmp_path / "c.json"


@pytest.mark.parametrize("where, edit, first", [
    ("category id", lambda d: d["categories"][0].update(id=[1]), "c.json: category {'id': [1], 'name': 'Ulna'} "
     "needs an id and a name"),
    ("category_id", lambda d: d["annotations"][0].update(category_id=[1]),
     "c.json: annotation 1: needs image_id and category_id (numbers or strings)"),
    ("image_id", lambda d: d["annotations"][0].update(image_id={"a": 1}),
     "c.json: annotation 1: needs image_id and category_id (numbers or strings)"),
    ("image id", lambda d: d["images"][0].update(id=[1]), "c.json: image {'id': [1], "),
])
def test_coco_ids_that_are_lists_or_objects_are_one_line_not_a_crash(tmp_path, where, edit, first):
    coco = _coco(tmp_path, edit)
    res = xaug("import", tmp_path, "--format", "coco", "--coco-json", coco, "--home", tmp_path / "home", "--quiet")
    assert res.exit_code == 2 and "Traceback" not in res.output, (where, res.output)
    assert any(line.startswith("error: " + first) for line in res.stderr.splitlines()), (where, res.stderr)
    assert not (tmp_path / "home").exists() or Store(tmp_path / "home").refs() == {}


def test_a_label_map_value_that_is_a_list_is_one_line(tmp_path):
    coco = _coco(tmp_path, lambda d: None)
    (tmp_path / "map.yaml").write_text("Ulna: [Ulna]\n")
    res = xaug("import", tmp_path, "--format", "coco", "--coco-json", coco, "--label-map", tmp_path / "map.yaml",
               "--home", tmp_path / "home", "--quiet")
    assert res.exit_code == 2 and "Traceback" not in res.output, res.output
    assert f"error: {tmp_path / 'map.yaml'}: 'Ulna' maps to ['Ulna'], not one of the 29 classes" in res.stderr


@pytest.mark.parametrize("polygon, first", [
    ([2, 2, 20, 2, 20, float("nan")], "segmentation point 2 is not a finite number (20, nan); fix the COCO file"),
    ([2, 2, 20, 2, 20, float("inf")], "segmentation point 2 is not a finite number (20, inf); fix the COCO file"),
    ([2, 2, 2e9, 2, 20, 20], "segmentation point 1 (2000000000.0, 2) lies far outside the 32x32 image (more than "
                             "25% of its size beyond an edge); fix the COCO file"),
    ([2, 2, 10 ** 400, 2, 20, 20], "segmentation point 1 ("),
    ([True, 2, 20, 2, 20, 20], "a segmentation polygon must be a flat list of numbers"),
])
def test_coco_polygon_coordinates_are_checked_as_the_layout_import_checks_them(tmp_path, polygon, first):
    """A NaN used to drop the polygon as 'degenerate' (a warning), a far point was imported as it was."""
    coco = _coco(tmp_path, lambda d: d["annotations"][0].update(segmentation=[polygon]))
    res = xaug("import", tmp_path, "--format", "coco", "--coco-json", coco, "--home", tmp_path / "home", "--quiet")
    assert res.exit_code == 2 and "Traceback" not in res.output, res.output
    assert f"error: c.json: image 'a.png': annotation 1: {first}" in res.stderr, res.stderr
    assert not (tmp_path / "home").exists() or Store(tmp_path / "home").refs() == {}


def test_coco_points_a_little_outside_and_short_polygons_are_accepted_as_before(tmp_path):
    coco = _coco(tmp_path, lambda d: d["annotations"][0].update(segmentation=[[-4, -4, 36, -4, 36, 36], [1, 1, 5, 5]]))
    res = xaug("import", tmp_path, "--format", "coco", "--coco-json", coco, "--home", tmp_path / "home", "--quiet")
    assert res.exit_code == 0, res.output
