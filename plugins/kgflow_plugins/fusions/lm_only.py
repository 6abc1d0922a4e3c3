"""``lm_only``: the language model alone, as a pointwise "will this user like this item?" classifier.

Each (user, item) pair is one sequence — ``[CLS] user text [SEP] item text [SEP]`` — read by the
text encoder's model (with its adapter) and scored by a linear head on the pooled output: one logit
per pair, not per token. The user text is the profile (``user_template``, when set) followed by the
titles of up to ``history`` of the user's training items. Trained with the pipeline's loss (``bce``:
a like for the interaction, a dislike for the sampled negative, as in TALLRec's pointwise setting);
evaluated like every other model by full ranking (every item scored for every evaluated user), so it
sits in the same table — which is expensive: use ``eval.max_users`` to rank a fixed sample of users,
and ``eval.metrics: [auc, ...]`` for the pointwise view.
"""
from __future__ import annotations

import numpy as np
import torch
from pydantic import Field
from torch import nn

from kgflow.plugin import (Component, Embeddings, FusionContext, NotSupportedError, Params, Recommender, in_sorted)
from kgflow_plugins.fusions.feature import TRAINS_TEXT
from kgflow_plugins.text.encoding import SavesLanguageModel, TrainableText, pool, training_items_by_user


class LmOnlyParams(Params):
    history: int = Field(10, ge=0, description="titles of up to this many of the user's training "
                         "items (a seeded random choice) in the user text")
    liked_prefix: str = Field("Liked: ", description="text before the history titles")
    max_user_tokens: int = Field(96, ge=8, description="token budget of the user part")
    max_item_tokens: int = Field(32, ge=4, description="token budget of the item part")
    pair_batch: int = Field(512, ge=1, description="pairs per forward pass when ranking all items")
    dropout: float = Field(0.1, ge=0, lt=1, description="dropout before the classification head")
    pointwise_pairs: int = Field(4000, ge=0, description="after testing: AUC and accuracy on this "
                                 "many test interactions, each with one sampled unknown item as the "
                                 "dislike (TALLRec-style pointwise evaluation); 0 skips it")


def user_texts(text: TrainableText, split, params: LmOnlyParams, seed: int) -> list[str]:
    """Profile (if any) plus the titles of a seeded sample of each user's training items."""
    rng = np.random.default_rng(seed)
    out = []
    for u, own in enumerate(training_items_by_user(split)):
        if len(own) > params.history:
            own = rng.choice(own, params.history, replace=False)
        liked = "; ".join(text.texts[i] for i in own)
        profile = text.user_texts[u] + ". " if text.user_texts else ""
        out.append(profile + (params.liked_prefix + liked if params.history else ""))
    return out


class PairTokens(nn.Module):
    """User and item token ids, packed into ``[CLS] user [SEP] item [SEP]`` sequences per pair."""

    def __init__(self, tokenizer, users: list[str], items: list[str], params: LmOnlyParams) -> None:
        super().__init__()
        u = tokenizer(users, truncation=True, max_length=params.max_user_tokens, padding=True,
                      return_tensors="pt")
        i = tokenizer(items, truncation=True, max_length=params.max_item_tokens, padding=True,
                      return_tensors="pt")
        # the item part drops its own [CLS]: the pair has one, from the user part
        self.register_buffer("user_ids", u["input_ids"], persistent=False)
        self.register_buffer("user_len", u["attention_mask"].sum(1), persistent=False)
        self.register_buffer("item_ids", i["input_ids"][:, 1:], persistent=False)
        self.register_buffer("item_len", i["attention_mask"].sum(1) - 1, persistent=False)
        self.pad = int(tokenizer.pad_token_id or 0)

    def pairs(self, users: torch.Tensor, items: torch.Tensor) -> dict[str, torch.Tensor]:
        lu, li = self.user_len.index_select(0, users), self.item_len.index_select(0, items)
        width = int((lu + li).max())
        j = torch.arange(width, device=users.device).unsqueeze(0)
        from_user = j < lu.unsqueeze(1)
        u_ids = self.user_ids.index_select(0, users)
        i_ids = self.item_ids.index_select(0, items)
        u_part = u_ids.gather(1, j.clamp(max=u_ids.shape[1] - 1).expand(len(users), -1))
        i_part = i_ids.gather(1, (j - lu.unsqueeze(1)).clamp(0, i_ids.shape[1] - 1))
        mask = j < (lu + li).unsqueeze(1)
        ids = torch.where(from_user, u_part, i_part).masked_fill(~mask, self.pad)
        return {"input_ids": ids, "attention_mask": mask.long(),
                "token_type_ids": (~from_user & mask).long()}


class CrossEncoderRecommender(SavesLanguageModel, Recommender):
    """Scores pairs with a sequence classifier; ``forward()`` has nothing to share across pairs."""

    has_vectors = False  # a pair's score comes from reading both texts together

    def __init__(self, text: TrainableText, tokens: PairTokens, params: LmOnlyParams, split,
                 seed: int) -> None:
        super().__init__()
        self.text = text
        self.tokens = tokens
        self.params = params
        hidden = int(text.lm.config.hidden_size)
        self.head = nn.Sequential(nn.Dropout(params.dropout), nn.Linear(hidden, 1))
        self.n_users, self.n_items = split.n_users, split.n_items
        self.split, self.seed = split, seed  # the pointwise evaluation draws its pairs from them
        self.uses_token_types = int(getattr(text.lm.config, "type_vocab_size", 0) or 0) >= 2

    def forward(self) -> Embeddings:
        device = self.head[1].weight.device
        return Embeddings(torch.zeros(self.n_users, 0, device=device),
                          torch.zeros(self.n_items, 0, device=device))

    def pair_scores(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        batch = self.tokens.pairs(users, items)
        if not self.uses_token_types:
            batch.pop("token_type_ids")
        hidden = self.text.lm(**batch).last_hidden_state
        return self.head(pool(hidden, batch["attention_mask"], self.text.params.pooling, False)).squeeze(-1)

    def score(self, emb: Embeddings, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        if items.dim() == users.dim() + 1:
            users = users.unsqueeze(-1).expand_as(items)
        return self.pair_scores(users.reshape(-1), items.reshape(-1)).view(items.shape)

    @torch.no_grad()
    def full_scores(self, emb: Embeddings, users: torch.Tensor) -> torch.Tensor:
        all_users = users.repeat_interleave(self.n_items)
        all_items = torch.arange(self.n_items, device=users.device).repeat(len(users))
        step = self.params.pair_batch
        out = [self.pair_scores(all_users[s:s + step], all_items[s:s + step])
               for s in range(0, len(all_users), step)]
        return torch.cat(out).view(len(users), self.n_items).float()

    def extra_metrics(self) -> dict:
        out = super().extra_metrics()
        if self.params.pointwise_pairs:
            out["pointwise"] = pointwise_eval(self, self.split, self.params.pointwise_pairs, self.seed)
        return out

    def new_user(self, emb: Embeddings, items: torch.Tensor, text: str | None = None) -> torch.Tensor:
        raise NotSupportedError("lm_only scores (user text, item text) pairs of known users; it cannot "
                        "serve new users yet")


@torch.no_grad()
def pointwise_eval(model: CrossEncoderRecommender, split, pairs: int, seed: int) -> dict:
    """AUC and accuracy (logit > 0 means "like") on test interactions, each paired with one item
    the user has nowhere in the data, drawn with ``seed``: the pointwise view TALLRec reports."""
    from kgflow_plugins.metrics.ranking import auc

    rng = np.random.default_rng(seed)
    test = split.test
    pick = rng.choice(len(test.user), min(pairs, len(test.user)), replace=False)
    users, pos = test.user[pick], test.item[pick]
    # every known pair as one sorted integer key; redraw only the drawn items that hit one
    known = torch.unique(torch.cat([torch.from_numpy(part.user.astype(np.int64) * split.n_items + part.item)
                                    for part in (split.train, split.valid, split.test)]))
    neg = rng.integers(0, split.n_items, len(users))
    for _ in range(100):
        hit = in_sorted(known, torch.from_numpy(users.astype(np.int64) * split.n_items + neg)).numpy()
        if not hit.any():
            break
        neg[hit] = rng.integers(0, split.n_items, int(hit.sum()))
    model.eval()
    device = model.head[1].weight.device
    u = torch.as_tensor(np.concatenate([users, users]), device=device)
    i = torch.as_tensor(np.concatenate([pos, neg]), device=device)
    step = model.params.pair_batch
    scores = torch.cat([model.pair_scores(u[s:s + step], i[s:s + step]) for s in range(0, len(u), step)])
    labels = torch.cat([torch.ones(len(users)), torch.zeros(len(users))]).bool()
    value = auc(scores.float().cpu().unsqueeze(0), labels.unsqueeze(0))[0]
    accuracy = ((scores.float().cpu() > 0) == labels).float().mean()
    return {"auc": float(value), "accuracy": float(accuracy), "pairs": int(len(u))}


def build_lm_only(params: LmOnlyParams, ctx: FusionContext) -> CrossEncoderRecommender:
    text = ctx.encoders["text"]
    if not isinstance(text, TrainableText):
        raise NotSupportedError("fusion 'lm_only' trains the language model: give encoders.text an adapter "
                        "(adapter: {method: lora, ...}) or freeze: full | top_layers")
    users = user_texts(text, ctx.split, params, ctx.seed)
    tokens = PairTokens(text.tokenizer, users, text.texts, params)
    return CrossEncoderRecommender(text, tokens, params, ctx.split, ctx.seed)


def components() -> list[Component]:
    return [Component("fusion", "lm_only", build_lm_only, LmOnlyParams,
                      "the language model alone: a sequence classifier over (user text, item text) "
                      "pairs with its adapter (encoders.text)", roles=("text",), provides=(TRAINS_TEXT,))]
