"""xaug.pipeline: the spec, plan keys and caching, parallel execution into the store."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from xaug import pipeline as P
from xaug.errors import BadInput, XaugError
from xaug.layout import read_image
from xaug.store import Store

PIPELINES = Path(__file__).resolve().parents[1] / "pipelines"


def pipeline_files() -> list[Path]:
    """The pipeline files in pipelines/ (ablation specs, which hold pipelines, live there too)."""
    import yaml as _yaml

    return [p for p in sorted(PIPELINES.glob("*.yaml"))
            if "steps" in (_yaml.safe_load(p.read_text(encoding="utf-8")) or {})]


def copy_store(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.lock", "lock"))
    return dst


@pytest.fixture
def home(store_copy) -> Path:
    """A private copy of the shared tiny synthetic store (conftest.py), holding `raw`."""
    return store_copy


def spec(**kw):
    data = {"name": "rotate", "steps": [{"op": "rotate", "angle_range": [-30, 30]}]}
    data.update(kw)
    return P.parse_pipeline(data)


def val_persons(ds) -> set[str]:
    return {s.person for s in ds.samples(split="train", role="val", load=False)}


def tree_bytes(ds) -> dict[str, bytes]:
    out = {}
    for it in ds.items:
        out[it["image"]["path"]] = ds.file_path(it["image"], it.get("stored_in")).read_bytes()
        if it.get("label"):
            out[it["label"]["path"]] = ds.file_path(it["label"], it.get("stored_in")).read_bytes()
    return out


# ---------------------------------------------------------------- the spec

@pytest.mark.parametrize("path", pipeline_files(), ids=lambda p: p.name)
def test_every_example_pipeline_validates(path):
    s = P.load_pipeline(path)
    assert s.steps and s.name
    assert P.resolved_spec(s)["steps"][0]["op"] == s.steps[0].op


def test_defaults_are_resolved_into_the_spec():
    resolved = P.resolved_spec(P.parse_pipeline({"name": "m", "steps": [{"op": "mosaic", "grid": "2x3"}]}))
    assert resolved["source"] == "raw" and resolved["split"] == "train" and resolved["seed"] == 0
    assert resolved["include_source"] is False
    assert resolved["steps"][0]["grid"] == [2, 3] and resolved["steps"][0]["beta"] == 0.3


def test_bad_spec_lists_every_problem_by_key_path():
    with pytest.raises(BadInput, match=r"invalid pipeline \(4 problems\)") as info:
        P.parse_pipeline({"name": "rot", "seed": -1, "stepz": 1,
                          "steps": [{"op": "rotate", "angle_range": [1, 2, 3]}, {"op": "rotat"}]})
    problems = info.value.problems
    assert any(p.startswith("seed: ") for p in problems)
    assert "stepz: unknown key; remove it (see `xaug schema`)" in problems
    assert any(p.startswith("steps.0.angle_range: ") for p in problems)
    assert any(p.startswith("steps.1.op: unknown op 'rotat'") and "did you mean 'rotate'" in p
               for p in problems)


def test_missing_op_and_empty_steps():
    with pytest.raises(BadInput) as info:
        P.parse_pipeline({"steps": [{"angle_range": [0, 1]}]})
    assert info.value.problems == ["steps.0.op: missing 'op'; one of: flip, mosaic, rotate"]
    with pytest.raises(BadInput, match="invalid pipeline") as info:
        P.parse_pipeline({"name": "x", "steps": []})
    assert info.value.problems[0].startswith("steps: ")


def test_yaml_problems_name_the_file_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: rot\nsteps:\n  - op: rotate\n    angle_range: [30, -30]\n    bogus: 1\n")
    with pytest.raises(BadInput) as info:
        P.load_pipeline(bad)
    assert info.value.where == str(bad)
    assert "steps.0.bogus: unknown key; remove it (see `xaug schema`) (line 5)" in info.value.problems
    backwards = tmp_path / "backwards.yaml"
    backwards.write_text("name: rot\nsteps:\n  - op: rotate\n    angle_range: [30, -30]\n")
    with pytest.raises(BadInput) as info:
        P.load_pipeline(backwards)
    assert info.value.problems == ["steps.0: angle_range low 30.0 is above high -30.0 (line 3)"]

    broken = tmp_path / "broken.yaml"
    broken.write_text("name: rot\nsteps:\n  - op: rotate\n   pivot: wrist\n")
    with pytest.raises(BadInput, match="not valid YAML") as info:
        P.load_pipeline(broken)
    assert info.value.where == f"{broken}:4"

    with pytest.raises(BadInput, match="no such pipeline file"):
        P.load_pipeline(tmp_path / "missing.yaml")
    (tmp_path / "empty.yaml").write_text("# nothing\n")
    with pytest.raises(BadInput, match="empty"):
        P.load_pipeline(tmp_path / "empty.yaml")


def test_schema_is_a_discriminated_union_on_op():
    schema = P.pipeline_schema()
    steps = schema["properties"]["steps"]
    assert steps["items"]["discriminator"]["propertyName"] == "op"
    assert set(steps["items"]["discriminator"]["mapping"]) == {"rotate", "mosaic", "flip"}
    assert schema["additionalProperties"] is False
    json.dumps(schema)


# ---------------------------------------------------------------- plans

def test_plan_key_depends_on_spec_source_and_seed_not_on_how_the_source_is_named(home):
    store = Store(home)
    raw = store.open("raw")
    key = P.plan_key(spec(), raw.id)
    assert key == P.plan_key(spec(source="raw_v1"), raw.id) == P.plan_key(spec(source=raw.id[:8]), raw.id)
    assert key != P.plan_key(spec(seed=1), raw.id)
    assert key != P.plan_key(spec(), "0" * 64)
    assert key != P.plan_key(spec(steps=[{"op": "rotate", "angle_range": [-30, 31]}]), raw.id)


def test_item_rngs_are_independent_of_order():
    a = [P.item_rng(7, 0, i).random() for i in range(5)]
    b = [P.item_rng(7, 0, i).random() for i in reversed(range(5))][::-1]
    assert a == b and len(set(a)) == 5
    assert P.item_rng(7, 1, 0).random() != a[0] and P.item_rng(8, 0, 0).random() != a[0]


def test_plan_reads_only_non_validation_persons_of_the_split(home):
    store = Store(home)
    raw = store.open("raw")
    plan = P.make_plan(store, spec())
    used = {s.person for s in plan.samples.values()}
    assert used and not used & val_persons(raw)
    assert all(s.split == "train" for s in plan.samples.values())
    test_plan = P.make_plan(store, spec(split="test"))
    assert {s.split for s in test_plan.samples.values()} == {"test"}


def test_the_same_op_twice_gets_unique_stems(home):
    s = P.parse_pipeline({"name": "twice", "steps": [{"op": "rotate", "angles": [10]},
                                                     {"op": "rotate", "angles": [-10]}]})
    plan = P.make_plan(Store(home), s)
    rels = [t.relpath for t in plan.tasks]
    assert len(rels) == len(set(rels))
    assert sum("_rot0_s1" in r for r in rels) == len(rels) // 2


# ---------------------------------------------------------------- runs

def test_rotate_run_writes_labelled_items_with_provenance(home):
    store = Store(home)
    raw = store.open("raw")
    result = P.run_pipeline(store, spec(steps=[{"op": "rotate", "angle_range": [-30, 30], "per_image": 2}]),
                            jobs=1, progress=False)
    ds = result.dataset
    assert ds.name == "rotate_v1" and not result.cached and result.made == len(ds.items)
    sources = raw.samples(split="train", role="train", load=False)
    assert len(ds.items) == 2 * len(sources)
    assert ds.manifest["source"] == {"id": raw.id} and ds.manifest["seed"] == 0
    assert ds.manifest["spec"] == P.resolved_spec(spec(steps=[{"op": "rotate", "angle_range": [-30, 30],
                                                                  "per_image": 2}]))
    assert not {it["person"] for it in ds.items} & val_persons(raw)
    for s in ds.samples():
        assert Path(s.relpath).stem.rsplit("_", 1)[0].endswith(("_rot0", "_rot1"))
        assert s.provenance["op"] == "rotate" and s.provenance["source"].startswith("train/DCM/")
        assert {"angle", "pivot", "matrix"} <= set(s.provenance)
        assert -30 <= s.provenance["angle"] <= 30
        img = read_image(s.image_path)
        doc = json.loads(s.image_path.parent.parent.parent.joinpath(
            "outputs_json", s.person, s.stem + ".json").read_bytes())
        assert doc["metadata"] == {"height": img.shape[0], "width": img.shape[1]}
        assert doc["filename"] == s.name and doc["parent_path"] == f"/{s.person}"
        assert s.annotations and all(np.asarray(a.points).dtype.kind == "i" for a in s.annotations)
        assert s.fold is not None and s.fold != raw.val_fold
    assert store.verify(ds.name) == []


def test_identical_run_is_a_cache_hit_that_does_no_work(home, monkeypatch):
    store = Store(home)
    first = P.run_pipeline(store, spec(), jobs=1, progress=False)
    refs = (home / "refs.json").read_bytes()

    def no_work(*a, **k):  # pragma: no cover - must not be reached
        raise AssertionError("a cached plan must not execute")

    monkeypatch.setattr(P, "_execute", no_work)
    again = P.run_pipeline(store, spec(source=store.open("raw").id[:10]), jobs=2, progress=False)
    assert again.cached and again.dataset.id == first.dataset.id and again.dataset.name == "rotate_v1"
    assert "up to date" in again.summary() and "rotate_v1" in again.summary()
    assert (home / "refs.json").read_bytes() == refs


def test_another_seed_is_a_new_version(home):
    store = Store(home)
    v1 = P.run_pipeline(store, spec(seed=0), jobs=1, progress=False).dataset
    v2 = P.run_pipeline(store, spec(seed=1), jobs=1, progress=False).dataset
    assert (v1.name, v2.name) == ("rotate_v1", "rotate_v2") and v1.id != v2.id
    angles = lambda ds: sorted(it["provenance"]["angle"] for it in ds.items)  # noqa: E731
    assert angles(v1) != angles(v2)


def test_one_and_two_workers_write_identical_bytes(tiny_home, tmp_path):
    s = P.parse_pipeline({"name": "mixed", "seed": 3, "include_source": True,
                          "steps": [{"op": "rotate", "pivot": "wrist", "angles": [-40, 35]},
                                    {"op": "mosaic", "n": 5, "grid": "2x2"}, {"op": "flip"}]})
    assert len(P.make_plan(Store(tiny_home), s).tasks) > 2 * P.CHUNK  # several chunks: really parallel
    made = []
    for jobs in (1, 2):
        h = copy_store(tiny_home, tmp_path / f"home{jobs}")
        made.append(P.run_pipeline(Store(h), s, jobs=jobs, progress=False).dataset)
    assert made[0].id == made[1].id
    assert tree_bytes(made[0]) == tree_bytes(made[1])


def test_mosaic_run_records_patches_and_never_reads_validation_persons(home):
    store = Store(home)
    raw = store.open("raw")
    s = P.parse_pipeline({"name": "mosaic", "steps": [{"op": "mosaic", "n": 6, "grid": [2, 2]}]})
    ds = P.run_pipeline(store, s, jobs=1, progress=False).dataset
    assert len(ds.items) == 6 and ds.kind == "mosaic"
    val = val_persons(raw)
    by_rel = {it["image"]["path"]: it for it in raw.items}
    for it in ds.items:
        patches = it["provenance"]["patches"]
        assert 1 <= len(patches) <= 4
        for patch in patches:
            assert by_rel[patch["source"]]["person"] not in val
            assert len(patch["src_rect"]) == 4 and len(patch["dst_rect"]) == 4
        assert it["person"] not in val


def test_include_source_references_without_copying(home):
    store = Store(home)
    raw = store.open("raw")
    s = P.parse_pipeline({"name": "flipped", "include_source": True, "steps": [{"op": "flip"}]})
    result = P.run_pipeline(store, s, jobs=1, progress=False)
    ds = result.dataset
    refs = [it for it in ds.items if it.get("stored_in")]
    own = [it for it in ds.items if not it.get("stored_in")]
    assert result.referenced == len(refs) == len(own) == len(raw.samples(split="train", role="train", load=False))
    assert {it["stored_in"] for it in refs} == {raw.id}
    assert not (ds.root / refs[0]["image"]["path"]).exists()
    assert ds.kind == "pipeline"
    assert store.verify(ds.name) == []


def test_an_interrupted_run_resumes_and_makes_the_same_version(tiny_home, tmp_path):
    s = spec(steps=[{"op": "rotate", "per_image": 2}])
    clean = P.run_pipeline(Store(copy_store(tiny_home, tmp_path / "clean")), s, jobs=1, progress=False).dataset

    store = Store(copy_store(tiny_home, tmp_path / "resumed"))
    plan = P.make_plan(store, s)
    with pytest.raises(KeyboardInterrupt):
        with store.build(name=s.name, kind=plan.kind, plan_key=plan.key, source=plan.source,
                         spec=P.resolved_spec(s), seed=s.seed) as b:
            P._execute(b.staging, plan, plan.tasks[:3], 1, False, 0)
            raise KeyboardInterrupt  # killed before commit: nothing is registered
    assert store.names() == ["raw_v1"]
    result = P.run_pipeline(store, s, jobs=1, progress=False)
    assert result.resumed == 3 and result.made == len(plan.tasks) - 3
    assert result.dataset.id == clean.id and tree_bytes(result.dataset) == tree_bytes(clean)


def test_unknown_source_fails_before_anything_is_written(home):
    store = Store(home)
    before = sorted(p.relative_to(home) for p in home.rglob("*"))
    with pytest.raises(XaugError, match="unknown dataset 'nope'.*raw_v1"):
        P.run_pipeline(store, spec(source="nope"), jobs=1, progress=False)
    assert sorted(p.relative_to(home) for p in home.rglob("*")) == before


def test_every_example_pipeline_plans_on_the_tiny_store(home):
    store = Store(home)
    for path in pipeline_files():
        s = P.load_pipeline(path)
        s = s.model_copy(update={"steps": [st.model_copy(update={"n": 2}) if st.op == "mosaic" else st
                                           for st in s.steps]})
        plan = P.make_plan(store, s)
        assert plan.tasks, path.name
    combined = yaml.safe_load((PIPELINES / "combined.yaml").read_text())
    assert combined["include_source"] is True
    assert {st["op"] for st in combined["steps"]} == {"rotate", "mosaic"}
