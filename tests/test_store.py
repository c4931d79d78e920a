"""The dataset store: import, names and versions, manifest hashes, verify, export, atomicity."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from _layout import first_image, first_label, make_layout
from xaug.cli import app
from xaug.errors import BadInput, UnknownDataset
from xaug.layout import encode_png, image_relpath, read_image, sample_label_bytes, scan_layout
from xaug.store import Store, manifest_id
import xaug.store.hashing as hashing

runner = CliRunner()


from _hardening import snapshot  # noqa: E402  (one store snapshot for every 'changed nothing' check)


@pytest.fixture
def layout(tmp_path):
    return make_layout(tmp_path / "src", persons=6)


@pytest.fixture
def store(tmp_path):
    return Store(tmp_path / "home")


def test_import_registers_a_version_with_items_and_split(store, layout):
    ds, created, stats = store.import_folder(layout, name="raw")
    assert created and ds.name == "raw_v1" and ds.base == "raw" and ds.version == 1
    assert len(ds.items) == 13 and stats == {"hashed": 26, "reused": 0}
    assert store.verify("raw") == []
    split = ds.split_info
    assert split["k"] == 5 and split["seed"] == 0 and split["val_fold"] == 0
    # both hands of a person fall in the same fold; test items have none
    folds = {}
    for it in ds.items:
        if it["split"] == "train":
            folds.setdefault(it["person"], set()).add(it["fold"])
        else:
            assert it["fold"] is None
    assert all(len(v) == 1 for v in folds.values())
    val = ds.samples(split="train", role="val")
    train = ds.samples(split="train", role="train")
    assert val and train and not ({s.person for s in val} & {s.person for s in train})
    assert len(val) + len(train) == 12
    assert ds.persons["ID002"].note == "has nail art"


def test_stratified_by_sex_when_enough_persons(tmp_path, store):
    root = make_layout(tmp_path / "big", persons=20, size=16)
    ds, _, _ = store.import_folder(root)
    split = ds.split_info
    assert split["stratify"] == "sex"
    for fold in range(5):
        sexes = [ds.persons[p].sex for p, f in split["folds"].items() if f == fold]
        assert abs(sexes.count("M") - sexes.count("F")) <= 2


def test_reimport_unchanged_is_a_noop_and_does_not_rehash(store, layout, monkeypatch):
    ds1, _, _ = store.import_folder(layout)
    calls = []
    real = hashing.sha256_file
    monkeypatch.setattr(hashing, "sha256_file", lambda p: calls.append(p) or real(p))
    before = snapshot(store.home)
    t0 = time.perf_counter()
    ds2, created, stats = store.import_folder(layout)
    assert not created and ds2.id == ds1.id and ds2.name == "raw_v1"
    assert stats == {"hashed": 0, "reused": 26} and calls == []
    assert snapshot(store.home) == before
    assert time.perf_counter() - t0 >= 0  # timing itself is measured in benchmarks/bench_store.py


def test_touching_a_file_rehashes_only_that_file(store, layout):
    store.import_folder(layout)
    img = first_image(layout)
    os.utime(img, ns=(time.time_ns(), time.time_ns()))
    ds, created, stats = store.import_folder(layout)
    assert not created and stats == {"hashed": 1, "reused": 25}


def test_hash_is_independent_of_folder_and_write_order(tmp_path):
    a = make_layout(tmp_path / "a", order="forward")
    b = make_layout(tmp_path / "elsewhere" / "b", order="reverse")
    da, _, _ = Store(tmp_path / "h1").import_folder(a)
    db, _, _ = Store(tmp_path / "h2").import_folder(b)
    assert da.id == db.id
    # one changed byte: another hash
    lab = first_label(b)
    lab.write_bytes(lab.read_bytes().replace(b'"attributes": {}', b'"attributes": {} ', 1))
    dc, created, _ = Store(tmp_path / "h2").import_folder(b)
    assert created and dc.id != da.id and dc.name == "raw_v2"


def test_manifest_id_ignores_info_block_but_not_content(store, layout):
    ds, _, _ = store.import_folder(layout)
    m = json.loads(json.dumps(ds.manifest))
    m["info"]["created"] = "1999-01-01T00:00:00Z"
    assert manifest_id(m) == ds.id
    m["items"][0]["image"]["sha256"] = "0" * 64
    assert manifest_id(m) != ds.id


def test_names_versions_and_hash_prefixes(store, layout, tmp_path):
    ds1, _, _ = store.import_folder(layout)
    other = make_layout(tmp_path / "other", persons=3, seed=5)
    ds2, _, _ = store.import_folder(other)
    assert store.open("raw").name == "raw_v2"
    assert store.open("raw_v1").id == ds1.id
    assert store.open(ds1.id[:8]).name == "raw_v1"
    with pytest.raises(UnknownDataset, match=r"unknown dataset 'rwa' \(did you mean raw\?\); known: raw_v1, raw_v2"):
        store.open("rwa")
    with pytest.raises(UnknownDataset, match="raw_v3"):
        store.open("raw_v3")


@pytest.mark.parametrize("name", ["../evil", "a/b", "raw_v2", "", "1abc", "x" * 80])
def test_bad_names_are_refused(store, layout, name):
    with pytest.raises(BadInput, match="plain identifiers"):
        store.import_folder(layout, name=name)
    assert not (store.home / "refs.json").exists()


def test_verify_names_modified_deleted_and_added_files(store, layout):
    ds, _, _ = store.import_folder(layout)
    files = sorted(p for p in ds.root.rglob("*.png"))
    files[0].write_bytes(files[0].read_bytes() + b"x")
    files[1].unlink()
    (ds.root / "train" / "DCM" / "ID001" / "stray.png").write_bytes(b"new")
    problems = store.verify("raw")
    rel = lambda p: p.relative_to(ds.root).as_posix()  # noqa: E731
    assert f"changed: {rel(files[0])}" in problems
    assert f"missing: {rel(files[1])}" in problems
    assert "extra: train/DCM/ID001/stray.png" in problems
    assert len(problems) == 3


def _bad_layouts():
    def corrupt_png(root):
        first_image(root).write_bytes(b"\x89PNG\r\n\x1a\nnot really")
        return first_image(root).relative_to(root).as_posix(), "not a readable PNG"

    def broken_json(root):
        first_label(root).write_text("{oops")
        return first_label(root).relative_to(root).as_posix(), "not valid JSON"

    def two_points(root):
        lab = first_label(root)
        doc = json.loads(lab.read_text())
        doc["annotations"][3]["points"] = [[1, 1], [2, 2]]
        lab.write_text(json.dumps(doc))
        return lab.relative_to(root).as_posix() + ": annotation 3", "polygon has 2 points"

    def unknown_label(root):
        lab = first_label(root)
        doc = json.loads(lab.read_text())
        doc["annotations"][5]["label"] = "finger-99"
        lab.write_text(json.dumps(doc))
        return lab.relative_to(root).as_posix() + ": annotation 5", "unknown label 'finger-99'"

    def missing_json(root):
        first_label(root).unlink()
        return first_image(root).relative_to(root).as_posix(), "no label file"

    return [corrupt_png, broken_json, two_points, unknown_label, missing_json]


@pytest.mark.parametrize("breaker", _bad_layouts(), ids=lambda f: f.__name__)
def test_bad_input_is_reported_and_nothing_registered(tmp_path, breaker):
    root = make_layout(tmp_path / "src", persons=3)
    home = tmp_path / "home"
    Store(home).import_folder(make_layout(tmp_path / "good", persons=2, seed=9), name="good")
    before = snapshot(home)
    where, what = breaker(root)
    result = runner.invoke(app, ["import", str(root), "--home", str(home)])
    assert result.exit_code == 2
    err = result.stderr if hasattr(result, "stderr") else result.output
    lines = [l for l in err.splitlines() if l.strip()]
    assert lines[0].startswith("error: ") and "nothing was registered" in lines[0]
    assert any(where in l and what in l for l in lines), err
    assert "Traceback" not in err
    assert snapshot(home) == before


def test_all_problems_are_listed_at_once(tmp_path, store):
    root = make_layout(tmp_path / "src", persons=3)
    breakers = _bad_layouts()
    breakers[0](root)  # corrupt png (first image)
    labels = sorted((root / "train" / "outputs_json").glob("*/*.json"))
    doc = json.loads(labels[2].read_text())
    doc["annotations"][0]["label"] = "Wrist"
    labels[2].write_text(json.dumps(doc))
    with pytest.raises(BadInput) as info:
        store.import_folder(root)
    text = "\n".join(info.value.lines())
    assert "not a readable PNG" in text and "unknown label 'Wrist'" in text


def test_lenient_skips_bad_annotations_and_records_them(tmp_path, store):
    root = make_layout(tmp_path / "src", persons=3)
    lab = first_label(root)
    doc = json.loads(lab.read_text())
    doc["annotations"][3]["points"] = [[1, 1], [2, 2]]
    lab.write_text(json.dumps(doc))
    ds, _, _ = store.import_folder(root, lenient=True)
    rel = lab.relative_to(root).as_posix()
    assert ds.manifest["skipped"] == [{"file": rel, "annotation": 3, "reason": "label finger-4: polygon has 2 points, need at least 3"}]
    sample = next(s for s in ds.samples() if s.label_relpath == rel)
    assert len(sample.annotations) == 28
    assert store.verify(ds.name) == []


def test_export_round_trip_is_byte_identical(store, layout, tmp_path):
    ds, _, _ = store.import_folder(layout)
    out = tmp_path / "exported"
    store.export("raw", out)
    a, b = scan_layout(layout), scan_layout(out)
    assert [s.relpath for s in a.samples] == [s.relpath for s in b.samples]
    for sa, sb in zip(a.samples, b.samples):
        assert sa.image_path.read_bytes() == sb.image_path.read_bytes()
        assert sa.annotations == sb.annotations and sa.doc_extra == sb.doc_extra
    assert (out / "meta_data.xlsx").read_bytes() == (layout / "meta_data.xlsx").read_bytes()
    # exported again into another store: the same version id
    ds2, _, _ = Store(tmp_path / "h2").import_folder(out)
    assert ds2.id == ds.id
    with pytest.raises(BadInput, match="not empty"):
        store.export("raw", out)


def _derive(store, src, seed, name="flipped"):
    with store.build(name=name, kind="test-flip", plan_key=f"plan-{seed:04d}", source=src,
                     spec={"op": "test-flip"}, seed=seed) as b:
        for s in src.samples(split="train", role="train"):
            b.reference(s)
            img = read_image(s.image_path)[:, ::-1]
            h, w = img.shape[:2]
            rel = image_relpath("train", s.person, f"{s.stem}_flip{seed}")
            b.add_item(rel, encode_png(img), sample_label_bytes(s, h, w), person=s.person, side=s.side,
                       split="train", fold=s.fold, provenance={"source": s.relpath, "seed": seed})
        b.set_persons(src.persons)
        return b.commit(), b.created


def test_derived_version_references_source_without_copying_and_exports(store, layout, tmp_path):
    src, _, _ = store.import_folder(layout)
    ds, created = _derive(store, src, 1)
    n_train = len(src.samples(split="train", role="train"))
    assert created and ds.name == "flipped_v1" and len(ds.items) == 2 * n_train
    refs = [it for it in ds.items if it["stored_in"]]
    assert len(refs) == n_train and all(it["stored_in"] == src.id for it in refs)
    own_pngs = list(ds.root.rglob("*.png"))
    assert len(own_pngs) == n_train  # only the new images are stored
    assert store.verify(ds.name) == []
    assert ds.manifest["source"] == {"id": src.id} and store.lineage(ds)[-1].id == src.id
    # no validation person leaks into the derived version
    val_persons = {s.person for s in src.samples(split="train", role="val")}
    assert not val_persons & {it["person"] for it in ds.items}
    # same recipe: same id, no new version; another seed: v2
    again, created2 = _derive(store, src, 1)
    assert not created2 and again.id == ds.id and again.name == "flipped_v1"
    v2, _ = _derive(store, src, 2)
    assert v2.name == "flipped_v2" and v2.id != ds.id
    out = tmp_path / "flat"
    store.export("flipped_v1", out)
    scan = scan_layout(out)
    assert scan.problems == [] and len(scan.samples) == 2 * n_train
    assert set(Store(tmp_path / "h3").import_folder(out)[0].persons) == {it["person"] for it in ds.items}


def test_interrupted_build_resumes_with_finished_items(store, layout):
    src, _, _ = store.import_folder(layout)
    samples = src.samples(split="train", role="train")
    with store.build(name="half", kind="t", plan_key="resume-plan", source=src, spec={}, seed=0) as b:
        s = samples[0]
        rel = image_relpath("train", s.person, s.stem + "_x")
        b.add_item(rel, s.image_path, None, person=s.person, split="train")
        # the process "dies" here: no commit
    assert "half" not in store.refs()
    with store.build(name="half", kind="t", plan_key="resume-plan", source=src, spec={}, seed=0) as b:
        assert b.has_item(rel)
        ds = b.commit()
    assert ds.name == "half_v1" and len(ds.items) == 1 and store.verify("half") == []


def test_a_resumed_build_does_not_publish_what_a_killed_write_left(store, layout):
    src, _, _ = store.import_folder(layout)
    s = src.samples(split="train", role="train")[0]
    rel = image_relpath("train", s.person, s.stem + "_x")
    with store.build(name="half", kind="t", plan_key="stray-plan", source=src, spec={}, seed=0) as b:
        b.add_item(rel, s.image_path, None, person=s.person, split="train")
        # a write killed mid-way, and an item whose record was never written
        (b.staging / Path(rel).parent / f".{Path(rel).name}.999.tmp").write_bytes(b"partial")
        (b.staging / "train/images/ID999").mkdir(parents=True)
        (b.staging / "train/images/ID999/orphan.png").write_bytes(b"no record")
    with store.build(name="half", kind="t", plan_key="stray-plan", source=src, spec={}, seed=0) as b:
        ds = b.commit()
    assert store.verify(ds.name) == []
    assert not (ds.root / "train/images/ID999").exists()


def test_a_resumed_import_does_not_publish_a_killed_copy(tmp_path, layout, monkeypatch):
    import shutil
    import xaug.store.store as store_mod
    home = tmp_path / "home"
    real_copy, calls = shutil.copyfile, []

    def dying_copy(src, dst, *a, **k):
        calls.append(dst)
        if len(calls) == 5:  # the process "dies" half-way through a copy (another pid: another name)
            Path(dst).with_name(Path(dst).name.replace(f".{os.getpid()}.", ".999.")).write_bytes(b"partial")
            raise KeyboardInterrupt
        return real_copy(src, dst, *a, **k)

    monkeypatch.setattr(store_mod.shutil, "copyfile", dying_copy)
    with pytest.raises(KeyboardInterrupt):
        Store(home).import_folder(layout)
    assert "raw" not in Store(home).refs()
    monkeypatch.setattr(store_mod.shutil, "copyfile", real_copy)
    ds, created, _ = Store(home).import_folder(layout)
    assert created and Store(home).verify(ds.name) == []
    assert not list(ds.root.rglob("*.tmp"))


IMPORT_SCRIPT = """
import sys
from xaug.store import Store
Store(sys.argv[1]).import_folder(sys.argv[2], name=sys.argv[3])
"""


def _consistent(home: Path) -> None:
    store = Store(home)
    for ds in store.datasets():
        assert store.verify(ds.name) == [], ds.name


def test_sigkill_during_import_leaves_a_consistent_store_and_rerun_completes(tmp_path):
    root = make_layout(tmp_path / "src", persons=30, size=256)
    home = tmp_path / "home"
    Store(home).import_folder(make_layout(tmp_path / "small", persons=2, seed=3), name="small")
    for delay in (0.3, 0.7, 1.1, 1.6, 2.2):
        proc = subprocess.Popen([sys.executable, "-c", IMPORT_SCRIPT, str(home), str(root), "raw"])
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        _consistent(home)
    subprocess.run([sys.executable, "-c", IMPORT_SCRIPT, str(home), str(root), "raw"], check=True)
    store = Store(home)
    assert store.open("raw").name == "raw_v1" and len(store.open("raw").items) == 61
    _consistent(home)


def test_two_processes_writing_one_store(tmp_path):
    home = tmp_path / "home"
    roots = [make_layout(tmp_path / f"s{i}", persons=8, size=64, seed=i) for i in range(3)]
    procs = [subprocess.Popen([sys.executable, "-c", IMPORT_SCRIPT, str(home), str(r), "raw"]) for r in roots]
    assert [p.wait() for p in procs] == [0, 0, 0]
    store = Store(home)
    assert sorted(store.names()) == ["raw_v1", "raw_v2", "raw_v3"]
    _consistent(home)


def test_cli_store_commands(store, layout, tmp_path):
    home = str(store.home)
    r = runner.invoke(app, ["import", str(layout), "--home", home])
    assert r.exit_code == 0 and "raw_v1" in r.output and "hashed 26 files" in r.output
    r = runner.invoke(app, ["import", str(layout), "--home", home])
    assert r.exit_code == 0 and "unchanged" in r.output and "hashed 0 files, 26 unchanged" in r.output
    r = runner.invoke(app, ["datasets", "--json", "--home", home])
    rows = json.loads(r.output)
    assert r.exit_code == 0 and [x["name"] for x in rows] == ["raw_v1"]
    r = runner.invoke(app, ["show", "raw", "--items", "--json", "--home", home])
    info = json.loads(r.output)
    assert info["name"] == "raw_v1" and len(info["items_list"]) == 13
    assert {"image", "sha256", "person", "split", "fold", "provenance", "meta"} <= set(info["items_list"][0])
    r = runner.invoke(app, ["verify", "raw", "--json", "--home", home])
    assert r.exit_code == 0 and json.loads(r.output)["ok"] is True
    r = runner.invoke(app, ["export", "raw", str(tmp_path / "x"), "--home", home])
    assert r.exit_code == 0 and (tmp_path / "x" / "meta_data.xlsx").is_file()
    next(store.open("raw").root.rglob("*.json")).write_text("{}")
    r = runner.invoke(app, ["verify", "raw", "--home", home])
    assert r.exit_code == 1 and "changed: train/outputs_json/" in r.output
    r = runner.invoke(app, ["show", "nope", "--home", home])
    assert r.exit_code == 2 and "unknown dataset 'nope'" in r.output and "raw_v1" in r.output
    r = runner.invoke(app, ["import", str(tmp_path / "missing"), "--home", home])
    assert r.exit_code == 2 and "no such folder" in r.output


@pytest.mark.parametrize("breaker", _bad_layouts()[:4], ids=lambda f: f.__name__)
def test_a_failed_import_fails_again_until_fixed(tmp_path, breaker):
    """The hash cache must not hide a bad file: only files that passed their check are trusted."""
    root = make_layout(tmp_path / "src", persons=3)
    store = Store(tmp_path / "home")
    breaker(root)
    for _ in range(2):
        with pytest.raises(BadInput, match="nothing was registered"):
            store.import_folder(root)
    assert store.refs() == {}


def test_unchanged_reimport_does_not_reparse_labels(store, layout, monkeypatch):
    import xaug.store.store as store_mod

    store.import_folder(layout)
    calls = []
    real = store_mod.parse_annotation_doc
    monkeypatch.setattr(store_mod, "parse_annotation_doc", lambda *a, **k: calls.append(a[1]) or real(*a, **k))
    ds, created, _ = store.import_folder(layout)
    assert not created and calls == []
    lab = first_label(layout)
    lab.write_text(lab.read_text() + " ")
    ds2, created2, stats = store.import_folder(layout)
    assert created2 and calls == [lab.relative_to(layout).as_posix()] and stats["hashed"] == 1


def test_person_folders_named_by_number_join_the_sheet(tmp_path):
    """Folders '001' (not 'ID001') with the sheet's '001' rows: metadata reaches the split, the
    version's persons and derived versions (it was silently empty)."""
    from xaug import pipeline as P

    root = make_layout(tmp_path / "src", persons=4, test_persons=0)
    for top in ("DCM", "outputs_json"):
        for d in sorted((root / "train" / top).iterdir()):
            d.rename(d.with_name(d.name[2:]))
    store = Store(tmp_path / "home")
    ds, _, _ = store.import_folder(root, name="raw")
    assert sorted(ds.persons) == ["001", "002", "003", "004"]
    assert ds.persons["002"].age == 22.0 and ds.persons["002"].note == "has nail art"
    flipped = P.run_pipeline(store, P.parse_pipeline({"name": "f", "steps": [{"op": "flip"}]}), jobs=1,
                             progress=False).dataset
    assert {p: m.age for p, m in flipped.persons.items()} == {p: ds.persons[p].age for p in flipped.persons}
