"""xaug.store.execute: the one build engine, as the store's users see it: the plan lock, a full
disk, workers that die with a killed command."""
from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from xaug import pipeline as P
from xaug.errors import BadInput
from xaug.store import Store
from xaug.store import work as W

ROTATE = {"name": "rotate", "seed": 2, "steps": [{"op": "rotate", "per_image": 2}]}


def _ppid(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def children(pid: int) -> set[int]:
    return {int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and _ppid(int(p.name)) == pid}


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def xaug_cmd(home: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "xaug", *args, "--home", str(home)]


def test_two_identical_commands_at_once_build_once(store_copy):
    """The second waits on the plan's lock, then finds the version the first made."""
    cmd = xaug_cmd(store_copy, "rotate", "--per-image", "3", "--seed", "7", "--jobs", "1", "-q")
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    lines = sorted(o[0].strip() for o in outs)
    assert sum("made" in line for line in lines) == 1, lines
    assert sum("up to date" in line for line in lines) == 1, lines
    store = Store(store_copy)
    assert store.names() == ["raw_v1", "rotate_v1"] and store.verify("rotate_v1") == []
    assert not any((store_copy / "staging").glob("*/records"))


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_full_disk_stops_with_one_line_frees_unfinished_items_and_a_rerun_resumes(store_copy, monkeypatch, jobs):
    """jobs=2: forked workers, whose writer threads outlive a chunk; each fills the disk at its
    own 4th write, which may be the last of a chunk (then the next chunk or the run's final
    flush reports it)."""
    store = Store(store_copy)
    spec = P.parse_pipeline(ROTATE)
    real = W.stage_made
    calls = {"n": 0}

    def stage_then_fill_up(staging, made):
        calls["n"] += 1
        if calls["n"] == 4:  # the disk fills up half way through writing the 4th item
            (Path(staging) / made.relpath).parent.mkdir(parents=True, exist_ok=True)
            (Path(staging) / made.relpath).write_bytes(made.image[:100])
            raise OSError(errno.ENOSPC, "No space left on device", str(Path(staging) / made.relpath))
        return real(staging, made)

    monkeypatch.setattr(W, "stage_made", stage_then_fill_up)
    with pytest.raises(BadInput, match="no space left on the device while building; unfinished items were "
                                       "removed, finished ones are kept: free space"):
        P.run_pipeline(store, spec, jobs=jobs, progress=False)
    assert store.names() == ["raw_v1"]
    stage = next(p for p in (store_copy / "staging").iterdir() if p.is_dir())
    staged = sorted(p for p in (stage / "data").rglob("*") if p.is_file())
    records = len(list((stage / "records").glob("*.json")))
    if jobs == 1:
        assert records == 3
    assert 1 <= records and len(staged) == 2 * records  # finished items (image + label); half-written gone
    monkeypatch.setattr(W, "stage_made", real)
    result = P.run_pipeline(store, spec, jobs=jobs, progress=False)
    assert result.resumed == records and result.made == len(result.dataset.items) - records
    assert store.verify(result.dataset.name) == []


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)")
def test_kill_9_of_a_build_ends_its_workers_within_seconds(make_store, tmp_path):
    home = make_store(persons=4, test_persons=1, size=384)
    cmd = xaug_cmd(home, "rotate", "--per-image", "40", "--pivot", "wrist", "--jobs", "2", "-q")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        workers: set[int] = set()
        while time.time() < deadline:  # wait until the pool's workers are making items
            workers = children(proc.pid)  # forked (or loky) worker processes
            staged = list((home / "staging").glob("*/records/*.json")) if (home / "staging").exists() else []
            if len(workers) >= 2 and staged:
                break
            time.sleep(0.2)
        assert len(workers) >= 2, "the build's workers never started"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        deadline = time.time() + 10
        while time.time() < deadline and any(alive(w) for w in workers):
            time.sleep(0.2)
        assert not any(alive(w) for w in workers), "workers outlived the killed command"
    finally:
        if proc.poll() is None:
            proc.kill()
    # and the same command then finishes the work
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "resumed" in done.stdout


def test_an_absurd_jobs_never_starts_more_workers_than_cores(monkeypatch):
    """loky's pool is started before the tasks are planned: it must not trust --jobs 100000."""
    import joblib

    from xaug.store.backends import LocalBackend

    asked: list[int] = []

    class FakeParallel:
        def __init__(self, n_jobs, **kw):
            asked.append(n_jobs)

        def __call__(self, calls):
            return [None for _ in calls]

    monkeypatch.setattr(joblib, "Parallel", FakeParallel)
    backend = LocalBackend()
    backend.pool = "loky"
    backend.warm(100_000)
    if backend._warming is not None:
        backend._warming.join(10)
    assert asked and all(n <= W.default_jobs() for n in asked)
    # and a run never has more workers than 4 per core, nor more than its tasks
    assert W.resolve_jobs(100_000, 10**6) <= 4 * W.default_jobs()
    assert W.resolve_jobs(100_000, 3) <= 3


def test_the_library_checks_the_space_before_planning(store_copy, monkeypatch):
    """run_pipeline itself (not only the CLI) refuses what the disk cannot hold, before planning."""
    def no_plan(*a, **k):  # pragma: no cover - must not be reached
        raise AssertionError("planned before checking the space")

    def full(self, nbytes, what, todo):
        raise BadInput(f"{what} need more space than is free; {todo}", where=str(self.home))

    monkeypatch.setattr(P, "make_plan", no_plan)
    monkeypatch.setattr(Store, "ensure_space", full)
    spec = P.parse_pipeline({"name": "big", "steps": [{"op": "mosaic", "n": 1000}]})
    with pytest.raises(BadInput, match="1,000 new items need more space than is free"):
        P.run_pipeline(Store(store_copy), spec, jobs=1, progress=False)
    assert Store(store_copy).names() == ["raw_v1"]


def test_run_check_refuses_what_the_run_would_refuse(store_copy, monkeypatch, tmp_path):
    from typer.testing import CliRunner

    from xaug.cli import app

    def full(self, nbytes, what, todo):
        raise BadInput(f"{what} need more space than is free; {todo}", where=str(self.home))

    monkeypatch.setattr(Store, "ensure_space", full)
    spec = tmp_path / "big.yaml"
    spec.write_text("name: big\nsteps:\n  - {op: mosaic, n: 1000}\n")
    r = CliRunner().invoke(app, ["run", str(spec), "--check", "--home", str(store_copy)])
    assert r.exit_code == 2 and "1,000 new items need more space than is free" in r.output


# ---------------------------------------------------------------- the local pool: forked or loky workers

def _tiny_builds(store: Store, jobs: int) -> tuple[str, str]:
    from xaug.synth.generate import synthesize

    raw = synthesize(store, "raw", persons=3, test_persons=1, size=128, seed=5, jobs=jobs, progress=False)
    spec = P.parse_pipeline({"name": "rot", "seed": 4, "steps": [{"op": "rotate", "pivot": "wrist", "per_image": 2}]})
    return raw.id, P.run_pipeline(store, spec, jobs=jobs, progress=False).dataset.id


def test_forked_and_loky_workers_write_the_same_versions_as_one_worker(tmp_path, monkeypatch):
    from xaug.store.backends import LocalBackend

    one = _tiny_builds(Store(tmp_path / "one"), 1)
    assert _tiny_builds(Store(tmp_path / "default"), 2) == one
    monkeypatch.setattr(LocalBackend, "pool", "loky")
    assert _tiny_builds(Store(tmp_path / "loky"), 2) == one


@pytest.mark.skipif("fork" not in __import__("multiprocessing").get_all_start_methods(), reason="no fork here")
def test_workers_forked_after_opencv_used_its_threads_do_not_hang(tmp_path):
    """OpenCV's thread pool does not survive a fork: a library user who ran OpenCV (or a 1-worker
    build) before a parallel build in the same process must not get workers that wait forever."""
    code = f"""
import cv2, numpy as np
from pathlib import Path
from xaug import pipeline as P
from xaug.store import Store
from xaug.synth.generate import synthesize
cv2.setNumThreads(2)
a = np.random.default_rng(0).random((1024, 1024), dtype=np.float32)
for _ in range(20):
    cv2.warpAffine(a, np.float32([[0.9, 0.1, 3], [-0.1, 0.9, 5]]), (1024, 1024))
store = Store(Path({str(tmp_path / 'store')!r}))
synthesize(store, "raw", persons=3, test_persons=1, size=128, seed=5, jobs=1, progress=False)
for seed in (1, 2):
    spec = P.parse_pipeline({{"name": f"r{{seed}}", "seed": seed, "steps": [{{"op": "rotate", "per_image": 3}}]}})
    print(P.run_pipeline(store, spec, jobs=2, progress=False).dataset.name)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["r1_v1", "r2_v1"]


class _DieOn:
    """make_item that kills its worker from one task on (as the OOM killer would), unless fixed;
    with `spare`, on every task in every process but that one. Never in the process that made it,
    the test's own: a build whose command makes chunks too (loky's, while its workers start; the
    fork pool falls back to loky when a thread left by an earlier test is still alive) would
    otherwise end the whole test session without a word."""

    def __init__(self, poison: int, fixed: bool = False, spare: int | None = None):
        self.poison, self.fixed, self.spare = poison, fixed, spare
        self.parent = os.getpid()

    def __call__(self, task: int):
        import numpy as np

        from xaug.layout import encode_png
        from xaug.store.work import MadeItem

        pid = os.getpid()
        if not self.fixed and pid != self.parent and (pid != self.spare if self.spare else task >= self.poison):
            os._exit(1)
        # the test's process makes its items slowly: on a busy machine loky's workers may take
        # seconds to start, and the command must not have made every item before they do
        time.sleep(0.25 if pid == self.parent else 0.05)
        return MadeItem(f"train/DCM/ID{task + 1:03d}/i{task}.png", encode_png(np.zeros((4, 4), np.uint8)), None,
                        person=f"ID{task + 1:03d}", split="train")


@pytest.mark.parametrize("pool", ["fork", "loky"])
def test_a_killed_local_worker_is_one_line_and_a_rerun_resumes(tmp_path, monkeypatch, pool):
    from xaug.errors import XaugError
    from xaug.store.backends import LocalBackend
    from xaug.store.execute import BuildRequest, build

    if pool == "fork" and LocalBackend.pool != "fork":
        pytest.skip("no fork here")
    monkeypatch.setattr(LocalBackend, "pool", pool)
    if pool == "fork":  # the fork pool itself: earlier tests' dask clients leave distributed's idle
        # offload thread, with which the command would take loky's pool instead (tested elsewhere)
        monkeypatch.setattr("xaug.store.backends.fork_is_safe", lambda: True)
    store = Store(tmp_path / "store")
    request = BuildRequest("doomed", "test", "doomed-local-plan-01")
    relpath = lambda t: f"train/DCM/ID{t + 1:03d}/i{t}.png"  # noqa: E731
    spare = os.getpid() if pool == "loky" else None
    with pytest.raises(XaugError, match="a worker process died while building") as err:
        build(store, request, list(range(40)), _DieOn(30, spare=spare), relpath=relpath, jobs=2)
    assert "\n" not in str(err.value)
    assert store.names() == []
    result = build(store, request, list(range(40)), _DieOn(30, fixed=True), relpath=relpath, jobs=2)
    assert result.resumed >= 1 and result.resumed + result.made == 40
    assert store.verify("doomed") == []


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)")
@pytest.mark.parametrize("sig, group, code", [(signal.SIGINT, True, 130), (signal.SIGTERM, False, 143)])
def test_ctrl_c_or_sigterm_of_a_parallel_build_is_one_line_and_ends_its_workers(make_store, sig, group, code):
    """Ctrl-C in a terminal reaches the command and its workers (the process group); SIGTERM
    only the command. Either way: one line, the exit code, no worker's traceback, no worker left."""
    home = make_store(persons=4, test_persons=1, size=384)
    cmd = xaug_cmd(home, "rotate", "--per-image", "40", "--pivot", "wrist", "--jobs", "2", "-q")
    # as from a terminal: a command started in the background of a script inherits SIGINT ignored
    # (and rightly keeps ignoring it), so give the command the default disposition
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.time() + 120
        workers: set[int] = set()
        while time.time() < deadline:
            workers = children(proc.pid)
            staged = list((home / "staging").glob("*/records/*.json")) if (home / "staging").exists() else []
            if len(workers) >= 2 and staged:
                break
            time.sleep(0.2)
        assert len(workers) >= 2, "the build's workers never started"
        os.killpg(proc.pid, sig) if group else os.kill(proc.pid, sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == code, err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: "), err
    deadline = time.time() + 10
    while time.time() < deadline and any(alive(w) for w in workers):
        time.sleep(0.2)
    assert not any(alive(w) for w in workers), "workers outlived the stopped command"


def test_a_process_running_other_threads_gets_loky_workers_not_forked_ones(tmp_path, monkeypatch):
    """Forking copies every lock as it is at that moment: with another thread alive (a dask
    client's event loop, a Jupyter kernel's threads) the local backend uses loky, same bytes."""
    import threading

    from xaug.store.backends import LocalBackend, fork_is_safe

    used: list[str] = []
    real_loky, real_fork = LocalBackend._run_loky, LocalBackend._run_forked
    monkeypatch.setattr(LocalBackend, "_run_loky", staticmethod(lambda *a, **k: (used.append("loky"), real_loky(*a, **k))))
    monkeypatch.setattr(LocalBackend, "_run_forked", staticmethod(lambda *a, **k: (used.append("fork"), real_fork(*a, **k))))
    one = _tiny_builds(Store(tmp_path / "one"), 1)
    safe_before = fork_is_safe()  # False when earlier tests left threads (a dask client's) in this process
    stop = threading.Event()
    other = threading.Thread(target=stop.wait, name="IO loop", daemon=True)
    other.start()
    try:
        assert not fork_is_safe()
        assert _tiny_builds(Store(tmp_path / "threads"), 2) == one
    finally:
        stop.set()
        other.join()
    assert used and set(used) == {"loky"}
    used.clear()
    if LocalBackend.pool == "fork" and safe_before:
        assert fork_is_safe()
        assert _tiny_builds(Store(tmp_path / "forked"), 2) == one and set(used) == {"fork"}


def test_finding_a_plan_reads_one_manifest_not_the_whole_store(tmp_path, monkeypatch):
    """Every build looks its plan up twice: with many versions in the store that must not read
    every manifest (cache/plans.json), and a lost or lying cache is only slower, never wrong."""
    import json

    store = Store(tmp_path / "store")
    raw_id, rot_id = _tiny_builds(store, 1)
    rot_key = store.open(rot_id).manifest["plan_key"]
    read: list[str] = []
    real = Store._load_manifest
    monkeypatch.setattr(Store, "_load_manifest", lambda self, id, check_id=True: (read.append(id), real(self, id, check_id))[1])
    assert store.find_plan(rot_key).id == rot_id and read == [rot_id]
    read.clear()
    assert store.find_plan("no-such-plan") is None and read == []
    cache = store.home / "cache" / "plans.json"
    cache.unlink()  # lost: rebuilt from the manifests
    assert store.find_plan(rot_key).id == rot_id and cache.is_file()
    cache.write_text(json.dumps({raw_id: rot_key, rot_id: "something else"}))  # lying
    assert store.find_plan(rot_key).id == rot_id
    cache.write_text("not json")  # damaged
    assert store.find_plan(rot_key).id == rot_id


@pytest.mark.parametrize("n, size, workers", [(300, 4, 2), (38, 2, 2), (7, 4, 3), (1, 4, 2), (0, 4, 2), (50, 1, 8)])
def test_guided_chunks_cover_every_task_in_order_and_end_with_single_tasks(n, size, workers):
    got = list(W.guided_chunks(list(range(n)), size, workers))
    assert [t for c in got for t in c] == list(range(n))
    lens = [len(c) for c in got]
    assert all(1 <= k <= size for k in lens) and lens == sorted(lens, reverse=True)
    # the end: every worker's last pieces are single tasks (they finish within about one item)
    assert all(k == 1 for k in lens[-min(len(lens), 2 * workers):])
