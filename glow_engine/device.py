"""Which torch device to run on, and how to name it for people."""

from __future__ import annotations

import torch

from glow_engine.errors import UserError


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
