"""xaug.store.backends: the same build on local joblib and on a dask cluster, same bytes and ids."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from xaug import pipeline as P
from xaug.errors import BadInput, XaugError
from xaug.store import Store
from xaug.store.backends import BackendChoice, choice_from, get_backend
from xaug.store.execute import BuildRequest, MadeItem, build
from xaug.synth.generate import synthesize

distributed = pytest.importorskip("distributed")

SYNTH = dict(persons=3, test_persons=1, size=128, seed=5)
ROTATE = {"name": "rotate", "seed": 4, "steps": [{"op": "rotate", "pivot": "wrist", "per_image": 2}]}


def tree(ds) -> dict[str, bytes]:
    return {info["path"]: ds.file_path(info, stored_in).read_bytes() for info, stored_in in ds.all_files()}


@pytest.fixture(scope="module")
def local_build(tmp_path_factory):
    store = Store(tmp_path_factory.mktemp("local"))
    raw = synthesize(store, "raw", jobs=2, progress=False, **SYNTH)
    rot = P.run_pipeline(store, P.parse_pipeline(ROTATE), jobs=2, progress=False).dataset
    return raw, rot


@pytest.mark.parametrize("storage", ["shared", "bytes", "auto"])
def test_dask_builds_the_same_bytes_and_ids_as_local(cluster, local_build, tmp_path, storage):
    choice = BackendChoice("dask", cluster.scheduler_address, storage)
    store = Store(tmp_path / "store")
    raw = synthesize(store, "raw", progress=False, backend=choice, **SYNTH)
    rot = P.run_pipeline(store, P.parse_pipeline(ROTATE), progress=False, backend=choice).dataset
    assert (raw.id, rot.id) == (local_build[0].id, local_build[1].id)
    assert tree(raw) == tree(local_build[0]) and tree(rot) == tree(local_build[1])
    assert store.verify("raw") == [] and store.verify("rotate") == []


def test_auto_storage_sees_a_shared_folder(cluster, tmp_path):
    backend = get_backend(BackendChoice("dask", cluster.scheduler_address, "auto"))
    with distributed.Client(cluster.scheduler_address) as client:
        assert backend.storage_for(client, tmp_path) == "shared"
    assert list(tmp_path.iterdir()) == []  # the probe file is gone


# ---------------------------------------------------------------- a worker that dies mid-task

def _die_once(marker: str, task: int) -> MadeItem:
    """Kill the worker process the first time any task runs; later attempts succeed."""
    import numpy as np

    from xaug.layout import encode_png

    if not os.path.exists(marker):
        Path(marker).write_text("died")
        os._exit(1)
    img = np.full((8, 8), task * 10, np.uint8)
    return MadeItem(f"train/DCM/ID{task + 1:03d}/img{task}.png", encode_png(img), None,
                    person=f"ID{task + 1:03d}", split="train")


def test_a_worker_killed_mid_task_is_retried_and_the_build_completes(cluster, tmp_path):
    import functools

    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    store = Store(tmp_path / "store")
    marker = tmp_path / "marker"
    make = functools.partial(_die_once, str(marker))
    result = build(store, BuildRequest("killed", "test", "killed-plan-0001"), list(range(6)), make,
                   relpath=lambda t: f"train/DCM/ID{t + 1:03d}/img{t}.png",
                   backend=BackendChoice("dask", cluster.scheduler_address, "shared"))
    assert marker.read_text() == "died"  # a worker really died
    assert len(result.dataset.items) == 6 and store.verify("killed") == []
    # the dead worker is replaced by the nanny: the cluster still has its workers
    cluster.wait_for_workers(2, timeout=30)


def test_a_task_that_always_kills_its_worker_fails_with_one_line_and_resumes(tmp_path):
    store = Store(tmp_path / "store")
    calls = tmp_path / "calls"
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as c:
        import cloudpickle

        cloudpickle.register_pickle_by_value(sys.modules[__name__])
        choice = BackendChoice("dask", c.scheduler_address, "shared")
        with pytest.raises(XaugError, match="a dask worker died while building"):
            build(store, BuildRequest("doomed", "test", "doomed-plan-0001"), [0, 1, 2],
                  _always_die_on_1(str(calls)), relpath=lambda t: f"train/DCM/ID00{t + 1}/i{t}.png",
                  backend=choice, jobs=1)
    assert store.names() == []
    # a rerun (the poison task fixed) resumes: the finished item is not made again
    Path(calls).write_text("")
    result = build(store, BuildRequest("doomed", "test", "doomed-plan-0001"), [0, 1, 2],
                   _always_die_on_1(str(calls), fixed=True), relpath=lambda t: f"train/DCM/ID00{t + 1}/i{t}.png")
    assert result.resumed >= 1 and result.resumed + result.made == 3 and store.verify("doomed") == []


class _always_die_on_1:
    def __init__(self, log: str, fixed: bool = False):
        self.log, self.fixed = log, fixed

    def __call__(self, task: int) -> MadeItem:
        import numpy as np

        from xaug.layout import encode_png

        if task == 2 and not self.fixed:
            import time

            time.sleep(1.0)  # the writer thread finishes the items made before this one
            os._exit(1)
        return MadeItem(f"train/DCM/ID00{task + 1}/i{task}.png", encode_png(np.zeros((4, 4), np.uint8)), None,
                        person=f"ID00{task + 1}", split="train")


# ---------------------------------------------------------------- choosing a backend

def test_backend_choice_from_flags_and_environment(monkeypatch):
    monkeypatch.delenv("XAUG_BACKEND", raising=False)
    assert choice_from() == BackendChoice("local", None, "auto")
    monkeypatch.setenv("XAUG_BACKEND", "dask")
    monkeypatch.setenv("XAUG_SCHEDULER", "tcp://h:8786")
    assert choice_from() == BackendChoice("dask", "tcp://h:8786", "auto")
    assert choice_from("local", None, None).name == "local"  # a flag wins over the environment
    with pytest.raises(BadInput, match="unknown backend 'dsak' \\(did you mean dask\\?\\)"):
        choice_from("dsak")
    with pytest.raises(BadInput, match="unknown storage mode 'nfs'"):
        choice_from("dask", None, "nfs")


def test_scheduler_without_dask_is_refused(monkeypatch):
    monkeypatch.delenv("XAUG_BACKEND", raising=False)
    with pytest.raises(BadInput, match="--scheduler is for --backend dask"):
        choice_from("local", "tcp://h:1")


def test_dask_without_distributed_is_one_line_saying_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    with pytest.raises(BadInput, match=r"needs dask.distributed, which is not installed: pip install 'xaug\[dask\]'"):
        choice_from("dask")


def test_cli_backend_flag_errors_are_one_line(tmp_path):
    from typer.testing import CliRunner

    from xaug.cli import app

    r = CliRunner().invoke(app, ["synth", "--persons", "1", "--size", "64", "--backend", "spark",
                                 "--home", str(tmp_path)])
    assert r.exit_code == 2
    assert "error: --backend: unknown backend 'spark'" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "refs.json").exists()


def test_eda_reads_on_dask_as_it_does_locally(cluster, local_build):
    import numpy as np

    from xaug.report.eda import collect

    samples = local_build[0].samples()
    here = collect(samples, jobs=2, progress=False, overlap_side=128)
    there = collect(samples, progress=False, overlap_side=128,
                    backend=BackendChoice("dask", cluster.scheduler_address, "auto"))
    assert [r.relpath for r in there.records] == [r.relpath for r in here.records]
    assert there.overlap_images == here.overlap_images and np.array_equal(there.overlap, here.overlap)
