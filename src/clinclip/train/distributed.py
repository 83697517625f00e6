"""One process or ``torchrun``: the rank layout from the environment, the process group (NCCL on GPU, gloo
on CPU) and the device of this rank. Nothing here assumes one machine: ranks, the local rank (the GPU of
this process) and the rendezvous come from what ``torchrun`` sets (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``/``MASTER_PORT``), on one node or many."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from clinclip.errors import ClinclipError


@dataclass
class DistributedContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    owns_group: bool = False  # we initialised the process group, so we destroy it

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def all_gather_object(self, value):
        if not self.distributed:
            return [value]
        out = [None] * self.world_size
        dist.all_gather_object(out, value)
        return out

    def sum_ints(self, values: list[int]) -> list[int]:
        """Element-wise sum over ranks of a few counters."""
        if not self.distributed:
            return list(values)
        t = torch.tensor(values, dtype=torch.long, device=self.device if self.device.type == "cuda" else "cpu")
        dist.all_reduce(t)
        return [int(v) for v in t.tolist()]

    def min_int(self, value: int) -> int:
        if not self.distributed:
            return value
        t = torch.tensor([value], dtype=torch.long, device=self.device if self.device.type == "cuda" else "cpu")
        dist.all_reduce(t, op=dist.ReduceOp.MIN)
        return int(t.item())

    def any_flag(self, flag: bool) -> bool:
        """True on every rank when any rank's flag is set (e.g. a stop signal that reached one rank)."""
        if not self.distributed:
            return flag
        t = torch.tensor([int(flag)], dtype=torch.long, device=self.device if self.device.type == "cuda" else "cpu")
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def close(self) -> None:
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()


def resolve_device(requested: str, local_rank: int) -> torch.device:
    if requested == "cpu":
        return torch.device("cpu")
    if requested == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    if not torch.cuda.is_available():
        raise ClinclipError(f"train config: device = {requested!r} but CUDA is not available (use device=auto or cpu)")
    if requested == "cuda":
        return torch.device(f"cuda:{local_rank}")
    return torch.device(requested)


def init_distributed(requested_device: str = "auto") -> DistributedContext:
    """Read ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` (set by torchrun) and join the process group; a plain
    ``python`` run is one process of world size 1. A group initialised by the caller is reused."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if dist.is_available() and dist.is_initialized():
        world_size, rank = dist.get_world_size(), dist.get_rank()
        device = resolve_device(requested_device, local_rank)
        return DistributedContext(rank, world_size, local_rank, device, owns_group=False)
    device = resolve_device(requested_device, local_rank)
    if world_size == 1:
        return DistributedContext(0, 1, 0, device)
    if not dist.is_available():
        raise ClinclipError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend, init_method="env://", rank=rank, world_size=world_size)
    return DistributedContext(rank, world_size, local_rank, device, owns_group=True)
