"""Where torch runs: one rule for training and for the service's audio embedders."""

from __future__ import annotations

import torch


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``auto``/None picks CUDA when present; ``cuda`` without a GPU is an error naming the parameter."""
    name = str(device or "auto")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={name!r}: CUDA is not available on this machine (use 'cpu' or 'auto')")
    return dev

