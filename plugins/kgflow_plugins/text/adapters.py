"""PEFT adapters and freezing strategies for the text encoder.

An adapter is declared in YAML as the peft method's name plus that method's own config fields::

    adapter: {method: lora, r: 8, lora_alpha: 16, lora_dropout: 0.05, target_modules: [query, value]}

Fields are checked against the peft config class when the pipeline is validated (unknown fields and
bad values name the field); ``target_modules`` is checked against the chosen model's module names by
``kgflow validate``, from the model's config alone (the model is built on the meta device: no
weights are read and nothing is trained).
"""
from __future__ import annotations

import dataclasses
import re
from functools import lru_cache
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

TESTED_METHODS = ("lora", "ia3", "loha", "lokr", "adalora")  # exercised by kgflow's own tests


@lru_cache(maxsize=1)
def peft_methods() -> dict[str, type]:
    """peft's module-targeting methods (those with ``target_modules``), by lower-case name."""
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING

    methods = {}
    for peft_type, config_class in PEFT_TYPE_TO_CONFIG_MAPPING.items():
        names = {f.name for f in dataclasses.fields(config_class)}
        if "target_modules" in names:
            methods[str(peft_type.value).lower()] = config_class
    return methods


INTERNAL_FIELDS = {"peft_type", "task_type", "auto_mapping", "base_model_name_or_path", "revision",
                   "inference_mode", "peft_version"}


class AdapterSpec(BaseModel):
    """``method`` plus the peft config fields of that method."""

    model_config = ConfigDict(extra="allow")

    method: str = Field(description=f"a peft method: {', '.join(TESTED_METHODS)} (tested) or any "
                        "other peft method that targets modules")
    target_modules: Optional[list[str]] = Field(
        None, description="module names to adapt (e.g. [query, value] for BERT-like models); null: "
        "peft's default for the model type")

    @model_validator(mode="after")
    def _known_method_and_fields(self) -> "AdapterSpec":
        self.method = self.method.lower()
        methods = peft_methods()
        if self.method not in methods:
            raise ValueError(f"unknown adapter method {self.method!r}; peft knows: "
                             f"{', '.join(sorted(methods))}")
        config_class = methods[self.method]
        allowed = {f.name for f in dataclasses.fields(config_class)} - INTERNAL_FIELDS
        unknown = sorted(set(self.options()) - allowed)
        if unknown:
            raise ValueError(f"{self.method} has no option(s) {unknown}; its options: "
                             f"{', '.join(sorted(allowed))}")
        try:
            self.peft_config()
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{self.method}: {exc}") from None
        return self

    def options(self) -> dict[str, Any]:
        """The method's own fields as given (everything but ``method``)."""
        out = dict(self.model_extra or {})
        if self.target_modules is not None:
            out["target_modules"] = self.target_modules
        return out

    def peft_config(self):
        return peft_methods()[self.method](**self.options())


Freeze = Literal["frozen", "full", "top_layers"]


def skeleton(model_path: str) -> nn.Module:
    """The model's module tree from its config alone, on the meta device (no weights read); a
    fresh copy each call, since applying an adapter changes the tree in place."""
    import copy

    return copy.deepcopy(_skeleton(model_path))


@lru_cache(maxsize=8)
def _skeleton(model_path: str) -> nn.Module:
    import torch
    from transformers import AutoConfig, AutoModel

    config = AutoConfig.from_pretrained(model_path)
    with torch.device("meta"):
        return AutoModel.from_config(config)


def module_names(model: nn.Module) -> list[str]:
    """The distinct last parts of the model's leaf-module names (what target_modules matches)."""
    names = {name.rsplit(".", 1)[-1] for name, module in model.named_modules()
             if name and not list(module.children())}
    return sorted(names)


def missing_targets(targets: list[str], model: nn.Module) -> list[str]:
    """Entries of ``target_modules`` that match no module of the model (peft matches a name or
    the end of a dotted name)."""
    full = [name for name, _ in model.named_modules() if name]
    return [t for t in targets
            if not any(name == t or name.endswith("." + t) or re.fullmatch(t, name) for name in full)]


def apply_adapter(lm: nn.Module, spec: AdapterSpec, path: str | None = None) -> nn.Module:
    """Wrap ``lm`` with the adapter (trainable; the base weights frozen). ``path``: start from
    adapter weights saved by an earlier run (``RUN/artifacts/adapter``)."""
    import warnings

    from peft import PeftModel, get_peft_model

    with warnings.catch_warnings():  # transformers' deprecation notices from inside peft
        warnings.simplefilter("ignore", FutureWarning)
        if path:
            return PeftModel.from_pretrained(lm, path, is_trainable=True)
        return get_peft_model(lm, spec.peft_config())


def transformer_blocks(lm: nn.Module) -> nn.ModuleList | None:
    """The model's stack of transformer blocks: its longest ``ModuleList``."""
    return max((m for m in lm.modules() if isinstance(m, nn.ModuleList)), key=len, default=None)


def apply_freeze(lm: nn.Module, freeze: Freeze, top_layers: int) -> None:
    """``frozen``: nothing trains; ``full``: everything; ``top_layers``: the last ``top_layers``
    transformer blocks (found as the longest ``ModuleList`` in the model) and what follows them."""
    for p in lm.parameters():
        p.requires_grad_(freeze == "full")
    if freeze != "top_layers":
        return
    blocks = transformer_blocks(lm)
    if blocks is None or top_layers > len(blocks):
        raise ValueError(f"top_layers: {top_layers} but the model has "
                         f"{0 if blocks is None else len(blocks)} transformer blocks")
    for block in list(blocks)[len(blocks) - top_layers:]:
        for p in block.parameters():
            p.requires_grad_(True)
