"""Scaling benchmark: 1 -> 2 local workers, and the dask backend against local, same work.

Whole-process timings of the real commands (`python -m xaug rotate|mosaic ... --jobs J -q`) on
synthetic 2048x2048 images, each a fresh seed (no cache hit), median of --repeat runs, plus an
in-process breakdown of one run (planning, pool start-up + making items, commit) so the part
that does not scale is visible.

    python benchmarks/bench_scale.py --persons 19 --repeat 3            # 38 images
    python benchmarks/bench_scale.py --persons 150 --repeat 2 --no-dask # 300 images

Dask: after the local runs (so its idle processes do not weigh on them), a LocalCluster with the same
number of worker processes (one thread each) is started once
and its address passed with --scheduler, as users do with a running cluster; both storage modes
(shared: workers write into the store; bytes: workers return the files) are timed.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


CPU_S: dict[str, list[float]] = {}  # label -> CPU seconds (user + system) of each timed command


def _children_cpu() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run(home: Path, *args: str, cpu_label: str | None = None) -> float:
    """Wall time of one command; with `cpu_label`, its CPU time (it and its workers, reaped) is
    kept too: CPU / wall says how many cores the command kept busy."""
    c0, t0 = _children_cpu(), time.perf_counter()
    subprocess.run([sys.executable, "-m", "xaug", *args, "--home", str(home), "-q"], check=True,
                   stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    if cpu_label:
        CPU_S.setdefault(cpu_label, []).append(_children_cpu() - c0)
    return wall


def _floor_chunk(paths: list[str]) -> int:
    import cv2

    from xaug.layout import encode_png

    cv2.setNumThreads(1)
    n = 0
    for path in paths:
        img = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_UNCHANGED)
        n += len(encode_png(img))
    return n


def floor(paths: list[str], jobs: int) -> float:
    """The machine's own scaling on this work: decode + encode each source PNG (xaug's PNG
    settings), in `jobs` fresh processes, nothing else (no xaug engine, no op). Its 1 -> N ratio is
    what the cores give to PNG work here; xaug's ratio is read against it."""
    import multiprocessing as mp

    parts = [paths[i::jobs] for i in range(jobs)]
    t0 = time.perf_counter()
    with mp.get_context("fork").Pool(jobs) as pool:
        pool.map(_floor_chunk, parts)
    return time.perf_counter() - t0


def breakdown(home: Path, op: str, n: int, jobs: int, seed: int) -> dict[str, float]:
    """One in-process run with the engine's phase timings (planning measured here)."""
    from xaug import pipeline as P
    from xaug.store import Store

    store = Store(home)
    step = {"op": "rotate", "pivot": "wrist"} if op == "rotate" else {"op": "mosaic", "n": n}
    spec = P.parse_pipeline({"name": f"b{op}{jobs}", "seed": seed, "steps": [step]})
    t0 = time.perf_counter()
    plan = P.make_plan(store, spec)
    t_plan = time.perf_counter() - t0
    res = P.run_pipeline(store, spec, jobs=jobs, progress=False)
    total = time.perf_counter() - t0
    return {"plan": round(t_plan, 3), **{k: round(v, 3) for k, v in res.timings.items()},
            "total": round(total, 3), "items": len(plan.tasks)}


def breakdown_in_child(home: Path, op: str, n: int, jobs: int, seed: int) -> dict[str, float]:
    """`breakdown` in a fresh process, as a command runs: this one holds a dask cluster's threads,
    with which the local backend would not fork its workers (it would take loky's)."""
    out = subprocess.run([sys.executable, __file__, "--breakdown", str(home), op, str(n), str(jobs), str(seed)],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    if sys.argv[1:2] == ["--breakdown"]:
        home, op, n, jobs, seed = sys.argv[2:7]
        print(json.dumps(breakdown(Path(home), op, int(n), int(jobs), int(seed))))
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--persons", type=int, default=19, help="training persons (2 images each)")
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--no-dask", action="store_true")
    ap.add_argument("--ops", nargs="+", choices=("rotate", "mosaic"), default=["rotate", "mosaic"])
    ap.add_argument("--out", type=Path, default=Path("bench-out/scale.json"))
    args = ap.parse_args()

    # bytecode compiled, as an installed package has it (a checkout run with
    # PYTHONDONTWRITEBYTECODE=1 would compile xaug's modules from source in every command: ~60 ms)
    root = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(root / "xaug")], check=True,
                   stdout=subprocess.DEVNULL)
    work = Path(tempfile.mkdtemp(prefix="xaug-scale-"))
    home = work / "store"
    t = run(home, "synth", "--persons", str(args.persons), "--test-persons", "1", "--size", str(args.size),
            "--jobs", str(args.jobs))
    print(f"synth: {t:.1f} s", file=sys.stderr)
    from xaug.store import Store

    raw = Store(home).open("raw")
    n_src = len(raw.samples(split="train", role="train", load=False))
    src_paths = [str(raw.file_path(e.image, e.stored_in)) for e in raw.entries if e.split == "train"][:n_src]
    results: dict = {"machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                                 "platform": platform.platform()},
                     "persons": args.persons, "size": args.size, "sources": n_src, "repeat": args.repeat,
                     "ops": {}}
    seed = 100
    common_of = {"rotate": ["--pivot", "wrist"], "mosaic": ["--n", str(n_src)]}

    def timed(op: str, label: str, flags: list[str], times: dict) -> None:
        nonlocal seed
        seed += 1
        t = run(home, op, *common_of[op], "--seed", str(seed), "--name", f"{op}{seed}", *flags,
                cpu_label=f"{op} {label}")
        times.setdefault(label, []).append(t)
        print(f"{op} {label}: {t:.2f} s", file=sys.stderr)

    local_n = f"local-{args.jobs}"
    # 1. local scaling and the machine's floor, with nothing else of the benchmark running
    for op in args.ops:
        times: dict[str, list[float]] = {}
        for _ in range(args.repeat):  # interleaved: a busy spell hits every variant alike
            for jobs in (1, args.jobs):
                t = floor(src_paths, jobs)
                times.setdefault(f"floor-{jobs}", []).append(t)
                print(f"{op} floor-{jobs} (decode + encode only): {t:.2f} s", file=sys.stderr)
            timed(op, "local-1", ["--jobs", "1"], times)
            timed(op, local_n, ["--jobs", str(args.jobs)], times)
        med = {k: statistics.median(v) for k, v in times.items()}
        entry = {"items": n_src, "median_s": {k: round(v, 2) for k, v in med.items()},
                 "runs_s": {k: [round(x, 2) for x in v] for k, v in times.items()},
                 "speedup_1_to_n": round(med["local-1"] / med[local_n], 2),
                 "floor_speedup_1_to_n": round(med["floor-1"] / med[f"floor-{args.jobs}"], 2),
                 # cores kept busy: CPU seconds / wall seconds, median over the runs
                 "cores_busy": {k: round(statistics.median(c / w for c, w in zip(CPU_S[f"{op} {k}"], times[k])), 2)
                                for k in ("local-1", local_n)},
                 "cpu_s": {k: round(statistics.median(CPU_S[f"{op} {k}"]), 2) for k in ("local-1", local_n)}}
        seed += 1
        entry["breakdown_1"] = breakdown_in_child(home, op, n_src, 1, seed)
        seed += 1
        entry["breakdown_n"] = breakdown_in_child(home, op, n_src, args.jobs, seed)
        results["ops"][op] = entry
    # 2. dask against local, both while the cluster runs (its idle processes cost both alike)
    if not args.no_dask:
        from distributed import LocalCluster

        with LocalCluster(n_workers=args.jobs, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
            for op in args.ops:
                times = {}
                for _ in range(args.repeat):
                    timed(op, local_n + "-beside-cluster", ["--jobs", str(args.jobs)], times)
                    for storage in ("shared", "bytes"):
                        timed(op, f"dask-{args.jobs}-{storage}", ["--backend", "dask", "--scheduler",
                                                                  cluster.scheduler_address, "--storage", storage], times)
                med = {k: statistics.median(v) for k, v in times.items()}
                entry = results["ops"][op]
                entry["dask_median_s"] = {k: round(v, 2) for k, v in med.items()}
                for storage in ("shared", "bytes"):
                    entry[f"dask_{storage}_overhead_pct"] = round(
                        100 * (med[f"dask-{args.jobs}-{storage}"] / med[local_n + "-beside-cluster"] - 1), 1)
    shutil.rmtree(work, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
