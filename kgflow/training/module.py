"""The Lightning module the core wraps around any :class:`Recommender`."""
from __future__ import annotations

import inspect
import time
from typing import Callable

import lightning as L
import torch

from kgflow.config.schema import TrainConfig
from kgflow.evaluation.ranking import EvalTask, MetricFn, RankingEvaluator
from kgflow.errors import NotSupportedError
from kgflow.models import (AuxiliaryObjective, Embeddings, GraphEncoder, PairVectors, Recommender,
                           VectorLoss)
from kgflow.training.distributed import all_gather_rows, all_reduce_sum, rank_and_world
from kgflow.training import rng
from kgflow.training.optim import RowSparseAdam, use_sparse_lookups

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | VectorLoss


def check_weighted_loss(loss: LossFn, name: str) -> None:
    """``preprocess.weight.loss`` hands the loss each positive's weight: refuse a loss that cannot
    take it, rather than train as if the weights were not there."""
    if isinstance(loss, VectorLoss):
        takes = loss.supports_weights
    else:
        try:
            params = inspect.signature(loss).parameters
        except (TypeError, ValueError):
            params = {}
        takes = "weight" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())
    if not takes:
        raise NotSupportedError(
            f"objective.loss {name!r} does not take per-positive weights, but preprocess.weight.loss "
            "is true; use bpr, bce, softmax or directau, or set preprocess.weight.loss: false (a "
            "loss plugin takes them as `weight=`, or as PairVectors.weight with supports_weights)")


class RecModule(L.LightningModule):
    """Trains a recommender with a pairwise/sampled loss; validates and tests by full ranking."""

    def __init__(self, model: Recommender, loss: LossFn, l2: float, train: TrainConfig,
                 tasks: dict[str, EvalTask], ks: list[int], metrics: dict[str, MetricFn],
                 objectives: list[AuxiliaryObjective] | None = None, hard_candidates: int = 0) -> None:
        """``hard_candidates`` > 0 (dynamic negative sampling): each batch carries that many
        candidates per negative, and the step trains on the one the model scores highest."""
        super().__init__()
        self.hard_candidates = hard_candidates
        if isinstance(loss, VectorLoss) and not model.has_vectors:
            raise NotSupportedError(f"the loss trains on user and item vectors, but {type(model).__name__} "
                                    "scores each pair jointly (it has no such vectors): choose a "
                                    "score-based loss such as bpr or softmax")
        self.model = model
        # Auxiliary objectives may own parameters (e.g. relation vectors): registering them here
        # puts those in the optimizer and in checkpoints.
        self.objectives = torch.nn.ModuleList(objectives or [])
        self.loss_fn = loss
        self.l2 = l2
        self.train_cfg = train
        self.evaluators = {stage: RankingEvaluator(task, ks, metrics) for stage, task in tasks.items()}
        self._emb: Embeddings | None = None
        self.results: dict[str, dict[str, dict[str, float]]] = {}
        #: Every test user's metrics (all processes' users under DDP), set by testing.
        self.test_per_user: dict[str, torch.Tensor] = {}
        self.timing: dict[str, list[float]] = {"train_epoch": [], "eval": []}
        self._t0 = 0.0

    def transfer_batch_to_device(self, batch: dict[str, torch.Tensor], device: torch.device,
                                 dataloader_idx: int) -> dict[str, torch.Tensor]:
        """Batches are flat dicts of tensors: move them directly (Lightning's generic walk over
        collections costs more than the move itself on small batches)."""
        return {key: value.to(device, non_blocking=True) for key, value in batch.items()}

    # -- training --------------------------------------------------------------------------
    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        if "objective" in batch:  # a batch of an alternating auxiliary objective
            objective = self.objectives[int(batch["objective"][0])]
            loss = objective.weight * objective.loss(batch)
            self._aux_sum = self._aux_sum + loss.detach()
            self._aux_count += 1
            return loss
        emb = self.model.train_forward(batch)
        if self.hard_candidates:
            batch = self._hardest_negatives(emb, batch)
        users, pos, neg = batch["user"], batch["pos"], batch["neg"]
        # A sampled-subgraph batch's embeddings are rows of its subgraph: score by position there.
        at_user, at_pos, at_neg = (batch.get("user_at", users), batch.get("pos_at", pos),
                                   batch.get("neg_at", neg))
        if isinstance(self.loss_fn, VectorLoss):
            user_vec, pos_vec = self.model.vectors(emb, at_user, at_pos)
            neg_vec = self.model.vectors(emb, at_user, at_neg)[1]
            loss = self.loss_fn(PairVectors(user_vec, pos_vec, neg_vec, users, pos, neg,
                                            batch.get("weight")))
        else:
            pos_scores = self.model.score(emb, at_user, at_pos)
            neg_scores = self.model.score(emb, at_user, at_neg)
            if "weight" in batch:
                loss = self.loss_fn(pos_scores, neg_scores, weight=batch["weight"])
            else:
                loss = self.loss_fn(pos_scores, neg_scores)
        if self.l2 > 0:
            loss = loss + self.l2 * self.model.regularization(users, pos, neg)
        extra = self.model.extra_loss(emb, batch)
        if extra is not None:
            loss = loss + extra
        for objective in self.objectives:
            if objective.schedule == "joint":
                loss = loss + objective.weight * objective.loss(objective.sample(len(users)))
        # Accumulate the epoch's loss here and log it once per epoch: self.log on every step
        # costs more than a whole training step of a small model.
        self._loss_sum = self._loss_sum + loss.detach() * len(users)
        self._loss_count += len(users)
        return loss

    def _hardest_negatives(self, emb: Embeddings, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Dynamic negative sampling (Zhang et al., SIGIR 2013): of each negative's candidates,
        keep the one the current model ranks highest, the one most worth learning from. The
        choice is made without gradient; the chosen items' scores are then computed as usual."""
        neg = batch["neg"]
        at_user, at_neg = batch.get("user_at", batch["user"]), batch.get("neg_at", neg)
        with torch.no_grad():
            scores = self.model.score(emb, at_user, at_neg)  # [B, negatives * candidates]
        c = self.hard_candidates
        pick = scores.view(len(neg), -1, c).argmax(-1)  # [B, negatives]
        at = torch.arange(pick.shape[1], device=pick.device) * c + pick
        chosen = {"neg": neg.gather(1, at)}
        if "neg_at" in batch:
            chosen["neg_at"] = batch["neg_at"].gather(1, at)
        return {**batch, **chosen}

    def on_train_epoch_start(self) -> None:
        self._t0 = time.perf_counter()
        self._loss_sum = torch.zeros((), device=self.device)
        self._loss_count = 0
        self._aux_sum = torch.zeros((), device=self.device)
        self._aux_count = 0

    def _close_train_epoch(self) -> None:
        """Record the epoch's training time; called right after its last batch (when validation
        starts, or at the epoch's end when it has no validation)."""
        if self._t0:
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            self.timing["train_epoch"].append(time.perf_counter() - self._t0)
            self._t0 = 0.0
            with torch.no_grad():
                for module in self.model.modules():
                    if isinstance(module, GraphEncoder):
                        module.after_train_epoch()
                self.model.after_train_epoch()

    def on_train_batch_end(self, outputs, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        if "objective" not in batch:
            self.model.after_train_batch(self.global_step)

    def on_train_epoch_end(self) -> None:
        self._close_train_epoch()
        # Every rank logs (the same number of times), averaged over ranks under DDP.
        distributed = rank_and_world()[1] > 1
        if self._loss_count:
            self.log("train/loss", self._loss_sum / self._loss_count, prog_bar=True,
                     sync_dist=distributed)
        if self._aux_count:
            self.log("train/aux_loss", self._aux_sum / self._aux_count, sync_dist=distributed)

    # -- exact resume ----------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Every random stream training draws from goes into the checkpoint (see
        :mod:`kgflow.training.rng`): a resumed run then continues exactly where this one was."""
        checkpoint["kgflow_rng"] = rng.capture()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        rng.restore(checkpoint.get("kgflow_rng", {}))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        cfg = self.train_cfg
        if cfg.optimizer == "sparse_adam":
            use_sparse_lookups(self)
            params = [p for p in self.parameters() if p.requires_grad]
            return RowSparseAdam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        params = [p for p in self.parameters() if p.requires_grad]
        if cfg.optimizer == "adam":
            return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        if cfg.optimizer == "adamw":
            return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        return torch.optim.SGD(params, lr=cfg.lr, weight_decay=cfg.weight_decay)

    # -- evaluation ------------------------------------------------------------------------
    def _eval_start(self, stage: str) -> None:
        self._close_train_epoch()
        self._eval_t0 = time.perf_counter()
        self.evaluators[stage].reset()
        with torch.no_grad():
            self._emb = self.model()

    def _eval_step(self, stage: str, batch: dict[str, torch.Tensor]) -> None:
        assert self._emb is not None
        users = batch["user"].to(self.device)
        scores = self.model.full_scores(self._emb, users)
        self.evaluators[stage].add(batch["user"], scores)

    def _eval_end(self, stage: str) -> None:
        # Under DDP each rank ranked its share of the users: metric sums are reduced over all
        # processes (collective calls, made by every rank) so that every rank logs the same values.
        distributed = rank_and_world()[1] > 1
        evaluator = self.evaluators[stage]
        result = evaluator.result(all_reduce_sum if distributed else None)
        if stage == "test":
            self.test_per_user = evaluator.per_user(gather=all_gather_rows if distributed else None)
        self.results[stage] = result
        self._emb = None
        self.timing["eval"].append(time.perf_counter() - self._eval_t0)
        for group, values in result.items():
            for key, value in values.items():
                if key == "users":
                    continue
                name = f"{stage}/{key}" if group == "all" else f"{stage}/{group}/{key}"
                self.log(name, value, prog_bar=(group == "all" and key == self._monitor_key()))

    def _monitor_key(self) -> str:
        stop = self.train_cfg.early_stopping
        return stop.metric if stop else "ndcg@10"

    def on_validation_epoch_start(self) -> None:
        self._eval_start("valid")

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._eval_step("valid", batch)

    def on_validation_epoch_end(self) -> None:
        self._eval_end("valid")

    def on_test_epoch_start(self) -> None:
        self._eval_start("test")

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._eval_step("test", batch)

    def on_test_epoch_end(self) -> None:
        self._eval_end("test")
