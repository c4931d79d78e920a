"""Store benchmark: first import vs unchanged re-import (incremental hashing), and verify.

Runs on the synthetic default: `xaug synth` at 2048x2048, exported as a plain competition layout,
then `xaug import` timed as whole processes. Ratios are measured in one run, medians of --repeat.

    python benchmarks/bench_store.py --persons 20 --repeat 3
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def xaug(*args: str) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "xaug", *args], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--persons", type=int, default=20)
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        xaug("synth", "--persons", str(args.persons), "--test-persons", "0", "--size", str(args.size),
             "--seed", "0", "--home", str(tmp / "gen"))
        xaug("export", "raw", str(tmp / "layout"), "--home", str(tmp / "gen"))
        n_files = sum(1 for p in (tmp / "layout").rglob("*") if p.is_file())
        mb = sum(p.stat().st_size for p in (tmp / "layout").rglob("*") if p.is_file()) / 1e6
        first, again, verify = [], [], []
        for _ in range(args.repeat):
            home = tmp / "home"
            shutil.rmtree(home, ignore_errors=True)
            first.append(xaug("import", str(tmp / "layout"), "--home", str(home)))
            again.append(xaug("import", str(tmp / "layout"), "--home", str(home)))
            verify.append(xaug("verify", "raw", "--home", str(home)))
        floor = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-c", "import xaug.store"], check=True)
            floor.append(time.perf_counter() - t0)
    med = statistics.median
    print(f"files: {n_files} ({mb:.0f} MB), {args.persons} persons x 2 hands at {args.size}px")
    print(f"first import (hash + decode-check + copy): {med(first):.2f} s")
    print(f"unchanged re-import (no re-hash):          {med(again):.2f} s  "
          f"({med(first) / med(again):.1f}x faster; python + import floor {med(floor):.2f} s)")
    print(f"verify (full re-hash):                     {med(verify):.2f} s")


if __name__ == "__main__":
    main()
