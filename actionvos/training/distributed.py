"""Process-group set-up for multi-GPU (and multi-process CPU) training through ``torchrun``.

``torchrun --nproc_per_node N -m actionvos train ...`` sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR`` and ``MASTER_PORT``; :func:`init_distributed` reads them (``env://``) and picks the
backend: ``nccl`` when training on CUDA, ``gloo`` on CPU. Without those variables it is a no-op and
training runs in one process. Seeds are ``seed + rank`` (spec §8); the ``num_boxes`` all-reduce lives
in :class:`~actionvos.training.losses.ActionVOSCriterion`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..errors import ConfigError

__all__ = ["DistInfo", "init_distributed", "cleanup_distributed", "barrier", "reduce_mean"]


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: ``rank`` in ``[0, world_size)``, ``local_rank`` (GPU index on its node),
    ``device`` (torch device string) and whether a process group was initialised by us."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: str = "cpu"
    initialized: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"environment variable {name}={value!r} is not an integer (set by torchrun)") from None


def init_distributed(device: str = "auto") -> DistInfo:
    """Initialise ``torch.distributed`` from the torchrun environment, if present.

    Args:
        device: ``auto`` (CUDA when available, else CPU), ``cpu`` or ``cuda``. In a CUDA job each process
            uses ``cuda:{LOCAL_RANK}``.
    Returns:
        :class:`DistInfo`; ``world_size == 1`` and no process group when ``WORLD_SIZE`` is unset or 1.
    Raises:
        ConfigError: ``cuda`` requested without a GPU, or fewer GPUs than local processes.
    """
    if device not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"--device must be auto, cpu or cuda, got {device!r}")
    use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    if use_cuda and not torch.cuda.is_available():
        raise ConfigError("--device cuda was requested but torch sees no CUDA GPU; use --device cpu")
    world = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local = _env_int("LOCAL_RANK", 0)
    dev = "cpu"
    if use_cuda:
        if local >= torch.cuda.device_count():
            raise ConfigError(f"LOCAL_RANK {local} but only {torch.cuda.device_count()} CUDA device(s) are visible")
        torch.cuda.set_device(local)
        dev = f"cuda:{local}"
    if world <= 1:
        return DistInfo(0, 1, 0, dev, False)
    if dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), local, dev, False)
    dist.init_process_group(backend="nccl" if use_cuda else "gloo", init_method="env://",
                            world_size=world, rank=rank)
    return DistInfo(rank, world, local, dev, True)


def cleanup_distributed(info: DistInfo) -> None:
    """Destroy the process group if :func:`init_distributed` created it."""
    if info.initialized and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    """``dist.barrier()`` when a process group exists, else nothing."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def reduce_mean(values: dict[str, float], device: str | torch.device = "cpu") -> dict[str, float]:
    """Average scalar ``values`` over ranks (for logging only; gradients are synchronised by DDP)."""
    if not (dist.is_available() and dist.is_initialized()) or not values:
        return dict(values)
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    t /= dist.get_world_size()
    return dict(zip(keys, t.tolist()))
