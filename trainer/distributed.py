"""Training on several processes with DistributedDataParallel, started by torchrun.

`torchrun --nproc-per-node N -m -- xaug train ...` and `xaug train ... --nproc N` (which runs
`python -m torch.distributed.run --standalone --nproc-per-node N -m -- xaug train ...` itself)
start N copies of the same command; each finds its rank in the environment torchrun sets
(RANK, WORLD_SIZE, LOCAL_RANK). NCCL joins them on CUDA, gloo on CPU.

>>> dist_env({}).world, dist_env({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"}).is_main
(1, False)
"""
from __future__ import annotations

import datetime
import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Mapping, Sequence

import torch
import torch.distributed as dist

from xaug.errors import XaugError


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    local_rank: int = 0
    world: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def dist_env(environ: Mapping[str, str] | None = None) -> DistEnv:
    """This process's place in a torchrun launch (one process when the variables are absent)."""
    env = os.environ if environ is None else environ
    try:
        world = int(env.get("WORLD_SIZE", "1"))
        rank = int(env.get("RANK", "0"))
        local = int(env.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise XaugError("RANK / WORLD_SIZE / LOCAL_RANK must be integers (set by torchrun)", where="environment") from None
    if world < 1 or not 0 <= rank < world:
        raise XaugError(f"rank {rank} outside world size {world}", where="environment")
    return DistEnv(rank, local, world)


def backend_for(device: torch.device) -> str:
    """NCCL between GPUs, gloo between CPU processes."""
    return "nccl" if device.type == "cuda" else "gloo"


def rank_device(device: torch.device, env: DistEnv) -> torch.device:
    """One GPU per process: cuda:LOCAL_RANK when training on CUDA; the CPU stays the CPU."""
    if device.type != "cuda":
        return device
    if env.local_rank >= torch.cuda.device_count():
        raise XaugError(f"local rank {env.local_rank} has no GPU (this machine has {torch.cuda.device_count()}); "
                        "use --nproc <= the number of GPUs", where="--nproc")
    return torch.device("cuda", env.local_rank)


def want_sync_batchnorm(norm: str, device: torch.device, env: DistEnv) -> bool:
    """SyncBatchNorm when the norm is batch and several GPUs train. torch's SyncBatchNorm runs
    only on accelerators; on CPU each process keeps its own batch statistics (DDP broadcasts
    rank 0's running statistics every step), which `docs/scale.md` states."""
    return norm == "batch" and env.distributed and device.type == "cuda"


def init(device: torch.device, env: DistEnv, timeout_minutes: float = 120.0) -> torch.device:
    """Join the process group (once); returns this rank's device."""
    dev = rank_device(device, env)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        # validation runs on rank 0 while the others wait: allow a long barrier
        dist.init_process_group(backend_for(dev), timeout=datetime.timedelta(minutes=timeout_minutes))
    return dev


def barrier(env: DistEnv) -> None:
    if env.distributed and dist.is_initialized():
        dist.barrier()


def sum_across(value: torch.Tensor, env: DistEnv) -> torch.Tensor:
    """The sum of `value` over all ranks (itself with one process)."""
    if env.distributed and dist.is_initialized():
        value = value.clone()
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def launch_command(nproc: int, argv: Sequence[str]) -> list[str]:
    """The torchrun command that runs `xaug <argv>` on `nproc` local processes. The `--` keeps
    torchrun from reading xaug's options as abbreviations of its own (`--run` as `--run-path`)."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
            "-m", "--", "xaug", *argv]


def launch(nproc: int, argv: Sequence[str]) -> int:
    """Run `xaug <argv>` under torchrun with `nproc` processes; returns its exit status."""
    if nproc < 1:
        raise XaugError("--nproc must be >= 1", where="--nproc")
    env = dict(os.environ)
    # torchrun's default is 1 thread per process; leave the machine's cores to the ranks
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    return subprocess.call(launch_command(nproc, argv), env=env)
