"""Running on many devices and machines with Lightning's DDP: who writes, how data is sharded, and
how evaluation sums are reduced.

kgflow launches nothing itself. ``trainer: {devices: N, strategy: ddp}`` lets Lightning start one
process per device (re-running the same ``kgflow run`` command), and multi-node runs are started by
torchrun or SLURM, which set ``RANK`` / ``SLURM_PROCID``. Every process builds the data and the model
the same way; only the process of global rank 0 touches the run directory.
"""
from __future__ import annotations

import os
from typing import Any

import torch

#: The strategy names kgflow runs correctly (one process per device, Lightning's DDP).
DDP_STRATEGIES = ("ddp", "ddp_find_unused_parameters_true", "ddp_find_unused_parameters_false")

#: Strategies refused, with the reason given to the user.
REFUSED_STRATEGIES = {
    "ddp_spawn": "it serialises the model into new processes; kgflow's data and graph are built "
                 "in each process instead: use strategy: ddp",
    "ddp_fork": "forked processes share kgflow's data loaders' state; use strategy: ddp",
    "ddp_notebook": "use strategy: ddp from a script or the kgflow CLI",
    "dp": "Lightning removed DataParallel; use strategy: ddp",
    "fsdp": "kgflow's models are small next to their data: shard the data with strategy: ddp",
    "deepspeed": "kgflow does not test DeepSpeed; use strategy: ddp",
}


def launch_rank(devices_per_node: int = 1) -> int:
    """This process's global rank as its launcher set it, readable before Lightning starts.

    torchrun sets ``RANK``; SLURM ``SLURM_PROCID`` (when it runs several tasks); Lightning's own
    launcher sets ``NODE_RANK`` and ``LOCAL_RANK`` in the processes it starts. A process started
    by hand is rank 0."""
    if "RANK" in os.environ:
        return int(os.environ["RANK"])
    if "SLURM_PROCID" in os.environ and int(os.environ.get("SLURM_NTASKS", "1")) > 1:
        return int(os.environ["SLURM_PROCID"])
    node = int(os.environ.get("NODE_RANK", os.environ.get("GROUP_RANK", "0")))
    return node * max(devices_per_node, 1) + int(os.environ.get("LOCAL_RANK", "0"))


def devices_per_node(trainer: dict[str, Any]) -> int:
    """How many processes one machine runs for these trainer settings (a best guess for 'auto')."""
    devices = trainer.get("devices", 1)
    if isinstance(devices, (list, tuple)):
        return len(devices)
    if isinstance(devices, int) and devices > 0:
        return devices
    if isinstance(devices, str) and devices.isdigit():
        return int(devices)
    return max(torch.cuda.device_count(), 1)


def is_distributed(trainer: dict[str, Any]) -> bool:
    """Whether these trainer settings ask for more than one process."""
    return devices_per_node(trainer) > 1 or int(trainer.get("num_nodes", 1) or 1) > 1


def rank_and_world() -> tuple[int, int]:
    """(rank, world size) of the running process group; (0, 1) outside one."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """The sum of ``tensor`` over every process (itself outside a process group)."""
    rank, world = rank_and_world()
    if world == 1:
        return tensor
    tensor = tensor.clone()
    torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.SUM)
    return tensor


def all_gather_rows(tensor: torch.Tensor) -> torch.Tensor:
    """Every process's rows of ``tensor`` (lengths may differ), concatenated in rank order."""
    rank, world = rank_and_world()
    if world == 1:
        return tensor
    size = torch.tensor([tensor.shape[0]], dtype=torch.long, device=tensor.device)
    sizes = [torch.zeros_like(size) for _ in range(world)]
    torch.distributed.all_gather(sizes, size)
    longest = int(max(int(s) for s in sizes))
    padded = torch.zeros((longest, *tensor.shape[1:]), dtype=tensor.dtype, device=tensor.device)
    padded[:tensor.shape[0]] = tensor
    parts = [torch.zeros_like(padded) for _ in range(world)]
    torch.distributed.all_gather(parts, padded)
    return torch.cat([part[:int(n)] for part, n in zip(parts, sizes)])


def shard_rows(n: int, rank: int, world: int) -> torch.Tensor:
    """Positions ``0..n-1`` of rank ``rank``'s shard: every ``world``-th, starting at ``rank``,
    padded by wrapping around so that every rank gets the same number (``ceil(n / world)``), as
    DDP needs the same number of steps on every rank."""
    per_rank = -(-n // world) if n else 0
    return torch.arange(rank, rank + per_rank * world, world) % max(n, 1)

