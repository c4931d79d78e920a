"""The store's meta-sheet cache (`cache/sheets/`): a build from a version neither imports
openpyxl nor parses or writes the sheet again once it has done so for the same content, and the
dataset ids are the same with a cold, warm, damaged or read-only cache."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from xaug import pipeline as P
from xaug.layout import PersonMeta, read_meta, write_meta
from xaug.store import Store
from xaug.store.store import SheetCache
from xaug.synth.generate import synthesize

ROOT = Path(__file__).resolve().parents[1]
ROTATE = {"name": "rot", "seed": 1, "steps": [{"op": "rotate", "angle_range": [-30, 30]}]}


@pytest.fixture(scope="module")
def source_store(tmp_path_factory):
    home = tmp_path_factory.mktemp("sheets")
    synthesize(Store(home), "raw", persons=4, test_persons=1, size=96, seed=3, progress=False, jobs=1,
               appearance="legacy")
    return home


def _fresh(source_store: Path, tmp_path: Path, name: str) -> Path:
    home = tmp_path / name
    shutil.copytree(source_store, home)
    return home


def _build(home: Path, seed: int = 1) -> str:
    return P.run_pipeline(Store(home), P.parse_pipeline({**ROTATE, "seed": seed}), jobs=1, progress=False).dataset.id


def test_cold_warm_damaged_and_unwritable_caches_give_the_same_ids(source_store, tmp_path):
    cold = _fresh(source_store, tmp_path, "cold")
    shutil.rmtree(cold / "cache" / "sheets", ignore_errors=True)
    ref = _build(cold)
    cached = sorted(p.name for p in (cold / "cache" / "sheets").iterdir())
    assert any(n.endswith(".json") for n in cached) and any(n.endswith(".xlsx") for n in cached)

    warm = _fresh(cold, tmp_path, "warm")
    assert _build(warm, seed=1) == ref  # a cache hit of the plan itself
    assert _build(warm, seed=2) == _build(_fresh(source_store, tmp_path, "cold2"), seed=2)

    damaged = _fresh(cold, tmp_path, "damaged")
    for p in (damaged / "cache" / "sheets").iterdir():
        p.write_bytes(b"\x00garbage")  # every entry unreadable: read and written again
    other = _fresh(source_store, tmp_path, "ref3")
    assert _build(damaged, seed=3) == _build(other, seed=3)
    assert json.loads(next((damaged / "cache" / "sheets").glob("*.json")).read_bytes())["persons"]

    blocked = _fresh(source_store, tmp_path, "blocked")
    shutil.rmtree(blocked / "cache" / "sheets", ignore_errors=True)
    (blocked / "cache" / "sheets").write_text("a file where the folder would be")
    assert _build(blocked, seed=3) == _build(other, seed=3)


def test_cached_sheet_bytes_equal_a_fresh_write(tmp_path):
    persons = [PersonMeta("ID002", 31.0, "F", 55.5, 160.0, None), PersonMeta("ID001", None, "M", None, None, "x")]
    cache = SheetCache(tmp_path / "home")
    for n in range(3):  # cold, warm, warm
        cache.write(tmp_path / f"c{n}.xlsx", persons)
    write_meta(tmp_path / "direct.xlsx", persons)
    direct = (tmp_path / "direct.xlsx").read_bytes()
    assert all((tmp_path / f"c{n}.xlsx").read_bytes() == direct for n in range(3))
    got = cache.read("a" * 64, lambda: direct, where="x")
    assert got == read_meta(tmp_path / "direct.xlsx") == cache.read("a" * 64, lambda: b"unused", where="x")
    # a cached sheet that no longer matches its recorded hash is written anew
    for p in cache.dir.glob("*.xlsx"):
        p.write_bytes(p.read_bytes()[:-10])
    cache.write(tmp_path / "again.xlsx", persons)
    assert (tmp_path / "again.xlsx").read_bytes() == direct


def test_a_warm_build_does_not_import_openpyxl(source_store, tmp_path):
    home = _fresh(source_store, tmp_path, "imports")
    _build(home, seed=5)  # fills the cache
    code = ("import sys\n"
            "from xaug import pipeline as P\nfrom xaug.store import Store\n"
            f"P.run_pipeline(Store({str(home)!r}), P.parse_pipeline({ {**ROTATE, 'seed': 6}!r}), jobs=1, progress=False)\n"
            "print('openpyxl' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
