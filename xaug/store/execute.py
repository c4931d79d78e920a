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
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from xaug.errors import BadInput
from xaug.progress import Progress
from xaug.store.backends import get_backend
from xaug.store.work import (CHUNK, MadeItem, chunk_size, chunks, default_jobs, resolve_jobs, run_chunk,  # noqa: F401
                             stage_made, worker_chunk)

# Errors of the disk, not of the program: reported as one line, staging kept for a rerun.
DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


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
    timings: dict[str, float] = field(default_factory=dict)   # seconds: lock, make, commit

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


# ---------------------------------------------------------------- running a list of tasks

def run_tasks(staging: Path, tasks: Sequence, make_item: Callable[[Any], MadeItem], *, jobs: int | None = None,
              progress: bool = False, label: str = "build", total: int | None = None, done: int = 0,
              backend: Any = None) -> int:
    """Make every task into `staging` (records on disk); returns how many were made."""
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
          label: str | None = None, backend: Any = None) -> BuildResult:
    """Make the version `request` describes from `tasks`, unless its plan already made it.

    Under the plan's lock: find an existing version made by the same plan (a concurrent identical
    command finished first: a cache hit), else stage the tasks not staged yet, list `references`
    (source items, no bytes copied), write the person sheet and commit atomically.
    `BuildResult.timings` says where the time went (lock wait, making items, commit).
    """
    existing = store.find_plan(request.plan_key)
    if existing is not None:
        return BuildResult(existing, cached=True)
    t0 = time.perf_counter()
    with store.build(name=request.name, kind=request.kind, plan_key=request.plan_key, source=request.source,
                     spec=request.spec, seed=request.seed) as b:
        existing = store.find_plan(request.plan_key)  # made while we waited for the lock
        if existing is not None:
            import shutil

            shutil.rmtree(b.stage_root, ignore_errors=True)  # the empty folder the builder made
            return BuildResult(existing, cached=True)
        t1 = time.perf_counter()
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
        t2 = time.perf_counter()
        if persons is not None:
            b.set_persons(persons)
        try:
            ds = b.commit()
        except OSError as exc:
            if exc.errno not in DISK_ERRNOS:
                raise
            raise _disk_error(exc, b.stage_root) from None
    t3 = time.perf_counter()
    return BuildResult(ds, cached=False, made=len(todo), resumed=resumed, referenced=len(refs),
                       timings={"lock": t1 - t0, "make": t2 - t1, "commit": t3 - t2})
