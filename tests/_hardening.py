"""Helpers of the hardening tests: run a command, check it was refused in one line, prove the store
did not change."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from typer.testing import CliRunner

from xaug.cli import app
from xaug.store import Store, manifest_id

runner = CliRunner()


def xaug(*args) -> object:
    return runner.invoke(app, [str(a) for a in args])


def refused(res, first_words: str) -> str:
    """Exit 2, exactly one `error: ...` line on stderr starting with `first_words`, no traceback
    (other stderr lines may be progress or warnings)."""
    assert res.exit_code == 2, (res.exit_code, res.output, res.exception)
    lines = [line for line in res.stderr.strip().splitlines() if line.startswith("error")]
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("error: " + first_words), res.stderr
    assert "Traceback" not in res.output
    return lines[0]


def snapshot(home: Path) -> dict[str, bytes]:
    """Everything in a store except caches and locks: to prove a refused command changed nothing."""
    out = {}
    for p in sorted(Path(home).rglob("*")):
        rel = p.relative_to(home).as_posix()
        if p.is_file() and not rel.startswith("cache/") and not rel.endswith(".lock") and rel != "lock":
            out[rel] = p.read_bytes()
    return out


def unchanged(home: Path, before: dict[str, bytes], healthy: tuple[str, ...] = ("raw",)) -> None:
    """The store holds what it held, and its healthy versions verify."""
    assert snapshot(home) == before
    store = Store(home)
    for name in healthy:
        assert store.verify(name) == [], name


def republish(home: Path, name: str, edit) -> str:
    """An attacker's edit: change the manifest of `name` with `edit(manifest)`, recompute its id, move
    the version folder to the new id and point refs.json at it (so the id check alone cannot tell)."""
    store = Store(home)
    ds = store.open(name)
    manifest = json.loads((store.version_dir(ds.id) / "manifest.json").read_text())
    edit(manifest)
    new_id = manifest_id(manifest)
    shutil.move(store.version_dir(ds.id), store.version_dir(new_id))
    (store.version_dir(new_id) / "manifest.json").write_text(json.dumps(manifest))
    refs = json.loads((Path(home) / "refs.json").read_text())
    refs[ds.base] = [new_id if i == ds.id else i for i in refs[ds.base]]
    (Path(home) / "refs.json").write_text(json.dumps(refs))
    return new_id


def add_copy(home: Path, name: str = "copy", source: str = "raw") -> None:
    """A second, healthy version (`copy_v1`) referencing `source`'s items: to damage one and keep one."""
    store = Store(home)
    src = store.open(source)
    with store.build(name=name, kind="custom", plan_key=f"{name}-plan-0001", source=src,
                     spec={"op": "custom"}, seed=0) as b:
        for s in src.samples(split="train", role="train", load=False):
            b.reference(s)
        b.commit()
