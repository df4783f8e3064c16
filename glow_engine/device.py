"""Which torch device to run on, how to name it for people, and whether this process is one
rank of a `torchrun` launch."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from datetime import timedelta

import torch

from glow_engine.errors import UserError

# What torchrun (torch.distributed.run) sets in every worker's environment; all of them, or
# the process was not started by it and a stray variable (RANK=1 left in a shell) is ignored.
TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR",
                      "MASTER_PORT", "TORCHELASTIC_RUN_ID")
RENDEZVOUS_TIMEOUT_S = 300  # how long rank 0 waits for the others (DPGLOW_RENDEZVOUS_TIMEOUT)
_WARNED: set[str] = set()


@dataclass(frozen=True)
class Ranks:
    """This process's place in a torchrun launch (rank 0 of 1 outside one)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0


def torchrun_ranks() -> Ranks:
    """The ranks torchrun gave this process. Outside torchrun (not every one of its variables
    set) a stray RANK or WORLD_SIZE is ignored with a warning, never obeyed: obeying RANK=1
    alone would silently release only every other input. UserError for torchrun variables
    that contradict each other."""
    present = [name for name in TORCHRUN_VARIABLES if os.environ.get(name)]
    if len(present) < len(TORCHRUN_VARIABLES):
        stray = [f"{name}={os.environ[name]}" for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK")
                 if os.environ.get(name)]
        missing = sorted(set(TORCHRUN_VARIABLES) - set(present))
        warning = (f"warning: ignoring {' '.join(stray)}: this process was not started by "
                   f"torchrun ({', '.join(missing)} not set); running as one process on "
                   "every input")
        if stray and warning not in _WARNED:  # once per process
            _WARNED.add(warning)
            print(warning, file=sys.stderr)
        return Ranks()
    try:
        ranks = Ranks(*(int(os.environ[n]) for n in ("RANK", "WORLD_SIZE", "LOCAL_RANK")))
        int(os.environ["MASTER_PORT"])
    except ValueError:
        raise UserError("torchrun's RANK, WORLD_SIZE, LOCAL_RANK and MASTER_PORT must be "
                        "whole numbers") from None
    if not (ranks.world >= 1 and 0 <= ranks.rank < ranks.world and ranks.local_rank >= 0):
        raise UserError(f"torchrun's RANK={ranks.rank} does not fit WORLD_SIZE={ranks.world}")
    return ranks


def rendezvous_timeout() -> timedelta:
    """How long a rank waits for the others to join (and for each collective)."""
    text = os.environ.get("DPGLOW_RENDEZVOUS_TIMEOUT", str(RENDEZVOUS_TIMEOUT_S))
    try:
        seconds = float(text)
        if not 0 < seconds < 1e6:
            raise ValueError
    except ValueError:
        raise UserError(f"DPGLOW_RENDEZVOUS_TIMEOUT must be a number of seconds, got "
                        f"{text!r}") from None
    return timedelta(seconds=seconds)


def pick_device(preference: str = "auto") -> torch.device:
    """The device to run on. Choosing CUDA also sets the process's float32 policy once:
    cuDNN's default TF32 convolutions (10-bit mantissa) break the flow's 1e-4 round trip, so
    convolutions run in true float32 (a faster, less exact decode would ask for lower
    precision explicitly, for that call only)."""
    device = _checked(preference) if preference != "auto" else _best_device()
    if device.type == "cuda":
        torch.backends.cudnn.allow_tf32 = False
    return device


def _checked(preference: str) -> torch.device:
    """The device named by the user, if this machine has it; UserError otherwise."""
    try:
        device = torch.device(preference)
    except (RuntimeError, TypeError):
        device = None
    if device is None or device.type not in ("cpu", "cuda", "mps"):
        raise UserError(f"unknown device {preference!r} (use auto, cpu, cuda, cuda:N or mps)")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {preference!r}: CUDA is not available here (use auto or cpu)")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise UserError(f"device {preference!r}: there are only {torch.cuda.device_count()} "
                        "CUDA devices")
    mps = getattr(torch.backends, "mps", None)
    if device.type == "mps" and not (mps and mps.is_available()):
        raise UserError(f"device {preference!r}: Apple MPS is not available here")
    return device


def _best_device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        return f"CUDA: {torch.cuda.get_device_name(device)}"
    if device.type == "mps":
        return "Apple MPS"
    threads = torch.get_num_threads()
    return f"CPU ({threads} thread{'' if threads == 1 else 's'})"
