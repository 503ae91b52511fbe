"""torchrun support: process group from the environment, rank helpers."""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_from_env(device: torch.device) -> DistInfo:
    """Join the process group torchrun describes (WORLD_SIZE > 1); gloo on CPU, nccl on CUDA."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistInfo(rank=dist.get_rank(), world_size=dist.get_world_size(),
                    local_rank=int(os.environ.get("LOCAL_RANK", "0")))


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


@contextmanager
def local_leader_first(info: DistInfo) -> Iterator[None]:
    """Run the block on each node's local rank 0 first, then on that node's other ranks.

    For work whose result the others reuse, such as building the dataset index: the leader
    builds it, the other ranks wait at a barrier and then map the finished index instead of
    racing to build their own. Every rank passes exactly one barrier, so a leader that fails
    still releases the others (who then meet the same error themselves).
    """
    if not info.enabled:
        yield
        return
    leader = info.local_rank == 0
    if not leader:
        dist.barrier()
    try:
        yield
    finally:
        if leader:
            dist.barrier()


def broadcast_flag(flag: bool, info: DistInfo) -> bool:
    """True on every rank if ``flag`` is true on rank 0 (stop requests, early stopping)."""
    if not info.enabled:
        return flag
    device = "cuda" if dist.get_backend() == "nccl" else "cpu"
    t = torch.tensor([1 if flag else 0], device=device)
    dist.broadcast(t, src=0)
    return bool(t.item())


class ReplicasDiverged(RuntimeError):
    """DDP ranks hold different parameters: they no longer train one model."""


def parameter_fingerprint(module: nn.Module) -> torch.Tensor:
    """Per parameter tensor, its float64 sum and sum of squares: ``[P, 2]`` on the parameters' device."""
    rows = [torch.stack([p.detach().double().sum(), p.detach().double().square().sum()])
            for p in module.parameters()]
    return torch.stack(rows)


def check_replicas_agree(module: nn.Module, info: DistInfo) -> None:
    """Raise :class:`ReplicasDiverged` on every rank when any rank's parameters differ from rank 0's.

    DDP averages gradients before each step, so replicas stay bitwise equal; a difference means a
    parameter was updated outside DDP (or from a local gradient), and the ranks train different
    models while rank 0 alone is checkpointed. One all-gather of ``[P, 2]`` float64 per call.
    """
    if not info.enabled:
        return
    mine = parameter_fingerprint(module)
    gathered = [torch.empty_like(mine) for _ in range(info.world_size)]
    dist.all_gather(gathered, mine)
    names = [n for n, _ in module.named_parameters()]
    for rank, other in enumerate(gathered[1:], start=1):
        both_nan = other.isnan() & gathered[0].isnan()
        differs = ((other != gathered[0]) & ~both_nan).any(dim=1).nonzero().flatten().tolist()
        if differs:
            shown = ", ".join(names[i] for i in differs[:3])
            raise ReplicasDiverged(f"rank {rank} holds other weights than rank 0 in {len(differs)} of "
                                   f"{len(names)} parameter tensors (e.g. {shown})")


def shutdown(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
