"""DistributedDataParallel on CPU (gloo): `xaug train --nproc 2` runs under torchrun, each rank
trains on its shard, rank 0 writes a run folder shaped like a 1-process run, and the loss matches
one process with the doubled batch; the sharding and launch logic is checked without processes."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from trainer.data import EpochSampler, shard_keys
from trainer.distributed import DistEnv, backend_for, dist_env, launch_command, rank_device, want_sync_batchnorm
from xaug.errors import XaugError

TINY = ["--epochs", "2", "--size", "64", "--width", "4", "--depth", "2", "--workers", "0", "--device", "cpu",
        "--lr", "3e-3", "--norm", "group", "--val-limit", "2", "-q"]


@pytest.mark.parametrize("n,batch,world", [(10, 2, 2), (9, 2, 2), (12, 3, 2), (7, 1, 3), (3, 4, 2)])
def test_shards_make_the_one_process_batches(n, batch, world):
    order = list(torch.randperm(n, generator=torch.Generator().manual_seed(n)).tolist())
    shards = [shard_keys(order, batch, r, world) for r in range(world)]
    assert len({len(s) for s in shards}) == 1  # same number of steps on every rank
    if n >= batch * world:
        steps = n // (batch * world)
        assert len(shards[0]) == steps * batch
        for k in range(steps):  # step k on all ranks = batch k of one process with world x batch
            together = [i for s in shards for i in s[k * batch:(k + 1) * batch]]
            assert together == order[k * batch * world:(k + 1) * batch * world]
    else:  # one step, equal shares
        assert [i for s in shards for i in s] == order[: (n // world) * world]


def test_sampler_shards_share_one_permutation():
    one = EpochSampler(10, seed=4)
    one.set_epoch(3)
    ranks = [EpochSampler(10, seed=4, rank=r, world=2, batch=2) for r in range(2)]
    for s in ranks:
        s.set_epoch(3)
    order = [i for _, i in one]
    assert [i for _, i in ranks[1]] == shard_keys(order, 2, 1, 2) and all(e == 3 for e, _ in ranks[0])
    assert len(ranks[0]) == len(list(ranks[0])) == 4
    with pytest.raises(XaugError, match="cannot feed 3 processes"):
        EpochSampler(2, seed=0, rank=0, world=3, batch=1)


def test_environment_backend_and_sync_batchnorm_rules():
    env = dist_env({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"})
    assert env == DistEnv(1, 1, 2) and not env.is_main and env.distributed
    assert dist_env({}) == DistEnv() and DistEnv().is_main
    with pytest.raises(XaugError, match="outside world size"):
        dist_env({"RANK": "2", "WORLD_SIZE": "2"})
    assert backend_for(torch.device("cuda", 0)) == "nccl" and backend_for(torch.device("cpu")) == "gloo"
    assert rank_device(torch.device("cpu"), env) == torch.device("cpu")
    cuda, cpu = torch.device("cuda", 1), torch.device("cpu")
    assert want_sync_batchnorm("batch", cuda, env)
    assert not want_sync_batchnorm("group", cuda, env) and not want_sync_batchnorm("batch", cpu, env)
    assert not want_sync_batchnorm("batch", cuda, DistEnv())
    cmd = launch_command(2, ["train", "--dataset", "raw"])
    assert cmd[1:7] == ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m", "--"]
    assert cmd[7:] == ["xaug", "train", "--dataset", "raw"]


def test_command_argv_rebuilds_the_options():
    import typer

    from xaug.cli.train import command_argv, train_cmd

    app = typer.Typer()
    app.command()(train_cmd)
    cmd = typer.main.get_command(app)
    ctx = cmd.make_context("train", ["--dataset", "raw", "--epochs", "3", "--nproc", "2", "--compile",
                                     "--no-disk-cache", "--arch", "unet", "--run", "runs/x"])
    argv = command_argv(ctx, drop={"nproc"})
    assert "--nproc" not in argv and "--compile" in argv and "--no-disk-cache" in argv
    assert argv[argv.index("--epochs") + 1] == "3" and argv[argv.index("--arch") + 1] == "unet"
    assert argv[argv.index("--dataset") + 1] == "raw" and "--size" not in argv  # defaults left out
    again = cmd.make_context("train", argv)
    assert {k: v for k, v in again.params.items() if k != "nproc"} == \
        {k: v for k, v in ctx.params.items() if k != "nproc"}


def _run(home: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "XAUG_HOME": str(home), "OMP_NUM_THREADS": "1",
           "PYTHONWARNINGS": "ignore::UserWarning:multiprocessing.resource_tracker"}
    return subprocess.run([sys.executable, "-m", "xaug", "train", "--dataset", "raw", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=240)


def test_two_processes_train_like_one_with_the_doubled_batch(store_copy, tmp_path):
    from trainer.data import OnlineAug
    from trainer.runs import train_version
    from xaug.store import Store

    two = _run(store_copy, tmp_path, "--run", "runs/two", "--nproc", "2", "--batch", "2", *TINY)
    assert two.returncode == 0, two.stderr[-3000:]
    assert "on 2 processes" in two.stdout and two.stdout.count("run runs/two") == 1  # rank 0 reports
    # the same run in this process, with the doubled batch
    one = tmp_path / "runs" / "one"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each rank (OMP_NUM_THREADS=1): another thread count sums convolutions in
    try:                      # another order, and on a busy machine that drifted the loss by ~0.5%
        train_version(Store(store_copy), "raw", run=str(one), device="cpu", progress=False, batch=4, epochs=2,
                      size=64, width=4, depth=2, workers=0, lr=3e-3, norm="group", val_limit=2, aug=OnlineAug())
    finally:
        torch.set_num_threads(threads)

    a, b = tmp_path / "runs" / "two", one
    assert sorted(p.name for p in a.iterdir()) == sorted(p.name for p in b.iterdir())
    ca, cb = (json.loads((d / "config.json").read_text()) for d in (a, b))
    assert ca.keys() == cb.keys() and ca["world_size"] == 2 and cb["world_size"] == 1 and ca["batch"] == 2
    ma = [json.loads(x) for x in (a / "metrics.jsonl").read_text().splitlines()]
    mb = [json.loads(x) for x in (b / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in ma] == [r["step"] for r in mb]  # same optimiser steps per epoch
    assert [set(r) for r in ma] == [set(r) for r in mb]
    for ra, rb in zip(ma, mb):  # group norm: the same maths, summed in another order
        assert ra["loss"] == pytest.approx(rb["loss"], rel=1e-3)
    wa = torch.load(a / "last.pt", weights_only=True)["model"]
    wb = torch.load(b / "last.pt", weights_only=True)["model"]
    assert wa.keys() == wb.keys()
    assert all(torch.allclose(wa[k].float(), wb[k].float(), atol=1e-3) for k in wa)

    # a finished 2-process run resumes (every rank reads last.pt) as a no-op; with one process
    # it is another training (global batch 2, not 4) and is refused
    again = _run(store_copy, tmp_path, "--run", "runs/two", "--nproc", "2", "--batch", "2", "--resume", *TINY)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "2 epochs on 2 processes" in again.stdout
    with pytest.raises(XaugError, match="than the stored run \\(world_size: stored 2, given 1\\)"):
        train_version(Store(store_copy), "raw", run=str(a), device="cpu", progress=False, resume=True, batch=2,
                      epochs=2, size=64, width=4, depth=2, workers=0, lr=3e-3, norm="group", val_limit=2)
