"""Where the build engine's chunks run: `local` (joblib/loky on this machine) or `dask` (a
`distributed` cluster). Registered by name; `get_backend()` reads `XAUG_BACKEND`,
`XAUG_SCHEDULER` and `XAUG_STORAGE` when the command gives none.

Both run the same pure `worker_chunk` on the same chunks, so the bytes, and the version id, do
not depend on where the work ran.

dask storage modes:
- `shared`: workers see the store's folder (a shared filesystem) and stage their items there;
  only the small records come back to the driver.
- `bytes`: workers return the encoded files; the driver stages them, so workers never write into
  the store (they still read a pipeline's source images by path: a read-only mount of the store
  is enough; `synth` reads nothing). See docs/scale.md.
- `auto` (default): the driver writes a probe file into the staging folder and asks every worker
  whether it sees it: all do -> `shared`, else `bytes`.

>>> get_backend("local").name
'local'
"""
from __future__ import annotations

import multiprocessing
import os
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from xaug.errors import BadInput, XaugError
from xaug.store.work import (_FORKED, chunk_size, chunks, default_jobs, forked_chunk, forked_flush, forked_worker_init,
                             guided_chunks, resolve_jobs, run_chunk, stage_made, warm_worker, worker_chunk)

STORAGE_MODES = ("auto", "shared", "bytes")
_BACKENDS: dict[str, type] = {}


def register_backend(name: str):
    def deco(cls):
        cls.name = name
        _BACKENDS[name] = cls
        return cls
    return deco


def backend_names() -> list[str]:
    return sorted(_BACKENDS)


@dataclass(frozen=True)
class BackendChoice:
    """What the command line (or environment) asked for."""

    name: str = "local"
    scheduler: str | None = None
    storage: str = "auto"


def choice_from(backend: str | None = None, scheduler: str | None = None, storage: str | None = None) -> BackendChoice:
    """Flags first, then XAUG_BACKEND / XAUG_SCHEDULER / XAUG_STORAGE, then local."""
    name = backend or os.environ.get("XAUG_BACKEND") or "local"
    if scheduler and name != "dask":
        raise BadInput("--scheduler is for --backend dask", where="--scheduler")
    if name == "dask":
        scheduler = scheduler or os.environ.get("XAUG_SCHEDULER") or None
    storage_from = "--storage" if storage else "$XAUG_STORAGE"  # a mistake names where it was made
    storage = storage or os.environ.get("XAUG_STORAGE") or "auto"
    if name not in _BACKENDS:
        import difflib

        close = difflib.get_close_matches(name, backend_names(), n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise BadInput(f"unknown backend {name!r}{hint}; one of: {', '.join(backend_names())}",
                       where="--backend" if backend else "$XAUG_BACKEND")
    if storage not in STORAGE_MODES:
        raise BadInput(f"unknown storage mode {storage!r}; one of: {', '.join(STORAGE_MODES)}", where=storage_from)
    if name == "dask":
        _need_distributed()  # say so before any work starts
    return BackendChoice(name, scheduler, storage)


def _need_distributed() -> None:
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise BadInput("the dask backend needs dask.distributed, which is not installed: "
                       "pip install 'xaug[dask]' (or pip install 'dask[distributed]')",
                       where="--backend dask") from None


def get_backend(backend: Any = None):
    """A backend object from None (environment / local), a name, a BackendChoice or a backend."""
    if hasattr(backend, "run"):
        return backend
    if isinstance(backend, BackendChoice):
        choice = backend
    else:
        choice = choice_from(backend)
    return _BACKENDS[choice.name](choice)


@register_backend("local")
class LocalBackend:
    """Worker processes on this machine (in this process for one worker).

    Where the platform forks (Linux), the workers are forked from the command when the build
    starts: they inherit its imports and its `make_item`, so they start in milliseconds and only
    the tasks travel to them. Elsewhere (or with `pool = "loky"`), joblib's loky workers: fresh
    interpreters, started in the background while the command plans. Both run the same
    `run_chunk` on the same chunks: the bytes do not depend on the pool.
    """

    name = "local"
    pool = "fork" if "fork" in multiprocessing.get_all_start_methods() else "loky"

    def __init__(self, choice: BackendChoice | None = None):
        self.choice = choice or BackendChoice()
        self._warming: threading.Thread | None = None

    def warm(self, jobs: int | None, modules: Sequence[str] = ()) -> None:
        """loky: start the worker pool in the background (it takes ~1 s: each worker imports
        OpenCV and the `modules` its tasks need) while this process plans; `run` then finds it
        started. Forked workers need no warming."""
        # never more than the cores: the tasks are not planned yet, and an absurd --jobs must not
        # start an absurd pool (the run itself caps the workers at the number of tasks)
        workers = min(resolve_jobs(jobs), default_jobs())
        if self.pool != "loky" or workers <= 1 or self._warming is not None:
            return
        pid = os.getpid()

        def start() -> None:
            from joblib import Parallel, delayed

            try:
                Parallel(n_jobs=workers, batch_size=1)(delayed(warm_worker)(pid, tuple(modules))
                                                       for _ in range(workers))
            except Exception:  # pragma: no cover - the real run reports any pool problem
                pass

        self._warming = threading.Thread(target=start, name="xaug-warm-pool", daemon=True)
        self._warming.start()

    def map(self, fn: Callable, items: Sequence, jobs: int | None) -> Iterator:
        """fn over items, results in order: threads here (the per-item work is OpenCV / zlib,
        which release the GIL, and the items need not be pickled)."""
        workers = resolve_jobs(jobs, max(1, len(items)))
        if workers == 1:
            yield from map(fn, items)
            return
        with ThreadPoolExecutor(workers) as pool:
            yield from pool.map(fn, items)

    def run(self, staging: Path, tasks: Sequence, make_item: Callable, jobs: int | None,
            advance: Callable[[int], None]) -> None:
        workers = resolve_jobs(jobs, len(tasks))
        size = chunk_size(len(tasks), workers)
        if workers == 1 or len(tasks) <= size:  # in this process, one stream
            if self._warming is not None:
                self._warming.join()
            run_chunk(staging, make_item, tasks, on_done=advance)
            return
        if self.pool == "fork" and fork_is_safe():
            self._run_forked(staging, tasks, make_item, workers, size, advance)
        else:
            self._run_loky(staging, tasks, make_item, workers, size, advance, self._warming)

    @staticmethod
    def _run_forked(staging: Path, tasks: Sequence, make_item: Callable, workers: int, size: int,
                    advance: Callable[[int], None]) -> None:
        """Chunks on `workers` processes forked from this one, at most two chunks per worker in
        flight (bounded memory); a worker that dies (killed, out of memory) is one line, and the
        items finished before it stay staged for a rerun to resume from."""
        from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
        from concurrent.futures.process import BrokenProcessPool

        token = uuid.uuid4().hex
        ctx = multiprocessing.get_context("fork")
        _FORKED[token] = (make_item, ctx.Barrier(workers))  # inherited by the workers at the fork
        todo = guided_chunks(tasks, size, workers)
        pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=forked_worker_init, initargs=(os.getpid(),))
        clean = False
        try:
            # OpenCV's thread pool does not survive a fork (a child that touches it waits forever on
            # its dead threads): stop it while the workers are forked (all at the first submit),
            # then give this process its threads back.
            import cv2

            threads = cv2.getNumThreads()
            cv2.setNumThreads(1)
            try:
                running = {pool.submit(forked_chunk, str(staging), token, c) for c in islice(todo, 2 * workers)}
            finally:
                cv2.setNumThreads(threads)
            while running:
                finished, running = wait(running, return_when=FIRST_COMPLETED)
                for fut in finished:
                    try:
                        out = fut.result()
                    except BrokenProcessPool:
                        raise _worker_died() from None
                    advance(out)
                    nxt = next(todo, None)
                    if nxt is not None:
                        running.add(pool.submit(forked_chunk, str(staging), token, nxt))
            # every worker finishes its last write (and says if it failed) before the commit
            flushes = [pool.submit(forked_flush, token, 600.0) for _ in range(workers)]
            for fut in flushes:
                try:
                    fut.result()
                except BrokenProcessPool:
                    raise _worker_died() from None
            clean = True
        finally:
            _FORKED.pop(token, None)
            if clean:
                pool.shutdown(wait=True)
            else:  # an error or Ctrl-C: stop the workers now, not after their chunks
                _terminate(pool)

    @staticmethod
    def _run_loky(staging: Path, tasks: Sequence, make_item: Callable, workers: int, size: int,
                  advance: Callable[[int], None], warming: threading.Thread | None = None) -> None:
        from joblib import Parallel, delayed

        pid = os.getpid()
        todo = _SharedChunks(guided_chunks(tasks, size, workers))
        lock = threading.Lock()

        def done(n: int) -> None:
            with lock:
                advance(n)

        # This process makes chunks too until the pool has taken the last one: loky workers need
        # about a second to start (a fresh interpreter importing OpenCV, shapely, the ops), which on
        # a small run is a large part of the whole; the chunks are shared, so none is made twice.
        helper = _DriverHelp(staging, make_item, todo, done)
        helper.start()
        try:
            if warming is not None:
                warming.join()
            # pre_dispatch bounds how many chunks (and their decoded images) are in flight.
            parallel = Parallel(n_jobs=workers, return_as="generator_unordered", pre_dispatch="2*n_jobs",
                                batch_size=1)
            for out in parallel(delayed(worker_chunk)(str(staging), make_item, c, pid) for c in todo):
                done(len(out))
        except BaseException as exc:
            todo.stop()
            if type(exc).__name__ == "TerminatedWorkerError":  # loky's word for a killed worker
                raise _worker_died() from None
            raise
        finally:
            helper.join_and_raise()


# Threads that may be alive when the workers are forked: a forked child gets a copy of every lock
# at the moment of the fork, and a lock another thread held then stays held in the child forever.
# These threads' locks are never needed by a worker: tqdm's monitor, xaug's own threads, and a
# loky executor's manager and queue feeder (left by an earlier loky run: they guard loky's queues).
_FORK_SAFE_THREADS = ("xaug-", "TMonitor", "MainThread", "ExecutorManagerThread", "QueueFeederThread")


def fork_is_safe() -> bool:
    """True when no other thread could hold a lock a forked worker needs. A process that runs
    other threads (a dask client's event loop, a Jupyter kernel's) gets loky workers instead:
    fresh interpreters, slower to start, the same bytes."""
    for t in threading.enumerate():
        if t is threading.current_thread() or not t.is_alive():
            continue
        if not (t.name.startswith(_FORK_SAFE_THREADS) or type(t).__name__ in _FORK_SAFE_THREADS):
            return False
    return True


def _worker_died() -> XaugError:
    return XaugError("a worker process died while building (killed, or out of memory?); the finished items "
                     "are staged: run the same command again to resume (with fewer --jobs if memory is short)")


def _terminate(pool) -> None:
    """Stop a ProcessPoolExecutor's workers at once (an error, Ctrl-C or SIGTERM in the command):
    pending chunks are cancelled, running ones killed; what they staged without a record is pruned
    or resumed by the next run. The pool is then shut down and waited for: its manager thread
    sees the dead workers and ends, so nothing of it is left to fail at the interpreter's exit."""
    procs = list((getattr(pool, "_processes", None) or {}).values())
    for proc in procs:
        try:
            proc.terminate()
        except Exception:  # pragma: no cover - already gone
            pass
    for proc in procs:
        proc.join(5)
    pool.shutdown(wait=True, cancel_futures=True)


class _SharedChunks:
    """An iterator of chunks that several consumers (the pool's dispatcher, this process's helper
    thread) take from, each chunk once; `stop()` ends it for everyone."""

    def __init__(self, it):
        self._it, self._lock, self._stopped = iter(it), threading.Lock(), False

    def __iter__(self):
        return self

    def __next__(self):
        with self._lock:
            if self._stopped:
                raise StopIteration
            return next(self._it)

    def stop(self) -> None:
        with self._lock:
            self._stopped = True


class _DriverHelp(threading.Thread):
    """Makes chunks in this process (one OpenCV thread, like a worker) while the pool works."""

    def __init__(self, staging: Path, make_item: Callable, todo: _SharedChunks, done: Callable[[int], None]):
        super().__init__(name="xaug-driver-help", daemon=True)
        self.staging, self.make_item, self.todo, self.done = staging, make_item, todo, done
        self.error: BaseException | None = None

    def run(self) -> None:
        import cv2

        threads = cv2.getNumThreads()
        cv2.setNumThreads(1)  # the cores belong to the workers; this is one more of them
        try:
            for chunk in self.todo:
                run_chunk(self.staging, self.make_item, chunk, on_done=self.done)
        except BaseException as exc:  # re-raised in the main thread
            self.error = exc
            self.todo.stop()
        finally:
            cv2.setNumThreads(threads)

    def join_and_raise(self) -> None:
        self.join()
        if self.error is not None:
            raise self.error


@register_backend("dask")
class DaskBackend:
    """Chunks as tasks of a dask.distributed cluster (`--scheduler tcp://host:8786`), or of a
    LocalCluster with `--jobs` worker processes started for the command when no address is given."""

    name = "dask"
    retries = 2  # a chunk whose worker died is retried elsewhere (dask also reschedules it)

    def __init__(self, choice: BackendChoice | None = None):
        self.choice = choice or BackendChoice("dask")
        _need_distributed()

    def warm(self, jobs: int | None, modules: Sequence[str] = ()) -> None:
        """Nothing to start ahead: the cluster's workers are already running (or started per run)."""

    def _client(self, jobs: int | None):
        from distributed import Client, LocalCluster

        if self.choice.scheduler:
            try:
                return Client(self.choice.scheduler, timeout="20s"), None
            except OSError as exc:
                raise BadInput(f"cannot reach the dask scheduler ({exc}); start one with "
                               "`dask scheduler` or give another --scheduler", where=self.choice.scheduler) from None
        cluster = LocalCluster(n_workers=resolve_jobs(jobs), threads_per_worker=1, processes=True,
                               dashboard_address=None)
        return Client(cluster), cluster

    @staticmethod
    def workers_see(client, staging: Path) -> bool:
        """Do all workers see the staging folder (a probe file written here)?"""
        probe = staging / f".xaug-probe-{uuid.uuid4().hex}"
        probe.write_text(probe.name)
        try:
            seen = client.run(_sees, str(probe), probe.name)
        finally:
            probe.unlink(missing_ok=True)
        return bool(seen) and all(seen.values())

    def storage_for(self, client, staging: Path) -> str:
        if self.choice.storage != "auto":
            return self.choice.storage
        return "shared" if self.workers_see(client, staging) else "bytes"

    def map(self, fn: Callable, items: Sequence, jobs: int | None, batch: int = 8) -> Iterator:
        """fn over items on the cluster, results in order (a few items per task; workers read the
        items' files by path, so they need the store mounted)."""
        client, cluster = self._client(jobs)
        try:
            groups = list(chunks(list(items), batch))
            futures = client.map(_map_group, [fn] * len(groups), groups, pure=False, retries=self.retries)
            for fut in futures:
                try:
                    yield from fut.result()
                except Exception as exc:
                    if _is_worker_death(exc):
                        raise XaugError("a dask worker died, even after retries; run the command again "
                                        f"({exc.__class__.__name__})") from None
                    raise
        finally:
            client.close()
            if cluster is not None:
                cluster.close()

    def run(self, staging: Path, tasks: Sequence, make_item: Callable, jobs: int | None,
            advance: Callable[[int], None]) -> None:
        from distributed import as_completed


        client, cluster = self._client(jobs)
        try:
            n_workers = max(1, len(client.scheduler_info().get("workers", {})) or (jobs or 1))
            mode = self.storage_for(client, staging)
            target = str(staging) if mode == "shared" else None
            size = chunk_size(len(tasks), n_workers)
            futures = [client.submit(worker_chunk, target, make_item, c, None, pure=False, retries=self.retries)
                       for c in chunks(tasks, size)]
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="xaug-write") as writer:
                for fut in as_completed(futures):
                    try:
                        out = fut.result()
                    except Exception as exc:
                        if _is_worker_death(exc):
                            raise XaugError("a dask worker died while building, even after retries; the "
                                            "finished items are staged: run the same command again to "
                                            f"resume ({exc.__class__.__name__})") from None
                        raise
                    if target is None:  # bytes mode: stage here, in order of arrival
                        list(writer.map(lambda m: stage_made(staging, m), out))
                    advance(len(out))
        finally:
            client.close()
            if cluster is not None:
                cluster.close()


def _map_group(fn: Callable, group: Sequence) -> list:
    return [fn(x) for x in group]


def _sees(path: str, content: str) -> bool:
    try:
        return Path(path).read_text() == content
    except OSError:
        return False


def _is_worker_death(exc: BaseException) -> bool:
    return exc.__class__.__name__ in ("KilledWorker", "CommClosedError")
