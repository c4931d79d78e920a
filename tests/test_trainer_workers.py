"""DataLoader workers never outlive the command: SIGTERM unwinds them, SIGKILL of the training
process ends them through their own watchdog (forkserver workers are not its children)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)")


def _ppid(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


def descendants(root: int) -> set[int]:
    """Every live process below `root` (children, grandchildren, ...)."""
    parents = {int(p.name): _ppid(int(p.name)) for p in Path("/proc").iterdir() if p.name.isdigit()}
    out, frontier = set(), {root}
    while frontier:
        frontier = {pid for pid, pp in parents.items() if pp in frontier} - out
        out |= frontier
    return out


def grandchildren(root: int) -> set[int]:
    parents = {int(p.name): _ppid(int(p.name)) for p in Path("/proc").iterdir() if p.name.isdigit()}
    children = {pid for pid, pp in parents.items() if pp == root}
    return {pid for pid, pp in parents.items() if pp in children}


def alive(pids: set[int]) -> set[int]:
    out = set()
    for pid in pids:
        stat = Path(f"/proc/{pid}/stat")
        try:
            if stat.read_text().rsplit(")", 1)[1].split()[0] != "Z":
                out.add(pid)
        except OSError:
            pass
    return out


def wait_gone(pids: set[int], timeout: float = 15.0) -> set[int]:
    end = time.monotonic() + timeout
    while alive(pids) and time.monotonic() < end:
        time.sleep(0.2)
    return alive(pids)


def test_watch_main_ends_the_process_when_the_main_process_dies():
    main = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    code = f"import time; from trainer.data import watch_main; watch_main({main.pid}, 0.2); time.sleep(60)"
    worker = subprocess.Popen([sys.executable, "-c", code])
    time.sleep(1.0)
    assert worker.poll() is None
    main.kill()
    main.wait()
    assert worker.wait(timeout=10) == 0


def _start_training(home: Path, run: Path) -> subprocess.Popen:
    # multiprocessing's resource tracker is a process of its own that shares stderr; at shutdown
    # after a signal it may warn about semaphores it cleans up. Its noise is not the command's output.
    env = {**os.environ, "XAUG_HOME": str(home),
           "PYTHONWARNINGS": "ignore::UserWarning:multiprocessing.resource_tracker"}
    cmd = [sys.executable, "-m", "xaug", "train", "--dataset", "raw", "--epochs", "500", "--size", "64",
           "--width", "4", "--depth", "2", "--workers", "1", "--device", "cpu", "--run", str(run), "-q",
           "--val-every", "100000"]  # no validation loader starting workers while the signal lands
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    end = time.monotonic() + 60
    while not (run / "metrics.jsonl").exists() and time.monotonic() < end and proc.poll() is None:
        time.sleep(0.2)
    while not grandchildren(proc.pid) and time.monotonic() < end and proc.poll() is None:
        time.sleep(0.05)  # the worker: a child of the forkserver, itself a child of the command
    time.sleep(1.5)  # past the worker's start-up (imports)
    assert proc.poll() is None, proc.communicate()
    return proc


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_killing_a_training_leaves_no_worker_behind(make_store, tmp_path, sig):
    home = make_store(persons=2, test_persons=1, size=96)
    proc = _start_training(home, tmp_path / "run")
    family = descendants(proc.pid)
    assert family, "the DataLoader workers (and the forkserver) should be running"
    proc.send_signal(sig)
    proc.wait(timeout=30)
    left = wait_gone(family)
    assert left == set(), [Path(f"/proc/{p}/cmdline").read_bytes()[:120] for p in left]
    err = proc.stderr.read()
    if sig == signal.SIGTERM:
        assert proc.returncode == 143
        assert err.strip().splitlines()[-1].startswith("error: terminated;"), err
        assert "with --resume" in err
        assert "Traceback" not in err


def test_the_loader_server_preloads_torch_and_the_datasets(tmp_path):
    """DataLoader workers are forked from a forkserver that imported torch and the datasets'
    modules once (each worker importing them made the first epoch seconds longer); the server is
    started ahead of the first epoch. Checked in a fresh process, whose forkserver is its own."""
    import subprocess
    import sys

    code = ("import multiprocessing.forkserver as fs, sys\n"
            "from trainer.data import FORKSERVER_PRELOAD, loader_context, start_loader_server\n"
            "ctx = loader_context()\n"
            "assert fs._forkserver._preload_modules == FORKSERVER_PRELOAD, fs._forkserver._preload_modules\n"
            "start_loader_server()\n"
            "assert fs._forkserver._forkserver_pid is not None\n"
            "import torch\n"
            "from torch.utils.data import DataLoader\n"
            "from trainer.data import worker_init_for\n"
            "import os\n"
            "dl = DataLoader(list(range(4)), batch_size=2, num_workers=2, multiprocessing_context=ctx,\n"
            "                worker_init_fn=worker_init_for(os.getpid()))\n"
            "print(sorted(int(x) for b in dl for x in b))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=str(Path(__file__).resolve().parents[1]))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[0, 1, 2, 3]"
    from trainer.data import FORKSERVER_PRELOAD

    assert "torch" in FORKSERVER_PRELOAD and "trainer.data" in FORKSERVER_PRELOAD


# ---------------------------------------------------------------- Ctrl-C while workers start

def test_a_signal_during_worker_start_up_is_delivered_after_it():
    import signal

    from trainer.data import signals_deferred

    # as in a terminal (a test run from a script may inherit SIGINT ignored)
    old_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    got = []
    old_term = signal.signal(signal.SIGTERM, lambda n, _f: got.append(n))
    try:
        done = []
        with pytest.raises(KeyboardInterrupt):
            with signals_deferred():
                signal.raise_signal(signal.SIGINT)  # Ctrl-C in the middle of the start-up ...
                done.append("rest of the start-up")   # ... which still finishes
        assert done == ["rest of the start-up"]
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler   # the handler is back
        with signals_deferred():
            signal.raise_signal(signal.SIGTERM)
            signal.raise_signal(signal.SIGINT)  # only the first one is delivered
            assert got == []
        assert got == [signal.SIGTERM]
    finally:
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)


def test_start_workers_returns_the_started_iterator():
    from torch.utils.data import DataLoader

    from trainer.data import loader_context, start_workers

    loader = DataLoader(list(range(6)), batch_size=2, num_workers=1, persistent_workers=True,
                        multiprocessing_context=loader_context())
    it = start_workers(loader)
    assert [b.tolist() for b in it] == [[0, 1], [2, 3], [4, 5]]
    assert [b.tolist() for b in loader] == [[0, 1], [2, 3], [4, 5]]  # the next epoch, same workers
