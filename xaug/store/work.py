"""How one chunk of build tasks runs, in any process: the engine's lowest layer.

`run_chunk` makes each task with the command's `make_item` and stages it through one writer
thread; `worker_chunk` is the same in a worker process (one OpenCV thread, a parent watchdog).
Backends (`xaug.store.backends`) decide where chunks run; `xaug.store.execute` drives a build.
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

# Tasks per chunk handed to a worker: a few images, so memory stays bounded by ~CHUNK decoded
# images per worker while the per-chunk overhead (pickling tasks) stays small.
CHUNK = 4


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


def default_jobs() -> int:
    """The default number of workers: the cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS/Windows
        return max(1, os.cpu_count() or 1)


def resolve_jobs(jobs: int | None, n_tasks: int | None = None) -> int:
    """`jobs` (None or <1: all cores), never more than the tasks there are, nor more than 4 per
    core (beyond that processes only cost memory: each holds a few decoded 2048 px images)."""
    n = default_jobs() if not jobs or jobs < 1 else min(int(jobs), 4 * default_jobs())
    return max(1, min(n, n_tasks)) if n_tasks is not None else n


def chunk_size(n_tasks: int, workers: int) -> int:
    """CHUNK, smaller for small runs so that every worker gets about 8 chunks: the last chunks
    then leave little idle time (38 images on 2 workers: chunks of 2)."""
    if workers <= 1:
        return CHUNK
    return max(1, min(CHUNK, n_tasks // (workers * 8)))


def chunks(tasks: Sequence, size: int) -> Iterator[list]:
    for i in range(0, len(tasks), size):
        yield list(tasks[i:i + size])


def guided_chunks(tasks: Sequence, size: int, workers: int) -> Iterator[list]:
    """Chunks of `size` that shrink to single tasks near the end (guided scheduling): no chunk is
    larger than the remaining work's share of half a worker, so the workers finish within about
    one item of each other instead of one chunk (300 rotations on 2 workers: up to 4 items, 0.6 s,
    idled one core at the end). For local workers, where a chunk costs about a millisecond."""
    i, n = 0, len(tasks)
    while i < n:
        step = max(1, min(size, (n - i) // (2 * max(1, workers))))
        yield list(tasks[i:i + step])
        i += step


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


def as_worker(parent_pid: int | None) -> None:
    """What every worker process does first (cheap to repeat): a watchdog that ends it when the
    command that started it is gone (kill -9), and one OpenCV thread (the workers are the
    parallelism)."""
    if parent_pid is not None:
        watch_parent(parent_pid)
    import cv2

    cv2.setNumThreads(1)


def warm_worker(parent_pid: int | None = None, modules: Sequence[str] = ()) -> int:
    """Run once in each new loky worker while the command plans: the imports its tasks need (the
    `modules` the command names, e.g. its ops), off the critical path. The store names no module
    of what it builds: the command does."""
    import importlib

    as_worker(parent_pid)
    for name in modules:
        importlib.import_module(name)
    return os.getpid()


def worker_chunk(staging: str | None, make_item: Callable[[Any], MadeItem], chunk: Sequence,
                 parent_pid: int | None = None) -> list:
    """A chunk run in a worker process (loky or dask)."""
    as_worker(parent_pid)
    return run_chunk(staging, make_item, chunk)


# ---------------------------------------------------------------- forked workers (Linux)

# What forked workers make, by build token: set before the pool forks, so the children inherit the
# command's `make_item` (with its plan) instead of unpickling it with every chunk.
_FORKED: dict[str, tuple[Callable[[Any], MadeItem], Any]] = {}   # token -> (make_item, barrier)


def forked_worker_init(parent_pid: int) -> None:
    """First thing in a worker forked from the command: the command's signal handlers undone (a
    Ctrl-C is the command's to handle: it stops the workers; SIGTERM ends a worker quietly), then
    `as_worker`. Nothing to import: the fork has it all."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    as_worker(parent_pid)


# A forked worker's writer: one thread for the life of the worker, so the write of a chunk's last
# item overlaps the next chunk's first item instead of idling the worker at every chunk's end
# (with the small chunks of a small run that was about a tenth of its time).
_WRITER: ThreadPoolExecutor | None = None
_PENDING = None


def _wait_pending() -> None:
    """Wait for this worker's write in flight; its error (a full disk, say) is raised here."""
    global _PENDING
    if _PENDING is not None:
        pending, _PENDING = _PENDING, None
        pending.result()


def forked_chunk(staging: str, token: str, chunk: Sequence) -> int:
    """Make a chunk in a forked worker; each item is staged by the worker's writer thread while
    the next is made. Returns the items made (the last may still be being written: `forked_flush`
    ends a run)."""
    global _WRITER, _PENDING
    make_item = _FORKED[token][0]
    if _WRITER is None:
        _WRITER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="xaug-write")
    for task in chunk:
        made = make_item(task)
        _wait_pending()  # at most one finished item waits: memory stays bounded
        _PENDING = _WRITER.submit(stage_made, Path(staging), made)
        del made
    return len(chunk)


def forked_flush(token: str, timeout: float) -> int:
    """The end of a run, once in every worker (the barrier keeps any worker from taking two):
    the last write finished, or its error raised."""
    _FORKED[token][1].wait(timeout)
    _wait_pending()
    return os.getpid()


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

    is_parent = os.getppid() == pid  # loky workers are children of the command

    def watch() -> None:
        import time

        while True:
            time.sleep(interval)
            if is_parent and os.getppid() != pid:  # re-parented (to init or a subreaper): it died
                os._exit(3)
            try:
                os.kill(pid, 0)  # (a killed parent that is a zombie still answers: hence the above)
            except ProcessLookupError:
                os._exit(3)
            except PermissionError:  # pragma: no cover - another user's pid: it exists
                pass

    threading.Thread(target=watch, name="xaug-parent-watch", daemon=True).start()
