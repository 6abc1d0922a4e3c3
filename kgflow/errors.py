"""Errors a user can act on.

Every error kgflow raises on purpose derives from :class:`KgflowError`. The CLI prints such errors
as plain messages and exits with code 2; anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

from dataclasses import dataclass, field


class KgflowError(Exception):
    """A problem with the user's input or environment, reported without a traceback."""

    exit_code = 2


class NotSupportedError(KgflowError, TypeError):
    """A model was asked for something its kind cannot do (take external features, place a user
    from text, train on sampled subgraphs): raised by the default hooks of :mod:`kgflow.models`,
    and by plugins for the same reason. Callers catch this type, never ``TypeError`` as such, so
    that a genuine bug keeps its traceback. (It is a ``TypeError`` too, for plugins written
    against older kgflow.)"""


@dataclass
class ConfigIssue:
    """One problem in a pipeline file, located as precisely as we can."""

    message: str
    path: str = ""  # dotted YAML path, e.g. "encoders.graph.params.layres"
    file: str | None = None
    line: int | None = None
    value: object = None
    hint: str | None = None
    has_value: bool = False

    def render(self) -> str:
        where = ""
        if self.file:
            where = f"{self.file}:{self.line}" if self.line else self.file
        parts = [p for p in (where, self.path) if p]
        head = " ".join(parts)
        text = f"{head}: {self.message}" if head else self.message
        if self.has_value:
            text += f" (got {self.value!r})"
        if self.hint:
            text += f"\n    {self.hint}"
        return text


@dataclass
class ConfigError(KgflowError):
    """All the problems found in one pipeline, reported together."""

    issues: list[ConfigIssue] = field(default_factory=list)
    source: str | None = None

    def __post_init__(self) -> None:
        super().__init__(str(self))

    def __str__(self) -> str:
        n = len(self.issues)
        head = f"{n} problem{'s' if n != 1 else ''} in {self.source or 'the pipeline'}:"
        return "\n".join([head] + ["  - " + i.render().replace("\n", "\n  ") for i in self.issues])


class DataError(KgflowError):
    """A data file is missing, malformed, or leaves nothing to train on."""


class RunDirError(KgflowError):
    """The output directory cannot be used as asked (it holds a run, or it is incomplete)."""


class PluginError(KgflowError):
    """A plugin could not be loaded or registered a conflicting component."""
