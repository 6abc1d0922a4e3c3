"""Model selection: keep the checkpoint with the best validation score and stop when it stops
improving.

Scores are compared at ``decimals`` places and, by default, a tie counts as an improvement, so the
later checkpoint wins: on a validation plateau the model that trained longer is kept. This is the
rule RecBole applies (4 decimals, ``>=``), so results on the same split are selected the same way.
``patience`` is the number of evaluations without improvement after which training stops; RecBole's
``stopping_step`` s stops at the (s+1)-th, so it corresponds to ``patience: s+1``. ``min_epochs``
keeps training at least that long whatever the patience: models whose validation score first falls
(contrastive losses spread the embeddings before they align them) are not stopped in that dip.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Optional

import lightning as L


class BestCheckpoint(L.Callback):
    """Saves ``best.ckpt`` whenever the monitored validation score improves (or ties, when
    ``ties_later``); sets ``trainer.should_stop`` after ``patience`` evaluations without one."""

    def __init__(self, dirpath: str | Path, monitor: str, patience: Optional[int],
                 decimals: Optional[int] = 4, ties_later: bool = True, min_epochs: int = 0) -> None:
        self.path = Path(dirpath) / "best.ckpt"
        self.monitor, self.patience, self.min_epochs = monitor, patience, min_epochs
        self.decimals, self.ties_later = decimals, ties_later
        self.best = -math.inf
        self.best_epoch: Optional[int] = None
        self.wait = 0

    @property
    def best_model_path(self) -> str:
        # From the callback's state, not the file system: under DDP only rank 0 writes the file,
        # and every rank must agree on which checkpoint to test.
        return str(self.path) if self.best_epoch is not None else ""

    def _score(self, trainer: L.Trainer) -> Optional[float]:
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            return None
        value = float(value)
        return round(value, self.decimals) if self.decimals is not None else value

    def on_validation_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        score = self._score(trainer)
        if score is None or math.isnan(score):
            return
        if score > self.best or (self.ties_later and score == self.best):
            self.best, self.best_epoch, self.wait = score, trainer.current_epoch, 0
            self.path.parent.mkdir(parents=True, exist_ok=True)
            trainer.save_checkpoint(self.path)
        else:
            self.wait += 1
            if (self.patience is not None and self.wait >= self.patience
                    and trainer.current_epoch + 1 >= self.min_epochs):
                trainer.should_stop = True

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = state["best"]
        self.best_epoch = state["best_epoch"]
        self.wait = state["wait"]
