"""The competition layout and meta_data.xlsx: parsing, writing, quirks."""
from __future__ import annotations

import json

import numpy as np
import openpyxl
import pytest

from _layout import first_label, make_layout
from xaug.layout import (PersonMeta, annotation_bytes, annotation_doc, clean_text, encode_png,
                         parse_annotation_doc, parse_sex, person_id, read_image, read_meta, scan_layout,
                         side_from_stem, write_meta)
from xaug.errors import BadInput


def test_scan_pairs_images_and_labels(tmp_path):
    root = make_layout(tmp_path / "d", persons=3, test_persons=2)
    scan = scan_layout(root)
    assert scan.problems == []
    train = [s for s in scan.samples if s.split == "train"]
    test = [s for s in scan.samples if s.split == "test"]
    assert len(train) == 6 and len(test) == 2
    assert all(len(s.annotations) == 29 for s in train)
    assert all(s.annotations is None for s in test)
    assert {s.side for s in train} == {"R", "L"} and {s.side for s in test} == {None}
    assert train[0].person == "ID001"


def test_annotation_round_trip_keeps_unknown_keys(tmp_path):
    root = make_layout(tmp_path / "d", persons=1)
    lab = first_label(root)
    raw = json.loads(lab.read_text())
    raw["annotations"][0]["attributes"] = {"note": "keep me"}
    raw["something_new"] = [1, 2]
    anns, extra, problems, _ = parse_annotation_doc(json.dumps(raw).encode(), "x.json")
    assert problems == []
    doc = annotation_doc(anns, extra)
    again, extra2, _, _ = parse_annotation_doc(annotation_bytes(doc), "y.json")
    assert again == anns
    assert extra2 == extra and extra2["something_new"] == [1, 2]
    assert doc["annotations"][0]["attributes"] == {"note": "keep me"}
    assert doc["annotations"][0]["id"] == raw["annotations"][0]["id"]


@pytest.mark.parametrize("mutate, match", [
    (lambda a: a.update(points=[[0, 0], [5, 5]]), r"annotation 0: label finger-1: polygon has 2 points, need at least 3"),
    (lambda a: a.update(label="finger-30"), r"annotation 0: unknown label 'finger-30'"),
    (lambda a: a.update(points="nope"), r"annotation 0: label finger-1: 'points' must be a list"),
])
def test_bad_annotations_are_named(mutate, match):
    doc = {"annotations": [{"label": "finger-1", "points": [[0, 0], [5, 0], [5, 5]]}]}
    mutate(doc["annotations"][0])
    anns, _, problems, _ = parse_annotation_doc(json.dumps(doc).encode(), "f.json")
    assert anns == [] and len(problems) == 1
    assert problems[0].startswith("f.json: ")
    import re
    assert re.search(match, problems[0])
    # lenient: skipped, not a problem
    anns, _, problems, skipped = parse_annotation_doc(json.dumps(doc).encode(), "f.json", lenient=True)
    assert problems == [] and skipped[0]["annotation"] == 0


def test_unparsable_json_is_named():
    _, _, problems, _ = parse_annotation_doc(b"{not json", "broken.json")
    assert problems and problems[0].startswith("broken.json: not valid JSON")


def test_read_image_rejects_corrupt_png(tmp_path):
    p = tmp_path / "bad.png"
    p.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(BadInput, match="bad.png.*not a readable PNG"):
        try:
            read_image(p)
        except BadInput as exc:
            raise BadInput(exc.lines()[0]) from None


def test_png_encode_is_lossless_for_gray_and_color():
    rng = np.random.default_rng(0)
    for shape in [(20, 30), (20, 30, 3)]:
        img = rng.integers(0, 255, shape, dtype=np.uint8)
        import cv2
        back = cv2.imdecode(np.frombuffer(encode_png(img), np.uint8), cv2.IMREAD_UNCHANGED)
        assert np.array_equal(back, img)


def test_side_from_stem():
    assert side_from_stem("image1_R") == "R" and side_from_stem("image1_L") == "L"
    assert side_from_stem("image1661144206667") is None


def test_meta_sheet_quirks_as_in_the_real_file(tmp_path):
    """The real sheet: '_x0008_여' and ' 여' sex cells, '001' IDs, a notes column, empty trailing columns."""
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["ID", "나이", "성별", "체중(몸무게)", "키(신장)", None, None, None])
    ws.append(["001", 30.0, "_x0008_여", 51.5, 160.0, "네일있음", None, None])
    ws.append(["002", 41.0, " 남", 70.0, 175.5, None, None, None])
    ws.append(["003", 25.0, "여", None, 158.0, "has nail art", None, None])
    ws.append([None, None, None, None, None, None, None, None])
    path = tmp_path / "meta_data.xlsx"
    wb.save(path)
    meta = read_meta(path)
    assert list(meta) == ["ID001", "ID002", "ID003"]
    assert meta["ID001"] == PersonMeta("ID001", 30.0, "F", 51.5, 160.0, "네일있음")
    assert meta["ID002"].sex == "M" and meta["ID002"].height == 175.5
    assert meta["ID003"].weight is None and meta["ID003"].note == "has nail art"


def test_meta_sheet_write_read_round_trip_and_is_deterministic(tmp_path):
    people = [PersonMeta(f"ID{i:03d}", 20.0 + i, "MF"[i % 2], 60.0, 170.0, "네일있음" if i == 3 else None)
              for i in range(1, 9)]
    a, b = tmp_path / "a.xlsx", tmp_path / "b.xlsx"
    write_meta(a, people)
    write_meta(b, reversed(people))
    assert a.read_bytes() == b.read_bytes()
    assert list(read_meta(a).values()) == people
    raw = [r[2] for r in openpyxl.load_workbook(a).active.iter_rows(min_row=2, values_only=True)]
    assert any(str(v).startswith("_x0008_") for v in raw) and any(str(v).startswith(" ") for v in raw)
    header = next(openpyxl.load_workbook(a).active.iter_rows(max_row=1, values_only=True))
    assert header[:5] == ("ID", "나이", "성별", "체중(몸무게)", "키(신장)") and header[5] is None


def test_cleaning_helpers():
    assert clean_text("_x0008_여 ") == "여" and parse_sex("\x08여") == "F" and parse_sex(" 남") == "M"
    assert parse_sex("?") is None and person_id("001") == "ID001" and person_id(7.0) == "ID007"
    assert person_id("ID012") == "ID012" and person_id("abc") is None


# ---------------------------------------------------------------- the bulk check of points

from hypothesis import given, settings, strategies as st  # noqa: E402

from xaug.layout import _annotation_problem, _plain_points  # noqa: E402
from xaug.model import Annotation  # noqa: E402

_coord = st.one_of(st.integers(-3000, 5000), st.floats(allow_nan=True, allow_infinity=True, width=64),
                   st.floats(-3000, 5000), st.integers(-10**400, 10**400), st.booleans(), st.none(),
                   st.text(max_size=2))
_pair = st.one_of(st.lists(_coord, min_size=2, max_size=2), st.lists(_coord, min_size=0, max_size=3),
                  st.tuples(_coord, _coord))
_points = st.one_of(st.lists(st.lists(st.integers(-600, 2600), min_size=2, max_size=2), min_size=0, max_size=8),
                    st.lists(_pair, min_size=0, max_size=6), st.text(max_size=3), st.none())
_label = st.sampled_from(["finger-1", "Ulna", "finger-30", "", None])


@settings(max_examples=600, deadline=None)
@given(label=_label, points=_points, size=st.one_of(st.none(), st.tuples(st.integers(1, 3000), st.integers(1, 3000))))
def test_bulk_point_check_accepts_only_what_the_full_check_accepts(label, points, size):
    """The fast path of `parse_annotation_doc` is only a shortcut: whatever it accepts, the full
    check accepts too, with the same coordinates; everything else gets the full check's message."""
    raw = {"label": label, "points": points}
    plain = _plain_points(raw, size)
    if plain is not None:
        assert _annotation_problem(raw, size) is None
        np.testing.assert_array_equal(plain, np.asarray(points, dtype=np.float64))


def test_bulk_point_check_takes_the_common_case_and_to_json_round_trips():
    pts = [[i, 2 * i + 1] for i in range(-5, 400)] + [[12.6, -3.5]]
    raw = {"label": "Radius", "points": pts}
    assert _plain_points(raw, (2048, 2048)) is not None
    anns, _, problems, _ = parse_annotation_doc(json.dumps({"annotations": [raw]}).encode(), "a.json", size=(2048, 2048))
    assert problems == [] and anns[0].points[-1].tolist() == [13, -4]
    # to_json writes plain ints, whatever the integer dtype; float points are truncated as before
    for dtype in (np.int64, np.int32, np.float64):
        out = Annotation("Radius", np.array([[1, 2], [3, 4], [-5, 6]], dtype=dtype)).to_json()["points"]
        assert out == [[1, 2], [3, 4], [-5, 6]] and all(type(v) is int for p in out for v in p)


def _move(path, to):
    to.parent.mkdir(parents=True, exist_ok=True)
    path.rename(to)
    return to


def test_upper_case_extensions_pair_as_lower_case_ones(tmp_path):
    root = make_layout(tmp_path / "d", persons=2, test_persons=0)
    for p in sorted(root.glob("train/*/*/*")):
        p.rename(p.with_suffix(p.suffix.upper()))
    scan = scan_layout(root)
    assert scan.problems == []
    assert len(scan.samples) == 4 and all(len(s.annotations) == 29 for s in scan.samples)
    assert all(s.relpath.endswith(".PNG") for s in scan.samples)
    assert all(scan.label_files[s.relpath].suffix == ".JSON" for s in scan.samples)


def test_the_same_image_or_label_twice_in_two_cases_is_a_problem(tmp_path):
    root = make_layout(tmp_path / "d", persons=1, test_persons=0)
    img, lab = sorted(root.glob("train/DCM/*/*.png"))[0], first_label(root)
    (img.with_suffix(".PNG")).write_bytes(img.read_bytes())
    (lab.with_suffix(".JSON")).write_bytes(lab.read_bytes())
    rel_img, rel_lab = (p.relative_to(root).as_posix() for p in (img, lab))
    assert sorted(scan_layout(root).problems) == [
        f"{rel_img[:-4]}.png: a second image with the name of {rel_img[:-4]}.PNG (only the case of the "
        "extension differs); remove one of them",
        f"{rel_lab[:-5]}.json: a second label file for the same image as {rel_lab[:-5]}.JSON; remove one of them"]


def test_images_and_labels_outside_person_folders_are_named_not_dropped(tmp_path):
    root = make_layout(tmp_path / "d", persons=2, test_persons=1)
    img = sorted(root.glob("train/DCM/ID001/*.png"))[0]
    _move(img, img.parent / "sub" / "deeper" / img.name)
    lab = first_label(root)
    assert lab.stem == img.stem  # the moved image's label moves too: no pair is broken
    _move(lab, lab.parent / "sub" / lab.name)
    test_img = sorted(root.glob("test/DCM/*/*.png"))[0]
    _move(test_img, root / "test" / "DCM" / test_img.name.replace(".png", ".PNG"))
    hidden = sorted(root.glob("train/DCM/ID002/*.png"))[0]
    (hidden.parent / ".ipynb_checkpoints").mkdir()
    (hidden.parent / ".ipynb_checkpoints" / hidden.name).write_bytes(hidden.read_bytes())  # skipped
    problems = scan_layout(root).problems
    assert sorted(problems) == sorted([
        f"test/DCM/{test_img.stem}.PNG: image file not in a person folder; xaug reads test/DCM/<ID>/<name>.png: "
        "move it into the person's folder",
        "train/DCM/ID001/sub/deeper: a sub-folder of a person folder holds 1 image file(s) that xaug would not "
        "read; it reads train/DCM/<ID>/<name>.png: move them up or remove the folder",
        "train/outputs_json/ID001/sub: a sub-folder of a person folder holds 1 label file(s) that xaug would "
        "not read; it reads train/outputs_json/<ID>/<name>.json: move them up or remove the folder",
    ])


def test_a_layout_one_folder_down_is_pointed_at(tmp_path):
    make_layout(tmp_path / "d" / "hand-xray", persons=1, test_persons=0)
    assert scan_layout(tmp_path / "d").problems == [
        f"{tmp_path / 'd'}: no images under train/DCM/<ID>/ or test/DCM/<ID>/; did you mean "
        f"{tmp_path / 'd' / 'hand-xray'}?"]


@pytest.mark.parametrize("rows", [
    [["ID", "성별", "extra", None], [1, "남", "x", "note"], [None, None, None, None], [], ["ID002", " 여", 1, None]],
    [["ID"], ["001"], [2.0]],
], ids=["numbers, blank rows, extra and missing columns", "ID only"])
def test_meta_sheet_variants_read(tmp_path, rows):
    wb = openpyxl.Workbook()
    for r in rows:
        wb.active.append(r)
    wb.save(tmp_path / "m.xlsx")
    meta = read_meta(tmp_path / "m.xlsx")
    assert sorted(meta) == ["ID001", "ID002"]
    assert meta["ID002"].age is None and meta["ID002"].sex in (None, "F")


def test_meta_sheet_without_a_header_row_says_what_to_do(tmp_path):
    wb = openpyxl.Workbook()
    wb.active.append(["hand data"])
    wb.active.append(["ID", "나이"])
    wb.save(tmp_path / "m.xlsx")
    with pytest.raises(BadInput, match=r"no 'ID' column in the first row; the first row must name the columns "
                       r"\(ID, 나이, 성별, 체중\(몸무게\), 키\(신장\)\): fix the sheet, or remove it \(it is optional\)"):
        read_meta(tmp_path / "m.xlsx")
