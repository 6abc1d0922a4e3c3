"""Distillation: a finished (usually language-model-enhanced) run teaches a light ID-only student.

    fusion:
      name: distill
      params: {teacher: runs/movielens-lm-feature, top_n: 50, rank_weight: 1.0,
               align_weight: 0.1, temperature: 0.2}

The student is ``encoders.graph`` (``mf`` or ``lightgcn``), trained with the pipeline's own ranking
loss plus

- *ranking distillation* (Tang & Wang, KDD 2018): for each batch user, an item drawn from the
  teacher's top-``top_n`` (items ranked higher drawn more often, weight ``exp(-rank / rank_decay)``)
  must outscore the batch's sampled negative (BPR);
- *embedding alignment* (RLMRec-style InfoNCE): the student's final user and item vectors, through a
  small MLP, must pick out their own teacher vector among the batch's (teacher vectors reduced to
  the student's size by a fixed PCA, so the student's shapes never depend on the teacher).

The teacher is read only while training. Serving rebuilds the student alone: no language model, no
teacher directory.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from pydantic import Field
from torch import nn

from kgflow.plugin import (Component, ConfigCheck, ConfigIssue, Embeddings, EncoderRecommender,
                           FusionContext, GraphEncoder, KgflowError, NotSupportedError, Params, TrainedRun)


class DistillParams(Params):
    teacher: str = Field(description="the teacher: the name of an entry of the pipeline's needs: "
                         "(a teacher pipeline `kgflow run` trains first, on this split), or a "
                         "finished run directory on the same split (same data fingerprint)")
    top_n: int = Field(50, ge=1, description="the teacher's top-N items per user to distil")
    rank_decay: float = Field(10.0, gt=0, description="rank weighting exp(-rank / rank_decay)")
    rank_weight: float = Field(1.0, ge=0, description="weight of the ranking-distillation loss")
    align_weight: float = Field(0.1, ge=0, description="weight of the InfoNCE embedding alignment")
    temperature: float = Field(0.2, gt=0, description="InfoNCE temperature")


def check_teacher(path: Path, fingerprint: str) -> dict:
    """The teacher's metrics.json, after checking it is a finished run on the same split."""
    metrics_file = path / "metrics.json"
    if not metrics_file.is_file():
        raise KgflowError(f"distill teacher {path}: not a finished kgflow run (no metrics.json); "
                          "train the teacher first with kgflow run")
    metrics = json.loads(metrics_file.read_text())
    if metrics.get("data_fingerprint") != fingerprint:
        raise KgflowError(f"distill teacher {path} was trained on split {metrics.get('data_fingerprint')}, "
                          f"this pipeline's split is {fingerprint}: a teacher must see the same split "
                          "(same dataset, preprocessing, split and seed)")
    return metrics


def pca(matrix: torch.Tensor, dim: int) -> torch.Tensor:
    """Rows of ``matrix`` in the top-``dim`` principal directions (zero-padded when narrower)."""
    centred = matrix - matrix.mean(0, keepdim=True)
    _, _, v = torch.linalg.svd(centred, full_matrices=False)
    out = centred @ v[:dim].T
    if out.shape[1] < dim:
        out = torch.cat([out, out.new_zeros(len(out), dim - out.shape[1])], dim=1)
    return out


@torch.no_grad()
def serving_seconds(model: nn.Module, n_users: int, batch: int = 4096) -> float:
    """Seconds to score every item for every user: one forward pass plus the full score matrix."""
    model.eval()
    start = time.perf_counter()
    emb = model()
    for s in range(0, n_users, batch):
        model.full_scores(emb, torch.arange(s, min(s + batch, n_users)))
    return time.perf_counter() - start


class DistilledStudent(EncoderRecommender):
    """An ID-only graph encoder trained with a teacher's rankings and representations."""

    def __init__(self, student: GraphEncoder, params: DistillParams, dim: int) -> None:
        super().__init__(student)
        self.params = params
        self.align = nn.Sequential(nn.Linear(dim, dim), nn.LeakyReLU(), nn.Linear(dim, dim))
        self.teacher_info: dict = {}
        self.has_teacher = False

    def attach_teacher(self, path: Path, split, dim: int) -> None:
        """Load the teacher run and keep what training needs (non-persistent: never checkpointed)."""
        teacher = TrainedRun.load(path)
        top_n = min(self.params.top_n, split.n_items)
        with torch.no_grad():
            emb = teacher.model()
            top = teacher.top_items(top_n, exclude="train")
        self.register_buffer("teacher_top", top, persistent=False)
        ranks = torch.arange(top_n, dtype=torch.float32)
        self.register_buffer("rank_weights", torch.exp(-ranks / self.params.rank_decay), persistent=False)
        self.register_buffer("teacher_user", nn.functional.normalize(pca(emb.user.float(), dim), dim=1),
                             persistent=False)
        self.register_buffer("teacher_item", nn.functional.normalize(pca(emb.item.float(), dim), dim=1),
                             persistent=False)
        self.teacher_info = {"run": str(path), "test": teacher.metrics.get("test", {}),
                             "parameters": teacher.metrics.get("parameters", {}),
                             "serving_seconds": serving_seconds(teacher.model, split.n_users),
                             "language_model": _language_model(teacher)}
        self.has_teacher = True

    def extra_loss(self, emb: Embeddings, batch: dict[str, torch.Tensor]) -> torch.Tensor | None:
        base = super().extra_loss(emb, batch)
        if not self.has_teacher:
            return base
        users, neg = batch["user"], batch["neg"].reshape(len(batch["user"]), -1)[:, 0]
        loss = torch.zeros((), device=users.device)
        if self.params.rank_weight > 0:
            pick = torch.multinomial(self.rank_weights.expand(len(users), -1), 1).squeeze(1)
            taught = self.teacher_top.index_select(0, users).gather(1, pick.unsqueeze(1)).squeeze(1)
            margin = self.score(emb, users, taught) - self.score(emb, users, neg)
            loss = loss + self.params.rank_weight * nn.functional.softplus(-margin).mean()
        if self.params.align_weight > 0:
            items = torch.unique(torch.cat([batch["pos"].reshape(-1), neg]))
            uniq_users = torch.unique(users)
            loss = loss + self.params.align_weight * (
                self._info_nce(emb.user.index_select(0, uniq_users), self.teacher_user.index_select(0, uniq_users))
                + self._info_nce(emb.item.index_select(0, items), self.teacher_item.index_select(0, items)))
        return loss if base is None else loss + base

    def _info_nce(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        logits = nn.functional.normalize(self.align(student), dim=1) @ teacher.T / self.params.temperature
        return nn.functional.cross_entropy(logits, torch.arange(len(student), device=student.device))

    def extra_metrics(self) -> dict:
        if not self.has_teacher:
            return {}
        return {"teacher": self.teacher_info,
                "student": {"serving_seconds": serving_seconds(self, self.encoder.n_users),
                            "language_model": None}}


def _language_model(run) -> str | None:
    """The text model a run needs to serve (its text encoder's model), if any."""
    text = run.loaded.config.encoders.get("text")
    return getattr(text.parsed, "model", text.name) if text is not None else None


def build_distill(params: DistillParams, ctx: FusionContext) -> DistilledStudent:
    student = ctx.encoders["graph"]
    if not isinstance(student, GraphEncoder):
        raise NotSupportedError("fusion 'distill' needs the student under encoders.graph (mf or lightgcn)")
    with torch.no_grad():
        dim = student().user.shape[1]
    model = DistilledStudent(student, params, dim)
    if ctx.training:
        path = ctx.needs.get(params.teacher) or Path(params.teacher).expanduser()
        check_teacher(path, ctx.split.fingerprint())
        model.attach_teacher(path, ctx.split, dim)
    return model


def check_teacher_reference(config, registry) -> list[ConfigIssue]:
    """The teacher names a ``needs:`` entry or an existing run directory; a pipeline file goes
    under ``needs:`` (the runner trains it first, never the model's construction)."""
    if registry.get("fusion", config.fusion.name).name != "distill":
        return []
    teacher = str(config.fusion.params.get("teacher", ""))
    if not teacher or teacher in config.needs or Path(teacher).expanduser().is_dir():
        return []
    if Path(teacher).suffix in (".yaml", ".yml"):
        return [ConfigIssue("a teacher pipeline goes under needs:, and the teacher names it",
                            path="fusion.params.teacher",
                            hint=f"needs: {{teacher: {{pipeline: {teacher}}}}} and teacher: teacher")]
    if config.needs and "/" not in teacher and not Path(teacher).suffix:
        named = ", ".join(config.needs)
        return [ConfigIssue(f"teacher {teacher!r} is neither an entry of needs: ({named}) nor a run "
                            "directory", path="fusion.params.teacher",
                            hint=f"name one of: {named}")]
    return []  # a run directory that is not there (yet) is reported when the run starts


def config_checks() -> list[ConfigCheck]:
    return [ConfigCheck("distill-teacher", check_teacher_reference,
                        "the distillation teacher is a needs: entry or a finished run directory")]


def components() -> list[Component]:
    return [Component("fusion", "distill", build_distill, DistillParams,
                      "a finished run (the teacher) distilled into the ID-only encoders.graph: "
                      "ranking distillation from its top-N plus InfoNCE embedding alignment",
                      roles=("graph",))]
