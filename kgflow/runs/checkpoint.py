"""Reading kgflow's checkpoints as data: tensors, numbers and strings, never code.

``torch.load`` with ``weights_only=True`` refuses any object outside that set before building it,
so a checkpoint crafted to run code when unpickled is refused instead of obeyed. Every load of a
checkpoint goes through :func:`read_checkpoint`; Lightning's resume is given ``weights_only=True``
too, after the same check.
"""
from __future__ import annotations

import json
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


def model_state(checkpoint: Path) -> dict[str, torch.Tensor]:
    """The recommender's own state dict from a kgflow Lightning checkpoint."""
    state = read_checkpoint(checkpoint)["state_dict"]
    return {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}


def load_weights(model: torch.nn.Module, state: dict[str, torch.Tensor], source: Path) -> None:
    """Load a run's weights into its rebuilt model: every tensor the model saves must be there;
    tensors the model now recomputes instead of saving (frozen text vectors, which checkpoints of
    earlier versions carried) are skipped."""
    own = model.state_dict()
    missing = [key for key in own if key not in state]
    if missing:
        raise RunDirError(f"{source}: the checkpoint lacks {len(missing)} of the model's tensors "
                          f"(e.g. {missing[0]}); it was written for another model")
    model.load_state_dict({key: value for key, value in state.items() if key in own})


def warm_start(model: torch.nn.Module, run_dir: str | Path, fingerprint: str) -> tuple[int, int]:
    """Copy a finished run's best weights into ``model`` wherever name and shape agree; returns
    (tensors copied, trainable tensors the run did not have, which start fresh). Refuses a run on another split:
    its weights have seen interactions that this split may hold out for testing."""
    path = Path(run_dir)
    metrics_file, checkpoint = path / "metrics.json", path / "checkpoints" / "best.ckpt"
    if not metrics_file.is_file() or not checkpoint.is_file():
        raise RunDirError(f"train.init_from: {path} is not a finished kgflow run with a best checkpoint")
    theirs = json.loads(metrics_file.read_text()).get("data_fingerprint")
    if theirs != fingerprint:
        raise RunDirError(f"train.init_from: {path} was trained on split {theirs}, this run's split is "
                          f"{fingerprint}; its weights have seen data this split may test on (for a run on an "
                          "earlier snapshot of the data, set train.init_match: ids)")
    source = model_state(checkpoint)
    own = model.state_dict()
    usable = {k: v for k, v in source.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(usable, strict=False)
    fresh = [name for name, p in model.named_parameters() if p.requires_grad and name not in usable]
    return len(usable), len(fresh)
