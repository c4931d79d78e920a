"""Shared tiny fixtures: small synthetic hand datasets in throw-away stores (generated, never committed).

- `tiny_home`   (session) Path of a store holding "raw": 6 train persons (12 images) + 2 test
                persons (4 images), 256x256, seed 0. Read it, never write into it.
- `tiny_store`  (session) `Store` opened on `tiny_home`.
- `tiny_dataset`(session) the "raw" `Dataset` of `tiny_home`.
- `store_copy`  (function) Path of a private copy of `tiny_home` under tmp_path: write freely.
- `make_store`  (session) factory `make_store(persons=2, test_persons=1, size=128, seed=0,
                name="raw", **synth_kwargs) -> Path` of a fresh store (yours to write).
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from hypothesis import settings

# Property tests: 60 examples each by default; XAUG_HYPOTHESIS=hunt runs 3000 to look for
# counterexamples (minutes), e.g. `XAUG_HYPOTHESIS=hunt python -m pytest tests/test_geometry.py`.
settings.register_profile("default", max_examples=60)
settings.register_profile("hunt", max_examples=3000)
settings.load_profile(os.environ.get("XAUG_HYPOTHESIS", "default"))

TINY = dict(persons=6, test_persons=2, size=256, seed=0)


def _synth_store(home: Path, name: str = "raw", **kwargs) -> Path:
    from xaug.store import Store
    from xaug.synth.generate import synthesize

    synthesize(Store(home), name, progress=False, jobs=1, **kwargs)
    return home


@pytest.fixture(scope="session")
def tiny_home(tmp_path_factory) -> Path:
    return _synth_store(tmp_path_factory.mktemp("tiny_home"), **TINY)


@pytest.fixture(scope="session")
def tiny_store(tiny_home):
    from xaug.store import Store

    return Store(tiny_home)


@pytest.fixture(scope="session")
def tiny_dataset(tiny_store):
    return tiny_store.open("raw")


@pytest.fixture
def store_copy(tiny_home, tmp_path) -> Path:
    dst = tmp_path / "store"
    shutil.copytree(tiny_home, dst, ignore=shutil.ignore_patterns("*.lock", "lock"))
    return dst


@pytest.fixture(scope="session")
def make_store(tmp_path_factory):
    def make(persons: int = 2, test_persons: int = 1, size: int = 128, seed: int = 0,
             name: str = "raw", **kwargs) -> Path:
        home = tmp_path_factory.mktemp("synth_store")
        return _synth_store(home, name, persons=persons, test_persons=test_persons, size=size,
                            seed=seed, **kwargs)

    return make


@pytest.fixture(scope="module")
def cluster():
    """A real multi-process dask cluster, as docs/scale.md tells users to start one (2 workers,
    1 thread each); one per test module that asks for it."""
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as c:
        yield c
