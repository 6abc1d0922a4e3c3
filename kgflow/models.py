"""The model contracts the core trains and evaluates. They know nothing of any particular model."""
from __future__ import annotations

from abc import ABCMeta, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, ClassVar, Iterator, Literal

import torch
from torch import nn

from kgflow.errors import NotSupportedError


@dataclass
class Embeddings:
    """Final user and item representations for one forward pass."""

    user: torch.Tensor  # [n_users, d]
    item: torch.Tensor  # [n_items, d]


class GraphEncoder(nn.Module):
    """A model of users and items from ids (and the graph). Subclasses implement :meth:`forward`
    and usually :meth:`ego`; the dot product scores pairs."""

    n_users: int
    n_items: int

    def forward(self) -> Embeddings:  # pragma: no cover - abstract
        raise NotImplementedError

    def propagate(self, user0: torch.Tensor, item0: torch.Tensor) -> Embeddings:
        """Run the encoder on given layer-0 user and item representations instead of its own ID
        embeddings (how a fusion feeds it language-model features). Encoders that cannot take
        external inputs raise :class:`~kgflow.errors.NotSupportedError`."""
        raise NotSupportedError(f"{type(self).__name__} cannot take external input features")

    def input_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The encoder's own layer-0 (ID) user and item tables, for fusions that add to them."""
        raise NotSupportedError(f"{type(self).__name__} has no ID embedding tables")

    def ego(self, users: torch.Tensor, items: torch.Tensor) -> list[torch.Tensor]:
        """The layer-0 (trainable input) rows used for L2 regularisation of a batch."""
        return []

    def after_train_epoch(self) -> None:
        """Called (without gradients) after each epoch's last training batch, before validation:
        the place for state that is refreshed once per epoch, such as KGAT's attention."""

    def extra_loss(self) -> torch.Tensor | None:
        """A regulariser of the last training forward pass (e.g. KGIN's intent independence),
        added to the ranking loss; ``None`` when there is none."""
        return None

    def batch_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """Like :meth:`extra_loss`, for terms that depend on the training batch (its ``user``,
        ``pos`` and ``neg`` ids), such as a contrastive loss over the batch's users and items.
        The default is :meth:`extra_loss`; an encoder overriding this includes it itself."""
        return self.extra_loss()

    def edge_weights(self) -> torch.Tensor | None:
        """How much the model weighs each edge of its graph (in the graph's edge order), when it
        has such a notion (attention); explanations rank KG paths by it."""
        return None

    def message_edges(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The edges this encoder passes messages along, as ``([2, E] sender/receiver node ids,
        [E] their positions in the graph's edge list)``, for the neighbour sampler; ``None``: the
        graph's edges as they are (``edge_index[0]`` sends, ``edge_index[1]`` receives)."""
        return None

    def forward_sampled(self, nodes: torch.Tensor, edge_index: torch.Tensor,
                        edge_id: torch.Tensor) -> torch.Tensor:
        """Output vectors of ``nodes`` (global ids; users and items alike, ``[len(nodes), d]``)
        computed on a sampled subgraph: ``edge_index`` holds local positions in ``nodes`` (row 0
        sends, row 1 receives), ``edge_id`` each edge's position in the full graph (for its
        relation or weight). Encoders that support ``train.sampling: neighbor`` implement it and
        register with ``provides=("neighbor_sampling",)``."""
        raise NotSupportedError(f"{type(self).__name__} cannot train on sampled subgraphs")

    def kg_embeddings(self) -> "KgEmbeddings":
        """The layer-0 tables a KG embedding objective (TransE, TransR) trains; encoders over a
        graph with relations implement it."""
        raise NotSupportedError(f"{type(self).__name__} has no node embeddings for a KG objective")


@dataclass
class KgEmbeddings:
    """What a KG objective trains: every node's layer-0 vector, and optionally the encoder's own
    relation vectors ``[R, k]`` and projections ``[R, d, k]`` (shared with, e.g., KGAT's attention).
    Missing parts are created by the objective itself."""

    nodes: torch.Tensor
    relations: torch.Tensor | None = None
    projections: torch.Tensor | None = None


class AuxiliaryObjective(nn.Module, metaclass=ABCMeta):
    """A training signal next to the ranking loss, declared under ``objective.auxiliary``.

    ``schedule = "alternate"``: after each epoch's ranking batches, the trainer runs this
    objective's own batches (:meth:`batches`), as KGAT alternates CF and KG updates.
    ``"joint"``: every ranking batch adds ``weight * loss(sample(...))``.
    """

    schedule: Literal["alternate", "joint"] = "alternate"
    weight: float = 1.0

    @abstractmethod
    def batches(self, generator: torch.Generator) -> Iterator[dict[str, torch.Tensor]]:
        """One epoch of this objective's own batches (``alternate``), drawn with ``generator``."""

    @abstractmethod
    def num_batches(self) -> int:
        """How many batches :meth:`batches` yields (the trainer's epoch length counts them)."""

    @abstractmethod
    def sample(self, size: int, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """A random batch of ``size`` (``joint``: one per ranking batch)."""

    @abstractmethod
    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The objective's unweighted loss on a batch."""


@dataclass
class PairVectors:
    """A training batch's representations for a :class:`VectorLoss`: ``user [B, d]``, ``pos
    [B, d]`` (each row's positive item) and ``neg [B, N, d]`` (its sampled negatives), with the
    dense ids they belong to (``user_id [B]``, ``pos_id [B]``, ``neg_id [B, N]``)."""

    user: torch.Tensor
    pos: torch.Tensor
    neg: torch.Tensor
    user_id: torch.Tensor
    pos_id: torch.Tensor
    neg_id: torch.Tensor
    #: each positive's weight (``preprocess.weight.loss``), or ``None`` when unweighted
    weight: torch.Tensor | None = None


def weighted_mean(per_row: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    """The mean of a batch's per-positive losses ``[B]``, each weighted by its interaction's weight
    (``sum w l / sum w``: the loss keeps its scale, so the learning rate does not move with the
    weights); the plain mean without weights."""
    if weight is None:
        return per_row.mean()
    weight = weight.to(per_row.dtype)
    return (per_row * weight).sum() / weight.sum().clamp(min=torch.finfo(per_row.dtype).tiny)


class VectorLoss(metaclass=ABCMeta):
    """A ranking loss over the batch's user and item vectors rather than over their scores
    (alignment and uniformity, a softmax whose negatives include the batch's other positives).
    A ``loss`` factory returns one instead of a ``loss(pos, neg)`` callable; it then trains
    models whose score is a dot product of such vectors (:attr:`Recommender.has_vectors`)."""

    #: whether the loss reads :attr:`PairVectors.weight` (``preprocess.weight.loss`` needs it)
    supports_weights: bool = False

    @abstractmethod
    def __call__(self, vectors: PairVectors) -> torch.Tensor:
        """The scalar loss of one batch."""


class Recommender(nn.Module):
    """What the core's Lightning module trains: embeddings for everyone, scores for pairs.

    ``forward()`` computes whatever is shared by a batch (for graph models, one propagation);
    :meth:`score` and :meth:`full_scores` use its result. Fusions may override all three, and
    :meth:`extra_loss` for auxiliary objectives.
    """

    def forward(self) -> Embeddings:  # pragma: no cover - abstract
        raise NotImplementedError

    #: whether :meth:`score` is the dot product of the rows :meth:`vectors` returns; models that
    #: score a pair jointly (a cross-encoder) set it to False, and vector losses refuse them
    has_vectors: ClassVar[bool] = True

    def vectors(self, emb: Embeddings, users: torch.Tensor, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The rows of ``users`` and ``items`` (any shapes) in ``emb``, each with a trailing
        vector dimension."""
        # index_select rather than advanced indexing: its backward is a plain index_add, several
        # times faster on CPUs than the sort-based accumulate of tensor[index].
        u = emb.user.index_select(0, users.reshape(-1)).view(*users.shape, -1)
        i = emb.item.index_select(0, items.reshape(-1)).view(*items.shape, -1)
        return u, i

    def score(self, emb: Embeddings, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Scores of ``items`` for ``users``; ``items`` may have an extra trailing dimension."""
        u, i = self.vectors(emb, users, items)
        if i.dim() == u.dim() + 1:
            # a batched matrix product: forward and backward are GEMMs, about 1.5x faster on a CPU
            # than broadcasting a [B, n, d] product and summing it (softmax over 64 negatives)
            return torch.matmul(i, u.unsqueeze(-1)).squeeze(-1)
        return (u * i).sum(-1)

    def full_scores(self, emb: Embeddings, users: torch.Tensor) -> torch.Tensor:
        """Scores of every item for ``users`` ([B, n_items]): a new tensor, which the evaluation
        masks in place (never return a stored tensor or a view of one)."""
        return emb.user.index_select(0, users) @ emb.item.T

    def regularization(self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        """Half the squared L2 norm of the batch's trainable input rows, per batch row."""
        return torch.zeros(())

    def extra_loss(self, emb: Embeddings, batch: dict[str, torch.Tensor]) -> torch.Tensor | None:
        return None

    def message_edges(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """For sampled-subgraph training: the edges messages pass along (see
        :meth:`GraphEncoder.message_edges`); ``None`` uses the graph's own."""
        return None

    def train_forward(self, batch: dict[str, torch.Tensor]) -> Embeddings:
        """``forward()`` for a training batch. Models that can afford gradients for only part of
        the model per batch (a language model encoding just the batch's items) override it."""
        return self()

    def after_train_batch(self, step: int) -> None:
        """Called after each training batch's optimizer step, gradients still present
        (AdaLoRA's rank allocation runs here)."""

    def after_train_epoch(self) -> None:
        """Called without gradients after each epoch's last training batch, before validation
        (a fusion refreshes cached language-model embeddings here)."""

    def save_artifacts(self, folder: Path) -> list[Path]:
        """Write what a user may want beside the checkpoint (adapter weights, a fine-tuned model)
        into ``folder`` after training, with the best weights loaded; returns what it wrote."""
        return []

    def extra_metrics(self) -> dict:
        """Entries added to the run's ``metrics.json`` after testing (a distilled model adds its
        teacher's metrics and both inference costs); keys must not clash with the core's."""
        return {}

    def exports(self) -> dict[str, Callable[[Path], Path]]:
        """Extra things ``kgflow export RUN --what NAME`` can write, by name (e.g. ``text-model``:
        the fine-tuned language model with its adapter merged)."""
        return {}

    def new_user(self, emb: Embeddings, items: torch.Tensor, text: str | None = None) -> torch.Tensor:
        """A vector in ``emb.user``'s space for someone the model was not trained on, from a few
        liked items (dense indices) and/or a profile text; :meth:`full_scores`-compatible.

        The default folds the user in from ``items`` alone (:func:`fold_in`), which any
        dot-product model supports; models that read text override this to use ``text``."""
        if text is not None:
            raise NotSupportedError("this model does not read text, so it cannot place a user from a "
                            "profile text; give liked items instead, or use a model with a text "
                            "encoder (fusion content or feature)")
        if items.numel() == 0:
            raise ValueError("a new user needs at least one liked item")
        return fold_in(emb, items)


def typical_user_norm(emb: Embeddings) -> float:
    """The median length of the trained users' vectors: the scale a folded-in user gets."""
    norms = emb.user.detach().float().norm(dim=1)
    return float(norms.median()) if norms.numel() else 1.0


def fold_in(emb: Embeddings, items: torch.Tensor, steps: int = 100, lr: float = 0.1,
            start: torch.Tensor | None = None) -> torch.Tensor:
    """Fold a new user into a trained dot-product model: the direction in the user space that
    ranks ``items`` highest among all items (softmax cross-entropy, item vectors frozen), at the
    length of a typical trained user so scores stay on the model's scale.

    Only the direction matters for ranking; fixing the length keeps the softmax as sharp as the
    model's own scores, rather than letting the optimiser inflate it. Deterministic."""
    item = emb.item.detach().float()
    norm = typical_user_norm(emb)
    direction = (start.detach().float().clone() if start is not None
                 else item.index_select(0, items).mean(0))
    direction = direction.requires_grad_(True)
    optimiser = torch.optim.Adam([direction], lr=lr)
    target = items.long()
    with torch.enable_grad():
        for _ in range(steps):
            user = norm * torch.nn.functional.normalize(direction, dim=0)
            logits = item @ user
            loss = -torch.log_softmax(logits, dim=0).index_select(0, target).mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    return (norm * torch.nn.functional.normalize(direction.detach(), dim=0)).to(emb.user.dtype)


class EncoderRecommender(Recommender):
    """A recommender that is just one graph encoder scored by dot product."""

    def __init__(self, encoder: GraphEncoder) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self) -> Embeddings:
        return self.encoder()

    def message_edges(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The graph encoder's message edges (see :meth:`GraphEncoder.message_edges`)."""
        return self.encoder.message_edges()

    def train_forward(self, batch: dict[str, torch.Tensor]) -> Embeddings:
        if "n_id" in batch:  # a sampled subgraph: users and items are rows of one local table
            out = self.encoder.forward_sampled(batch["n_id"], batch["sub_edge_index"], batch["sub_edge_id"])
            return Embeddings(out, out)
        return self()

    def regularization(self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        rows = self.encoder.ego(users, torch.cat([pos.reshape(-1), neg.reshape(-1)]))
        if not rows:
            return torch.zeros((), device=users.device)
        return 0.5 * sum(r.pow(2).sum() for r in rows) / users.numel()

    def extra_loss(self, emb: Embeddings, batch: dict[str, torch.Tensor]) -> torch.Tensor | None:
        return self.encoder.batch_loss(batch)
