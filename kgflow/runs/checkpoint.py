"""Reading kgflow's checkpoints as data: tensors, numbers and strings, never code.

``torch.load`` with ``weights_only=True`` refuses any object outside that set before building it,
so a checkpoint crafted to run code when unpickled is refused instead of obeyed. Every load of a
checkpoint goes through :func:`read_checkpoint`; Lightning's resume is given ``weights_only=True``
too, after the same check.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from kgflow.errors import RunDirError


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint at ``path`` as plain data; an unsafe, truncated or unreadable file is a
    :class:`RunDirError` naming it and saying what to do."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise RunDirError(f"{path}: checkpoint not found") from None
    except Exception as exc:
        if type(exc).__name__ == "UnpicklingError":  # weights_only refused an object
            raise RunDirError(f"{path}: refused to load: the checkpoint holds objects other than "
                              f"tensors and plain values, which could run code ({_first_line(exc)}); "
                              "only load runs you trust, and retrain this one") from None
        raise RunDirError(f"{path}: the checkpoint is damaged or truncated ({_first_line(exc)}); "
                          "delete it and rerun (or resume from another checkpoint)") from None
    if not isinstance(state, dict) or "state_dict" not in state:
        raise RunDirError(f"{path}: not a kgflow checkpoint (no state_dict)")
    return state


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__
