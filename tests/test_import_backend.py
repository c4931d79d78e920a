"""`xaug import` on a backend: the files are read, hashed and checked by local threads or by the
workers of a dask cluster, with the same version (id and bytes) and the same one-line errors."""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
import time
from pathlib import Path

import pytest

from _hardening import snapshot, xaug
from _layout import first_image, first_label, make_layout
from test_hardening_import import CORPUS
from xaug.errors import BadInput
from xaug.store import Store
from xaug.store.backends import BackendChoice, get_backend

distributed = pytest.importorskip("distributed")


def tree(ds) -> dict[str, bytes]:
    return {info["path"]: ds.file_path(info, stored_in).read_bytes() for info, stored_in in ds.all_files()}


@pytest.fixture(scope="module")
def layout(tmp_path_factory) -> Path:
    return make_layout(tmp_path_factory.mktemp("layout") / "src", persons=3, size=32)


@pytest.fixture(scope="module")
def local_import(layout, tmp_path_factory):
    return Store(tmp_path_factory.mktemp("local")).import_folder(layout, jobs=2, backend="local")


class Counting:
    """A backend that counts the items sent to it (to see what the driver keeps for itself)."""

    def __init__(self, backend):
        self.inner, self.sent = backend, []
        self.name, self.choice = backend.name, backend.choice

    def run(self, *a, **k):  # pragma: no cover - import does not build through the engine
        return self.inner.run(*a, **k)

    def map(self, fn, items, jobs):
        self.sent.append((getattr(fn, "__name__", None) or fn.func.__name__, len(items)))
        return self.inner.map(fn, items, jobs)


@pytest.mark.parametrize("storage", ["shared", "bytes", "auto"])
def test_dask_imports_the_same_version_as_local(cluster, layout, local_import, tmp_path, storage):
    ds_local, _, stats_local = local_import
    store = Store(tmp_path / "home")
    be = Counting(get_backend(BackendChoice("dask", cluster.scheduler_address, storage)))
    ds, created, stats = store.import_folder(layout, backend=be)
    assert created and ds.id == ds_local.id and tree(ds) == tree(ds_local)
    assert stats == stats_local == {"hashed": 14, "reused": 0}  # 7 images, 6 labels, the sheet
    assert store.verify("raw") == []
    # every sample went to the workers; the files were copied by them unless told not to
    copy = [] if storage == "bytes" else [("_copy_if_seen", 14)]
    assert be.sent == [("_check_sample", 7)] + copy
    assert not any(p.name.startswith(".xaug-probe") for p in (store.home / "staging").iterdir())


def test_an_unchanged_reimport_sends_nothing_and_a_touched_file_only_its_sample(cluster, layout, tmp_path):
    root = tmp_path / "src"
    shutil.copytree(layout, root)
    store = Store(tmp_path / "home")
    choice = BackendChoice("dask", cluster.scheduler_address, "auto")
    ds1, _, _ = store.import_folder(root, backend=choice)
    before = snapshot(store.home)
    be = Counting(get_backend(choice))
    ds2, created, stats = store.import_folder(root, backend=be)
    assert not created and ds2.id == ds1.id and stats == {"hashed": 0, "reused": 14} and be.sent == []
    assert snapshot(store.home) == before
    image = first_image(root)
    os.utime(image, ns=(time.time_ns(), time.time_ns()))
    ds3, created, stats = store.import_folder(root, backend=be)
    assert not created and ds3.id == ds1.id and stats == {"hashed": 1, "reused": 13}
    assert be.sent == [("_check_sample", 1)]  # that image and its label (checked again), nothing else


def test_lenient_skips_and_warnings_are_the_same_on_dask(cluster, layout, tmp_path):
    root = tmp_path / "src"
    shutil.copytree(layout, root)
    label = first_label(root)
    doc = json.loads(label.read_text())
    doc["annotations"][3]["points"] = [[1, 1], [2, 2]]  # two points: skipped with --lenient
    doc["metadata"] = {"height": 30, "width": 32}  # a warning naming the label
    label.write_text(json.dumps(doc))
    seen = {}
    for name, backend in (("local", "local"), ("dask", BackendChoice("dask", cluster.scheduler_address, "bytes"))):
        warnings: list[str] = []
        ds, _, _ = Store(tmp_path / name).import_folder(root, lenient=True, backend=backend,
                                                        on_warning=warnings.append)
        seen[name] = (ds.id, tree(ds), ds.manifest["skipped"], warnings)
    assert seen["dask"] == seen["local"]
    assert len(seen["local"][2]) == 1 and "metadata says 32x30" in seen["local"][3][0]


def test_every_refusal_is_the_same_lines_on_dask(cluster, layout, tmp_path):
    """The whole corpus of broken inputs (tests/test_hardening_import.py), plain and --strict."""
    choice = BackendChoice("dask", cluster.scheduler_address, "auto")
    refused = 0
    for i, (case, breaker) in enumerate(CORPUS.items()):
        root = tmp_path / f"case{i}"
        shutil.copytree(layout, root)
        breaker(root)
        for strict in (False, True):
            lines = {}
            for name, backend in (("local", "local"), ("dask", choice)):
                store = Store(tmp_path / f"{name}-{i}-{strict}")
                try:
                    ds, _, _ = store.import_folder(root, strict=strict, backend=backend, on_warning=lambda w: None)
                    lines[name] = ("ok", ds.id)
                except BadInput as exc:
                    lines[name] = ("refused", exc.lines())
                    assert store.refs() == {}
            assert lines["dask"] == lines["local"], (case, strict)
            refused += lines["local"][0] == "refused"
    assert refused >= len(CORPUS)  # most cases are refused (some twice: with --strict too)


class _Elsewhere:
    """A 'dask' backend whose workers do not see this machine's folders: the source files are not
    found there, and the store's probe file is not seen."""

    name = "dask"

    def __init__(self, storage: str):
        self.choice = BackendChoice("dask", None, storage)

    def run(self, *a, **k):  # pragma: no cover
        raise AssertionError

    def map(self, fn, items, jobs):
        from xaug.store.store import _check_sample

        if fn is _check_sample:
            def away(f):
                return f if f is None else dataclasses.replace(f, path="/nowhere/xaug" + f.path)
            return [fn(dataclasses.replace(t, image=away(t.image), label=away(t.label))) for t in items]
        return [False for _ in items]  # _copy_if_seen: the probe file is not there


def test_workers_that_do_not_see_the_folder_are_one_line(layout, tmp_path):
    store = Store(tmp_path / "home")
    with pytest.raises(BadInput, match=r"^--backend dask: a dask worker cannot read .*\.png, which this "
                                       r"machine sees; the workers must see the folder being imported"):
        store.import_folder(layout, backend=_Elsewhere("auto"))
    assert store.refs() == {}


def test_workers_that_do_not_see_the_store_copy_nothing(layout, local_import, tmp_path, monkeypatch):
    import xaug.store.store as store_mod

    real = store_mod._check_sample
    store = Store(tmp_path / "home")
    be = _Elsewhere("shared")
    monkeypatch.setattr(be, "map", lambda fn, items, jobs: (
        [real(t) for t in items] if fn is real else [False for _ in items]))
    with pytest.raises(BadInput, match="^--storage shared: the dask workers do not see the store's folder"):
        store.import_folder(layout, backend=be)
    assert store.refs() == {}
    be.choice = BackendChoice("dask", None, "auto")  # auto: this process copies what they could not
    ds, created, _ = store.import_folder(layout, backend=be)
    assert created and ds.id == local_import[0].id and tree(ds) == tree(local_import[0])


def test_cli_import_on_dask(cluster, layout, local_import, tmp_path, monkeypatch):
    home = tmp_path / "home"
    res = xaug("import", layout, "--home", home, "--quiet", "--backend", "dask",
               "--scheduler", cluster.scheduler_address, "--storage", "bytes")
    assert res.exit_code == 0, res.output
    assert f"raw_v1 ({local_import[0].id[:12]}) registered: 7 items; hashed 14 files, 0 unchanged" in res.stdout
    monkeypatch.setenv("XAUG_BACKEND", "dask")  # or from the environment
    monkeypatch.setenv("XAUG_SCHEDULER", cluster.scheduler_address)
    res = xaug("import", layout, "--home", tmp_path / "env", "--quiet")
    assert res.exit_code == 0 and f"raw_v1 ({local_import[0].id[:12]}) registered" in res.stdout
    monkeypatch.delenv("XAUG_BACKEND")
    res = xaug("import", layout, "--home", home, "--quiet", "--format", "coco", "--backend", "dask")
    assert res.exit_code == 2 and "--backend" in res.stderr and "only with --format competition" in res.stderr


def test_cli_import_refuses_a_bad_backend_in_one_line(layout, tmp_path, monkeypatch):
    home = tmp_path / "home"
    res = xaug("import", layout, "--home", home, "--backend", "spark")
    assert res.exit_code == 2 and "error: --backend: unknown backend 'spark'" in res.stderr
    res = xaug("import", layout, "--home", home, "--scheduler", "tcp://h:1")
    assert res.exit_code == 2 and "error: --scheduler: --scheduler is for --backend dask" in res.stderr
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    res = xaug("import", layout, "--home", home, "--backend", "dask")
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert res.stderr.strip() == ("error: --backend dask: the dask backend needs dask.distributed, which is not "
                                  "installed: pip install 'xaug[dask]' (or pip install 'dask[distributed]')")
    with pytest.raises(BadInput, match="needs dask.distributed"):
        Store(home).import_folder(layout, backend="dask")
    assert not (home / "refs.json").exists()


def _die_once(marker: str, fn, item):
    """Kill the worker process the first time any task runs; later attempts run `fn`."""
    if not os.path.exists(marker):
        Path(marker).write_text("died")
        os._exit(1)
    return fn(item)


class _Dying(Counting):
    def __init__(self, backend, marker: str):
        super().__init__(backend)
        self.marker = marker

    def map(self, fn, items, jobs):
        import functools

        return self.inner.map(functools.partial(_die_once, self.marker, fn), items, jobs)


def test_a_worker_killed_mid_import_is_retried_and_the_import_completes(cluster, layout, local_import, tmp_path):
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    marker = tmp_path / "marker"
    be = _Dying(get_backend(BackendChoice("dask", cluster.scheduler_address, "shared")), str(marker))
    store = Store(tmp_path / "home")
    ds, created, _ = store.import_folder(layout, backend=be)
    assert marker.read_text() == "died"  # a worker really died
    assert created and ds.id == local_import[0].id and store.verify("raw") == []
    cluster.wait_for_workers(2, timeout=30)  # the nanny replaced it


@pytest.mark.parametrize("where", ["local", "dask"])
def test_a_label_refused_against_its_changed_image_is_refused_again(cluster, layout, tmp_path, where):
    """The label was checked before; its image shrinks: the label is checked again and refused,
    and stays refused on the next import, when the image is unchanged (cached) again."""
    import cv2
    import numpy as np

    backend = "local" if where == "local" else BackendChoice("dask", cluster.scheduler_address, "auto")
    root = tmp_path / "src"
    shutil.copytree(layout, root)
    store = Store(tmp_path / "home")
    store.import_folder(root, backend=backend)
    first_image(root).write_bytes(cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))[1].tobytes())
    rel = first_label(root).relative_to(root).as_posix()
    for _ in range(2):
        with pytest.raises(BadInput) as info:
            store.import_folder(root, name="again", backend=backend, on_warning=lambda w: None)
        assert any(line.startswith(f"{rel}: annotation 0: ") and "lies far outside the 8x8 image" in line
                   for line in info.value.lines())
    assert sorted(store.refs()) == ["raw"]
