"""Ranks of a ``torchrun`` job: who am I, how many are we, wait for the others.

``torchrun --nproc-per-node N -m omni <stage> CONFIG`` starts N processes with ``RANK``,
``WORLD_SIZE`` and ``LOCAL_RANK`` set; ``init_from_env`` joins them into one process group
(NCCL on CUDA, gloo on CPU). Outside torchrun everything is rank 0 of 1 and every call here
is a no-op, so the library never needs to know which case it is in.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

# Stages that run before training (ingest ... manifest) can take hours on rank 0 while the
# other ranks wait at a barrier; a shorter timeout would kill a healthy job.
WAIT = timedelta(hours=int(os.environ.get("OMNI_RANK_TIMEOUT_H", "12")))


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def many(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.many:
            import torch.distributed as dist

            dist.barrier()

    def sum(self, values: list[float]) -> list[float]:
        """Element-wise sum over ranks (one small all-reduce)."""
        if not self.many:
            return list(values)
        import torch
        import torch.distributed as dist

        t = torch.tensor(values, dtype=torch.float64)
        if dist.get_backend() == "nccl":
            t = t.cuda()
        dist.all_reduce(t)
        return t.cpu().tolist()

    def any(self, flag: bool) -> bool:
        """True on every rank if it is true on any (a stop request reaches all at the same step)."""
        return bool(self.sum([float(flag)])[0] > 0) if self.many else flag


def current() -> Ranks:
    """This process's place in the running process group (rank 0 of 1 when there is none)."""
    if not launched_by_torchrun():
        return Ranks()
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return Ranks(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    return Ranks()


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_from_env(device: str = "auto") -> Ranks:
    """Join the torchrun job described by the environment; returns this process's ranks."""
    if not launched_by_torchrun():
        return Ranks()
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        cuda = device != "cpu" and torch.cuda.is_available()
        if cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        dist.init_process_group("nccl" if cuda else "gloo", timeout=WAIT)
    return current()


def leave() -> None:
    if not launched_by_torchrun():
        return
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
