"""The one build engine: run planned tasks into a version's staging folder and commit it.

Every command that writes items (`synth`, every pipeline op) hands the store a list of planned
tasks and a `make_item` callable; the store does the rest, in one place:

- the plan lock: two identical commands at once, the second waits and then finds the version;
- resume: items whose record is already staged (an earlier, killed run) are skipped;
- parallel execution on a backend (`local`: joblib/loky; `dask`: a distributed cluster,
  see `xaug.store.backends`), a few tasks per chunk, workers that die with their parent;
- one writer thread per worker: hashing and writing item i overlaps computing item i+1;
- progress, clean one-line errors for a full or read-only disk, and the atomic commit.

`make_item(task) -> MadeItem` must be a picklable, pure function of the task (and the source
bytes it reads): the same task gives the same bytes in any process, which is what makes 1 worker,
N workers and a cluster write identical versions.

>>> from xaug.store import Store                                                 # doctest: +SKIP
>>> result = build(Store("xaug-data"), BuildRequest("demo", "demo", "demo-plan-0001"),
...                tasks, make_item, jobs=2)                                      # doctest: +SKIP
>>> result.dataset.name                                                          # doctest: +SKIP
'demo_v1'
"""
from __future__ import annotations

import errno
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

from xaug.errors import BadInput, XaugError
from xaug.progress import Progress

# Tasks per chunk handed to a worker: a few images, so memory stays bounded by ~CHUNK decoded
# images per worker while the per-chunk overhead (pickling tasks) stays small.
CHUNK = 4
# Errors of the disk, not of the program: reported as one line, staging kept for a rerun.
DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


@dataclass(frozen=True)
class MadeItem:
    """One finished item: its encoded files and manifest fields (what `make_item` returns)."""

    relpath: str
    image: bytes
    label: bytes | None
    person: str
    split: str
    side: str | None = None
    fold: int | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BuildRequest:
    """What version a build makes: its name, kind, plan key and recipe (recorded in the manifest)."""

    name: str
    kind: str
    plan_key: str
    source: Any = None                 # the source Dataset, or None for a source dataset (synth)
    spec: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None


@dataclass
class BuildResult:
    dataset: Any                  # the Dataset
    cached: bool                  # an identical earlier run made it: nothing was done
    made: int = 0                 # items produced by this run
    resumed: int = 0              # items an earlier, interrupted run had already staged
    referenced: int = 0           # source items listed by reference

    def summary(self) -> str:
        ds = self.dataset
        n = len(ds.manifest.get("items", ())) if isinstance(ds.manifest, dict) else 0
        head = f"{ds.name} ({ds.id[:8]}…) {n} items"
        if self.cached:
            return f"{head}; up to date (same spec, source and seed), nothing to do"
        parts = [f"{self.made} made"]
        if self.resumed:
            parts.append(f"{self.resumed} resumed")
        if self.referenced:
            parts.append(f"{self.referenced} by reference")
        return f"{head} ({', '.join(parts)})"


def default_jobs() -> int:
    """The default number of workers: the cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS/Windows
        return max(1, os.cpu_count() or 1)


def resolve_jobs(jobs: int | None, n_tasks: int | None = None) -> int:
    """`jobs` (None or <1: all cores), never more than the tasks there are."""
    n = default_jobs() if not jobs or jobs < 1 else int(jobs)
    return max(1, min(n, n_tasks)) if n_tasks is not None else n


def chunk_size(n_tasks: int, workers: int) -> int:
    """CHUNK, smaller for small runs so that every worker gets several chunks (load balance)."""
    if workers <= 1:
        return CHUNK
    return max(1, min(CHUNK, n_tasks // (workers * 3)))


def chunks(tasks: Sequence, size: int) -> Iterator[list]:
    for i in range(0, len(tasks), size):
        yield list(tasks[i:i + size])


# ---------------------------------------------------------------- one chunk (in any process)

def stage_made(staging: Path, made: MadeItem) -> dict:
    from xaug.store.store import stage_item

    return stage_item(staging, made.relpath, made.image, made.label, person=made.person, split=made.split,
                      side=made.side, fold=made.fold, provenance=made.provenance, meta=made.meta)


def run_chunk(staging: Path | str | None, make_item: Callable[[Any], MadeItem], chunk: Sequence,
              on_done: Callable[[int], None] | None = None) -> list:
    """Make each task of `chunk`; stage it under `staging` (a records list comes back) or, with
    `staging=None`, return the MadeItems themselves (workers without the store's filesystem).

    One writer thread: the files of item i are hashed and written while item i+1 is computed
    (OpenCV and zlib release the GIL); at most one finished item waits, so memory stays bounded.
    """
    out: list = []
    if staging is None:
        for task in chunk:
            out.append(make_item(task))
            if on_done:
                on_done(1)
        return out
    staging = Path(staging)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="xaug-write") as writer:
        pending = None
        for task in chunk:
            made = make_item(task)
            if pending is not None:
                out.append(pending.result())
                if on_done:
                    on_done(1)
            pending = writer.submit(stage_made, staging, made)
            del made
        if pending is not None:
            out.append(pending.result())
            if on_done:
                on_done(1)
    return out


def worker_chunk(staging: str | None, make_item: Callable[[Any], MadeItem], chunk: Sequence,
                 parent_pid: int | None = None) -> list:
    """A chunk run in a worker process: one OpenCV thread (the workers are the parallelism) and a
    watchdog that ends the worker when the command that started it is gone (kill -9)."""
    import cv2

    cv2.setNumThreads(1)
    if parent_pid is not None:
        watch_parent(parent_pid)
    return run_chunk(staging, make_item, chunk)


_WATCHED: set[int] = set()
_WATCH_LOCK = threading.Lock()


def watch_parent(pid: int, interval: float = 1.0) -> None:
    """Start (once per process) a daemon thread that exits this process soon after `pid` dies.

    A command killed with SIGKILL cannot stop its pool; without this its loky workers would go on
    staging files for minutes. `os._exit`: nothing of a dead command's work is worth unwinding.
    """
    if pid == os.getpid():
        return
    with _WATCH_LOCK:
        if pid in _WATCHED:
            return
        _WATCHED.add(pid)

    def watch() -> None:
        import time

        while True:
            time.sleep(interval)
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                os._exit(3)
            except PermissionError:  # pragma: no cover - another user's pid: it exists
                pass
            if os.getppid() == 1 and pid != 1:  # re-parented to init: our parent died
                os._exit(3)

    threading.Thread(target=watch, name="xaug-parent-watch", daemon=True).start()


# ---------------------------------------------------------------- running a list of tasks

def run_tasks(staging: Path, tasks: Sequence, make_item: Callable[[Any], MadeItem], *, jobs: int | None = None,
              progress: bool = False, label: str = "build", total: int | None = None, done: int = 0,
              backend: Any = None) -> int:
    """Make every task into `staging` (records on disk); returns how many were made."""
    from xaug.store.backends import get_backend

    if not tasks:
        return 0
    staging = Path(staging)
    be = get_backend(backend)
    with Progress(total if total is not None else len(tasks), label, enabled=progress, done=done) as bar:
        be.run(staging, list(tasks), make_item, jobs, bar.advance)
    return len(tasks)


def prune_unfinished(stage_root: Path) -> None:
    """Delete staged files of items that have no record yet (and killed writes' .tmp files).

    Used when a build stops on a disk error: the space of unfinished items is freed, finished
    items stay staged, and a rerun resumes from them.
    """
    import json

    data = stage_root / "data"
    records = stage_root / "records"
    keep: set[str] = set()
    if records.is_dir():
        for p in records.glob("*.json"):
            try:
                rec = json.loads(p.read_bytes())
            except (OSError, ValueError):
                p.unlink(missing_ok=True)
                continue
            keep.add(rec["image"]["path"])
            if rec.get("label"):
                keep.add(rec["label"]["path"])
        for p in records.glob(".*.tmp"):
            p.unlink(missing_ok=True)
    if not data.is_dir():
        return
    for path in sorted(data.rglob("*"), reverse=True):
        try:
            if path.is_dir():
                if not any(path.iterdir()):
                    path.rmdir()
            elif path.relative_to(data).as_posix() not in keep:
                path.unlink()
        except OSError:  # a read-only store: nothing more can be freed
            pass


def _disk_error(exc: OSError, where: Path) -> BadInput:
    what = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded",
            errno.EROFS: "the store is on a read-only filesystem"}.get(exc.errno, "permission denied")
    return BadInput(f"{what} while building; unfinished items were removed, finished ones are kept: "
                    "free space (or fix permissions) and run the same command again to resume",
                    where=str(getattr(exc, "filename", None) or where))


# ---------------------------------------------------------------- the whole build

def build(store, request: BuildRequest, tasks: Sequence, make_item: Callable[[Any], MadeItem], *,
          relpath: Callable[[Any], str] = lambda t: t.relpath, persons: dict | None = None,
          references: Iterable = (), jobs: int | None = None, progress: bool = False,
          label: str | None = None, backend: Any = None,
          configure: Callable[[Any], None] | None = None) -> BuildResult:
    """Make the version `request` describes from `tasks`, unless its plan already made it.

    Under the plan's lock: find an existing version made by the same plan (a concurrent identical
    command finished first: a cache hit), else stage the tasks not staged yet, list `references`
    (source items, no bytes copied), write the person sheet and commit atomically.
    `configure(builder)` may set what the builder records (e.g. folds of a source dataset).
    """
    existing = store.find_plan(request.plan_key)
    if existing is not None:
        return BuildResult(existing, cached=True)
    with store.build(name=request.name, kind=request.kind, plan_key=request.plan_key, source=request.source,
                     spec=request.spec, seed=request.seed) as b:
        existing = store.find_plan(request.plan_key)  # made while we waited for the lock
        if existing is not None:
            import shutil

            shutil.rmtree(b.stage_root, ignore_errors=True)  # the empty folder the builder made
            return BuildResult(existing, cached=True)
        if configure is not None:
            configure(b)
        todo = [t for t in tasks if not b.has_item(relpath(t))]
        resumed = len(tasks) - len(todo)
        refs = list(references)
        for ref in refs:
            b.reference(ref)
        try:
            run_tasks(b.staging, todo, make_item, jobs=jobs, progress=progress,
                      label=label or request.name, total=len(tasks), done=resumed, backend=backend)
        except OSError as exc:
            if exc.errno not in DISK_ERRNOS:
                raise
            prune_unfinished(b.stage_root)
            raise _disk_error(exc, b.stage_root) from None
        if persons is not None:
            b.set_persons(persons)
        try:
            ds = b.commit()
        except OSError as exc:
            if exc.errno not in DISK_ERRNOS:
                raise
            raise _disk_error(exc, b.stage_root) from None
    return BuildResult(ds, cached=False, made=len(todo), resumed=resumed, referenced=len(refs))


class BuildError(XaugError):
    """A task failed in a way that is not the user's input (a worker died, ...)."""
