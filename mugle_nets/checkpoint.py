"""Saving and reading the torch models' checkpoints (``models/tcae.pt``, ``models/cel.pt``).

A checkpoint is a plain dict ``{"state_dict", "config", "options", "info"}`` that loads with
``torch.load(weights_only=True)``: no pickled classes, so reading one never runs code from the file.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

logger = logging.getLogger(__name__)


def plain(value: Any) -> Any:
    """Only plain containers and scalars go into a ``weights_only`` checkpoint."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def save_checkpoint(
    path: Path, model: nn.Module, config: dict[str, Any], options: dict[str, Any], info: dict[str, Any] | None
) -> Path:
    """Write the checkpoint next to ``path`` first and rename it, so a crash never leaves half a file."""
    payload = {
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "config": config,
        "options": options,
        "info": plain(info or {}),
    }
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)
    return path


def load_checkpoint(path: Path, what: str, model_cls: type[nn.Module], options_cls: type) -> tuple[nn.Module, Any]:
    """Read a checkpoint into a fresh ``model_cls(**config)`` and ``options_cls``.

    Errors name the file and what is wrong: missing (``FileNotFoundError``), unreadable, incomplete, or
    a state dict that does not fit its config (``ValueError``). Unknown option names are ignored, so an
    older checkpoint still loads after an option was added.
    """
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {what} checkpoint is missing")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a corrupt file
        raise ValueError(f"{path}: cannot read {what} checkpoint ({type(exc).__name__}: {exc})") from exc
    if not isinstance(payload, dict) or "state_dict" not in payload or "config" not in payload:
        raise ValueError(f"{path}: {what} checkpoint lacks 'state_dict' or 'config'")
    known = set(options_cls.__dataclass_fields__)
    options = options_cls(**{k: v for k, v in dict(payload.get("options", {})).items() if k in known})
    model = model_cls(**payload["config"])
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as exc:
        raise ValueError(f"{path}: state_dict does not match its config ({exc})") from exc
    return model, options
