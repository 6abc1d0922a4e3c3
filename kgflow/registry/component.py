"""What a registration binds: a component's kind, name, parameter model, factory and description."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Annotated, Any, Callable

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from kgflow.config.schema import PipelineConfig
    from kgflow.errors import ConfigIssue

#: The kinds the core knows how to use. Plugins may register other kinds for their own use.
KINDS: dict[str, str] = {
    "dataset": "loads raw data into a RecData (interactions, users, items, KG)",
    "builder": "turns the training interactions (and KG/attributes) into a graph bundle",
    "encoder": "produces user and item representations (graph encoders, text encoders)",
    "fusion": "combines the encoders into one recommender model",
    "loss": "the ranking objective over positive and sampled negative scores",
    "objective": "an auxiliary training objective next to the ranking loss (e.g. a KG loss)",
    "metric": "a per-user ranking metric computed from the top-k hits",
}


class Params(BaseModel):
    """Base class for component parameter models: unknown keys are errors, never ignored."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class _DataPathMarker:
    """Marks a parameter as a path to data: the core resolves it relative to the file that sets it."""


#: A path to a data file or folder. Written in a pipeline file, a relative path means relative to
#: that file (so a pipeline and its data move together); given with ``--set``, relative to the
#: current directory. The validated value is absolute.
DataPath = Annotated[str, _DataPathMarker()]


class NoParams(Params):
    """For components that take no parameters."""


@dataclass(frozen=True)
class Component:
    """One registered component.

    ``factory(params, context)`` builds the component from its validated parameters (an instance
    of ``params``) and a kind-specific context object (see :mod:`kgflow.plugin`).
    """

    kind: str
    name: str
    factory: Callable[..., Any]
    params: type[BaseModel] = NoParams
    description: str = ""
    aliases: tuple[str, ...] = ()
    #: Capabilities: a builder *provides* e.g. ``"relations"`` (typed facts beyond interactions);
    #: an encoder that *requires* one is refused by ``kgflow validate`` on a builder without it.
    provides: tuple[str, ...] = ()
    requires: tuple[str, ...] = ()
    #: For a fusion: the encoder roles it combines (e.g. ``("graph", "text")``); ``kgflow validate``
    #: then requires exactly these under ``encoders:``. Empty: the fusion checks its roles itself.
    roles: tuple[str, ...] = ()
    # Filled in by the registry from the providing distribution:
    package: str = ""
    version: str = ""
    plugin: str = ""

    def with_origin(self, package: str, version: str, plugin: str) -> "Component":
        return replace(self, package=package, version=version, plugin=plugin)


@dataclass(frozen=True)
class ConfigCheck:
    """A cross-component check. ``check(config, registry)`` returns the problems it finds."""

    name: str
    check: Callable[["PipelineConfig", Any], "list[ConfigIssue]"]
    description: str = ""
    package: str = field(default="", compare=False)


def normalize_name(name: str) -> str:
    """Names match case-insensitively and treat ``-`` and ``_`` alike (``user-item`` = ``user_item``)."""
    return name.strip().lower().replace("_", "-")
