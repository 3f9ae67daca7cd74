"""Where the work runs: the device a `--device` option names, and this process's place in a torchrun job.

`resolve_device` is the one reading of a device name, shared by inference (`Classifier`, `Embedder`)
and training; it refuses a device this machine does not have with a message naming the option.
`Distributed` is the one reading of torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK): the
trainer and `ast-min train` ask it which process they are.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


def resolve_device(name: str, option: str = "--device"):
    """A torch.device from a device option: "auto" (CUDA when available, else the CPU), "cpu", "cuda",
    "cuda:N" or "mps", refused with a message naming `option` when this machine does not have it."""
    import torch  # here, not at the top: the command line's parser needs no torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"{option} {name!r} is not a device ({e}): use cpu, cuda, cuda:N or auto") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{option} {name}: this machine has no CUDA device (or torch was built without CUDA): "
                             "use --device cpu, or auto")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"{option} {name}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                             f"numbered from 0: use cuda:0 .. cuda:{torch.cuda.device_count() - 1}")
    elif device.type == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError(f"{option} mps: this machine has no Apple GPU (MPS): use --device cpu, or auto")
    elif device.type != "cpu":
        raise ValueError(f"{option} {name}: ast-min runs on cpu, cuda or mps, not {device.type}")
    return device


@dataclass
class Distributed:
    """This process's place in a torchrun job (rank 0 of 1 without torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @classmethod
    def from_environment(cls) -> "Distributed":
        """Read torchrun's RANK, WORLD_SIZE and LOCAL_RANK."""
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if world_size == 1:
            return cls()
        return cls(int(os.environ.get("RANK", "0")), world_size, int(os.environ.get("LOCAL_RANK", "0")))

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that evaluates, logs and writes."""
        return self.rank == 0

    def device(self, name: str) -> str:
        """The device this process works on (`name` as --device takes it): under torchrun, "cuda" is this rank's card."""
        device = resolve_device(name)
        if device.type == "cuda" and device.index is None and self.world_size > 1:
            return f"cuda:{self.local_rank}"
        return str(device)

    def join(self, device: str) -> None:
        """Join torchrun's process group: NCCL on CUDA, gloo on the CPU."""
        import torch.distributed as dist

        if self.world_size > 1 and not dist.is_initialized():
            dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")

    def barrier(self) -> None:
        """Wait for every process (nothing to wait for alone)."""
        import torch.distributed as dist

        if self.world_size > 1:
            dist.barrier()
